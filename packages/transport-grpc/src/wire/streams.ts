import { once } from "node:events";
import type { Writable } from "node:stream";

/**
 * Resolves when a call's stream takes writes again (`drain`), or when waiting is pointless: the call
 * was cancelled or closed, or `signal` (the call's abort) fired.
 */
export async function writable(call: Writable, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return;
  const controller = new AbortController();
  const waits = [
    once(call, "drain", { signal: controller.signal }),
    once(call, "cancelled", { signal: controller.signal }),
    once(call, "close", { signal: controller.signal }),
  ];
  if (signal !== undefined) waits.push(once(signal, "abort", { signal: controller.signal }));
  try {
    await Promise.race(waits);
  } catch {
    // The wait was given up: one of the others won.
  } finally {
    controller.abort();
  }
}
