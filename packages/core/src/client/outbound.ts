import { type GantryError, isGantryError } from "../errors/gantry-error.js";
import { coreErrors } from "../errors/table.js";
import type { MethodDescriptor } from "../service/descriptor.js";
import type { Channel, OutboundCall, OutboundRequest, UnaryCall } from "./types.js";

/** For channels: the error of an attempt that started at `started` and ran past `deadline`. */
export function deadlineError(started: number, deadline: number, cause?: unknown): GantryError {
  return coreErrors.create(
    "GANTRY_ERR_DEADLINE_EXCEEDED",
    { timeoutMs: Math.max(0, deadline - started) },
    cause === undefined ? undefined : { cause },
  );
}

/**
 * For channels: why an attempt that starts at `started` must not be sent at all (the caller gave up on
 * it, or its deadline already passed), or undefined when it may go.
 */
export function notSendable(call: OutboundCall, started: number): GantryError | undefined {
  if (call.stopped !== undefined) return call.stopped;
  const deadline = call.deadline;
  if (deadline !== undefined && deadline <= started) return deadlineError(started, deadline);
  return undefined;
}

/**
 * For channels that cancel through an AbortSignal (a stream's writer and reader): a signal of the
 * call's own that aborts, with the reason, when the caller gives up on it. Takes the call's one
 * `onStop` hook.
 */
export function stopSignal(call: OutboundCall): AbortSignal {
  const controller = new AbortController();
  call.onStop((reason) => controller.abort(reason));
  return controller.signal;
}

/**
 * Sends one unary call on `channel` outside a client runtime (a channel's tests, a tool, a hand-made
 * client): resolves with the output message, or rejects with what the channel failed it with. The
 * request's `signal` gives up on the call: the channel is told (`onStop`) and fails it with the
 * signal's reason when that is a GantryError, else DEADLINE_EXCEEDED past the deadline or for a
 * timeout signal, else CANCELLED. No retries, no balancing, no deadline timer of its own: the
 * channel's alone.
 *
 * @example
 * const channel = grpcClientTransport().channel("grpc://127.0.0.1:50051");
 * const reply = await sendUnary(channel, { method, deadline: Date.now() + 1000, metadata: {} }, { name: "Ada" });
 */
export function sendUnary(channel: Channel, request: OutboundRequest, input: unknown): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const call = new RequestCall(request, resolve, reject);
    try {
      channel.unary(call, input);
    } catch (error) {
      call.failed(error);
    }
  });
}

/** The UnaryCall of {@link sendUnary}: a request, a promise to settle, and the request's signal. */
class RequestCall implements UnaryCall {
  readonly method: MethodDescriptor;
  readonly deadline: number | undefined;
  readonly metadata: Readonly<Record<string, string>>;
  stopped: GantryError | undefined = undefined;
  readonly #signal: AbortSignal | undefined;
  readonly #started = Date.now();
  readonly #resolve: (output: unknown) => void;
  readonly #reject: (error: unknown) => void;
  #cancel: ((reason: GantryError) => void) | undefined = undefined;
  #settled = false;

  constructor(request: OutboundRequest, resolve: (output: unknown) => void, reject: (error: unknown) => void) {
    this.method = request.method;
    this.deadline = request.deadline;
    this.metadata = request.metadata;
    this.#resolve = resolve;
    this.#reject = reject;
    const signal = request.signal;
    this.#signal = signal;
    if (signal?.aborted) this.stopped = this.#reason(signal);
    else signal?.addEventListener("abort", this, { once: true });
  }

  /** The request's signal aborted. */
  handleEvent(): void {
    if (this.#settled) return;
    const reason = this.#reason(this.#signal as AbortSignal);
    this.stopped = reason;
    const cancel = this.#cancel;
    this.#cancel = undefined;
    cancel?.(reason);
  }

  onStop(cancel: (reason: GantryError) => void): void {
    if (this.stopped !== undefined) cancel(this.stopped);
    else if (!this.#settled) this.#cancel = cancel;
  }

  answered(output: unknown): void {
    if (this.#end()) this.#resolve(output);
  }

  failed(error: unknown): void {
    if (this.#end()) this.#reject(error);
  }

  #end(): boolean {
    if (this.#settled) return false;
    this.#settled = true;
    this.#cancel = undefined;
    this.#signal?.removeEventListener("abort", this);
    return true;
  }

  #reason(signal: AbortSignal): GantryError {
    const reason: unknown = signal.reason;
    if (isGantryError(reason)) return reason;
    const timedOut = (reason as { name?: unknown } | undefined)?.name === "TimeoutError";
    if (timedOut || (this.deadline !== undefined && this.deadline <= Date.now())) {
      return deadlineError(this.#started, this.deadline ?? Date.now(), reason);
    }
    return coreErrors.create("GANTRY_ERR_CANCELLED", {}, { cause: reason });
  }
}

const ANSWER = Symbol("gantry.answer");
const RELAY = Symbol("gantry.relay");

/**
 * For channels: marks `error` as the callee's own answer (read from what it sent back), as opposed
 * to one the channel made of a failure to get an answer. A method that lets an outbound call's error
 * through passes on the message of an answer only: the channel's own messages name addresses.
 */
export function calleeAnswer(error: GantryError): GantryError {
  Object.defineProperty(error, ANSWER, { value: true });
  return error;
}

/** @internal For the runtime: whether the channel marked `error` as the callee's answer. */
export function isCalleeAnswer(error: GantryError): boolean {
  return (error as { [ANSWER]?: true })[ANSWER] === true;
}

/** @internal For the runtime: what a method that lets `error` through tells its own callers. */
export function setRelayMessage(error: GantryError, message: string): GantryError {
  Object.defineProperty(error, RELAY, { value: message });
  return error;
}

/**
 * The message a method that lets `error` through tells its own callers, when the error came from an
 * outbound call: the callee's own message, or for a failure on the way (no instance, no connection, a
 * deadline) what failed and not where. Undefined for every other error.
 */
export function relayMessage(error: GantryError): string | undefined {
  return (error as { [RELAY]?: string })[RELAY];
}
