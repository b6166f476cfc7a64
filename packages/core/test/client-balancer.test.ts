import { describe, expect, test } from "vitest";
import {
  type Balancer,
  createBalancer,
  InstanceLoad,
  type InstanceStats,
  LATENCY_DECAY_MS,
  LoadClock,
  leastOutstandingBalancer,
  p2cBalancer,
  randomBalancer,
  roundRobinBalancer,
  weightedBalancer,
  weightOf,
} from "../src/client/index.js";
import { GantryError } from "../src/index.js";
import { after, getHello, instance, seeded, setup, urlOf } from "./client-fakes.js";
import { thrown } from "./helpers.js";

function stats(n: number, fields: Partial<Omit<InstanceStats, "instance">> = {}): InstanceStats {
  return { instance: instance(n), inFlight: 0, latencyEwma: 0, weight: 1, ...fields };
}

/** How often each candidate (by instance id) is picked in `picks` picks. */
function shares(balancer: Balancer, candidates: readonly InstanceStats[], picks: number): Map<string, number> {
  const counts = new Map<string, number>(candidates.map((c) => [c.instance.id, 0]));
  for (let i = 0; i < picks; i++) {
    const id = balancer.pick(candidates).instance.id;
    counts.set(id, (counts.get(id) ?? 0) + 1);
  }
  return new Map([...counts].map(([id, count]) => [id, count / picks]));
}

describe("balancers", () => {
  const three = [stats(1), stats(2), stats(3)];

  test("round-robin takes each candidate in turn", () => {
    const balancer = roundRobinBalancer({ random: () => 0 });
    expect(Array.from({ length: 7 }, () => balancer.pick(three).instance.id)).toEqual([
      "i1",
      "i2",
      "i3",
      "i1",
      "i2",
      "i3",
      "i1",
    ]);
    // The set shrinking under it does not make it pick out of range.
    expect(balancer.pick(three.slice(0, 1)).instance.id).toBe("i1");
  });

  test("random spreads evenly", () => {
    for (const share of shares(randomBalancer({ random: seeded(1) }), three, 3000).values()) {
      expect(share).toBeGreaterThan(0.3);
      expect(share).toBeLessThan(0.37);
    }
  });

  test("weighted follows the weights; all-zero weights fall back to uniform", () => {
    const weighted = [stats(1, { weight: 1 }), stats(2, { weight: 3 }), stats(3, { weight: 0 })];
    const result = shares(weightedBalancer({ random: seeded(2) }), weighted, 4000);
    expect(result.get("i1")).toBeGreaterThan(0.22);
    expect(result.get("i1")).toBeLessThan(0.28);
    expect(result.get("i2")).toBeGreaterThan(0.72);
    expect(result.get("i3")).toBe(0);
    const zeros = [stats(1, { weight: 0 }), stats(2, { weight: 0 })];
    expect(shares(weightedBalancer({ random: seeded(3) }), zeros, 1000).get("i1")).toBeGreaterThan(0.4);
  });

  test("weight comes from the instance's metadata, else 1", () => {
    expect(weightOf(instance(1, { metadata: { weight: "5" } }))).toBe(5);
    expect(weightOf(instance(1, { metadata: { weight: "0" } }))).toBe(0);
    expect(weightOf(instance(1))).toBe(1);
    expect(weightOf(instance(1, { metadata: { weight: "heavy" } }))).toBe(1);
    expect(weightOf(instance(1, { metadata: { weight: "-2" } }))).toBe(1);
  });

  test("least-outstanding picks the fewest calls in flight, ties at random", () => {
    const balancer = leastOutstandingBalancer({ random: seeded(4) });
    expect(
      balancer.pick([stats(1, { inFlight: 3 }), stats(2, { inFlight: 1 }), stats(3, { inFlight: 2 })]).instance.id,
    ).toBe("i2");
    const tied = [stats(1, { inFlight: 1 }), stats(2, { inFlight: 1 }), stats(3, { inFlight: 4 })];
    const result = shares(balancer, tied, 2000);
    expect(result.get("i3")).toBe(0);
    expect(result.get("i1")).toBeGreaterThan(0.45);
    expect(result.get("i2")).toBeGreaterThan(0.45);
  });

  test("p2c picks the lower of latency × (in flight + 1) of two random candidates", () => {
    const balancer = p2cBalancer({ random: seeded(5) });
    const pair = [stats(1, { latencyEwma: 10 }), stats(2, { latencyEwma: 1 })];
    expect(shares(balancer, pair, 200).get("i2")).toBe(1);
    // Calls in flight make a fast instance cost more: 1 × 20 > 10 × 1.
    const busy = [stats(1, { latencyEwma: 10 }), stats(2, { latencyEwma: 1, inFlight: 19 })];
    expect(shares(balancer, busy, 200).get("i1")).toBe(1);
    // One slow instance out of four is picked only when both draws miss the fast ones: never here.
    const fleet = [
      stats(1, { latencyEwma: 2 }),
      stats(2, { latencyEwma: 2 }),
      stats(3, { latencyEwma: 2 }),
      stats(4, { latencyEwma: 50 }),
    ];
    const result = shares(balancer, fleet, 3000);
    expect(result.get("i4")).toBe(0);
    for (const id of ["i1", "i2", "i3"]) expect(result.get(id)).toBeGreaterThan(0.28);
  });

  test("p2c probes an instance it has not measured, but does not flood it before its first answer", () => {
    const balancer = p2cBalancer({ random: seeded(6) });
    const fresh = [stats(1, { latencyEwma: 1 }), stats(2)];
    expect(shares(balancer, fresh, 100).get("i2")).toBe(1);
    // With a call in flight it costs what the other's latency would: 1 × 2 > 1 × 1.
    const probing = [stats(1, { latencyEwma: 1 }), stats(2, { inFlight: 1 })];
    expect(shares(balancer, probing, 100).get("i1")).toBe(1);
    // Two unmeasured instances compare by calls in flight.
    const both = [stats(1, { inFlight: 2 }), stats(2, { inFlight: 1 })];
    expect(shares(balancer, both, 100).get("i2")).toBe(1);
  });

  test("p2c picks from the candidates without allocating a pair", () => {
    const balancer = p2cBalancer();
    const candidates = [stats(1), stats(2), stats(3)];
    for (let i = 0; i < 100; i++) expect(candidates).toContain(balancer.pick(candidates));
    expect(balancer.pick([candidates[0]])).toBe(candidates[0]);
  });

  test("createBalancer makes a fresh balancer per name, passes a Balancer through, and names the known ones", () => {
    const custom: Balancer = { pick: (c) => c[0] };
    expect(createBalancer(custom)).toBe(custom);
    expect(createBalancer("p2c")).not.toBe(createBalancer("p2c"));
    const error = thrown(() => createBalancer("fastest" as never));
    expect(error.code).toBe("GANTRY_ERR_CONFIG_INVALID");
    expect(error.message).toContain("round-robin");
    expect(error).toBeInstanceOf(GantryError);
  });
});

describe("latency EWMA", () => {
  test("is 0 until measured, jumps to a slower answer, and decays toward faster ones over time", () => {
    const clock = new LoadClock();
    const load = new InstanceLoad(instance(1), clock);
    expect(load.latencyEwma).toBe(0);
    load.observe(10, 1000);
    expect(load.latencyEwma).toBe(10);
    load.observe(50, 1000);
    expect(load.latencyEwma).toBe(50);
    // A fast answer right away barely moves it: the average is over time, not over answers.
    load.observe(1, 1001);
    expect(load.latencyEwma).toBeCloseTo(50, 0);
    load.observe(1, 1001 + LATENCY_DECAY_MS);
    expect(load.latencyEwma).toBeGreaterThan(1);
    expect(load.latencyEwma).toBeLessThan(50 / Math.E + 1);
    expect(clock.now).toBe(1001 + LATENCY_DECAY_MS);
    // Idle, it drifts toward 0 as the clock moves on, so that the instance gets probed again.
    const before = load.latencyEwma;
    clock.advance(1001 + 6 * LATENCY_DECAY_MS);
    expect(load.latencyEwma).toBeLessThan(before / 100);
    expect(load.latencyEwma).toBeGreaterThan(0);
    // The clock never goes back.
    clock.advance(0);
    expect(clock.now).toBe(1001 + 6 * LATENCY_DECAY_MS);
  });
});

describe("p2c in the runtime", () => {
  test("sends a small share to a slow instance, and probes it", async () => {
    const { runtime, transport } = setup({ instances: [instance(1), instance(2), instance(3)] });
    try {
      transport.script = (url, call) => after(url === urlOf(3) ? 40 : 1, { message: url }, call);
      let left = 600;
      const worker = async () => {
        while (left > 0) {
          left -= 1;
          await runtime.call(getHello, { name: "Ada" });
        }
      };
      await Promise.all(Array.from({ length: 12 }, worker));
      const counts = transport.counts();
      const slow = counts.get(urlOf(3)) ?? 0;
      expect(slow).toBeGreaterThanOrEqual(1);
      expect(slow / 600).toBeLessThan(0.08);
      expect(counts.get(urlOf(1))).toBeGreaterThan(200);
      expect(counts.get(urlOf(2))).toBeGreaterThan(200);
    } finally {
      await runtime.close();
    }
  });
});
