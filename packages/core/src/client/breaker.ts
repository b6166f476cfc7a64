/**
 * What keeps a client from making a failing service worse: outlier ejection per instance, the
 * adaptive throttle per service (Google SRE book, "Handling Overload"), and the bulkhead.
 */
import type { ServiceInstance } from "../registry/index.js";
import { type EjectionMessage, ejectionChannel } from "./diagnostics.js";

/** `active`: picked as usual; `ejected`: not picked until `untilMs`; `half-open`: one probe call at a time. */
export type EjectionState = "active" | "ejected" | "half-open";

export interface EjectionSettings {
  readonly consecutiveFailures: number;
  readonly baseEjectionMs: number;
  readonly maxEjectionMs: number;
  readonly maxEjectedShare: number;
}

/** The outlier state of one instance. */
export class Outlier {
  state: EjectionState = "active";
  /** Failures in a row since the last answer. */
  failures = 0;
  /** Ejections in a row since the instance was last restored: each one lasts twice as long. */
  ejections = 0;
  /** While ejected: when it ends, on the runtime's monotonic clock (performance.now()). */
  untilMs = 0;
  /** While half-open: the probe call is in flight. */
  probing = false;
}

/** What the detector needs of an instance. */
export interface Ejectable {
  readonly instance: ServiceInstance;
  readonly url: string;
  readonly outlier: Outlier;
}

/**
 * Outlier ejection (as Envoy's): `consecutiveFailures` failures in a row from one instance (or one
 * refused connection) take it out of rotation for `baseEjectionMs × 2^(ejections in a row − 1)`, at most
 * `maxEjectionMs`; then it is half-open, and one probe call decides: an answer restores it, a failure
 * ejects it again, for longer. No more than `maxEjectedShare` of the instances are ever ejected at once.
 *
 * Each method returns true when the instance's state changed, so that the caller rebuilds the set it
 * picks from. Times (`now`) are on a monotonic clock: the runtime gives performance.now().
 *
 * @example
 * const detector = new OutlierDetector("hello.v1.HelloService", resolvePolicy({}, "hello.v1.HelloService").ejection);
 * if (detector.failed(peer, performance.now(), false, ejectedNow, instances.length)) rebuildCandidates();
 */
export class OutlierDetector {
  readonly #settings: EjectionSettings;
  readonly #service: string;

  constructor(service: string, settings: EjectionSettings) {
    this.#service = service;
    this.#settings = settings;
  }

  /** The instance answered (with a result or with an error of the callee's own). */
  succeeded(target: Ejectable): boolean {
    const outlier = target.outlier;
    outlier.failures = 0;
    if (outlier.state === "active") return false;
    outlier.state = "active";
    outlier.ejections = 0;
    outlier.probing = false;
    this.#publish(target, "restored", undefined);
    return true;
  }

  /**
   * The instance failed (unavailable, unreachable or too slow). `immediately`: the connection was
   * refused, so it is ejected now rather than after `consecutiveFailures`. `ejected` of `total`
   * instances are out of rotation now (ejected or half-open).
   */
  failed(target: Ejectable, now: number, immediately: boolean, ejected: number, total: number): boolean {
    const outlier = target.outlier;
    outlier.failures += 1;
    if (outlier.state === "half-open") {
      this.#eject(target, now);
      return true;
    }
    if (outlier.state === "ejected") return false;
    if (!immediately && outlier.failures < this.#settings.consecutiveFailures) return false;
    if (ejected + 1 > Math.floor(this.#settings.maxEjectedShare * total)) return false;
    this.#eject(target, now);
    return true;
  }

  /** A call to the instance ended with no verdict on it (the caller cancelled): a probe may go again. */
  released(target: Ejectable): boolean {
    if (!target.outlier.probing) return false;
    target.outlier.probing = false;
    return true;
  }

  /** Ends an ejection whose time is up: the instance becomes half-open. */
  expire(target: Ejectable, now: number): boolean {
    const outlier = target.outlier;
    if (outlier.state !== "ejected" || now < outlier.untilMs) return false;
    outlier.state = "half-open";
    outlier.probing = false;
    this.#publish(target, "half-open", undefined);
    return true;
  }

  #eject(target: Ejectable, now: number): void {
    const outlier = target.outlier;
    const settings = this.#settings;
    outlier.ejections += 1;
    const duration = Math.min(settings.maxEjectionMs, settings.baseEjectionMs * 2 ** (outlier.ejections - 1));
    outlier.state = "ejected";
    outlier.untilMs = now + duration;
    outlier.failures = 0;
    outlier.probing = false;
    this.#publish(target, "ejected", Date.now() + duration);
  }

  #publish(target: Ejectable, state: EjectionMessage["state"], untilMs: number | undefined): void {
    if (!ejectionChannel.hasSubscribers) return;
    const message: EjectionMessage = {
      service: this.#service,
      instance: target.instance.id,
      url: target.url,
      state,
      untilMs,
    };
    ejectionChannel.publish(message);
  }
}

export interface ThrottleOptions {
  /** Accepts count k times: rejection starts once requests exceed k × accepts. Default 2. */
  readonly k?: number;
  /** The sliding window, ms. Default 120000 (two minutes, as in the SRE book). */
  readonly windowMs?: number;
  /** Buckets the window slides by. Default 60 (two seconds each). */
  readonly buckets?: number;
  readonly random?: () => number;
}

/**
 * Client-side adaptive throttling (Google SRE book, "Handling Overload"): over a sliding window it
 * counts requests (every call the application made, including those rejected here) and accepts (calls a
 * server answered with anything but UNAVAILABLE or RESOURCE_EXHAUSTED), and rejects a new call locally
 * with probability max(0, (requests − k·accepts) / (requests + 1)). A healthy service never sees a
 * rejection; a failing one gets a trickle of calls that detect its recovery.
 *
 * @example
 * const throttle = new AdaptiveThrottle({ k: 2 });
 * if (throttle.reject(performance.now()) !== 0) throw coreErrors.create("GANTRY_ERR_THROTTLED", { service });
 * throttle.record(performance.now(), accepted);
 */
export class AdaptiveThrottle {
  readonly k: number;
  readonly #bucketMs: number;
  readonly #requests: Float64Array;
  readonly #accepts: Float64Array;
  readonly #random: () => number;
  #index = 0;
  #bucketEnd = Number.NEGATIVE_INFINITY;
  #totalRequests = 0;
  #totalAccepts = 0;

  constructor(options: ThrottleOptions = {}) {
    this.k = options.k ?? 2;
    const buckets = options.buckets ?? 60;
    this.#bucketMs = (options.windowMs ?? 120_000) / buckets;
    this.#requests = new Float64Array(buckets);
    this.#accepts = new Float64Array(buckets);
    this.#random = options.random ?? Math.random;
  }

  /** Requests in the window at `now`. */
  requests(now: number): number {
    this.#advance(now);
    return this.#totalRequests;
  }

  /** Accepts in the window at `now`. */
  accepts(now: number): number {
    this.#advance(now);
    return this.#totalAccepts;
  }

  /** The probability that a call made at `now` is rejected. */
  probability(now: number): number {
    this.#advance(now);
    const excess = this.#totalRequests - this.k * this.#totalAccepts;
    return excess > 0 ? excess / (this.#totalRequests + 1) : 0;
  }

  /**
   * Decides whether the call made at `now` is rejected locally: returns the probability it was rejected
   * with, or 0 when it may go. A rejected call counts as a request that was not accepted.
   */
  reject(now: number): number {
    const p = this.probability(now);
    if (p === 0 || this.#random() >= p) return 0;
    this.#requests[this.#index] += 1;
    this.#totalRequests += 1;
    return p;
  }

  /** Counts one request that went out, and whether a server accepted it. */
  record(now: number, accepted: boolean): void {
    this.#advance(now);
    this.#requests[this.#index] += 1;
    this.#totalRequests += 1;
    if (accepted) {
      this.#accepts[this.#index] += 1;
      this.#totalAccepts += 1;
    }
  }

  #advance(now: number): void {
    if (now < this.#bucketEnd) return;
    const size = this.#requests.length;
    const steps = Math.floor((now - this.#bucketEnd) / this.#bucketMs) + 1;
    if (steps >= size || this.#bucketEnd === Number.NEGATIVE_INFINITY) {
      this.#requests.fill(0);
      this.#accepts.fill(0);
      this.#totalRequests = 0;
      this.#totalAccepts = 0;
      this.#index = 0;
      this.#bucketEnd = now + this.#bucketMs;
      return;
    }
    for (let i = 0; i < steps; i++) {
      this.#index = this.#index + 1 === size ? 0 : this.#index + 1;
      this.#totalRequests -= this.#requests[this.#index];
      this.#totalAccepts -= this.#accepts[this.#index];
      this.#requests[this.#index] = 0;
      this.#accepts[this.#index] = 0;
    }
    this.#bucketEnd += steps * this.#bucketMs;
  }
}

/**
 * At most `limit` calls in flight to the service from this client; the next fails at once.
 *
 * @example
 * if (!bulkhead.enter()) throw coreErrors.create("GANTRY_ERR_BULKHEAD_FULL", { service, limit: bulkhead.limit });
 * try { return await send(); } finally { bulkhead.leave(); }
 */
export class Bulkhead {
  readonly limit: number;
  active = 0;

  constructor(limit = Number.POSITIVE_INFINITY) {
    this.limit = limit;
  }

  /** Takes a place, or returns false when all `limit` are taken. */
  enter(): boolean {
    if (this.active >= this.limit) return false;
    this.active += 1;
    return true;
  }

  leave(): void {
    this.active -= 1;
  }
}
