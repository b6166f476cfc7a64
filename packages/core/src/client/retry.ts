/**
 * When a failed attempt is tried again, how long to wait first, and the budget that keeps retries
 * from multiplying the load on a service that is already failing.
 */
import type { GantryError } from "../errors/gantry-error.js";
import { SlidingCounts } from "./window.js";

/**
 * Codes that prove the call never ran on the server, so that even a method that is not idempotent
 * may be sent again: the request was not delivered, or the server refused it before running it.
 */
export const NEVER_RAN_CODES: ReadonlySet<string> = new Set([
  "GANTRY_ERR_CONNECT",
  "GANTRY_ERR_SHUTTING_DOWN",
  "GANTRY_ERR_OVERLOADED",
  "GANTRY_ERR_NOT_STARTED",
]);

/** An error another attempt may cure: UNAVAILABLE, or a server that shed the call for load. */
export function isRetryableError(error: GantryError): boolean {
  return (
    error.status === "UNAVAILABLE" || (error.status === "RESOURCE_EXHAUSTED" && error.code === "GANTRY_ERR_OVERLOADED")
  );
}

/** True when the error proves the call never ran (see {@link NEVER_RAN_CODES}). */
export function neverRan(error: GantryError): boolean {
  return NEVER_RAN_CODES.has(error.code);
}

/**
 * Whether an attempt that failed with `error` may be tried again: the error must be retryable and
 * either the method idempotent or the call proven never to have run.
 *
 * @example
 * mayRetry(coreErrors.create("GANTRY_ERR_CONNECT", { target, reason }), false); // true: it never ran
 */
export function mayRetry(error: GantryError, idempotent: boolean): boolean {
  return isRetryableError(error) && (idempotent || NEVER_RAN_CODES.has(error.code));
}

/**
 * Full-jitter exponential backoff (AWS Architecture Blog, "Exponential Backoff and Jitter"): a random
 * delay between 0 and min(maxDelayMs, baseDelayMs × 2^(retry − 1)), where `retry` is 1 for the first.
 *
 * @example
 * await sleep(backoffMs(2, 25, 1000)); // somewhere in [0, 50) ms
 */
export function backoffMs(retry: number, baseDelayMs: number, maxDelayMs: number, random = Math.random): number {
  return random() * Math.min(maxDelayMs, baseDelayMs * 2 ** (retry - 1));
}

const UNIT = 1_000_000;

/** How far back the retry budget looks, ms (as Finagle's default `ttl`). */
export const RETRY_BUDGET_WINDOW_MS = 10_000;

export interface RetryBudgetOptions {
  /** Retries allowed per call made in the window. Default 0.1. */
  readonly ratio?: number;
  /** Retries a second allowed whatever the ratio, for clients that make few calls. Default 10. */
  readonly minRetriesPerSecond?: number;
  /** The sliding window of calls, ms. Default {@link RETRY_BUDGET_WINDOW_MS}. */
  readonly windowMs?: number;
}

/**
 * The retry budget (as Finagle's): retries stay within `ratio` × the calls made in the last 10 s (a
 * sliding window), plus a floor of `minRetriesPerSecond` for clients that make few calls (a bucket
 * that holds one second's worth and refills at that rate). When a service fails, retries add at most
 * `ratio` to its load, plus the floor, instead of multiplying it by the number of attempts; and the
 * budget grows with the call rate, so that a busy client that loses one instance of several can
 * retry every call that instance dropped.
 *
 * Only the last 10 s count: a long healthy spell cannot bank a storm of retries for the moment things
 * go wrong, and a retry spent is given back when it leaves the window.
 *
 * @example
 * const budget = new RetryBudget({ ratio: 0.1, minRetriesPerSecond: 10 });
 * budget.deposit(performance.now()); // on every call
 * if (budget.withdraw(performance.now())) retry();
 */
export class RetryBudget {
  readonly ratio: number;
  readonly minRetriesPerSecond: number;
  // In millionths of a retry, as integers, so that ten deposits of 0.1 make exactly one.
  readonly #deposit: number;
  /** Millionths deposited by calls (first) and spent by retries (second) in the window. */
  readonly #window: SlidingCounts;
  /** Retries the floor allows now. */
  #floor: number;
  #floorStamp = Number.NaN;

  constructor(options: RetryBudgetOptions = {}) {
    this.ratio = options.ratio ?? 0.1;
    this.minRetriesPerSecond = options.minRetriesPerSecond ?? 10;
    this.#deposit = Math.round(this.ratio * UNIT);
    this.#window = new SlidingCounts(options.windowMs ?? RETRY_BUDGET_WINDOW_MS, 20);
    this.#floor = this.minRetriesPerSecond;
  }

  /** One call was made at `now` (ms, monotonic). */
  deposit(now: number): void {
    this.#window.add(now, this.#deposit, 0);
  }

  /** Takes the token for one retry at `now` (ms, monotonic); false when the budget is spent. */
  withdraw(now: number): boolean {
    const window = this.#window;
    if (window.second(now) + UNIT <= window.first(now)) {
      window.add(now, 0, UNIT);
      return true;
    }
    const elapsed = Number.isNaN(this.#floorStamp) ? 0 : Math.max(0, now - this.#floorStamp);
    this.#floorStamp = now;
    this.#floor = Math.min(this.minRetriesPerSecond, this.#floor + (elapsed * this.minRetriesPerSecond) / 1000);
    if (this.#floor >= 1) {
      this.#floor -= 1;
      return true;
    }
    return false;
  }
}
