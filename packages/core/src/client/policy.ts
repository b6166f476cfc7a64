/**
 * A ClientPolicy with every default filled in and every value checked, once, when a client is made.
 */
import type { GantryError } from "../errors/gantry-error.js";
import { coreErrors, toGantryError } from "../errors/table.js";
import type { MethodDescriptor } from "../service/descriptor.js";
import { createBalancer } from "./balancer.js";
import type { EjectionSettings } from "./breaker.js";
import type { Balancer, ClientInterceptor, ClientPolicy } from "./types.js";

/** The defaults of ClientPolicy, as documented on it. */
export const DEFAULT_POLICY = {
  transports: ["grpc", "http"],
  balancer: "p2c",
  retry: { maxAttempts: 3, baseDelayMs: 25, maxDelayMs: 1000, budgetRatio: 0.1, minRetriesPerSecond: 10 },
  ejection: {
    consecutiveFailures: 5,
    failureRate: 0.5,
    failureRateMinCalls: 20,
    failureRateWindowMs: 10_000,
    baseEjectionMs: 1000,
    maxEjectionMs: 30_000,
    maxEjectedShare: 0.5,
  },
  throttle: { k: 2 },
} as const;

export interface ResolvedPolicy {
  readonly transports: readonly string[];
  readonly balancer: Balancer;
  readonly version: string | undefined;
  readonly zone: string | undefined;
  readonly metadata: readonly (readonly [string, string])[];
  readonly subsetSize: number;
  readonly timeoutMs: number | undefined;
  readonly methodTimeoutsMs: ReadonlyMap<string, number>;
  readonly maxAttempts: number;
  readonly baseDelayMs: number;
  readonly maxDelayMs: number;
  readonly budgetRatio: number;
  readonly minRetriesPerSecond: number;
  readonly ejection: EjectionSettings;
  /** undefined: the throttle is off. */
  readonly throttleK: number | undefined;
  readonly bulkhead: number;
  readonly fallback: ((method: MethodDescriptor, input: unknown, error: Error) => unknown) | undefined;
  readonly interceptors: readonly ClientInterceptor[];
}

/**
 * Fills in the defaults of `policy` and checks it; a bad value throws GANTRY_ERR_CONFIG_INVALID naming it.
 *
 * @example
 * resolvePolicy({ retry: { maxAttempts: 5 } }, "hello.v1.HelloService").maxAttempts; // 5
 */
export function resolvePolicy(policy: ClientPolicy, service: string): ResolvedPolicy {
  const invalid = (key: string, problem: string): GantryError =>
    coreErrors.create("GANTRY_ERR_CONFIG_INVALID", {
      key: `policy.${key}`,
      problem,
      source: `the client policy of ${service}`,
    });
  const number = (key: string, value: number | undefined, fallback: number, min: number, integer = false): number => {
    if (value === undefined) return fallback;
    if (typeof value !== "number" || Number.isNaN(value) || value < min || (integer && !Number.isInteger(value))) {
      throw invalid(key, `must be ${integer ? "an integer" : "a number"} >= ${min}, not ${String(value)}`);
    }
    return value;
  };
  const optional = (key: string, value: number | undefined): number | undefined => {
    if (value === undefined) return undefined;
    if (!(typeof value === "number" && value > 0)) throw invalid(key, `must be a number > 0, not ${String(value)}`);
    return value;
  };

  const transports = policy.transports ?? DEFAULT_POLICY.transports;
  if (!Array.isArray(transports) || transports.length === 0 || !transports.every((t) => typeof t === "string")) {
    throw invalid("transports", "must be a non-empty list of transport kinds such as grpc and http");
  }
  const methodTimeoutsMs = new Map<string, number>();
  for (const [name, ms] of Object.entries(policy.methodTimeoutsMs ?? {})) {
    methodTimeoutsMs.set(name, optional(`methodTimeoutsMs.${name}`, ms) as number);
  }
  const retry = policy.retry ?? {};
  const ejection = policy.ejection ?? {};
  const defaults = DEFAULT_POLICY;
  const maxEjectedShare = number(
    "ejection.maxEjectedShare",
    ejection.maxEjectedShare,
    defaults.ejection.maxEjectedShare,
    0,
  );
  if (maxEjectedShare > 1) throw invalid("ejection.maxEjectedShare", `must be between 0 and 1, not ${maxEjectedShare}`);
  const throttle = policy.throttle ?? defaults.throttle;
  if (policy.fallback !== undefined && typeof policy.fallback !== "function") {
    throw invalid("fallback", "must be a function");
  }
  const interceptors = policy.interceptors ?? [];
  if (!interceptors.every((i) => typeof i === "function")) throw invalid("interceptors", "must be functions");
  return {
    transports,
    balancer: createBalancer(policy.balancer ?? defaults.balancer),
    version: policy.select?.version,
    zone: policy.select?.zone,
    metadata: Object.entries(policy.select?.metadata ?? {}),
    subsetSize:
      policy.subsetSize === undefined
        ? Number.POSITIVE_INFINITY
        : number("subsetSize", policy.subsetSize, Number.POSITIVE_INFINITY, 1, true),
    timeoutMs: optional("timeoutMs", policy.timeoutMs),
    methodTimeoutsMs,
    maxAttempts: number("retry.maxAttempts", retry.maxAttempts, defaults.retry.maxAttempts, 1, true),
    baseDelayMs: number("retry.baseDelayMs", retry.baseDelayMs, defaults.retry.baseDelayMs, 0),
    maxDelayMs: number("retry.maxDelayMs", retry.maxDelayMs, defaults.retry.maxDelayMs, 0),
    budgetRatio: number("retry.budgetRatio", retry.budgetRatio, defaults.retry.budgetRatio, 0),
    minRetriesPerSecond: number(
      "retry.minRetriesPerSecond",
      retry.minRetriesPerSecond,
      defaults.retry.minRetriesPerSecond,
      0,
    ),
    ejection: {
      consecutiveFailures: number(
        "ejection.consecutiveFailures",
        ejection.consecutiveFailures,
        defaults.ejection.consecutiveFailures,
        1,
        true,
      ),
      // Fixed, not in ClientPolicy: half or more of at least 20 calls in 10 s.
      failureRate: defaults.ejection.failureRate,
      failureRateMinCalls: defaults.ejection.failureRateMinCalls,
      failureRateWindowMs: defaults.ejection.failureRateWindowMs,
      baseEjectionMs: number("ejection.baseEjectionMs", ejection.baseEjectionMs, defaults.ejection.baseEjectionMs, 0),
      maxEjectionMs: number("ejection.maxEjectionMs", ejection.maxEjectionMs, defaults.ejection.maxEjectionMs, 0),
      maxEjectedShare,
    },
    throttleK: throttle === false ? undefined : number("throttle.k", throttle.k, defaults.throttle.k, 1),
    bulkhead:
      policy.bulkhead === undefined
        ? Number.POSITIVE_INFINITY
        : number("bulkhead", policy.bulkhead, Number.POSITIVE_INFINITY, 1, true),
    fallback: policy.fallback,
    interceptors,
  };
}

/**
 * The timeout of a call of `method`, ms: the call's own, else the policy's for the method, else the
 * method's (`@Method({ timeoutMs })`), else the policy's default; undefined for none.
 */
export function timeoutOf(
  policy: ResolvedPolicy,
  method: MethodDescriptor,
  own: number | undefined,
): number | undefined {
  return (
    own ??
    (policy.methodTimeoutsMs.size === 0 ? undefined : policy.methodTimeoutsMs.get(method.name)) ??
    method.timeoutMs ??
    policy.timeoutMs
  );
}

/**
 * Sends a call through the policy's interceptors, in order, and its fallback: the same for a call that
 * goes out through the runtime and one that goes direct to a service served in this process. `send`
 * gets the metadata as the interceptors left it.
 */
export async function intercepted(
  policy: ResolvedPolicy,
  method: MethodDescriptor,
  input: unknown,
  metadata: Readonly<Record<string, string>> | undefined,
  send: (metadata: Readonly<Record<string, string>>) => Promise<unknown>,
): Promise<unknown> {
  try {
    const interceptors = policy.interceptors;
    if (interceptors.length === 0) return await send(metadata ?? {});
    const call = { method, input, metadata: { ...metadata } };
    const next = (index: number): Promise<unknown> =>
      index === interceptors.length ? send(call.metadata) : interceptors[index](call, () => next(index + 1));
    return await next(0);
  } catch (error) {
    if (policy.fallback === undefined) throw toGantryError(error);
    try {
      return await policy.fallback(method, input, toGantryError(error));
    } catch (fallbackError) {
      throw toGantryError(fallbackError);
    }
  }
}
