import { setTimeout as sleep } from "node:timers/promises";

/** Exponential backoff with equal jitter: attempt 0 waits `min`/2 to `min`, then doubling up to `max`. */
export function backoff(attempt: number, min = 100, max = 5000): number {
  const ceiling = Math.min(max, min * 2 ** Math.min(attempt, 16));
  return Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
}

/** Waits `ms`, or less when `signal` aborts; never rejects. */
export async function pause(ms: number, signal?: AbortSignal): Promise<void> {
  await sleep(ms, undefined, { signal }).catch(() => undefined);
}

/** An unref'd interval that never keeps the process alive; returns its stop. */
export function every(ms: number, fn: () => void): () => void {
  const timer = setInterval(fn, ms);
  timer.unref();
  return () => clearInterval(timer);
}

/** The message of anything thrown. */
export function reason(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
