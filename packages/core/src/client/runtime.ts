/**
 * The transport-neutral client runtime: one per called service. It watches the registry for the
 * service's instances, and sends each call through deadline → retry → balancer → outlier ejection →
 * a transport's channel, with the adaptive throttle and the bulkhead in front.
 */
import { randomUUID } from "node:crypto";
import type { Context, Span } from "@opentelemetry/api";
import { GantryError, isGantryError } from "../errors/gantry-error.js";
import { coreErrors, toGantryError } from "../errors/table.js";
import type { Logger } from "../logger.js";
import type { Resolver, ServiceInstance, Watch, WatchEvent } from "../registry/index.js";
import type { MethodDescriptor, ServiceDescriptor } from "../service/descriptor.js";
import { type ClientAttemptSpan, endClientSpan, startClientSpan, tracingContext } from "../telemetry/tracing.js";
import { InstanceLoad, LoadClock, weightOf } from "./balancer.js";
import { AdaptiveThrottle, Bulkhead, type Ejectable, Outlier, OutlierDetector } from "./breaker.js";
import { DeadlineQueue, Expiring, MAX_TIMER_MS } from "./deadline.js";
import {
  type AttemptMessage,
  attemptChannel,
  type RetryMessage,
  retryChannel,
  type ThrottleMessage,
  throttleChannel,
} from "./diagnostics.js";
import { isCalleeAnswer, setRelayMessage } from "./outbound.js";
import { intercepted, type ResolvedPolicy, resolvePolicy, timeoutOf } from "./policy.js";
import { backoffMs, mayRetry, RetryBudget } from "./retry.js";
import type {
  Channel,
  ClientRuntimeOptions,
  ClientTransport,
  OutboundCall,
  RuntimeCallOptions,
  UnaryCall,
} from "./types.js";

/**
 * How long a call with no deadline waits for the registry's first answer before it fails with
 * GANTRY_ERR_NO_INSTANCES. A call with a deadline waits until its deadline instead.
 */
export const FIRST_SNAPSHOT_WAIT_MS = 10_000;

const EMPTY_METADATA: Readonly<Record<string, string>> = Object.freeze({});
const NO_OPTIONS: RuntimeCallOptions = Object.freeze({});

/**
 * Errors that show the instance itself unwell, for outlier ejection: unreachable, going away, not
 * serving, or an UNAVAILABLE with no code of Gantry's (a transport's: a connection lost mid-call, a
 * proxy's 503). An UNAVAILABLE with a code is the callee's own answer (GANTRY_ERR_UPSTREAM,
 * GANTRY_ERR_NO_INSTANCES, GANTRY_ERR_THROTTLED: a healthy instance relaying an outage further down).
 */
const INSTANCE_FAILURES: ReadonlySet<string> = new Set([
  "UNAVAILABLE",
  "GANTRY_ERR_CONNECT",
  "GANTRY_ERR_SHUTTING_DOWN",
  "GANTRY_ERR_DRAIN_TIMEOUT",
  "GANTRY_ERR_NOT_STARTED",
]);

/** Of those, the ones that eject at once: the instance cannot be reached, or says it is going away. */
const EJECT_AT_ONCE: ReadonlySet<string> = new Set([
  "GANTRY_ERR_CONNECT",
  "GANTRY_ERR_SHUTTING_DOWN",
  "GANTRY_ERR_DRAIN_TIMEOUT",
]);

/** Why the runtime stopped an attempt (or a wait) rather than the callee answering it. */
type Stop = "deadline" | "cancelled" | "closed";

/** What a failed attempt says of its instance. */
type Verdict = "failed" | "answered" | "none";

/** One instance as the runtime sees it: its load (for balancers), its channel and its outlier state. */
class Peer extends InstanceLoad implements Ejectable {
  readonly url: string;
  readonly transport: ClientTransport | undefined;
  /** Its score in rendezvous hashing with this client's id: the highest scores form the subset. */
  readonly rank: number;
  readonly outlier = new Outlier();
  channel: Channel | undefined = undefined;
  /** Gone from the registry (or the runtime closed): what its calls report no longer counts. */
  removed = false;

  constructor(instance: ServiceInstance, clock: LoadClock, transport: ClientTransport | undefined, rank: number) {
    super(instance, clock);
    this.transport = transport;
    this.url = transport === undefined ? "" : instance.endpoints[transport.kind];
    this.rank = rank;
  }
}

/** One call, across its attempts. */
class CallState {
  readonly method: MethodDescriptor;
  readonly input: unknown;
  readonly metadata: Readonly<Record<string, string>>;
  /** ms since the epoch. */
  readonly deadline: number | undefined;
  /** The call's own timeout (its caller's, the policy's or the method's), if it has one. */
  readonly timeoutMs: number | undefined;
  readonly signal: AbortSignal | undefined;
  /** Date.now() when the call was made, when it has a deadline (for the message of DEADLINE_EXCEEDED). */
  readonly startedAt: number;
  attempt = 0;
  /** What was left of the deadline when the current attempt started, ms. */
  attemptMs = Number.POSITIVE_INFINITY;
  /** The instance of the current attempt; undefined between attempts. */
  peer: Peer | undefined = undefined;
  /** Instances that failed this call, so that retries go elsewhere. */
  failed: Peer[] | undefined = undefined;
  /** Set when the runtime stopped the call. */
  stopped: Stop | undefined = undefined;
  /** performance.now() when the current attempt started. */
  began = 0;
  /** Settle the caller's promise: set once the call is admitted. */
  resolve: (value: unknown) => void = ignore;
  reject: (error: unknown) => void = ignore;
  /** The caller's promise is settled. */
  done = false;
  /**
   * The OpenTelemetry context the call was made in, when an SDK is registered: its attempts' spans are
   * children of the span active there, whatever context a retry is started from.
   */
  readonly trace: Context | undefined = tracingContext();

  constructor(
    method: MethodDescriptor,
    input: unknown,
    metadata: Readonly<Record<string, string>>,
    deadline: number | undefined,
    timeoutMs: number | undefined,
    signal: AbortSignal | undefined,
    startedAt: number,
  ) {
    this.method = method;
    this.input = input;
    this.metadata = metadata;
    this.deadline = deadline;
    this.timeoutMs = timeoutMs;
    this.signal = signal;
    this.startedAt = startedAt;
  }
}

/**
 * What an attempt sends, and what settles it: whichever comes first of the channel's report, the
 * deadline (on the client's one DeadlineQueue timer), the caller's signal and close(). The one object
 * an attempt makes: the channel reports to it, and learns of the caller giving up through its hook.
 *
 * close() finds the attempts in flight in the deadline queue and in a Set; a caller's signal that many
 * calls share gets one listener of the runtime's (see CallerSignals).
 */
class Attempt extends Expiring implements UnaryCall, Cancellable {
  readonly method: MethodDescriptor;
  readonly deadline: number | undefined;
  /** The call's metadata, and the attempt's trace context when it is traced. */
  metadata: Readonly<Record<string, string>>;
  readonly #call: CallState;
  readonly #peer: Peer;
  readonly #runtime: Guards;
  #cancel: ((reason: GantryError) => void) | undefined = undefined;
  #stopError: GantryError | undefined = undefined;
  #settled = false;
  #shared: Shared | undefined = undefined;
  #span: Span | undefined = undefined;
  /** performance.now() at the start when someone listened on `gantry:client:attempt`; else 0. */
  #startedAt = 0;

  constructor(call: CallState, peer: Peer, runtime: Guards) {
    super();
    this.method = call.method;
    this.deadline = call.deadline;
    this.metadata = call.metadata;
    this.#call = call;
    this.#peer = peer;
    this.#runtime = runtime;
  }

  get stopped(): GantryError | undefined {
    return this.#stopError;
  }

  onStop(cancel: (reason: GantryError) => void): void {
    if (this.#stopError !== undefined) cancel(this.#stopError);
    else if (!this.#settled) this.#cancel = cancel;
  }

  /**
   * Starts the attempt: its client span when an OpenTelemetry SDK is registered, its clock when
   * someone listens on `gantry:client:attempt`, and what can stop it (its deadline, the caller's signal).
   */
  start(): void {
    if (attemptChannel.hasSubscribers) this.#startedAt = performance.now();
    const traced = traceAttempt(this.#call, this.#peer, this.metadata);
    if (traced !== undefined) {
      this.#span = traced.span;
      this.metadata = traced.metadata;
    }
    const deadline = this.deadline;
    if (deadline !== undefined) {
      this.expiresAt = deadline;
      this.#runtime.deadlines.add(this);
    } else {
      this.#runtime.undated.add(this);
    }
    const signal = this.#call.signal;
    if (signal !== undefined) this.#shared = this.#runtime.callers.watch(signal, this);
  }

  /** The caller's signal aborted. */
  handleEvent(): void {
    this.stop("cancelled");
  }

  /** The deadline passed. */
  expire(): void {
    this.stop("deadline");
  }

  stop(reason: Stop): void {
    if (this.#settled) return;
    const cancel = this.#cancel;
    this.#finish();
    this.#call.stopped = reason;
    const error = stopError(reason, this.#call);
    this.#stopError = error;
    this.#report(error);
    this.#runtime.ended(this.#call, this.#peer, undefined, error);
    if (cancel !== undefined) cancelOnWire(cancel, error);
  }

  answered(value: unknown): void {
    if (this.#settled) return;
    this.#finish();
    this.#report(undefined);
    this.#runtime.ended(this.#call, this.#peer, value, undefined);
  }

  failed(error: unknown): void {
    if (this.#settled) return;
    this.#finish();
    const failure = toGantryError(error);
    this.#report(failure);
    this.#runtime.ended(this.#call, this.#peer, undefined, failure);
  }

  #report(error: GantryError | undefined): void {
    if (this.#span === undefined && this.#startedAt === 0) return;
    attemptEnded(this.#call, this.#startedAt === 0 ? undefined : this.#peer, this.#span, this.#startedAt, error);
  }

  #finish(): void {
    this.#settled = true;
    this.#cancel = undefined;
    if (this.deadline !== undefined) this.#runtime.deadlines.remove(this);
    else this.#runtime.undated.delete(this);
    const signal = this.#call.signal;
    if (signal !== undefined) this.#runtime.callers.unwatch(signal, this, this.#shared);
  }
}

/**
 * A streaming call in flight, as its channel sends it: the hook that cancels it (called by the caller's
 * signal or close()), its client span, and its end, booked once.
 */
class OpenStream implements OutboundCall, Cancellable {
  readonly method: MethodDescriptor;
  readonly deadline: number | undefined;
  readonly metadata: Readonly<Record<string, string>>;
  stopped: GantryError | undefined = undefined;
  #cancel: ((reason: GantryError) => void) | undefined = undefined;
  readonly #call: CallState;
  readonly #streams: Set<OpenStream>;
  readonly #onEnd: (error: GantryError | undefined) => void;
  readonly #span: Span | undefined;
  readonly #peer: Peer;
  readonly #startedAt: number;
  #ended = false;

  constructor(call: CallState, peer: Peer, streams: Set<OpenStream>, onEnd: (error: GantryError | undefined) => void) {
    this.method = call.method;
    this.deadline = call.deadline;
    this.#call = call;
    this.#streams = streams;
    this.#onEnd = onEnd;
    this.#peer = peer;
    this.#startedAt = performance.now();
    const traced = traceAttempt(call, peer, call.metadata);
    this.#span = traced?.span;
    this.metadata = traced?.metadata ?? call.metadata;
    streams.add(this);
    call.signal?.addEventListener("abort", this, { once: true });
  }

  onStop(cancel: (reason: GantryError) => void): void {
    if (this.stopped !== undefined) cancel(this.stopped);
    else this.#cancel = cancel;
  }

  /** The caller's signal aborted. */
  handleEvent(): void {
    this.stop("cancelled");
  }

  /** Cancels the call on the wire; the channel then fails it with the reason. */
  stop(reason: Stop): void {
    if (this.#ended || this.stopped !== undefined) return;
    this.#call.stopped = reason;
    const error = stopError(reason, this.#call);
    this.stopped = error;
    const cancel = this.#cancel;
    this.#cancel = undefined;
    if (cancel !== undefined) cancelOnWire(cancel, error);
  }

  /** Books the end of the call, once: a GantryError for a failed one. */
  end(error: GantryError | undefined): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#cancel = undefined;
    this.#streams.delete(this);
    this.#call.signal?.removeEventListener("abort", this);
    attemptEnded(this.#call, this.#peer, this.#span, this.#startedAt, error);
    this.#onEnd(error);
  }

  /** The output messages; the call ends when they do, fail, or the reader leaves. */
  async *replies(source: AsyncIterable<unknown>, final: (error: unknown) => GantryError): AsyncGenerator<unknown> {
    let failure: GantryError | undefined;
    try {
      for await (const message of source) yield message;
    } catch (error) {
      failure = final(error);
      throw failure;
    } finally {
      this.end(failure);
    }
  }
}

/**
 * Runs a channel's cancel hook. The attempt has ended already, with `reason`: a hook that throws has
 * nothing left to fail, and must not take down the timer or close() that stopped it.
 */
function cancelOnWire(cancel: (reason: GantryError) => void, reason: GantryError): void {
  try {
    cancel(reason);
  } catch {
    // The call is over for its caller; what the channel does with its connection is its own.
  }
}

/** The client span of an attempt to `peer`, with its trace context in a copy of `metadata`. */
function traceAttempt(
  call: CallState,
  peer: Peer,
  metadata: Readonly<Record<string, string>>,
): ClientAttemptSpan | undefined {
  if (call.trace === undefined) return undefined;
  try {
    return startClientSpan(
      call.method,
      metadata,
      call.attempt,
      { transport: peer.transport?.kind ?? "", instance: peer.instance.id, url: peer.url },
      call.trace,
    );
  } catch {
    // A tracer that fails leaves the attempt untraced: it must not fail the call, or leave it hanging.
    return undefined;
  }
}

/**
 * An attempt (unary or a stream) has ended: its span ends, and it is published on
 * `gantry:client:attempt` when someone listens (`peer` is undefined when no one did as it began).
 */
function attemptEnded(
  call: CallState,
  peer: Peer | undefined,
  span: Span | undefined,
  startedAt: number,
  error: GantryError | undefined,
): void {
  if (span !== undefined) {
    try {
      endClientSpan(span, error);
    } catch {
      // As in traceAttempt: the tracer's failure is not the call's, and the attempt's end must be booked.
    }
  }
  if (peer === undefined || !attemptChannel.hasSubscribers) return;
  const message: AttemptMessage = {
    service: call.method.service.fullName,
    method: call.method.name,
    instance: peer.instance.id,
    transport: peer.transport?.kind ?? "",
    attempt: call.attempt,
    durationMs: performance.now() - startedAt,
    status: error === undefined ? "OK" : error.status,
    code: error?.code,
  };
  attemptChannel.publish(message);
}

/** Where a runtime keeps its attempts in flight, so that close() can stop them, and hears their end. */
interface Guards {
  readonly deadlines: DeadlineQueue;
  /** Attempts without a deadline. */
  readonly undated: Set<Attempt>;
  readonly callers: CallerSignals;
  /** An attempt ended: answered with `value`, or failed with `error` (by its channel or by the runtime). */
  readonly ended: (call: CallState, peer: Peer, value: unknown, error: GantryError | undefined) => void;
}

/** What a caller's signal stops: an attempt, a wait for the registry, a backoff. */
interface Cancellable {
  /** The caller's signal aborted. */
  handleEvent(): void;
}

/** What is in flight under one caller's signal that many calls share, behind one listener. */
class Shared {
  readonly signal: AbortSignal;
  readonly items = new Set<Cancellable>();

  constructor(signal: AbortSignal) {
    this.signal = signal;
  }

  handleEvent(): void {
    for (const item of this.items) item.handleEvent();
    this.items.clear();
  }
}

/**
 * How the runtime listens to its callers' signals. Each thing in flight listens to its call's signal
 * itself (an EventListener object, no closure), which costs time in proportion to the listeners
 * already on that signal: nothing for a signal of the call's own, much for one that many calls in
 * flight share (every call an inbound call makes in parallel shares its signal; an app may pass one
 * signal to all its calls). So a signal watched twice in a row (for two calls, or two steps of one) is
 * taken for a shared one: from then on what is in flight under it goes in one Set, behind one
 * listener, which stays until the signal is collected.
 *
 * Whoever watches checks `signal.aborted` first: an aborted signal no longer fires.
 */
class CallerSignals {
  #last: AbortSignal | undefined = undefined;
  #shared: Shared | undefined = undefined;

  /** Listens to `signal` for `item`; returns where it went, for {@link unwatch}. */
  watch(signal: AbortSignal, item: Cancellable): Shared | undefined {
    let shared = this.#shared;
    if (shared === undefined || shared.signal !== signal) {
      if (signal !== this.#last) {
        this.#last = signal;
        signal.addEventListener("abort", item);
        return undefined;
      }
      shared = new Shared(signal);
      signal.addEventListener("abort", shared, { once: true });
      this.#shared = shared;
    }
    shared.items.add(item);
    return shared;
  }

  unwatch(signal: AbortSignal, item: Cancellable, shared: Shared | undefined): void {
    if (shared === undefined) signal.removeEventListener("abort", item);
    else shared.items.delete(item);
  }
}

/** A call waiting for the registry's first snapshot, until `until` (ms since the epoch). */
class Waiter implements Cancellable {
  readonly call: CallState;
  readonly until: number;
  readonly #waiters: Set<Waiter>;
  readonly #callers: CallerSignals;
  readonly #shared: Shared | undefined;
  readonly #resolve: () => void;
  readonly #reject: (error: GantryError | undefined) => void;
  #timer: ReturnType<typeof setTimeout>;

  constructor(
    call: CallState,
    waiters: Set<Waiter>,
    callers: CallerSignals,
    until: number,
    resolve: () => void,
    reject: (error: GantryError | undefined) => void,
  ) {
    this.call = call;
    this.until = until;
    this.#waiters = waiters;
    this.#callers = callers;
    this.#resolve = resolve;
    this.#reject = reject;
    this.#timer = setTimeout(timeUp, timerDelay(until - Date.now()), this);
    this.#shared = call.signal === undefined ? undefined : callers.watch(call.signal, this);
    waiters.add(this);
  }

  /** The caller's signal aborted. */
  handleEvent(): void {
    this.call.stopped = "cancelled";
    this.fail(stopError("cancelled", this.call));
  }

  ready(): void {
    this.#end();
    this.#resolve();
  }

  /** The timer fired: the wait is over, unless it was set short of a time too far for a timer. */
  timeUp(): void {
    const left = this.until - Date.now();
    if (left > 0) this.#timer = setTimeout(timeUp, timerDelay(left), this);
    else this.fail(undefined);
  }

  /** Fails the wait with `error`, or (undefined) because the registry has not answered in time. */
  fail(error: GantryError | undefined): void {
    this.#end();
    this.#reject(error);
  }

  #end(): void {
    clearTimeout(this.#timer);
    if (this.call.signal !== undefined) this.#callers.unwatch(this.call.signal, this, this.#shared);
    this.#waiters.delete(this);
  }
}

function timeUp(waiter: Waiter): void {
  waiter.timeUp();
}

/** A backoff before a retry; the caller's signal and close() end it early. */
class Backoff implements Cancellable {
  readonly #call: CallState;
  readonly #sleeping: Set<Backoff>;
  readonly #callers: CallerSignals;
  readonly #shared: Shared | undefined;
  readonly #resolve: (stopped: Stop | undefined) => void;
  readonly #timer: ReturnType<typeof setTimeout>;

  constructor(
    call: CallState,
    sleeping: Set<Backoff>,
    callers: CallerSignals,
    delay: number,
    resolve: (stopped: Stop | undefined) => void,
  ) {
    this.#call = call;
    this.#sleeping = sleeping;
    this.#callers = callers;
    this.#resolve = resolve;
    this.#timer = setTimeout(wake, timerDelay(delay), this);
    this.#shared = call.signal === undefined ? undefined : callers.watch(call.signal, this);
    sleeping.add(this);
  }

  /** The caller's signal aborted. */
  handleEvent(): void {
    this.end("cancelled");
  }

  /** Ends the wait: undefined when its time is up, else why it was cut short. */
  end(stopped: Stop | undefined): void {
    clearTimeout(this.#timer);
    if (this.#call.signal !== undefined) this.#callers.unwatch(this.#call.signal, this, this.#shared);
    this.#sleeping.delete(this);
    this.#resolve(stopped);
  }
}

function wake(backoff: Backoff): void {
  backoff.end(undefined);
}

function ignore(): void {}

/** A delay a timer can hold (see MAX_TIMER_MS): at least 0, at most 2^31 − 1 ms. */
function timerDelay(ms: number): number {
  return Math.min(MAX_TIMER_MS, Math.max(0, ms));
}

function stopError(reason: Stop, call: CallState): GantryError {
  switch (reason) {
    case "deadline": {
      const timeoutMs = Math.max(0, Math.round((call.deadline ?? call.startedAt) - call.startedAt));
      return coreErrors.create("GANTRY_ERR_DEADLINE_EXCEEDED", { timeoutMs });
    }
    case "cancelled": {
      // The reason of the caller's signal when it is a GantryError: an inbound call that reached its
      // deadline aborts its outbound calls with DEADLINE_EXCEEDED, one cut off by a drain with its own.
      const why: unknown = call.signal?.reason;
      if (isGantryError(why)) return why;
      return coreErrors.create("GANTRY_ERR_CANCELLED", {}, why === undefined ? undefined : { cause: why });
    }
    case "closed":
      return coreErrors.create("GANTRY_ERR_SHUTTING_DOWN");
  }
}

/**
 * The client of one service, for every transport: finds its instances through the registry, balances
 * calls over them and keeps failing ones out, and applies the caller's policy (deadlines, retries with
 * a budget, throttle, bulkhead, fallback, interceptors). Typed client proxies and `gantry call` sit on
 * top of it; transports give it channels.
 *
 * Every error it rejects with is a GantryError: the callee's own status, code, details and violations
 * unchanged, its message followed by where it happened, naming the instance by its id:
 * `(hello.v1.HelloService/SayHello on instance i-7f3a, attempt 2 of 3)`. A method that lets it through
 * tells its own callers only the callee's message, or what failed, never an address (`relayMessage`).
 *
 * - Before the registry's first snapshot a call waits for it, until its deadline, then fails with
 *   GANTRY_ERR_DEADLINE_EXCEEDED "(… the registry has not answered)"; a call without a deadline waits
 *   {@link FIRST_SNAPSHOT_WAIT_MS}, then fails with GANTRY_ERR_NO_INSTANCES, UNAVAILABLE like every
 *   other call that found no instance.
 * - A call whose signal aborts fails with the signal's reason when it is a GantryError (an inbound call
 *   past its deadline aborts its outbound calls with DEADLINE_EXCEEDED), else GANTRY_ERR_CANCELLED.
 * - After close(), calls fail with GANTRY_ERR_SHUTTING_DOWN (UNAVAILABLE): this process is shutting down
 *   and the outbound call never ran.
 * - Outlier ejection counts against an instance only what shows it unwell: a refused connection, a
 *   server going away or not serving, an UNAVAILABLE of a transport's (no Gantry code), and a
 *   DEADLINE_EXCEEDED of an attempt that had at least half the call's own timeout (`methodTimeoutsMs`,
 *   the method's `timeoutMs` or the policy's `timeoutMs`). An attempt cut short by the caller's nearly
 *   spent deadline, or of a call with no timeout of its own, says nothing of the instance; nor does
 *   load shedding (RESOURCE_EXHAUSTED). An UNAVAILABLE with a code (GANTRY_ERR_UPSTREAM and the like)
 *   is a healthy instance relaying an outage further down: it counts as an answer.
 *
 * @example
 * const runtime = new ClientRuntime({ service, resolver: registry.resolver, transports: [grpcClient], log });
 * const reply = await runtime.call(sayHello, { name: "Ada" }, { deadline: Date.now() + 500 });
 * await runtime.close();
 */
export class ClientRuntime {
  readonly service: ServiceDescriptor;
  readonly #resolver: Resolver;
  readonly #log: Logger;
  readonly #policy: ResolvedPolicy;
  /** The ClientTransports of the policy's kinds, in its order of preference. */
  readonly #transports: readonly ClientTransport[];
  readonly #clientId = randomUUID();
  readonly #clock = new LoadClock();
  readonly #detector: OutlierDetector;
  readonly #throttle: AdaptiveThrottle | undefined;
  readonly #budget: RetryBudget;
  readonly #bulkhead: Bulkhead;
  readonly #guards: Guards = {
    deadlines: new DeadlineQueue(),
    undated: new Set(),
    callers: new CallerSignals(),
    ended: (call, peer, value, error) => this.#attemptEnded(call, peer, value, error),
  };
  /** Calls waiting before a retry. */
  readonly #sleeping = new Set<Backoff>();
  readonly #streams = new Set<OpenStream>();

  #watch: Watch | undefined = undefined;
  #ready = false;
  #closed = false;
  #watchError: Error | undefined = undefined;
  readonly #waiters = new Set<Waiter>();
  readonly #peers = new Map<string, Peer>();
  /** The instances calls may go to: filtered by the selection, then subset. Rebuilt when the set changes. */
  #eligible: Peer[] = [];
  /** What the balancer picks from: the eligible instances not ejected, in the preferred zone if any. */
  #available: Peer[] = [];
  #setChanged = true;
  #healthChanged = true;
  /** When the next ejection ends (performance.now()). */
  #nextExpiry = Number.POSITIVE_INFINITY;

  constructor(options: ClientRuntimeOptions) {
    this.service = options.service;
    this.#resolver = options.resolver;
    this.#log = options.log;
    const policy = resolvePolicy(options.policy ?? {}, options.service.fullName);
    this.#policy = policy;
    this.#transports = policy.transports.flatMap((kind) => options.transports.find((t) => t.kind === kind) ?? []);
    this.#detector = new OutlierDetector(options.service.fullName, policy.ejection);
    this.#throttle = policy.throttleK === undefined ? undefined : new AdaptiveThrottle({ k: policy.throttleK });
    this.#budget = new RetryBudget({ ratio: policy.budgetRatio, minRetriesPerSecond: policy.minRetriesPerSecond });
    this.#bulkhead = new Bulkhead(policy.bulkhead);
  }

  /**
   * Calls `method` of the service with `input` (the input message as native values) and resolves with
   * its output message, or rejects with a GantryError. The first call starts watching the registry.
   */
  call(method: MethodDescriptor, input: unknown, options: RuntimeCallOptions = NO_OPTIONS): Promise<unknown> {
    return this.#begin(method, input, options, this.#run);
  }

  /**
   * Sends a streaming call of `method` (client, server or bidi streaming) to one instance that offers
   * a transport with streams (gRPC). `input` is the input message, or for client and bidi streaming an
   * AsyncIterable of them. Resolves with the output message (client streaming) or an AsyncIterable of
   * output messages (server and bidi streaming), whose reading ends with the call's error, if any. A
   * stream is not retried (it may have run in part); its deadline, the caller's signal and close() end
   * it, and leaving the output early cancels it.
   */
  stream(method: MethodDescriptor, input: unknown, options: RuntimeCallOptions = NO_OPTIONS): Promise<unknown> {
    return this.#begin(method, input, options, this.#openStream);
  }

  /**
   * What every call goes through before `run` sends it: its deadline (the caller's, capped by its
   * timeout), the policy's interceptors and fallback, and admission through close() and the bulkhead.
   */
  #begin(
    method: MethodDescriptor,
    input: unknown,
    options: RuntimeCallOptions,
    run: (this: ClientRuntime, call: CallState) => Promise<unknown>,
  ): Promise<unknown> {
    const policy = this.#policy;
    let deadline = options.deadline;
    let startedAt = 0;
    const timeoutMs = timeoutOf(policy, method, options.timeoutMs);
    if (timeoutMs !== undefined) {
      startedAt = Date.now();
      if (deadline === undefined || startedAt + timeoutMs < deadline) deadline = startedAt + timeoutMs;
    } else if (deadline !== undefined) {
      startedAt = Date.now();
    }
    const signal = options.signal;
    if (policy.interceptors.length === 0 && policy.fallback === undefined) {
      const metadata = options.metadata ?? EMPTY_METADATA;
      return this.#admit(new CallState(method, input, metadata, deadline, timeoutMs, signal, startedAt), run);
    }
    return intercepted(policy, method, input, options.metadata, (metadata) =>
      this.#admit(new CallState(method, input, metadata, deadline, timeoutMs, signal, startedAt), run),
    );
  }

  /** Admits the call through close() and the bulkhead, or fails it at once; `run` leaves the bulkhead. */
  #admit(call: CallState, run: (this: ClientRuntime, call: CallState) => Promise<unknown>): Promise<unknown> {
    if (this.#closed) return Promise.reject(this.#final(call, stopError("closed", call), true));
    if (call.signal?.aborted) return Promise.reject(this.#final(call, stopError("cancelled", call), true));
    if (!this.#bulkhead.enter()) {
      const error = coreErrors.create("GANTRY_ERR_BULKHEAD_FULL", {
        service: this.service.fullName,
        limit: this.#bulkhead.limit,
      });
      return Promise.reject(this.#final(call, error, true));
    }
    return run.call(this, call);
  }

  /** An admitted streaming call: the registry's first answer if need be, one instance, the stream. */
  async #openStream(call: CallState): Promise<unknown> {
    const method = call.method;
    let peer: Peer;
    try {
      if (!this.#ready) await this.#firstSnapshot(call);
      call.attempt = 1;
      peer = this.#pickStreaming(call);
    } catch (error) {
      this.#bulkhead.leave();
      throw error;
    }
    call.peer = peer;
    peer.inFlight += 1;
    const began = performance.now();
    const opened = new OpenStream(call, peer, this.#streams, (error) => this.#streamEnded(call, peer, began, error));
    let output: unknown;
    try {
      const channel = peer.channel ?? this.#open(peer, peer.transport as ClientTransport);
      output = await (channel.stream as NonNullable<Channel["stream"]>).call(channel, opened, call.input);
    } catch (error) {
      const failure = this.#final(call, toGantryError(error), false);
      opened.end(failure);
      throw failure;
    }
    if (method.stream === "client") {
      opened.end(undefined);
      return output;
    }
    return opened.replies(output as AsyncIterable<unknown>, (error) => this.#final(call, toGantryError(error), false));
  }

  /** Stops watching the registry, closes every channel, and fails calls in flight and calls to come. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#watch?.close();
    this.#watch = undefined;
    for (const attempt of this.#guards.deadlines.drain()) (attempt as Attempt).stop("closed");
    for (const attempt of this.#guards.undated) attempt.stop("closed");
    for (const backoff of this.#sleeping) backoff.end("closed");
    for (const opened of this.#streams) opened.stop("closed");
    for (const waiter of this.#waiters) {
      waiter.call.stopped = "closed";
      waiter.fail(stopError("closed", waiter.call));
    }
    for (const peer of this.#peers.values()) this.#retire(peer);
    this.#peers.clear();
    this.#eligible = [];
    this.#available = [];
  }

  /**
   * The admitted call: the registry's first answer if need be, the throttle, then attempts and retries.
   * Its one promise is settled by {@link #resolveCall} or {@link #rejectCall}; each attempt reports its
   * end to {@link #attemptEnded}, which books it and answers, retries or fails the call.
   */
  #run(call: CallState): Promise<unknown> {
    return new Promise((resolve, reject) => {
      call.resolve = resolve;
      call.reject = reject;
      if (this.#ready) return this.#first(call);
      let waited: Promise<void>;
      try {
        waited = this.#firstSnapshot(call);
      } catch (error) {
        return this.#rejectCall(call, error);
      }
      waited.then(
        () => this.#first(call),
        (error: unknown) => this.#rejectCall(call, error),
      );
    });
  }

  /** Before the first attempt: the throttle, and the call counted for the retry budget. */
  #first(call: CallState): void {
    const now = performance.now();
    try {
      const throttle = this.#throttle;
      if (throttle !== undefined) {
        const p = throttle.reject(now);
        if (p !== 0) throw this.#throttled(call, p, now);
      }
      this.#budget.deposit(now);
    } catch (error) {
      this.#rejectCall(call, error);
      return;
    }
    this.#next(call, now);
  }

  /** Sends the call's next attempt, unless it must end: closed, cancelled, out of time, no instance. */
  #next(call: CallState, now: number): void {
    let peer: Peer;
    try {
      call.attempt += 1;
      if (this.#closed) {
        call.stopped = "closed";
        throw this.#final(call, stopError("closed", call), true);
      }
      if (call.signal?.aborted) {
        call.stopped = "cancelled";
        throw this.#final(call, stopError("cancelled", call), true);
      }
      if (call.deadline !== undefined) {
        const left = call.deadline - Date.now();
        if (left <= 0) {
          call.stopped = "deadline";
          throw this.#final(call, stopError("deadline", call), true);
        }
        call.attemptMs = left;
      }
      peer = this.#pick(call, now);
    } catch (error) {
      this.#rejectCall(call, error);
      return;
    }
    call.peer = peer;
    let channel: Channel;
    try {
      // biome-ignore lint/style/noNonNullAssertion: eligible peers all have a transport
      channel = peer.channel ?? this.#open(peer, peer.transport!);
    } catch (error) {
      // The transport could not make a channel to it (an endpoint it cannot take): nothing was sent,
      // and nothing learnt of the instance, whose probe (if this was one) is given back.
      if (this.#detector.released(peer)) this.#healthChanged = true;
      this.#rejectCall(call, this.#final(call, toGantryError(error), true));
      return;
    }
    call.began = now;
    peer.inFlight += 1;
    const attempt = new Attempt(call, peer, this.#guards);
    try {
      attempt.start();
      channel.unary(attempt, call.input);
    } catch (error) {
      attempt.failed(error);
    }
  }

  /**
   * An attempt ended (see {@link Guards.ended}): books it, then answers the call, retries it, or
   * fails it for good.
   */
  #attemptEnded(call: CallState, peer: Peer, value: unknown, error: GantryError | undefined): void {
    peer.inFlight -= 1;
    const ended = performance.now();
    if (error === undefined) {
      peer.observe(ended - call.began, ended);
      this.#succeeded(peer, ended);
      this.#throttle?.record(ended, true);
      this.#resolveCall(call, value);
      return;
    }
    try {
      if (call.stopped === undefined && this.#closed) {
        // The channel failed the attempt as close() came, before close() could stop it.
        call.stopped = "closed";
        error = coreErrors.create("GANTRY_ERR_SHUTTING_DOWN", {}, { cause: error });
      }
      if (!this.#failed(call, peer, error, call.began, ended)) {
        throw this.#final(call, error, call.stopped !== undefined);
      }
      this.#retry(call, peer, error, ended);
    } catch (failure) {
      this.#rejectCall(call, failure);
    }
  }

  #resolveCall(call: CallState, value: unknown): void {
    if (call.done) return;
    call.done = true;
    this.#bulkhead.leave();
    call.resolve(value);
  }

  #rejectCall(call: CallState, error: unknown): void {
    if (call.done) return;
    call.done = true;
    this.#bulkhead.leave();
    call.reject(error);
  }

  /**
   * Books a failed attempt (ejection, throttle, latency) and says whether the call may be tried again.
   */
  #failed(call: CallState, peer: Peer, error: GantryError, started: number, ended: number): boolean {
    const stopped = call.stopped;
    if (stopped === "cancelled" || stopped === "closed") {
      // The caller gave up: nothing was learnt of the instance.
      if (this.#detector.released(peer)) this.#healthChanged = true;
      return false;
    }
    switch (verdict(call, error)) {
      case "failed": {
        // A failure costs at least twice the latency so far, so that p2c backs off a failing instance
        // even while ejection may not take it out (maxEjectedShare).
        peer.observe(Math.max(ended - started, 2 * peer.latencyEwma), ended);
        if (peer.removed) break;
        const code = error.code;
        const immediately = EJECT_AT_ONCE.has(code);
        if (this.#detector.failed(peer, ended, immediately, this.#ejectedCount(), this.#eligible.length)) {
          this.#healthChanged = true;
          this.#log.debug(
            { service: this.service.fullName, instance: peer.instance.id, url: peer.url, err: error },
            "instance ejected",
          );
        }
        if (code === "GANTRY_ERR_CONNECT") this.#resolver.refresh?.(this.service.fullName);
        break;
      }
      case "answered":
        // The callee answered with an error of its own: the instance is healthy.
        peer.observe(ended - started, ended);
        this.#succeeded(peer, ended);
        break;
      case "none":
        // Alive but shedding load, or out of time it was not given: no verdict either way.
        if (this.#detector.released(peer)) this.#healthChanged = true;
        break;
    }
    const status = error.status;
    this.#throttle?.record(
      ended,
      status !== "UNAVAILABLE" && status !== "DEADLINE_EXCEEDED" && status !== "RESOURCE_EXHAUSTED",
    );
    if (stopped === "deadline" || call.attempt >= this.#policy.maxAttempts) return false;
    return mayRetry(error, call.method.idempotent);
  }

  /**
   * Sends the call again after a backoff, or throws the last error when the retry cannot be made: the
   * backoff would end past the deadline, or the budget is spent. The caller's signal and close() cut
   * the wait short.
   */
  #retry(call: CallState, peer: Peer, error: GantryError, now: number): void {
    const policy = this.#policy;
    const delay = backoffMs(call.attempt, policy.baseDelayMs, policy.maxDelayMs);
    if (call.deadline !== undefined && Date.now() + delay >= call.deadline) throw this.#final(call, error, false);
    if (!this.#budget.withdraw(now)) throw this.#final(call, error, false, "retry budget spent");
    if (call.failed === undefined) call.failed = [peer];
    else call.failed.push(peer);
    if (retryChannel.hasSubscribers) {
      const message: RetryMessage = {
        service: this.service.fullName,
        method: call.method.name,
        attempt: call.attempt + 1,
        error,
      };
      retryChannel.publish(message);
    }
    const again = (stopped: Stop | undefined) => {
      if (stopped !== undefined) {
        call.stopped = stopped;
        return this.#rejectCall(call, this.#final(call, stopError(stopped, call), true));
      }
      call.peer = undefined;
      this.#next(call, performance.now());
    };
    // Not from within the channel's report (or the caller's own stack): on a later turn.
    if (delay < 1) queueMicrotask(() => again(undefined));
    else if (call.signal?.aborted) again("cancelled");
    else new Backoff(call, this.#sleeping, this.#guards.callers, delay, again);
  }

  /** An instance for a streaming call: among those reached over a transport with streams. */
  #pickStreaming(call: CallState): Peer {
    // The others are left out as the instances a call already failed on are for a retry.
    call.failed = [...this.#peers.values()].filter((peer) => peer.transport?.streaming !== true);
    const peer = this.#pick(call, performance.now());
    call.failed = undefined;
    if (peer.transport?.streaming !== true) {
      const error = coreErrors.create("GANTRY_ERR_NO_INSTANCES", {
        service: this.service.fullName,
        why: ` (none is reached over a transport with streams, such as grpc, for ${call.method.name})`,
      });
      throw this.#final(call, error, true);
    }
    return peer;
  }

  /** Books a streaming call that ended: its instance's health, the bulkhead. */
  #streamEnded(call: CallState, peer: Peer, began: number, error: GantryError | undefined): void {
    peer.inFlight -= 1;
    this.#bulkhead.leave();
    const ended = performance.now();
    // A stream's length says nothing of the instance's latency: only its failures are booked as such.
    if (error === undefined) this.#succeeded(peer, ended);
    else this.#failed(call, peer, error, began, ended);
  }

  #succeeded(peer: Peer, now: number): void {
    if (!peer.removed && this.#detector.succeeded(peer, now)) this.#healthChanged = true;
  }

  #ejectedCount(): number {
    let count = 0;
    for (const peer of this.#eligible) if (peer.outlier.state !== "active") count += 1;
    return count;
  }

  // Instances.

  #pick(call: CallState, now: number): Peer {
    this.#clock.advance(now);
    if (this.#setChanged) this.#rebuildEligible();
    if (this.#healthChanged || now >= this.#nextExpiry) this.#rebuildAvailable(now);
    let candidates = this.#available;
    if (candidates.length === 0) throw this.#final(call, this.#noInstances(), true);
    if (call.failed !== undefined) candidates = this.#untried(call.failed);
    let picked = (candidates.length === 1 ? candidates[0] : this.#policy.balancer.pick(candidates)) as Peer;
    if (!(picked instanceof Peer) || picked.removed) {
      // A custom balancer gave back something of its own: find ours by id.
      const id = (picked as { instance?: ServiceInstance } | undefined)?.instance?.id;
      picked = candidates.find((peer) => peer.instance.id === id) ?? candidates[0];
    }
    if (picked.outlier.state === "half-open" && !picked.outlier.probing) {
      // The probe: no other call goes to it until this one ends.
      picked.outlier.probing = true;
      this.#healthChanged = true;
    }
    return picked;
  }

  /** Candidates for a retry: instances that have not failed this call, whenever there are any. */
  #untried(failed: readonly Peer[]): Peer[] {
    const fresh = (peer: Peer): boolean => !failed.includes(peer);
    let candidates = this.#available.filter(fresh);
    if (candidates.length > 0) return candidates;
    // Outside the preferred zone, then among the ejected.
    candidates = this.#eligible.filter((peer) => pickable(peer) && fresh(peer));
    if (candidates.length > 0) return candidates;
    candidates = this.#eligible.filter(fresh);
    return candidates.length > 0 ? candidates : this.#available;
  }

  #rebuildEligible(): void {
    this.#setChanged = false;
    this.#healthChanged = true;
    const policy = this.#policy;
    let eligible: Peer[] = [];
    for (const peer of this.#peers.values()) if (this.#matches(peer)) eligible.push(peer);
    if (eligible.length > policy.subsetSize) {
      // Rendezvous hashing: the instances with the highest scores for this client's id. When one comes
      // or goes, at most one other enters or leaves the subset.
      const ranked = [...eligible].sort((a, b) => b.rank - a.rank || (a.instance.id < b.instance.id ? -1 : 1));
      const chosen = new Set(ranked.slice(0, policy.subsetSize));
      eligible = eligible.filter((peer) => chosen.has(peer));
    }
    this.#eligible = eligible;
  }

  #matches(peer: Peer): boolean {
    if (peer.transport === undefined) return false;
    const policy = this.#policy;
    const instance = peer.instance;
    if (policy.version !== undefined && instance.version !== policy.version) return false;
    for (const [key, value] of policy.metadata) if (instance.metadata[key] !== value) return false;
    return true;
  }

  #rebuildAvailable(now: number): void {
    this.#healthChanged = false;
    const zone = this.#policy.zone;
    const local: Peer[] = [];
    const active: Peer[] = [];
    let nextExpiry = Number.POSITIVE_INFINITY;
    for (const peer of this.#eligible) {
      this.#detector.expire(peer, now);
      if (peer.outlier.state === "ejected" && peer.outlier.untilMs < nextExpiry) nextExpiry = peer.outlier.untilMs;
      if (!pickable(peer)) continue;
      active.push(peer);
      if (zone !== undefined && peer.instance.zone === zone) local.push(peer);
    }
    this.#nextExpiry = nextExpiry;
    // The zone first, then any zone; and when every instance is ejected, the ejected ones rather than none.
    this.#available = local.length > 0 ? local : active.length > 0 ? active : this.#eligible;
  }

  #noInstances(): GantryError {
    const total = this.#peers.size;
    let why = "";
    if (total > 0) {
      let reachable = 0;
      for (const peer of this.#peers.values()) if (peer.transport !== undefined) reachable += 1;
      why =
        reachable === 0
          ? ` (none of the ${total} offers ${this.#policy.transports.join(" or ")} with a client transport for it)`
          : ` (none of the ${total} matches the selection ${JSON.stringify(this.#selection())})`;
    }
    return coreErrors.create("GANTRY_ERR_NO_INSTANCES", { service: this.service.fullName, why });
  }

  #selection(): Record<string, unknown> {
    const policy = this.#policy;
    return {
      ...(policy.version === undefined ? {} : { version: policy.version }),
      ...(policy.metadata.length === 0 ? {} : { metadata: Object.fromEntries(policy.metadata) }),
    };
  }

  #open(peer: Peer, transport: ClientTransport): Channel {
    const channel = transport.channel(peer.url);
    peer.channel = channel;
    return channel;
  }

  /** Closes a peer that left the registry (or the runtime). Calls in flight to it end on their own. */
  #retire(peer: Peer): void {
    peer.removed = true;
    const channel = peer.channel;
    peer.channel = undefined;
    if (channel === undefined) return;
    try {
      channel.close();
    } catch (error) {
      this.#log.warn({ err: error, service: this.service.fullName, url: peer.url }, "closing a channel failed");
    }
  }

  // The registry.

  /** Starts the watch on the first call, and waits for the first snapshot, bounded by the deadline. */
  #firstSnapshot(call: CallState): Promise<void> {
    if (this.#watch === undefined) this.#startWatch(call);
    if (this.#ready) return Promise.resolve();
    const until = call.deadline ?? Date.now() + FIRST_SNAPSHOT_WAIT_MS;
    return new Promise((resolve, reject) => {
      new Waiter(call, this.#waiters, this.#guards.callers, until, resolve, (error) => {
        if (error !== undefined) return reject(this.#final(call, error, true));
        const last = this.#watchError;
        const why = `the registry has not answered${last === undefined ? "" : `: ${last.message}`}`;
        if (call.deadline !== undefined) {
          // The call is out of time: that is what its caller must hear, and why.
          call.stopped = "deadline";
          return reject(this.#final(call, stopError("deadline", call), true, why));
        }
        const failure = coreErrors.create("GANTRY_ERR_NO_INSTANCES", {
          service: this.service.fullName,
          why: ` (${why})`,
        });
        reject(this.#final(call, failure, true));
      });
    });
  }

  #startWatch(call: CallState): void {
    try {
      this.#watch = this.#resolver.watch(this.service.fullName, (event) => this.#onWatch(event));
    } catch (error) {
      const why = ` (the registry failed: ${error instanceof Error ? error.message : String(error)})`;
      const failure = coreErrors.create(
        "GANTRY_ERR_NO_INSTANCES",
        { service: this.service.fullName, why },
        { cause: error },
      );
      throw this.#final(call, failure, true);
    }
  }

  #onWatch(event: WatchEvent): void {
    if (this.#closed) return;
    try {
      switch (event.type) {
        case "snapshot": {
          const seen = new Set<string>();
          for (const instance of event.instances) {
            seen.add(instance.id);
            this.#upsert(instance);
          }
          for (const [id, peer] of this.#peers) {
            if (!seen.has(id)) {
              this.#peers.delete(id);
              this.#retire(peer);
            }
          }
          this.#setChanged = true;
          this.#watchError = undefined;
          if (!this.#ready) {
            this.#ready = true;
            for (const waiter of this.#waiters) waiter.ready();
          }
          break;
        }
        case "add":
          this.#upsert(event.instance);
          this.#setChanged = true;
          break;
        case "remove": {
          const peer = this.#peers.get(event.instance.id);
          if (peer !== undefined) {
            this.#peers.delete(event.instance.id);
            this.#retire(peer);
            this.#setChanged = true;
          }
          break;
        }
        case "error":
          // The last known instances stand until the registry answers again.
          this.#watchError = event.error;
          this.#log.warn(
            { err: event.error, service: this.service.fullName },
            "the registry cannot be reached; calls go to the last known instances",
          );
          break;
      }
    } catch (error) {
      this.#log.error({ err: error, service: this.service.fullName }, "a registry event could not be applied");
    }
  }

  /** Adds an instance, or updates one with a known id (a new endpoint gets a new channel). */
  #upsert(instance: ServiceInstance): void {
    const transport = this.#transports.find((t) => typeof instance.endpoints[t.kind] === "string");
    const url = transport === undefined ? "" : instance.endpoints[transport.kind];
    const existing = this.#peers.get(instance.id);
    if (existing !== undefined) {
      if (existing.transport === transport && existing.url === url) {
        existing.instance = instance;
        existing.weight = weightOf(instance);
        return;
      }
      this.#retire(existing);
    }
    this.#peers.set(instance.id, new Peer(instance, this.#clock, transport, rendezvous(this.#clientId, instance.id)));
  }

  // Errors.

  #throttled(call: CallState, probability: number, now: number): GantryError {
    if (throttleChannel.hasSubscribers) {
      // biome-ignore lint/style/noNonNullAssertion: only called with the throttle on
      const throttle = this.#throttle!;
      const message: ThrottleMessage = {
        service: this.service.fullName,
        method: call.method.name,
        probability,
        requests: throttle.requests(now),
        accepts: throttle.accepts(now),
      };
      throttleChannel.publish(message);
    }
    return this.#final(call, coreErrors.create("GANTRY_ERR_THROTTLED", { service: this.service.fullName }), true);
  }

  /**
   * The error the caller sees: status, code, details and the rest unchanged, the message followed by
   * where it happened (the instance by its id, attempts) and `note`. `local`: the runtime made it (its
   * cause is kept); otherwise the channel's error is the cause. A method that lets it through tells its
   * own callers only the callee's own message, or what failed: never an address (see relayMessage).
   */
  #final(call: CallState, error: GantryError, local: boolean, note?: string): GantryError {
    const peer = call.peer;
    let context = `${this.service.fullName}/${call.method.name}`;
    if (peer !== undefined) context += ` on instance ${peer.instance.id}`;
    // "attempt n of m" once an attempt was made, or a retry could not be.
    if (peer !== undefined || call.attempt > 1) context += `, attempt ${call.attempt} of ${this.#policy.maxAttempts}`;
    if (note !== undefined) context += `; ${note}`;
    const final = new GantryError(error.status, `${error.message} (${context})`, {
      code: error.code,
      httpStatus: error.httpStatus,
      retryable: error.retryable,
      violations: error.violations,
      details: error.details,
      cause: local ? error.cause : error,
    });
    const relayed = isCalleeAnswer(error)
      ? error.message
      : `the call to ${this.service.fullName}/${call.method.name} failed (${error.code})`;
    return setRelayMessage(final, relayed);
  }
}

/**
 * What a failed attempt (not stopped by its caller or close()) says of its instance: `failed`, only
 * for what shows the instance itself unwell (see {@link INSTANCE_FAILURES}), and for a
 * DEADLINE_EXCEEDED of an attempt that had at least half the call's own timeout; `none` for load
 * shedding and for a DEADLINE_EXCEEDED of an attempt that had less (the caller's deadline nearly
 * spent, or a call with no timeout of its own); `answered` for the rest, the callee's own errors.
 */
function verdict(call: CallState, error: GantryError): Verdict {
  switch (error.status) {
    case "UNAVAILABLE":
      return INSTANCE_FAILURES.has(error.code) ? "failed" : "answered";
    case "DEADLINE_EXCEEDED":
      return call.timeoutMs !== undefined && call.attemptMs >= call.timeoutMs / 2 ? "failed" : "none";
    case "RESOURCE_EXHAUSTED":
      return "none";
    default:
      return "answered";
  }
}

/** Not ejected, and not a half-open instance whose probe is in flight. */
function pickable(peer: Peer): boolean {
  const outlier = peer.outlier;
  return outlier.state === "active" || (outlier.state === "half-open" && !outlier.probing);
}

/** A well-mixed 32-bit score of (client, instance) for rendezvous hashing: FNV-1a, then murmur3's finaliser. */
function rendezvous(clientId: string, instanceId: string): number {
  let hash = 0x811c9dc5;
  const key = `${clientId}\u0000${instanceId}`;
  for (let i = 0; i < key.length; i++) {
    hash ^= key.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  hash ^= hash >>> 16;
  hash = Math.imul(hash, 0x85ebca6b);
  hash ^= hash >>> 13;
  hash = Math.imul(hash, 0xc2b2ae35);
  hash ^= hash >>> 16;
  return hash >>> 0;
}
