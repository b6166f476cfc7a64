/**
 * `@gantry/core/client`: the transport-neutral client runtime and the contract transports' client
 * sides implement (ClientTransport, Channel).
 */
export {
  type BalancerOptions,
  createBalancer,
  InstanceLoad,
  LATENCY_DECAY_MS,
  LoadClock,
  leastOutstandingBalancer,
  p2cBalancer,
  randomBalancer,
  roundRobinBalancer,
  weightedBalancer,
  weightOf,
} from "./balancer.js";
export {
  AdaptiveThrottle,
  Bulkhead,
  type Ejectable,
  type EjectionSettings,
  type EjectionState,
  Outlier,
  OutlierDetector,
  type ThrottleOptions,
} from "./breaker.js";
export {
  type AttemptMessage,
  attemptChannel,
  clientChannels,
  type EjectionMessage,
  ejectionChannel,
  type RetryMessage,
  retryChannel,
  type ThrottleMessage,
  throttleChannel,
} from "./diagnostics.js";
export { calleeAnswer, deadlineError, notSendable, relayMessage, sendUnary, stopSignal } from "./outbound.js";
export { DEFAULT_POLICY, type ResolvedPolicy, resolvePolicy } from "./policy.js";
export {
  backoffMs,
  isRetryableError,
  mayRetry,
  NEVER_RAN_CODES,
  neverRan,
  RetryBudget,
  type RetryBudgetOptions,
} from "./retry.js";
export { ClientRuntime, FIRST_SNAPSHOT_WAIT_MS } from "./runtime.js";
export type {
  Balancer,
  BalancerName,
  Channel,
  ClientInterceptor,
  ClientPolicy,
  ClientRuntimeOptions,
  ClientTransport,
  InstanceStats,
  OutboundCall,
  OutboundRequest,
  RuntimeCallOptions,
  UnaryCall,
} from "./types.js";
