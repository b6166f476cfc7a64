/**
 * The client contract: what a transport's client side gives the transport-neutral client runtime,
 * and the policy a caller sets for the calls it makes to one service.
 */
import type { GantryError } from "../errors/gantry-error.js";
import type { Logger } from "../logger.js";
import type { Resolver, ServiceInstance } from "../registry/index.js";
import type { MethodDescriptor, ServiceDescriptor } from "../service/descriptor.js";

/** One attempt of a call, as a channel sends it. */
export interface OutboundCall {
  readonly method: MethodDescriptor;
  /** When the call must be done by (ms since the epoch); sent on the wire as `grpc-timeout`. */
  readonly deadline: number | undefined;
  /** Sent as gRPC metadata or HTTP headers (lower-case keys). */
  readonly metadata: Readonly<Record<string, string>>;
  /**
   * Why the caller gave up on the attempt (its deadline, a cancellation, the client's shutdown), once it
   * has: the error the attempt ends with. Undefined until then. A call given up on is not sent.
   */
  readonly stopped: GantryError | undefined;
  /**
   * Sets how the channel cancels the attempt on the wire when the caller gives up while it is out:
   * `cancel` is called once, with the reason (at once if the caller has given up already). One per
   * attempt: a second replaces the first. A plain hook rather than an AbortSignal, which would cost
   * every attempt an EventTarget and a listener on it.
   */
  onStop(cancel: (reason: GantryError) => void): void;
}

/** A unary attempt: the channel reports its end on it, once. */
export interface UnaryCall extends OutboundCall {
  /** The call's output message, as native values (what `readMessage` gives). */
  answered(output: unknown): void;
  /** The call failed: a GantryError (see {@link Channel.unary}). Reports after the first are ignored. */
  failed(error: unknown): void;
}

/** A call as a caller outside the client runtime hands it to {@link sendUnary} (tests, tools). */
export interface OutboundRequest {
  readonly method: MethodDescriptor;
  readonly deadline: number | undefined;
  readonly metadata: Readonly<Record<string, string>>;
  /** Gives up on the call: its reason when a GantryError, else DEADLINE_EXCEEDED or CANCELLED. */
  readonly signal?: AbortSignal;
}

/**
 * A connection (or a pool of them) to one endpoint of one instance. Opened lazily, on the first call;
 * closed by the runtime when the instance leaves the registry.
 */
export interface Channel {
  /**
   * Sends one unary call: `input` is the input message as native values (what `readMessage` gives).
   * The channel reports the end on `call`, once: `answered` with the output message as native values,
   * or `failed` with a GantryError: the callee's own status, code, message, details and retryability
   * unchanged; `GANTRY_ERR_CONNECT` (UNAVAILABLE) when the request could not be delivered at all
   * (refused, reset before sending), so even a non-idempotent call may go elsewhere; `call.stopped` when
   * the caller gave up (`onStop`). Callbacks rather than a promise: the runtime's attempt is the one
   * object a call needs. {@link sendUnary} gives a promise, for callers outside the runtime.
   */
  unary(call: UnaryCall, input: unknown): void;
  /**
   * Sends a streaming call (client, server or bidi, as `call.method.stream` says), on channels of a
   * transport with `streaming: true`. `input` is the input message, or for client and bidi streaming
   * an AsyncIterable of them, read as the callee takes them. Resolves with the output message (client
   * streaming) or with an AsyncIterable of output messages (server and bidi streaming) whose reading
   * ends with the call's error, if it fails, as a GantryError; leaving it early cancels the call, as
   * the caller giving up does (`onStop`).
   */
  stream?(call: OutboundCall, input: unknown): Promise<unknown>;
  close(): void;
}

/** The client side of a transport: makes channels to endpoint URLs of its own kind. */
export interface ClientTransport {
  /** `grpc`, `http`: the key of the endpoints it can call in a ServiceInstance. */
  readonly kind: string;
  /** Its channels send streaming calls (`Channel.stream`). */
  readonly streaming?: boolean;
  /** A channel to `url` (such as `grpc://10.0.0.5:50051`); nothing is opened until its first call. */
  channel(url: string): Channel;
}

/** What a balancer knows of one instance when it picks. */
export interface InstanceStats {
  readonly instance: ServiceInstance;
  /** Calls in flight to it now. */
  readonly inFlight: number;
  /** Exponentially weighted moving average of its latency, ms (0 before the first answer). */
  readonly latencyEwma: number;
  /** `weight` from its metadata, else 1. */
  readonly weight: number;
}

export type BalancerName = "p2c" | "round-robin" | "random" | "weighted" | "least-outstanding";

/** Picks one of the eligible instances (never empty) for one attempt. */
export interface Balancer {
  pick(candidates: readonly InstanceStats[]): InstanceStats;
}

/** An outbound interceptor: sees every call this client makes, around all its attempts. */
export type ClientInterceptor = (
  call: { readonly method: MethodDescriptor; readonly input: unknown; metadata: Record<string, string> },
  next: () => Promise<unknown>,
) => Promise<unknown>;

/** How a caller calls one service. Every field has a default. */
export interface ClientPolicy {
  /** Transport kinds in order of preference; the first an instance offers is used. Default `grpc`, `http`. */
  readonly transports?: readonly string[];
  /** Default `p2c`: power of two choices over EWMA latency and calls in flight. */
  readonly balancer?: BalancerName | Balancer;
  /** Only instances with this release version, zone and metadata (a zone with none falls back to all). */
  readonly select?: {
    readonly version?: string;
    readonly zone?: string;
    readonly metadata?: Readonly<Record<string, string>>;
  };
  /** Use only this many instances, chosen deterministically per client (large fleets). Default: all. */
  readonly subsetSize?: number;
  /**
   * Default timeout of every call, ms; per method by method name (`SayHello`) in `methodTimeoutsMs`,
   * which beats the method's own `@Method({ timeoutMs })`, which beats `timeoutMs`.
   */
  readonly timeoutMs?: number;
  readonly methodTimeoutsMs?: Readonly<Record<string, number>>;
  readonly retry?: {
    /** Attempts in all, the first included. Default 3. */
    readonly maxAttempts?: number;
    /** Backoff: full jitter between 0 and min(maxDelayMs, baseDelayMs * 2^n). Defaults 25 and 1000. */
    readonly baseDelayMs?: number;
    readonly maxDelayMs?: number;
    /** Retries stay under this share of the calls of the last 10 s. Default 0.1. */
    readonly budgetRatio?: number;
    /** …with at least this many retries a second allowed, for quiet clients. Default 10. */
    readonly minRetriesPerSecond?: number;
  };
  /**
   * Outlier ejection per instance: after `consecutiveFailures` in a row, or when half or more of at
   * least 20 calls to it in 10 s failed (not settable).
   */
  readonly ejection?: {
    /** Consecutive failures that eject an instance. Default 5. */
    readonly consecutiveFailures?: number;
    /** First ejection; it doubles with each ejection in a row, up to `maxEjectionMs`. Defaults 1000, 30000. */
    readonly baseEjectionMs?: number;
    readonly maxEjectionMs?: number;
    /** Never eject more than this share of instances. Default 0.5. */
    readonly maxEjectedShare?: number;
  };
  /** The adaptive throttle per service (SRE book): reject locally with probability max(0, (requests − k·accepts) / (requests + 1)). `false` turns it off. Default k = 2. */
  readonly throttle?: { readonly k?: number } | false;
  /** At most this many calls in flight to the service; more fail at once with RESOURCE_EXHAUSTED. Default unlimited. */
  readonly bulkhead?: number;
  /** Called when a call fails for good; its result (or throw) is the call's. */
  readonly fallback?: (method: MethodDescriptor, input: unknown, error: Error) => unknown;
  readonly interceptors?: readonly ClientInterceptor[];
}

/** Everything a client runtime for one service needs. */
export interface ClientRuntimeOptions {
  readonly service: ServiceDescriptor;
  readonly resolver: Resolver;
  readonly transports: readonly ClientTransport[];
  readonly log: Logger;
  readonly policy?: ClientPolicy;
}

/** Per-call options of the runtime. */
export interface RuntimeCallOptions {
  /** Absolute deadline: the caller's remaining inbound deadline (ms since the epoch). */
  readonly deadline?: number;
  /**
   * This call's own timeout, ms: it wins over the policy's and the method's, and the sooner of it and
   * `deadline` bounds the call. An attempt that runs out of its own timeout counts against the instance
   * (ejection); one cut short by a nearly spent inbound deadline does not.
   */
  readonly timeoutMs?: number;
  /** Sent with every attempt, as it is: not to be changed while the call runs. */
  readonly metadata?: Readonly<Record<string, string>>;
  readonly signal?: AbortSignal;
}
