/**
 * The transport-neutral client runtime: one per called service. It watches the registry for the
 * service's instances, and sends each call through deadline → retry → balancer → outlier ejection →
 * a transport's channel, with the adaptive throttle and the bulkhead in front.
 */
import { randomUUID } from "node:crypto";
import { setMaxListeners } from "node:events";
import { GantryError } from "../errors/gantry-error.js";
import { coreErrors, toGantryError } from "../errors/table.js";
import type { Logger } from "../logger.js";
import type { Resolver, ServiceInstance, Watch, WatchEvent } from "../registry/index.js";
import type { MethodDescriptor, ServiceDescriptor } from "../service/descriptor.js";
import { InstanceLoad, LoadClock, weightOf } from "./balancer.js";
import { AdaptiveThrottle, Bulkhead, type Ejectable, Outlier, OutlierDetector } from "./breaker.js";
import { DeadlineQueue, Expiring } from "./deadline.js";
import { type RetryMessage, retryChannel, type ThrottleMessage, throttleChannel } from "./diagnostics.js";
import { type ResolvedPolicy, resolvePolicy } from "./policy.js";
import { backoffMs, mayRetry, RetryBudget } from "./retry.js";
import type { Channel, ClientRuntimeOptions, ClientTransport, OutboundCall, RuntimeCallOptions } from "./types.js";

/**
 * How long a call with no deadline waits for the registry's first answer before it fails with
 * GANTRY_ERR_NO_INSTANCES. A call with a deadline waits until its deadline instead.
 */
export const FIRST_SNAPSHOT_WAIT_MS = 10_000;

const EMPTY_METADATA: Readonly<Record<string, string>> = Object.freeze({});
const NO_OPTIONS: RuntimeCallOptions = Object.freeze({});

/** Why the runtime stopped an attempt (or a wait) rather than the callee answering it. */
type Stop = "deadline" | "cancelled" | "closed";

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
  readonly signal: AbortSignal | undefined;
  /** Date.now() when the call was made, when it has a deadline (for the message of DEADLINE_EXCEEDED). */
  readonly startedAt: number;
  attempt = 0;
  /** The instance of the current attempt; undefined between attempts. */
  peer: Peer | undefined = undefined;
  /** Instances that failed this call, so that retries go elsewhere. */
  failed: Peer[] | undefined = undefined;
  /** Set when the runtime stopped the call. */
  stopped: Stop | undefined = undefined;

  constructor(
    method: MethodDescriptor,
    input: unknown,
    metadata: Readonly<Record<string, string>>,
    deadline: number | undefined,
    signal: AbortSignal | undefined,
    startedAt: number,
  ) {
    this.method = method;
    this.input = input;
    this.metadata = metadata;
    this.deadline = deadline;
    this.signal = signal;
    this.startedAt = startedAt;
  }
}

/** What a call without a deadline or a signal sends: close() is all that can stop it. */
class PlainAttempt implements OutboundCall {
  readonly method: MethodDescriptor;
  readonly deadline = undefined;
  readonly metadata: Readonly<Record<string, string>>;
  readonly signal: AbortSignal;

  constructor(method: MethodDescriptor, metadata: Readonly<Record<string, string>>, signal: AbortSignal) {
    this.method = method;
    this.metadata = metadata;
    this.signal = signal;
  }
}

/**
 * What a call with a deadline or a caller's signal sends, and what settles it: whichever comes first of
 * the channel's answer, the deadline (on the client's one DeadlineQueue timer), the caller's signal and
 * close(). Its AbortController is made only if the channel reads `signal`.
 */
class GuardedAttempt extends Expiring implements OutboundCall {
  readonly method: MethodDescriptor;
  readonly deadline: number | undefined;
  readonly metadata: Readonly<Record<string, string>>;
  readonly #call: CallState;
  readonly #runtime: Guards;
  readonly #resolve: (value: unknown) => void;
  readonly #reject: (error: unknown) => void;
  #controller: AbortController | undefined = undefined;
  #stopError: GantryError | undefined = undefined;
  #settled = false;

  constructor(call: CallState, runtime: Guards, resolve: (value: unknown) => void, reject: (error: unknown) => void) {
    super();
    this.method = call.method;
    this.deadline = call.deadline;
    this.metadata = call.metadata;
    this.#call = call;
    this.#runtime = runtime;
    this.#resolve = resolve;
    this.#reject = reject;
  }

  get signal(): AbortSignal {
    if (this.#controller === undefined) {
      this.#controller = new AbortController();
      if (this.#stopError !== undefined) this.#controller.abort(this.#stopError);
    }
    return this.#controller.signal;
  }

  start(): void {
    const deadline = this.deadline;
    if (deadline !== undefined) {
      this.expiresAt = deadline;
      this.#runtime.deadlines.add(this);
    } else {
      this.#runtime.undated.add(this);
    }
    this.#call.signal?.addEventListener("abort", this);
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
    this.#finish();
    this.#call.stopped = reason;
    const error = stopError(reason, this.#call);
    this.#stopError = error;
    this.#controller?.abort(error);
    this.#reject(error);
  }

  answered(value: unknown): void {
    if (this.#settled) return;
    this.#finish();
    this.#resolve(value);
  }

  failed(error: unknown): void {
    if (this.#settled) return;
    this.#finish();
    this.#reject(error);
  }

  #finish(): void {
    this.#settled = true;
    if (this.deadline !== undefined) this.#runtime.deadlines.remove(this);
    else this.#runtime.undated.delete(this);
    this.#call.signal?.removeEventListener("abort", this);
  }
}

/** Where a runtime keeps its guarded attempts, so that close() can stop them. */
interface Guards {
  readonly deadlines: DeadlineQueue;
  /** Guarded attempts without a deadline (a caller's signal only). */
  readonly undated: Set<GuardedAttempt>;
}

/** A call waiting for the registry's first snapshot. */
class Waiter {
  readonly call: CallState;
  readonly #waiters: Set<Waiter>;
  readonly #resolve: () => void;
  readonly #reject: (error: GantryError | undefined) => void;
  readonly #timer: ReturnType<typeof setTimeout>;

  constructor(
    call: CallState,
    waiters: Set<Waiter>,
    waitMs: number,
    resolve: () => void,
    reject: (error: GantryError | undefined) => void,
  ) {
    this.call = call;
    this.#waiters = waiters;
    this.#resolve = resolve;
    this.#reject = reject;
    this.#timer = setTimeout(timeUp, waitMs, this);
    call.signal?.addEventListener("abort", this);
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

  /** Fails the wait with `error`, or (undefined) because the registry has not answered in time. */
  fail(error: GantryError | undefined): void {
    this.#end();
    this.#reject(error);
  }

  #end(): void {
    clearTimeout(this.#timer);
    this.call.signal?.removeEventListener("abort", this);
    this.#waiters.delete(this);
  }
}

/** The registry has not answered within the call's deadline (or FIRST_SNAPSHOT_WAIT_MS). */
function timeUp(waiter: Waiter): void {
  waiter.fail(undefined);
}

function stopError(reason: Stop, call: CallState): GantryError {
  switch (reason) {
    case "deadline": {
      const timeoutMs = Math.max(0, Math.round((call.deadline ?? call.startedAt) - call.startedAt));
      return coreErrors.create("GANTRY_ERR_DEADLINE_EXCEEDED", { timeoutMs });
    }
    case "cancelled":
      return coreErrors.create("GANTRY_ERR_CANCELLED");
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
 * Every error it rejects with is a GantryError: the callee's own status and code unchanged, its message
 * followed by where it happened: `(hello.v1.HelloService/SayHello via grpc://10.0.0.5:50051, attempt 2 of 3)`.
 *
 * - Before the registry's first snapshot a call waits for it, until its deadline (or
 *   {@link FIRST_SNAPSHOT_WAIT_MS} without one), then fails with GANTRY_ERR_NO_INSTANCES
 *   "(the registry has not answered)": UNAVAILABLE, like every other call that found no instance.
 * - After close(), calls fail with GANTRY_ERR_SHUTTING_DOWN (UNAVAILABLE): this process is shutting down
 *   and the outbound call never ran.
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
  /** The signal of attempts that have neither a deadline nor a caller's signal: close() aborts it. */
  readonly #closing = new AbortController();
  readonly #guards: Guards = { deadlines: new DeadlineQueue(), undated: new Set() };

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
    // Every call in flight without a deadline or a signal of its own may listen to this one.
    setMaxListeners(0, this.#closing.signal);
  }

  /**
   * Calls `method` of the service with `input` (the input message as native values) and resolves with
   * its output message, or rejects with a GantryError. The first call starts watching the registry.
   */
  call(method: MethodDescriptor, input: unknown, options: RuntimeCallOptions = NO_OPTIONS): Promise<unknown> {
    const policy = this.#policy;
    let deadline = options.deadline;
    let startedAt = 0;
    // The policy's timeout of this method, else the method's own (`@Method({ timeoutMs })`), else the policy's default.
    const timeoutMs =
      (policy.methodTimeoutsMs.size === 0 ? undefined : policy.methodTimeoutsMs.get(method.name)) ??
      method.timeoutMs ??
      policy.timeoutMs;
    if (timeoutMs !== undefined) {
      startedAt = Date.now();
      if (deadline === undefined || startedAt + timeoutMs < deadline) deadline = startedAt + timeoutMs;
    } else if (deadline !== undefined) {
      startedAt = Date.now();
    }
    if (policy.interceptors.length === 0 && policy.fallback === undefined) {
      return this.#start(
        new CallState(method, input, options.metadata ?? EMPTY_METADATA, deadline, options.signal, startedAt),
      );
    }
    return this.#wrapped(method, input, options, deadline, startedAt);
  }

  /** Stops watching the registry, closes every channel, and fails calls in flight and calls to come. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#watch?.close();
    this.#watch = undefined;
    this.#closing.abort(coreErrors.create("GANTRY_ERR_SHUTTING_DOWN"));
    for (const attempt of this.#guards.deadlines.drain()) (attempt as GuardedAttempt).stop("closed");
    for (const attempt of this.#guards.undated) attempt.stop("closed");
    for (const waiter of this.#waiters) {
      waiter.call.stopped = "closed";
      waiter.fail(stopError("closed", waiter.call));
    }
    for (const peer of this.#peers.values()) this.#retire(peer);
    this.#peers.clear();
    this.#eligible = [];
    this.#available = [];
  }

  /** Interceptors around the call, the fallback around them. */
  async #wrapped(
    method: MethodDescriptor,
    input: unknown,
    options: RuntimeCallOptions,
    deadline: number | undefined,
    startedAt: number,
  ): Promise<unknown> {
    const policy = this.#policy;
    try {
      if (policy.interceptors.length === 0) {
        return await this.#start(
          new CallState(method, input, options.metadata ?? EMPTY_METADATA, deadline, options.signal, startedAt),
        );
      }
      const call = { method, input, metadata: { ...options.metadata } };
      const next = (index: number): Promise<unknown> => {
        if (index === policy.interceptors.length) {
          return this.#start(new CallState(method, input, call.metadata, deadline, options.signal, startedAt));
        }
        return policy.interceptors[index](call, () => next(index + 1));
      };
      return await next(0);
    } catch (error) {
      if (policy.fallback === undefined) throw toGantryError(error);
      try {
        return await policy.fallback(method, input, toGantryError(error));
      } catch (fallbackError) {
        throw toGantryError(fallbackError);
      }
    }
  }

  /** Admits the call through close() and the bulkhead, or fails it at once. */
  #start(call: CallState): Promise<unknown> {
    if (this.#closed) return Promise.reject(this.#final(call, stopError("closed", call), true));
    if (call.signal?.aborted) return Promise.reject(this.#final(call, stopError("cancelled", call), true));
    if (!this.#bulkhead.enter()) {
      const error = coreErrors.create("GANTRY_ERR_BULKHEAD_FULL", {
        service: this.service.fullName,
        limit: this.#bulkhead.limit,
      });
      return Promise.reject(this.#final(call, error, true));
    }
    return this.#run(call);
  }

  /** The admitted call: the registry's first answer if need be, the throttle, then attempts and retries. */
  async #run(call: CallState): Promise<unknown> {
    try {
      if (!this.#ready) await this.#firstSnapshot(call);
      let now = performance.now();
      const throttle = this.#throttle;
      if (throttle !== undefined) {
        const p = throttle.reject(now);
        if (p !== 0) throw this.#throttled(call, p, now);
      }
      this.#budget.deposit();
      for (;;) {
        call.attempt += 1;
        if (this.#closed) {
          call.stopped = "closed";
          throw this.#final(call, stopError("closed", call), true);
        }
        if (call.deadline !== undefined && Date.now() >= call.deadline) {
          call.stopped = "deadline";
          throw this.#final(call, stopError("deadline", call), true);
        }
        const peer = this.#pick(call, now);
        call.peer = peer;
        // biome-ignore lint/style/noNonNullAssertion: eligible peers all have a transport
        const channel = peer.channel ?? this.#open(peer, peer.transport!);
        peer.inFlight += 1;
        let error: GantryError;
        try {
          const value = await this.#send(call, channel);
          peer.inFlight -= 1;
          const ended = performance.now();
          peer.observe(ended - now, ended);
          if (peer.outlier.state !== "active" || peer.outlier.failures !== 0) this.#succeeded(peer);
          throttle?.record(ended, true);
          return value;
        } catch (caught) {
          peer.inFlight -= 1;
          error = toGantryError(caught);
        }
        if (call.stopped === undefined && this.#closed) {
          // close() aborted the runtime's signal under this attempt.
          call.stopped = "closed";
          error = coreErrors.create("GANTRY_ERR_SHUTTING_DOWN", {}, { cause: error });
        }
        const ended = performance.now();
        if (!this.#failed(call, peer, error, now, ended)) throw this.#final(call, error, call.stopped !== undefined);
        await this.#backoff(call, peer, error, ended);
        call.peer = undefined;
        now = performance.now();
      }
    } finally {
      this.#bulkhead.leave();
    }
  }

  /** Sends one attempt on `channel`; the deadline, the caller's signal and close() stop it. */
  #send(call: CallState, channel: Channel): Promise<unknown> {
    if (call.deadline === undefined && call.signal === undefined) {
      try {
        return channel.unary(new PlainAttempt(call.method, call.metadata, this.#closing.signal), call.input);
      } catch (error) {
        return Promise.reject(error);
      }
    }
    return new Promise((resolve, reject) => {
      const attempt = new GuardedAttempt(call, this.#guards, resolve, reject);
      attempt.start();
      let answer: Promise<unknown>;
      try {
        answer = Promise.resolve(channel.unary(attempt, call.input));
      } catch (error) {
        return attempt.failed(error);
      }
      answer.then(
        (value) => attempt.answered(value),
        (error: unknown) => attempt.failed(error),
      );
    });
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
    const status = error.status;
    const unanswered = status === "UNAVAILABLE" || status === "DEADLINE_EXCEEDED";
    if (unanswered) {
      // A failure costs at least twice the latency so far, so that p2c backs off a failing instance
      // even while ejection may not take it out (maxEjectedShare).
      peer.observe(Math.max(ended - started, 2 * peer.latencyEwma), ended);
      if (!peer.removed) {
        const code = error.code;
        // A refused connection, or a server that says it is going away, is out at once.
        const immediately = code === "GANTRY_ERR_CONNECT" || code === "GANTRY_ERR_SHUTTING_DOWN";
        if (this.#detector.failed(peer, ended, immediately, this.#ejectedCount(), this.#eligible.length)) {
          this.#healthChanged = true;
          this.#log.debug(
            { service: this.service.fullName, instance: peer.instance.id, url: peer.url, err: error },
            "instance ejected",
          );
        }
        if (code === "GANTRY_ERR_CONNECT") this.#resolver.refresh?.(this.service.fullName);
      }
    } else if (status === "RESOURCE_EXHAUSTED") {
      // Alive but shedding load: no verdict on the instance either way.
      if (this.#detector.released(peer)) this.#healthChanged = true;
    } else {
      // The callee answered with an error of its own: the instance is healthy.
      peer.observe(ended - started, ended);
      this.#succeeded(peer);
    }
    this.#throttle?.record(ended, !(unanswered || status === "RESOURCE_EXHAUSTED"));
    if (stopped === "deadline" || call.attempt >= this.#policy.maxAttempts) return false;
    return mayRetry(error, call.method.idempotent);
  }

  /**
   * Waits before a retry, or throws the last error when the retry cannot be made: the backoff would end
   * past the deadline, or the budget is spent. The caller's signal and close() cut the wait short.
   */
  async #backoff(call: CallState, peer: Peer, error: GantryError, now: number): Promise<void> {
    const policy = this.#policy;
    const delay = backoffMs(call.attempt, policy.baseDelayMs, policy.maxDelayMs);
    if (call.deadline !== undefined && Date.now() + delay >= call.deadline) throw this.#final(call, error, false);
    if (!this.#budget.withdraw(now)) throw this.#final(call, error, false);
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
    if (delay < 1) return;
    const stopped = await this.#sleep(call.signal, delay);
    if (stopped !== undefined) {
      call.stopped = stopped;
      throw this.#final(call, stopError(stopped, call), true);
    }
  }

  /** Resolves after `delay` ms, or at once with why when the caller's signal or close() interrupts. */
  #sleep(signal: AbortSignal | undefined, delay: number): Promise<Stop | undefined> {
    const closing = this.#closing.signal;
    return new Promise((resolve) => {
      const done = (stopped: Stop | undefined): void => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        closing.removeEventListener("abort", onAbort);
        resolve(stopped);
      };
      const onAbort = (): void => done(this.#closed ? "closed" : "cancelled");
      const timer = setTimeout(done, delay, undefined);
      if (signal?.aborted) return done("cancelled");
      signal?.addEventListener("abort", onAbort);
      closing.addEventListener("abort", onAbort);
    });
  }

  #succeeded(peer: Peer): void {
    if (!peer.removed && this.#detector.succeeded(peer)) this.#healthChanged = true;
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
    const waitMs = call.deadline === undefined ? FIRST_SNAPSHOT_WAIT_MS : Math.max(0, call.deadline - Date.now());
    return new Promise((resolve, reject) => {
      new Waiter(call, this.#waiters, waitMs, resolve, (error) => {
        if (error === undefined) {
          const last = this.#watchError;
          const why = ` (the registry has not answered${last === undefined ? "" : `: ${last.message}`})`;
          error = coreErrors.create("GANTRY_ERR_NO_INSTANCES", { service: this.service.fullName, why });
        }
        reject(this.#final(call, error, true));
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
   * The error the caller sees: status, code and the rest unchanged, the message followed by where it
   * happened. `local`: the runtime made it (its cause is kept); otherwise the callee's error is the cause.
   */
  #final(call: CallState, error: GantryError, local: boolean): GantryError {
    const peer = call.peer;
    let context = `${this.service.fullName}/${call.method.name}`;
    if (peer !== undefined) context += ` via ${peer.url}`;
    // "attempt n of m" once an attempt was made, or a retry could not be.
    if (peer !== undefined || call.attempt > 1) context += `, attempt ${call.attempt} of ${this.#policy.maxAttempts}`;
    return new GantryError(error.status, `${error.message} (${context})`, {
      code: error.code,
      httpStatus: error.httpStatus,
      retryable: error.retryable,
      violations: error.violations,
      details: error.details,
      cause: local ? error.cause : error,
    });
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
