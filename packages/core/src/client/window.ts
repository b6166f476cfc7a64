/**
 * Two counts over a sliding window of time, kept in buckets: what the adaptive throttle, the retry
 * budget and failure-rate ejection each measure ("requests and accepts of the last minute").
 */

/**
 * Sums of two counts over the last `windowMs`, to within one bucket (`windowMs / buckets`): the window
 * slides a bucket at a time, and each bucket leaves it whole. Adding and reading cost the same
 * whatever the rate; a window that saw nothing for longer than itself starts afresh.
 *
 * Times (`now`) are ms on a monotonic clock (the runtime gives performance.now()); a time earlier than
 * one already seen counts in the current bucket.
 *
 * @example
 * const window = new SlidingCounts(60_000, 60);
 * window.add(performance.now(), 1, accepted ? 1 : 0);
 * const [requests, accepts] = [window.first(performance.now()), window.second(performance.now())];
 */
export class SlidingCounts {
  readonly windowMs: number;
  readonly #bucketMs: number;
  readonly #first: Float64Array;
  readonly #second: Float64Array;
  #index = 0;
  /** When the current bucket ends; -Infinity before the first count. */
  #bucketEnd = Number.NEGATIVE_INFINITY;
  #firstTotal = 0;
  #secondTotal = 0;

  constructor(windowMs: number, buckets: number) {
    this.windowMs = windowMs;
    this.#bucketMs = windowMs / buckets;
    this.#first = new Float64Array(buckets);
    this.#second = new Float64Array(buckets);
  }

  /** Adds to the two counts at `now`. */
  add(now: number, first: number, second: number): void {
    if (now >= this.#bucketEnd) this.#advance(now);
    this.#first[this.#index] += first;
    this.#second[this.#index] += second;
    this.#firstTotal += first;
    this.#secondTotal += second;
  }

  /** The first count over the window at `now`. */
  first(now: number): number {
    if (now >= this.#bucketEnd) this.#advance(now);
    return this.#firstTotal;
  }

  /** The second count over the window at `now`. */
  second(now: number): number {
    if (now >= this.#bucketEnd) this.#advance(now);
    return this.#secondTotal;
  }

  /** Forgets everything. */
  clear(): void {
    this.#first.fill(0);
    this.#second.fill(0);
    this.#firstTotal = 0;
    this.#secondTotal = 0;
    this.#index = 0;
    this.#bucketEnd = Number.NEGATIVE_INFINITY;
  }

  #advance(now: number): void {
    const size = this.#first.length;
    const steps =
      this.#bucketEnd === Number.NEGATIVE_INFINITY ? size : Math.floor((now - this.#bucketEnd) / this.#bucketMs) + 1;
    if (steps >= size) {
      this.clear();
      this.#bucketEnd = now + this.#bucketMs;
      return;
    }
    for (let i = 0; i < steps; i++) {
      this.#index = this.#index + 1 === size ? 0 : this.#index + 1;
      this.#firstTotal -= this.#first[this.#index];
      this.#secondTotal -= this.#second[this.#index];
      this.#first[this.#index] = 0;
      this.#second[this.#index] = 0;
    }
    this.#bucketEnd += steps * this.#bucketMs;
  }
}
