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
