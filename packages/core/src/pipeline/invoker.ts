import { type CallContext, runInCall } from "../context/call-context.js";
import { callChannel } from "../diagnostics.js";
import type { GantryError } from "../errors/gantry-error.js";
import { coreErrors, toGantryError } from "../errors/table.js";
import { readMessage } from "../message/json.js";
import type { CustomDecorator } from "../service/decorators.js";
import type { MethodDescriptor } from "../service/descriptor.js";
import type { ExecutionContext, Guard, Interceptor } from "./types.js";

/** A method ready to run: its descriptor, the DI-built instance and its resolved guards and interceptors. */
export interface MethodHandler {
  readonly method: MethodDescriptor;
  readonly instance: object;
  readonly guards: readonly Guard[];
  readonly interceptors: readonly Interceptor[];
}

const SERVER_FAULTS = new Set(["INTERNAL", "UNKNOWN", "DATA_LOSS"]);
const MAX_TIMER_MS = 2_147_483_647;

/**
 * The one pipeline every call runs through, whatever its transport: admission (the cap on concurrent
 * calls, shutdown), deadline, context, the tracing channel, guards, validation, interceptors, the
 * method. Transports decode into it and encode what comes out.
 */
export class Invoker {
  readonly #handlers: ReadonlyMap<MethodDescriptor, MethodHandler>;
  readonly #maxConcurrentCalls: number;
  readonly #active = new Set<CallContext>();
  #accepting = true;
  #idle: (() => void) | undefined;

  constructor(handlers: ReadonlyMap<MethodDescriptor, MethodHandler>, maxConcurrentCalls: number) {
    this.#handlers = handlers;
    this.#maxConcurrentCalls = maxConcurrentCalls;
  }

  /** Calls running now. */
  get inFlight(): number {
    return this.#active.size;
  }

  /**
   * Runs one call. The promise settles with the method's output, or rejects with a GantryError: the
   * method's own, INVALID_ARGUMENT from validation, DEADLINE_EXCEEDED, CANCELLED, or INTERNAL for
   * anything else it threw (logged with its stack, never sent).
   */
  invoke(method: MethodDescriptor, input: unknown, call: CallContext): Promise<unknown> {
    const handler = this.#handlers.get(method);
    if (handler === undefined)
      return Promise.reject(coreErrors.create("GANTRY_ERR_UNKNOWN_METHOD", { method: method.path }));
    if (!this.#accepting) return Promise.reject(coreErrors.create("GANTRY_ERR_SHUTTING_DOWN"));
    if (this.#active.size >= this.#maxConcurrentCalls) {
      return Promise.reject(coreErrors.create("GANTRY_ERR_OVERLOADED", { limit: this.#maxConcurrentCalls }));
    }
    if (method.timeoutMs !== undefined) call.capDeadline(Date.now() + method.timeoutMs);
    const deadline = call.deadline;
    const remaining = deadline === undefined ? undefined : deadline - Date.now();
    if (remaining !== undefined && remaining <= 0) return Promise.reject(deadlineError(call));
    if (call.abortReason !== undefined) return Promise.reject(call.abortReason);

    this.#active.add(call);
    const running = this.#run(handler, input, call);
    return new Promise((resolve, reject) => {
      // Node fires a timer of more than 2^31 - 1 ms (24.8 days) after 1 ms: longer deadlines wait that long.
      const timer =
        remaining === undefined
          ? undefined
          : setTimeout(() => call.abort(deadlineError(call)), Math.min(remaining, MAX_TIMER_MS));
      call.setAbortListener((reason) => {
        clearTimeout(timer);
        reject(reason);
      });
      running.then(
        (output) => {
          clearTimeout(timer);
          this.#settled(call);
          resolve(output);
        },
        (error: unknown) => {
          clearTimeout(timer);
          this.#settled(call);
          // A method that gives up because its call was aborted (deadline, shutdown) did what it should:
          // the caller already has the abort reason, and its AbortError is no server fault to log.
          if (call.abortReason !== undefined && isAbortError(error, call.abortReason)) reject(call.abortReason);
          else reject(this.#fault(error, call));
        },
      );
    });
  }

  /**
   * Stops taking calls (new ones get UNAVAILABLE) and waits for those running, at most `timeoutMs`.
   * Calls still running then are aborted with UNAVAILABLE. Resolves with how many were.
   */
  async drain(timeoutMs: number): Promise<number> {
    this.#accepting = false;
    if (this.#active.size === 0) return 0;
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
    for (const call of unfinished) call.abort(coreErrors.create("GANTRY_ERR_SHUTTING_DOWN"));
    return unfinished.length;
  }

  #settled(call: CallContext): void {
    call.setAbortListener(undefined);
    this.#active.delete(call);
    if (this.#active.size === 0) this.#idle?.();
  }

  #run(handler: MethodHandler, input: unknown, call: CallContext): Promise<unknown> {
    try {
      if (callChannel.hasSubscribers) {
        return runInCall(call, () => callChannel.tracePromise(() => this.#execute(handler, input, call), { call }));
      }
      return runInCall(call, () => this.#execute(handler, input, call));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  #execute(handler: MethodHandler, input: unknown, call: CallContext): Promise<unknown> {
    const { method, instance } = handler;
    const fn = (instance as Record<string, (input: unknown, call: CallContext) => unknown>)[method.key];
    if (handler.guards.length === 0 && handler.interceptors.length === 0) {
      const message = readMessage(method.input, input);
      return Promise.resolve(fn.call(instance, message, call));
    }
    return this.#executeExtended(handler, fn, input, call);
  }

  async #executeExtended(
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
    const message = readMessage(method.input, input);
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

  #fault(error: unknown, call: CallContext): GantryError {
    const fault = toGantryError(error);
    if (SERVER_FAULTS.has(fault.status)) {
      const cause = fault.cause ?? error;
      call.log.error({ err: cause, code: fault.code, details: fault.details }, `${call.method.path} failed`);
    } else if (call.log.isLevelEnabled("debug")) {
      call.log.debug({ status: fault.status, code: fault.code }, `${call.method.path} returned ${fault.status}`);
    }
    return fault;
  }
}

function isAbortError(error: unknown, reason: GantryError): boolean {
  return error === reason || (error instanceof Error && error.name === "AbortError");
}

function deadlineError(call: CallContext): GantryError {
  const deadline = call.deadline ?? Date.now();
  return coreErrors.create("GANTRY_ERR_DEADLINE_EXCEEDED", { timeoutMs: Math.max(0, deadline - call.startedAt) });
}
