import { context } from "@opentelemetry/api";
import { relayMessage } from "../client/outbound.js";
import { NEVER_RAN_CODES } from "../client/retry.js";
import { type CallContext, runInCall } from "../context/call-context.js";
import { callChannel } from "../diagnostics.js";
import { GantryError } from "../errors/gantry-error.js";
import { coreErrors, toGantryError } from "../errors/table.js";
import { readMessage } from "../message/json.js";
import type { CustomDecorator } from "../service/decorators.js";
import type { MethodDescriptor } from "../service/descriptor.js";
import { type ServerSpan, startServerSpan } from "../telemetry/tracing.js";
import { CallStream, isAsyncIterable, readStream } from "./streams.js";
import type { ExecutionContext, Guard, Interceptor } from "./types.js";

/** A method ready to run: its descriptor, the DI-built instance and its resolved guards and interceptors. */
export interface MethodHandler {
  readonly method: MethodDescriptor;
  readonly instance: object;
  readonly guards: readonly Guard[];
  readonly interceptors: readonly Interceptor[];
  /** A client or bidi streaming method: its input is a stream of messages. */
  readonly inputStream: boolean;
  /** A server or bidi streaming method: its output is a stream of messages. */
  readonly outputStream: boolean;
}

const SERVER_FAULTS = new Set(["INTERNAL", "UNKNOWN", "DATA_LOSS"]);

/** How a dispatched call answers: once, with a GantryError or with the output. */
export type Done = (error: GantryError | undefined, output?: unknown) => void;
const MAX_TIMER_MS = 2_147_483_647;

/**
 * The one pipeline every call runs through, whatever its transport: admission (the cap on concurrent
 * calls, shutdown), deadline, context, the tracing channel, guards, validation, interceptors, the
 * method. Transports decode into it and encode what comes out.
 */
export class Invoker {
  readonly #handlers: ReadonlyMap<MethodDescriptor, MethodHandler>;
  readonly #maxConcurrentCalls: number;
  /** Calls in flight; each knows its index (`call.slot`), so removal swaps the last one in: no hashing. */
  readonly #active: CallContext[] = [];
  #accepting = true;
  #idle: (() => void) | undefined;

  constructor(handlers: ReadonlyMap<MethodDescriptor, MethodHandler>, maxConcurrentCalls: number) {
    this.#handlers = handlers;
    this.#maxConcurrentCalls = maxConcurrentCalls;
  }

  /** Calls running now. */
  get inFlight(): number {
    return this.#active.length;
  }

  /**
   * Runs one call. The promise settles with the method's output, or rejects with a GantryError: the
   * method's own, INVALID_ARGUMENT from validation, DEADLINE_EXCEEDED, CANCELLED, or INTERNAL for
   * anything else it threw (logged with its stack, never sent).
   */
  invoke(method: MethodDescriptor, input: unknown, call: CallContext): Promise<unknown> {
    return new Promise((resolve, reject) => {
      this.dispatch(method, input, call, (error, output) => (error === undefined ? resolve(output) : reject(error)));
    });
  }

  /**
   * `invoke` for transports: `done` is called exactly once, with the error or the output, and no
   * promise stands between the method and the transport. It is called at once for a call refused at
   * admission, and as soon as the call is aborted (deadline, shutdown, cancel) even if the method
   * goes on; the call counts as in flight until the method itself has finished.
   */
  dispatch(method: MethodDescriptor, input: unknown, call: CallContext, answer: Done): void {
    const span = startServerSpan(call);
    let done = answer;
    if (span !== undefined) {
      // The span ends with the answer; a streaming call's, when its stream ends.
      done = (error, output) => {
        if (error !== undefined || !(output instanceof CallStream)) span.end(error);
        answer(error, output);
      };
    }
    const handler = this.#handlers.get(method);
    const refused = this.#admit(handler, method, call);
    if (handler === undefined || refused !== undefined) {
      done(refused);
      return;
    }
    const remaining = call.deadline === undefined ? undefined : call.deadline - Date.now();

    call.slot = this.#active.push(call) - 1;
    let answered = false;
    // Node fires a timer of more than 2^31 - 1 ms (24.8 days) after 1 ms: longer deadlines wait that long.
    const timer =
      remaining === undefined
        ? undefined
        : setTimeout(() => call.abort(deadlineError(call)), Math.min(remaining, MAX_TIMER_MS));
    call.setAbortListener((reason) => {
      clearTimeout(timer);
      if (answered) return;
      answered = true;
      done(reason);
    });
    const onOutput = (output: unknown) => {
      if (answered || !handler.outputStream) {
        clearTimeout(timer);
        this.#settled(call);
        // Aborted before it returned its stream: no one will read it, so close it (its finally runs).
        if (answered && handler.outputStream && isAsyncIterable(output)) closeQuietly(call, output);
        if (answered) return;
        answered = true;
        done(undefined, output);
        return;
      }
      answered = true;
      if (!isAsyncIterable(output)) {
        clearTimeout(timer);
        this.#settled(call);
        done(this.#fault(notAStream(method), call));
        return;
      }
      // A streaming call stays in flight, under its deadline, until its stream ends.
      let failure: GantryError | undefined;
      const stream = new CallStream(
        call,
        output,
        (error) => {
          failure = this.#fault(error, call);
          return failure;
        },
        () => {
          clearTimeout(timer);
          this.#settled(call);
          span?.end(failure ?? call.abortReason);
        },
      );
      call.setAbortListener((reason) => stream.abort(reason));
      done(undefined, stream);
    };
    const onError = (error: unknown) => {
      clearTimeout(timer);
      this.#settled(call);
      if (answered) return;
      answered = true;
      // A method that gives up because its call was aborted (deadline, shutdown) did what it should:
      // the caller already has the abort reason, and its AbortError is no server fault to log.
      if (call.abortReason !== undefined && isAbortError(error, call.abortReason)) done(call.abortReason);
      else done(this.#fault(error, call));
    };
    // A method that returns a value (not a promise) is answered at once, without a turn of the event loop.
    let result: unknown;
    try {
      result = span === undefined ? this.#run(handler, input, call) : this.#runIn(span, handler, input, call);
    } catch (error) {
      onError(error);
      return;
    }
    if (isThenable(result)) result.then(onOutput, onError);
    else onOutput(result);
  }

  /**
   * Stops taking calls (new ones get UNAVAILABLE) and waits for those running, at most `timeoutMs`.
   * Calls still running then are aborted with UNAVAILABLE (GANTRY_ERR_DRAIN_TIMEOUT). Resolves with
   * how many were.
   */
  async drain(timeoutMs: number): Promise<number> {
    this.#accepting = false;
    if (this.#active.length === 0) return 0;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      new Promise<void>((resolve) => {
        this.#idle = resolve;
      }),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, timeoutMs);
      }),
    ]);
    clearTimeout(timer);
    const unfinished = [...this.#active];
    // Not SHUTTING_DOWN: that tells a caller its call never ran, and these did.
    for (const call of unfinished) call.abort(coreErrors.create("GANTRY_ERR_DRAIN_TIMEOUT", { timeoutMs }));
    return unfinished.length;
  }

  /** Why a call cannot run now (unknown method, shutdown, the cap, a passed deadline, an abort), if it cannot. */
  #admit(handler: MethodHandler | undefined, method: MethodDescriptor, call: CallContext): GantryError | undefined {
    if (handler === undefined) return coreErrors.create("GANTRY_ERR_UNKNOWN_METHOD", { method: method.path });
    // While draining, a call made in this process by a call already running is part of that call.
    if (!this.#accepting && !call.nested) return coreErrors.create("GANTRY_ERR_SHUTTING_DOWN");
    if (this.#active.length >= this.#maxConcurrentCalls) {
      return coreErrors.create("GANTRY_ERR_OVERLOADED", { limit: this.#maxConcurrentCalls });
    }
    if (method.timeoutMs !== undefined) call.capDeadline(Date.now() + method.timeoutMs);
    if (call.deadline !== undefined && call.deadline <= Date.now()) return deadlineError(call);
    return call.abortReason;
  }

  #settled(call: CallContext): void {
    call.setAbortListener(undefined);
    const active = this.#active;
    const last = active.pop() as CallContext;
    if (last !== call) {
      active[call.slot] = last;
      last.slot = call.slot;
    }
    call.slot = -1;
    if (active.length === 0) this.#idle?.();
  }

  /** Runs the method in the call's context: its output, a promise of it, or a throw. */
  #run(handler: MethodHandler, input: unknown, call: CallContext): unknown {
    if (callChannel.hasSubscribers) {
      // An async function: a synchronous throw (invalid input) also ends with asyncEnd, so every
      // traced call ends the same way and a span is never left open.
      return runInCall(call, () => callChannel.tracePromise(async () => execute(handler, input, call), { call }));
    }
    return runInCall(call, execute, handler, input, call);
  }

  /** `#run` with the call's span active: the method's own spans, logs and outbound calls go under it. */
  #runIn(span: ServerSpan, handler: MethodHandler, input: unknown, call: CallContext): unknown {
    return context.with(span.context, this.#run, this, handler, input, call);
  }

  #fault(error: unknown, call: CallContext): GantryError {
    let fault = toGantryError(error);
    // An outbound call's error, let through: what its own caller may see (no addresses).
    const relayed = relayMessage(fault);
    if (relayed !== undefined) {
      fault = new GantryError(fault.status, relayed, {
        code: fault.code,
        httpStatus: fault.httpStatus,
        retryable: fault.retryable,
        violations: fault.violations,
        details: fault.details,
        cause: fault,
      });
    }
    // A code that tells a caller "your call never ran" is true only of this server's own refusals. The
    // same code thrown by the method came from a call it made: this call did run, so it must not look
    // safe to retry.
    if (NEVER_RAN_CODES.has(fault.code)) {
      fault = coreErrors.create("GANTRY_ERR_UPSTREAM", { reason: fault.message }, { cause: fault });
    }
    if (SERVER_FAULTS.has(fault.status)) {
      const cause = fault.cause ?? error;
      call.log.error({ err: cause, code: fault.code, details: fault.details }, `${call.method.path} failed`);
    } else if (call.log.isLevelEnabled("debug")) {
      call.log.debug({ status: fault.status, code: fault.code }, `${call.method.path} returned ${fault.status}`);
    }
    return fault;
  }
}

function execute(handler: MethodHandler, input: unknown, call: CallContext): unknown {
  const { method, instance } = handler;
  const fn = (instance as Record<string, (input: unknown, call: CallContext) => unknown>)[method.key];
  if (handler.guards.length === 0 && handler.interceptors.length === 0) {
    return fn.call(instance, readInput(handler, input), call);
  }
  return executeExtended(handler, fn, input, call);
}

/** The validated input message, or for client and bidi streaming methods, the stream that validates each one. */
function readInput(handler: MethodHandler, input: unknown): unknown {
  if (!handler.inputStream) return readMessage(handler.method.input, input);
  if (!isAsyncIterable(input)) {
    throw coreErrors.create(
      "GANTRY_ERR_INTERNAL",
      {},
      { cause: new TypeError(`${handler.method.path} takes a stream`) },
    );
  }
  return readStream(handler.method.input, input);
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return typeof (value as PromiseLike<unknown> | null)?.then === "function";
}

function closeQuietly(call: CallContext, stream: AsyncIterable<unknown>): void {
  try {
    const closed = runInCall(call, () => stream[Symbol.asyncIterator]().return?.());
    Promise.resolve(closed).catch(() => undefined);
  } catch {
    // A stream that cannot even be closed has nothing left to release.
  }
}

function notAStream(method: MethodDescriptor): Error {
  return new TypeError(`${method.path} is a streaming method but did not return an AsyncIterable`);
}

async function executeExtended(
  handler: MethodHandler,
  fn: (input: unknown, call: CallContext) => unknown,
  input: unknown,
  call: CallContext,
): Promise<unknown> {
  const { method, instance } = handler;
  const context: { -readonly [K in keyof ExecutionContext]: ExecutionContext[K] } = {
    method,
    call,
    instance,
    input,
    metadata: <T>(decorator: CustomDecorator<T>) => method.metadata(decorator),
  };
  for (const guard of handler.guards) {
    if ((await guard.canActivate(context)) !== true) {
      throw coreErrors.create("GANTRY_ERR_PERMISSION_DENIED", { method: method.path });
    }
  }
  const message = readInput(handler, input);
  context.input = message;
  const interceptors = handler.interceptors;
  const next = (index: number): Promise<unknown> => {
    if (index === interceptors.length) return Promise.resolve(fn.call(instance, message, call));
    let called = false;
    return interceptors[index].intercept(context, () => {
      if (called) return Promise.reject(new Error(`${method.path}: an interceptor called next() twice`));
      called = true;
      return next(index + 1);
    });
  };
  return next(0);
}

function isAbortError(error: unknown, reason: GantryError): boolean {
  return error === reason || (error instanceof Error && error.name === "AbortError");
}

function deadlineError(call: CallContext): GantryError {
  const deadline = call.deadline ?? Date.now();
  return coreErrors.create("GANTRY_ERR_DEADLINE_EXCEEDED", { timeoutMs: Math.max(0, deadline - call.startedAt) });
}
