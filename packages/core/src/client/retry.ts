/**
 * When a failed attempt is tried again, how long to wait first, and the budget that keeps retries
 * from multiplying the load on a service that is already failing.
 */
import type { GantryError } from "../errors/gantry-error.js";

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

export interface RetryBudgetOptions {
  /** Tokens each call deposits; a retry spends 1. Default 0.1. */
  readonly ratio?: number;
  /** Retries a second allowed whatever the ratio, for clients that make few calls. Default 10. */
  readonly minRetriesPerSecond?: number;
}

/**
 * The retry budget (as Finagle's and gRPC's retry throttling): a token bucket to which every call adds
 * `ratio` tokens and from which every retry takes one, plus a floor that refills at
 * `minRetriesPerSecond`. Retries beyond it are not made, so that when a service fails they add at most
 * `ratio` to the load (plus the floor) instead of multiplying it by the number of attempts.
 *
 * The bucket holds at most 100 calls' worth of tokens (10 at the default ratio): a long healthy spell
 * cannot bank a storm of retries for the moment things go wrong.
 *
 * @example
 * const budget = new RetryBudget({ ratio: 0.1, minRetriesPerSecond: 10 });
 * budget.deposit(); // on every call
 * if (budget.withdraw(performance.now())) retry();
 */
export class RetryBudget {
  readonly ratio: number;
  readonly minRetriesPerSecond: number;
  // Tokens are kept in millionths, as integers, so that ten deposits of 0.1 make exactly one.
  readonly #deposit: number;
  readonly #capacity: number;
  #tokens = 0;
  #floor: number;
  #floorStamp = Number.NaN;

  constructor(options: RetryBudgetOptions = {}) {
    this.ratio = options.ratio ?? 0.1;
    this.minRetriesPerSecond = options.minRetriesPerSecond ?? 10;
    this.#deposit = Math.round(this.ratio * UNIT);
    this.#capacity = 100 * this.#deposit;
    this.#floor = this.minRetriesPerSecond;
  }

  /** One call was made. */
  deposit(): void {
    const tokens = this.#tokens + this.#deposit;
    this.#tokens = Math.min(tokens, this.#capacity);
  }

  /** Takes the token for one retry at `now` (ms); false when the budget is spent. */
  withdraw(now: number): boolean {
    if (this.#tokens >= UNIT) {
      this.#tokens -= UNIT;
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
