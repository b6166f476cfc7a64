/**
 * What keeps a client from making a failing service worse: outlier ejection per instance, the
 * adaptive throttle per service (Google SRE book, "Handling Overload"), and the bulkhead.
 */
import type { ServiceInstance } from "../registry/index.js";
import { type EjectionMessage, ejectionChannel } from "./diagnostics.js";
import { SlidingCounts } from "./window.js";

/** `active`: picked as usual; `ejected`: not picked until `untilMs`; `half-open`: one probe call at a time. */
export type EjectionState = "active" | "ejected" | "half-open";

export interface EjectionSettings {
  readonly consecutiveFailures: number;
  /** Failure-rate ejection: at least this share of the instance's calls failed… */
  readonly failureRate: number;
  /** …of at least this many calls… */
  readonly failureRateMinCalls: number;
  /** …in this sliding window, ms. */
  readonly failureRateWindowMs: number;
  readonly baseEjectionMs: number;
  readonly maxEjectionMs: number;
  readonly maxEjectedShare: number;
}

/** Buckets of the failure-rate window. */
const FAILURE_RATE_BUCKETS = 10;

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
  /** Calls with a verdict (first) and failures (second) in the failure-rate window; made on the first. */
  recent: SlidingCounts | undefined = undefined;
}

/** What the detector needs of an instance. */
export interface Ejectable {
  readonly instance: ServiceInstance;
  readonly url: string;
  readonly outlier: Outlier;
}

/**
 * Outlier ejection (as Envoy's): an instance is taken out of rotation after `consecutiveFailures`
 * failures in a row, after one refused connection, or when at least `failureRate` of its calls failed
 * among `failureRateMinCalls` or more in the last `failureRateWindowMs` (so that an instance failing
 * every other call, which never fails five in a row, is taken out too). An ejection
 * lasts `baseEjectionMs × 2^(ejections in a row − 1)`, at most `maxEjectionMs`; then the instance is
 * half-open, and one probe call decides: an answer restores it, a failure ejects it again, for longer.
 * No more than `maxEjectedShare` of the instances are ever ejected at once.
 *
 * What is a failure is the caller's to say (the runtime counts only what proves the instance itself
 * unwell: see `ClientRuntime`); anything else is an answer, or no verdict at all (`released`).
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

  /** The instance answered at `now` (with a result or with an error of the callee's own). */
  succeeded(target: Ejectable, now: number): boolean {
    const outlier = target.outlier;
    this.#recent(outlier).add(now, 1, 0);
    outlier.failures = 0;
    if (outlier.state === "active") return false;
    outlier.state = "active";
    outlier.ejections = 0;
    outlier.probing = false;
    outlier.recent?.clear();
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
    const settings = this.#settings;
    outlier.failures += 1;
    const recent = this.#recent(outlier);
    recent.add(now, 1, 1);
    if (outlier.state === "half-open") {
      this.#eject(target, now);
      return true;
    }
    if (outlier.state === "ejected") return false;
    if (!immediately && outlier.failures < settings.consecutiveFailures) {
      const calls = recent.first(now);
      if (calls < settings.failureRateMinCalls || recent.second(now) < settings.failureRate * calls) return false;
    }
    if (ejected + 1 > Math.floor(settings.maxEjectedShare * total)) return false;
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

  #recent(outlier: Outlier): SlidingCounts {
    if (outlier.recent === undefined) {
      outlier.recent = new SlidingCounts(this.#settings.failureRateWindowMs, FAILURE_RATE_BUCKETS);
    }
    return outlier.recent;
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
    // Back in rotation, it starts with a clean record.
    outlier.recent?.clear();
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
  /** The sliding window, ms. Default 60000. */
  readonly windowMs?: number;
  /** Buckets the window slides by. Default 60 (a second each). */
  readonly buckets?: number;
  readonly random?: () => number;
}

/**
 * Client-side adaptive throttling (Google SRE book, "Handling Overload"): over a sliding window of a
 * minute it counts requests (attempts actually sent) and accepts (those a server answered with anything
 * but UNAVAILABLE, DEADLINE_EXCEEDED or RESOURCE_EXHAUSTED), and rejects a new call locally with
 * probability max(0, (requests − k·accepts) / (requests + 1)). A healthy service never sees a
 * rejection; a failing one gets a trickle of calls that detect its recovery.
 *
 * Unlike the book, calls rejected here are not counted as requests: counted, they keep the probability
 * up by themselves, and after an outage about as long as the window the throttle kept rejecting most
 * calls for many minutes after the service had recovered. Counting only what was sent, the trickle
 * during an outage is about √(window × rate) calls a window, and the throttle opens again within
 * about a window of the recovery.
 *
 * @example
 * const throttle = new AdaptiveThrottle({ k: 2 });
 * if (throttle.reject(performance.now()) !== 0) throw coreErrors.create("GANTRY_ERR_THROTTLED", { service });
 * throttle.record(performance.now(), accepted);
 */
export class AdaptiveThrottle {
  readonly k: number;
  readonly #window: SlidingCounts;
  readonly #random: () => number;

  constructor(options: ThrottleOptions = {}) {
    this.k = options.k ?? 2;
    this.#window = new SlidingCounts(options.windowMs ?? 60_000, options.buckets ?? 60);
    this.#random = options.random ?? Math.random;
  }

  /** Requests in the window at `now`. */
  requests(now: number): number {
    return this.#window.first(now);
  }

  /** Accepts in the window at `now`. */
  accepts(now: number): number {
    return this.#window.second(now);
  }

  /** The probability that a call made at `now` is rejected. */
  probability(now: number): number {
    const requests = this.#window.first(now);
    const excess = requests - this.k * this.#window.second(now);
    return excess > 0 ? excess / (requests + 1) : 0;
  }

  /**
   * Decides whether the call made at `now` is rejected locally: returns the probability it was rejected
   * with, or 0 when it may go. A rejected call is not counted.
   */
  reject(now: number): number {
    const p = this.probability(now);
    if (p === 0 || this.#random() >= p) return 0;
    return p;
  }

  /** Counts one request that went out, and whether a server accepted it. */
  record(now: number, accepted: boolean): void {
    this.#window.add(now, 1, accepted ? 1 : 0);
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
