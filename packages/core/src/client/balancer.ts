/**
 * Balancers pick one instance for each attempt of a call, from what the runtime measures of each:
 * calls in flight and an EWMA of latency. Every balancer here picks without allocating.
 */
import { coreErrors } from "../errors/table.js";
import type { ServiceInstance } from "../registry/index.js";
import type { Balancer, BalancerName, InstanceStats } from "./types.js";

/** How fast the latency EWMA forgets: a measurement loses 1/e of its weight every this many ms. */
export const LATENCY_DECAY_MS = 10_000;

/** Options of the built-in balancers. */
export interface BalancerOptions {
  /** A source of numbers in [0, 1); `Math.random` by default (tests give a seeded one). */
  readonly random?: () => number;
}

/**
 * The time (performance.now()) latency EWMAs decay to. A client's instances share one, and the runtime
 * moves it forward at each pick and each answer, so that reading `latencyEwma` costs no clock read.
 */
export class LoadClock {
  now = 0;

  advance(now: number): void {
    if (now > this.now) this.now = now;
  }
}

/**
 * What the runtime knows of one instance's load: the InstanceStats a balancer reads. Latency is a
 * peak-sensitive EWMA decayed by time (as Finagle's and Linkerd's): a slower answer raises it at once,
 * faster ones lower it over about {@link LATENCY_DECAY_MS}, and it drifts toward 0 while the instance
 * gets no calls, so an instance that was slow is probed again now and then. Time is performance.now(),
 * as of the last move of its {@link LoadClock}.
 */
export class InstanceLoad implements InstanceStats {
  instance: ServiceInstance;
  inFlight = 0;
  weight: number;
  readonly clock: LoadClock;
  #ewma = 0;
  #stamp = 0;

  constructor(instance: ServiceInstance, clock = new LoadClock()) {
    this.instance = instance;
    this.weight = weightOf(instance);
    this.clock = clock;
  }

  get latencyEwma(): number {
    const ewma = this.#ewma;
    if (ewma === 0) return 0;
    const elapsed = this.clock.now - this.#stamp;
    return elapsed <= 0 ? ewma : ewma * Math.exp(-elapsed / LATENCY_DECAY_MS);
  }

  /** Records one answer that took `latencyMs`, measured at `now` (performance.now()). */
  observe(latencyMs: number, now: number): void {
    const rtt = Math.max(latencyMs, 0.001);
    const ewma = this.#ewma;
    if (ewma === 0 || rtt >= ewma) {
      this.#ewma = rtt;
    } else {
      const w = Math.exp(-Math.max(0, now - this.#stamp) / LATENCY_DECAY_MS);
      this.#ewma = ewma * w + rtt * (1 - w);
    }
    this.#stamp = now;
    this.clock.advance(now);
  }
}

/**
 * `weight` from an instance's metadata when it is a finite number >= 0, else 1.
 *
 * @example
 * weightOf({ ...instance, metadata: { weight: "2.5" } }); // 2.5
 */
export function weightOf(instance: ServiceInstance): number {
  const raw = instance.metadata.weight;
  if (raw === undefined || raw === "") return 1;
  const weight = Number(raw);
  return Number.isFinite(weight) && weight >= 0 ? weight : 1;
}

/**
 * Power of two choices: two distinct random candidates, the one with the lower cost
 * `latencyEwma × (inFlight + 1)` wins. An instance not yet measured costs nothing while idle (so new
 * instances are probed at once) and, with calls in flight, costs what the other candidate's latency
 * would (so it is not flooded before its first answer).
 *
 * @example
 * new ClientRuntime({ ...options, policy: { balancer: p2cBalancer() } });
 */
export function p2cBalancer(options: BalancerOptions = {}): Balancer {
  const random = options.random ?? Math.random;
  return {
    pick(candidates) {
      const n = candidates.length;
      if (n === 1) return candidates[0];
      const i = Math.floor(random() * n);
      let j = Math.floor(random() * (n - 1));
      if (j >= i) j += 1;
      const a = candidates[i];
      const b = candidates[j];
      const measuredA = a.latencyEwma;
      const measuredB = b.latencyEwma;
      const latencyA = measuredA !== 0 ? measuredA : a.inFlight === 0 ? 0 : measuredB || 1;
      const latencyB = measuredB !== 0 ? measuredB : b.inFlight === 0 ? 0 : measuredA || 1;
      const costA = latencyA * (a.inFlight + 1);
      const costB = latencyB * (b.inFlight + 1);
      if (costA < costB) return a;
      if (costB < costA) return b;
      return random() < 0.5 ? a : b;
    },
  };
}

/**
 * Each candidate in turn, from a random start (so that many clients do not all begin with the same
 * instance).
 *
 * @example
 * new ClientRuntime({ ...options, policy: { balancer: "round-robin" } });
 */
export function roundRobinBalancer(options: BalancerOptions = {}): Balancer {
  let next = Math.floor((options.random ?? Math.random)() * 1024);
  return {
    pick(candidates) {
      if (next >= candidates.length) next %= candidates.length;
      const picked = candidates[next];
      next += 1;
      return picked;
    },
  };
}

/**
 * A uniformly random candidate.
 *
 * @example
 * const balancer = randomBalancer({ random: seededRandom });
 */
export function randomBalancer(options: BalancerOptions = {}): Balancer {
  const random = options.random ?? Math.random;
  return {
    pick(candidates) {
      return candidates[Math.floor(random() * candidates.length)];
    },
  };
}

/**
 * A random candidate with probability proportional to its `weight` (the instance's `weight`
 * metadata, default 1). When every weight is 0, uniformly random.
 *
 * @example
 * // Instances registered with metadata { weight: "3" } get three times the calls of the others.
 * new ClientRuntime({ ...options, policy: { balancer: "weighted" } });
 */
export function weightedBalancer(options: BalancerOptions = {}): Balancer {
  const random = options.random ?? Math.random;
  return {
    pick(candidates) {
      let total = 0;
      for (let i = 0; i < candidates.length; i++) total += candidates[i].weight;
      if (!(total > 0)) return candidates[Math.floor(random() * candidates.length)];
      let x = random() * total;
      for (let i = 0; i < candidates.length; i++) {
        x -= candidates[i].weight;
        if (x < 0) return candidates[i];
      }
      // Rounding can leave x at a hair above 0: the last instance with a weight takes it.
      for (let i = candidates.length - 1; i > 0; i--) if (candidates[i].weight > 0) return candidates[i];
      return candidates[0];
    },
  };
}

/**
 * The candidate with the fewest calls in flight; ties are broken at random.
 *
 * @example
 * new ClientRuntime({ ...options, policy: { balancer: "least-outstanding" } });
 */
export function leastOutstandingBalancer(options: BalancerOptions = {}): Balancer {
  const random = options.random ?? Math.random;
  return {
    pick(candidates) {
      let best = candidates[0];
      let ties = 1;
      for (let i = 1; i < candidates.length; i++) {
        const candidate = candidates[i];
        if (candidate.inFlight < best.inFlight) {
          best = candidate;
          ties = 1;
        } else if (candidate.inFlight === best.inFlight) {
          // Reservoir sampling: each of the tied candidates ends up picked with probability 1/ties.
          ties += 1;
          if (random() * ties < 1) best = candidate;
        }
      }
      return best;
    },
  };
}

const FACTORIES: Readonly<Record<BalancerName, (options?: BalancerOptions) => Balancer>> = {
  p2c: p2cBalancer,
  "round-robin": roundRobinBalancer,
  random: randomBalancer,
  weighted: weightedBalancer,
  "least-outstanding": leastOutstandingBalancer,
};

/**
 * The balancer a policy names (a fresh one: balancers keep state per client), or the one it gives.
 *
 * @example
 * const balancer = createBalancer("least-outstanding");
 */
export function createBalancer(spec: BalancerName | Balancer = "p2c", options?: BalancerOptions): Balancer {
  if (typeof spec === "object" && spec !== null && typeof spec.pick === "function") return spec;
  const factory = typeof spec === "string" && Object.hasOwn(FACTORIES, spec) ? FACTORIES[spec] : undefined;
  if (factory === undefined) {
    throw coreErrors.create("GANTRY_ERR_CONFIG_INVALID", {
      key: "balancer",
      problem: `unknown balancer ${String(spec)}; known: ${Object.keys(FACTORIES).join(", ")}, or a Balancer object`,
      source: "the client policy",
    });
  }
  return factory(options);
}
