import { type GantryError, isGantryError } from "../errors/gantry-error.js";
import { coreErrors } from "../errors/table.js";
import type { OutboundCall } from "./types.js";

/** For channels: the error of an attempt that started at `started` and ran past `deadline`. */
export function deadlineError(started: number, deadline: number, cause?: unknown): GantryError {
  return coreErrors.create(
    "GANTRY_ERR_DEADLINE_EXCEEDED",
    { timeoutMs: Math.max(0, deadline - started) },
    cause === undefined ? undefined : { cause },
  );
}

/**
 * For channels: the error of a call whose signal aborted: the signal's reason when it is a GantryError
 * (the runtime says why it gave up), else DEADLINE_EXCEEDED past the deadline or for a timeout signal,
 * else CANCELLED.
 */
export function abortError(call: OutboundCall, started: number): GantryError {
  const reason: unknown = call.signal.reason;
  if (isGantryError(reason)) return reason;
  const timedOut = (reason as { name?: unknown } | undefined)?.name === "TimeoutError";
  if (timedOut || (call.deadline !== undefined && call.deadline <= Date.now())) {
    return deadlineError(started, call.deadline ?? Date.now(), reason);
  }
  return coreErrors.create("GANTRY_ERR_CANCELLED", {}, { cause: reason });
}

/**
 * For channels: why an attempt that starts at `started` must not be sent at all (its signal already
 * aborted, or its deadline already passed), or undefined when it may go.
 */
export function notSendable(call: OutboundCall, started: number): GantryError | undefined {
  if (call.signal.aborted) return abortError(call, started);
  const deadline = call.deadline;
  if (deadline !== undefined && deadline <= started) return deadlineError(started, deadline);
  return undefined;
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
