import diagnostics from "node:diagnostics_channel";
import { afterAll, afterEach, describe, expect, test } from "vitest";
import {
  AdaptiveThrottle,
  Bulkhead,
  backoffMs,
  clientChannels,
  DEFAULT_POLICY,
  type EjectionMessage,
  isRetryableError,
  mayRetry,
  neverRan,
  Outlier,
  OutlierDetector,
  RetryBudget,
  resolvePolicy,
} from "../src/client/index.js";
import { coreErrors, GantryError } from "../src/index.js";
import { connectRefused, instance, notFound, overloaded, seeded, unavailable } from "./client-fakes.js";
import { thrown } from "./helpers.js";

function target(n: number) {
  return { instance: instance(n), url: `grpc://10.0.0.${n}:50051`, outlier: new Outlier() };
}

describe("outlier detector", () => {
  const settings = { ...DEFAULT_POLICY.ejection, consecutiveFailures: 3, maxEjectionMs: 5000 };
  const events: EjectionMessage[] = [];
  const listen = (message: unknown) => void events.push(message as EjectionMessage);
  diagnostics.subscribe(clientChannels.ejection, listen);
  afterEach(() => {
    events.length = 0;
  });
  afterAll(() => {
    diagnostics.unsubscribe(clientChannels.ejection, listen);
  });

  test("ejects after consecutive failures, for twice as long each time in a row, up to the max", () => {
    const detector = new OutlierDetector("hello.v1.HelloService", settings);
    const peer = target(1);
    expect(detector.failed(peer, 0, false, 0, 4)).toBe(false);
    expect(detector.failed(peer, 0, false, 0, 4)).toBe(false);
    expect(detector.failed(peer, 0, false, 0, 4)).toBe(true);
    expect(peer.outlier.state).toBe("ejected");
    expect(peer.outlier.untilMs).toBe(1000);
    expect(detector.expire(peer, 999)).toBe(false);
    expect(detector.expire(peer, 1000)).toBe(true);
    expect(peer.outlier.state).toBe("half-open");
    // The probe fails: ejected again, twice as long; then 4 s, then the 5 s cap.
    expect(detector.failed(peer, 1000, false, 1, 4)).toBe(true);
    expect(peer.outlier.untilMs).toBe(3000);
    detector.expire(peer, 3000);
    detector.failed(peer, 3000, false, 1, 4);
    expect(peer.outlier.untilMs).toBe(7000);
    detector.expire(peer, 7000);
    detector.failed(peer, 7000, false, 1, 4);
    expect(peer.outlier.untilMs).toBe(12_000);
    // The probe answers: restored, and the next ejection is short again.
    detector.expire(peer, 12_000);
    expect(detector.succeeded(peer, 12_000)).toBe(true);
    expect(peer.outlier.state).toBe("active");
    for (let i = 0; i < 3; i++) detector.failed(peer, 20_000, false, 0, 4);
    expect(peer.outlier.untilMs).toBe(21_000);
    expect(events.map((e) => e.state)).toEqual([
      "ejected",
      "half-open",
      "ejected",
      "half-open",
      "ejected",
      "half-open",
      "ejected",
      "half-open",
      "restored",
      "ejected",
    ]);
    expect(events[0]).toEqual({
      service: "hello.v1.HelloService",
      instance: "i1",
      url: "grpc://10.0.0.1:50051",
      state: "ejected",
      untilMs: expect.any(Number),
    });
    // Published as a time of day: when the ejection ends.
    expect(Math.abs((events[0].untilMs as number) - (Date.now() + 1000))).toBeLessThan(1000);
  });

  test("an answer in between resets the count; a refused connection ejects at once", () => {
    const detector = new OutlierDetector("s", settings);
    const peer = target(1);
    detector.failed(peer, 0, false, 0, 4);
    detector.failed(peer, 0, false, 0, 4);
    detector.succeeded(peer, 0);
    expect(detector.failed(peer, 0, false, 0, 4)).toBe(false);
    expect(detector.failed(target(2), 0, true, 0, 4)).toBe(true);
  });

  test("never ejects more than the max share", () => {
    const detector = new OutlierDetector("s", settings);
    // 2 of 4 may be ejected: with 2 out, a third stays in.
    expect(detector.failed(target(1), 0, true, 1, 4)).toBe(true);
    expect(detector.failed(target(2), 0, true, 2, 4)).toBe(false);
    // A lone instance is never ejected at 0.5.
    expect(detector.failed(target(3), 0, true, 0, 1)).toBe(false);
  });

  test("half or more of at least 20 calls in 10 s failing ejects an instance that never fails 3 in a row", () => {
    const detector = new OutlierDetector("s", settings);
    const peer = target(1);
    // Every other call fails: 19 calls with a verdict are not enough…
    let now = 0;
    for (let i = 0; i < 19; i++) {
      now += 100;
      const changed = i % 2 === 0 ? detector.failed(peer, now, false, 0, 4) : detector.succeeded(peer, now);
      expect(changed).toBe(false);
    }
    // …the 20th is: 10 failures of 20.
    expect(detector.failed(peer, now + 100, false, 0, 4)).toBe(true);
    expect(peer.outlier.state).toBe("ejected");
    expect(events.map((e) => e.state)).toEqual(["ejected"]);

    // Fewer than half failing (2 in 5) never ejects, however many calls.
    const steady = target(2);
    for (let i = 0; i < 500; i++) {
      now += 10;
      const changed = i % 5 < 2 ? detector.failed(steady, now, false, 0, 4) : detector.succeeded(steady, now);
      expect(changed).toBe(false);
    }
    // Failures older than the window are forgotten: 15 of them, then 10 s of nothing, then 10 answers
    // and 5 failures (a third) are not enough.
    const old = target(3);
    for (let i = 0; i < 15; i++) {
      detector.failed(old, 0, false, 0, 4);
      detector.succeeded(old, 0);
    }
    for (let i = 0; i < 10; i++) detector.succeeded(old, 10_500);
    for (let i = 0; i < 5; i++) {
      detector.failed(old, 10_500, false, 0, 4);
      expect(old.outlier.state).toBe("active");
      detector.succeeded(old, 10_500);
    }
    // The share of ejected instances still holds.
    const capped = target(4);
    for (let i = 0; i < 20; i++) {
      detector.failed(capped, 20_000, false, 2, 4);
      detector.succeeded(capped, 20_000);
    }
    expect(capped.outlier.state).toBe("active");
  });

  test("a cancelled probe lets another one go", () => {
    const detector = new OutlierDetector("s", settings);
    const peer = target(1);
    peer.outlier.state = "half-open";
    peer.outlier.probing = true;
    expect(detector.released(peer)).toBe(true);
    expect(peer.outlier.probing).toBe(false);
    expect(detector.released(peer)).toBe(false);
  });
});

describe("adaptive throttle", () => {
  test("rejects nothing while the service accepts", () => {
    const throttle = new AdaptiveThrottle({ random: () => 0 });
    for (let i = 0; i < 100; i++) throttle.record(i, true);
    expect(throttle.probability(100)).toBe(0);
    expect(throttle.reject(100)).toBe(0);
  });

  test("rejects with probability (requests − k·accepts) / (requests + 1), and forgets after the window", () => {
    const throttle = new AdaptiveThrottle({ k: 2, windowMs: 1000, buckets: 10, random: () => 0.5 });
    for (let i = 0; i < 10; i++) throttle.record(0, true);
    for (let i = 0; i < 90; i++) throttle.record(0, false);
    expect(throttle.probability(0)).toBeCloseTo((100 - 20) / 101);
    expect(throttle.reject(0)).toBeCloseTo(80 / 101);
    // Only calls sent count: a rejected one does not.
    expect(throttle.requests(0)).toBe(100);
    // Half the window later the same buckets are still in it; a full window later they are gone.
    expect(throttle.probability(500)).toBeGreaterThan(0.7);
    expect(throttle.probability(1001)).toBe(0);
    expect(throttle.requests(1001)).toBe(0);
  });

  test.each([
    { length: 60_000, shut: 0.45 },
    { length: 120_000, shut: 0.97 },
  ])("shuts through an outage of $length ms, and opens again within a minute of recovery", ({ length, shut }) => {
    // 200 calls a second; 5 minutes healthy, the outage, then healthy again. The clock is the test's:
    // `now` in ms. (Counting the calls it rejected as requests, the throttle kept itself shut for many
    // minutes after a 2-minute outage.)
    const throttle = new AdaptiveThrottle({ k: 2, random: seeded(7) });
    const rate = 200;
    const outage = { from: 300_000, to: 300_000 + length };
    let rejectedLate = 0;
    let callsLate = 0;
    let recoveredAfter: number | undefined;
    for (let now = 0; now < outage.to + 180_000; now += 1000 / rate) {
      const up = now < outage.from || now >= outage.to;
      const rejected = throttle.reject(now) !== 0;
      if (now >= outage.to - 30_000 && now < outage.to) {
        callsLate += 1;
        if (rejected) rejectedLate += 1;
      }
      if (!rejected) throttle.record(now, up);
      if (now >= outage.to && recoveredAfter === undefined && throttle.probability(now) < 0.01) {
        recoveredAfter = now - outage.to;
      }
      if (now < outage.from) expect(rejected).toBe(false);
    }
    // In the outage's last 30 s it rejects most calls (nearly all, once the healthy minute before the
    // outage has left its window), sending a trickle to find out when the service is back.
    expect(rejectedLate / callsLate).toBeGreaterThan(shut);
    // The rejection probability is under 1% within about one window (60 s) of the recovery.
    expect(recoveredAfter).toBeDefined();
    expect(recoveredAfter).toBeLessThanOrEqual(65_000);
    expect(throttle.probability(outage.to + 120_000)).toBe(0);
  });

  test("old buckets slide out one by one", () => {
    const throttle = new AdaptiveThrottle({ windowMs: 1000, buckets: 10, random: () => 0.5 });
    for (let i = 0; i < 50; i++) throttle.record(0, false);
    for (let i = 0; i < 50; i++) throttle.record(600, false);
    expect(throttle.requests(900)).toBe(100);
    expect(throttle.requests(1050)).toBe(50);
    expect(throttle.accepts(1050)).toBe(0);
    expect(throttle.requests(1700)).toBe(0);
  });
});

describe("retry rules", () => {
  test("retryable: UNAVAILABLE, and RESOURCE_EXHAUSTED only when a server shed the call", () => {
    expect(isRetryableError(unavailable())).toBe(true);
    expect(isRetryableError(overloaded())).toBe(true);
    expect(isRetryableError(new GantryError("RESOURCE_EXHAUSTED", "quota"))).toBe(false);
    expect(isRetryableError(coreErrors.create("GANTRY_ERR_BULKHEAD_FULL", { service: "s", limit: 1 }))).toBe(false);
    expect(isRetryableError(notFound())).toBe(false);
    expect(isRetryableError(new GantryError("DEADLINE_EXCEEDED", "slow"))).toBe(false);
  });

  test("a method that is not idempotent is retried only when the call provably never ran", () => {
    expect(mayRetry(unavailable(), true)).toBe(true);
    expect(mayRetry(unavailable(), false)).toBe(false);
    expect(mayRetry(connectRefused("grpc://x"), false)).toBe(true);
    expect(mayRetry(overloaded(), false)).toBe(true);
    expect(mayRetry(coreErrors.create("GANTRY_ERR_SHUTTING_DOWN"), false)).toBe(true);
    expect(mayRetry(coreErrors.create("GANTRY_ERR_NOT_STARTED", { state: "starting" }), false)).toBe(true);
    expect(neverRan(unavailable())).toBe(false);
    expect(mayRetry(notFound(), true)).toBe(false);
  });

  test("full-jitter backoff stays under min(max, base × 2^(n−1))", () => {
    expect(backoffMs(1, 25, 1000, () => 0.999)).toBeLessThan(25);
    expect(backoffMs(3, 25, 1000, () => 0.5)).toBe(50);
    expect(backoffMs(10, 25, 1000, () => 0.5)).toBe(500);
    expect(backoffMs(2, 25, 1000, () => 0)).toBe(0);
  });

  test("the budget allows ratio × the calls of the last 10 s plus the floor, and the floor refills with time", () => {
    const budget = new RetryBudget({ ratio: 0.1, minRetriesPerSecond: 5 });
    let allowed = 0;
    for (let i = 0; i < 200; i++) {
      budget.deposit(0);
      if (budget.withdraw(0)) allowed += 1;
    }
    // 20 from the calls, 5 from the floor.
    expect(allowed).toBe(25);
    expect(budget.withdraw(0)).toBe(false);
    expect(budget.withdraw(200)).toBe(true);
    expect(budget.withdraw(200)).toBe(false);
    // 10 s later those calls have left the window: the floor alone, refilled to a second's worth.
    let later = 0;
    while (budget.withdraw(10_500)) later += 1;
    expect(later).toBe(5);
  });

  test("grows with the call rate: a busy client may retry ratio × its calls, not a fixed handful", () => {
    const budget = new RetryBudget({ ratio: 0.1, minRetriesPerSecond: 10 });
    // 30 000 calls in 2 s (300 in flight at 20 ms each).
    for (let i = 0; i < 30_000; i++) budget.deposit(i / 15);
    let allowed = 0;
    while (budget.withdraw(2000)) allowed += 1;
    expect(allowed).toBe(3000 + 10);
  });

  test("a long healthy spell banks nothing beyond its last 10 s", () => {
    const budget = new RetryBudget({ ratio: 0.1, minRetriesPerSecond: 0 });
    for (let i = 0; i < 100_000; i++) budget.deposit(i);
    let allowed = 0;
    while (budget.withdraw(100_000)) allowed += 1;
    // The calls of the last 10 s (less one bucket of 500 ms, at most): ~10 000 of them, so ~1000 retries.
    expect(allowed).toBeGreaterThanOrEqual(950);
    expect(allowed).toBeLessThanOrEqual(1000);
    expect(new RetryBudget({ ratio: 0, minRetriesPerSecond: 0 }).withdraw(0)).toBe(false);
  });
});

describe("bulkhead", () => {
  test("lets `limit` in and no more", () => {
    const bulkhead = new Bulkhead(2);
    expect(bulkhead.enter()).toBe(true);
    expect(bulkhead.enter()).toBe(true);
    expect(bulkhead.enter()).toBe(false);
    bulkhead.leave();
    expect(bulkhead.enter()).toBe(true);
  });
});

describe("policy", () => {
  test("fills in the documented defaults", () => {
    const policy = resolvePolicy({}, "hello.v1.HelloService");
    expect(policy.transports).toEqual(["grpc", "http"]);
    expect(policy.maxAttempts).toBe(3);
    expect([policy.baseDelayMs, policy.maxDelayMs, policy.budgetRatio, policy.minRetriesPerSecond]).toEqual([
      25, 1000, 0.1, 10,
    ]);
    expect(policy.ejection).toEqual({
      consecutiveFailures: 5,
      failureRate: 0.5,
      failureRateMinCalls: 20,
      failureRateWindowMs: 10_000,
      baseEjectionMs: 1000,
      maxEjectionMs: 30_000,
      maxEjectedShare: 0.5,
    });
    expect(policy.throttleK).toBe(2);
    expect(policy.bulkhead).toBe(Number.POSITIVE_INFINITY);
    expect(policy.subsetSize).toBe(Number.POSITIVE_INFINITY);
    expect(policy.timeoutMs).toBeUndefined();
    expect(resolvePolicy({ throttle: false }, "s").throttleK).toBeUndefined();
  });

  test("names the bad key", () => {
    const error = thrown(() => resolvePolicy({ retry: { maxAttempts: 0 } }, "hello.v1.HelloService"));
    expect(error.code).toBe("GANTRY_ERR_CONFIG_INVALID");
    expect(error.message).toBe(
      "config key policy.retry.maxAttempts: must be an integer >= 1, not 0 (from the client policy of hello.v1.HelloService)",
    );
    expect(thrown(() => resolvePolicy({ timeoutMs: -1 }, "s")).message).toContain("policy.timeoutMs");
    expect(thrown(() => resolvePolicy({ ejection: { maxEjectedShare: 2 } }, "s")).message).toContain("maxEjectedShare");
    expect(thrown(() => resolvePolicy({ transports: [] }, "s")).message).toContain("policy.transports");
  });
});
