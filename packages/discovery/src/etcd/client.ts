import type { GantryError } from "@gantry/core";
import {
  Etcd3,
  EtcdAuthenticationFailedError,
  EtcdPermissionDeniedError,
  GRPCFailedPreconditionError,
  GRPCInvalidArgumentError,
  GRPCUnauthenticatedError,
  type IOptions,
  isRecoverableError,
} from "etcd3";
import { discoveryErrors } from "../errors.js";
import { reason } from "../retry.js";
import type { EtcdSettings } from "./options.js";

/** Longest wait for one unary call (a range, a put, a lease grant) before it counts as failed. */
const CALL_TIMEOUT_MS = 5000;
/** How long a host that just failed is passed over while another host may still answer. */
const HOST_REST_MS = 2000;

type FaultHandling = NonNullable<IOptions["faultHandling"]>;
type Policy = ReturnType<NonNullable<FaultHandling["host"]>>;

/**
 * An etcd3 client for the settings. Its fault handling is replaced: etcd3's default breaker shuts a
 * single host out for 5 s after three failures, which only delays recovery when etcd comes back, and
 * its watch backoff grows to 30 s on timers that hold the process open. Here a failed call goes on to
 * the next host at once, a host that just failed is passed over only while another one may answer,
 * and the registrar and the resolver do their own backoff.
 */
export function createClient(settings: EtcdSettings): Etcd3 {
  const scheme = settings.tls === undefined ? "http" : "https";
  const deadline = () => ({ deadline: Date.now() + CALL_TIMEOUT_MS });
  const tls = settings.tls;
  const rested = new Map(settings.hosts.map((host) => [host, 0]));
  return new Etcd3({
    hosts: settings.hosts.map((host) => `${scheme}://${host}`),
    // Without files, `https://` hosts make etcd3 use the system's CAs.
    credentials:
      tls === undefined || (tls.ca === undefined && tls.cert === undefined)
        ? undefined
        : // grpc-js takes a null root certificate to mean the system's CAs.
          { rootCertificate: tls.ca as Buffer, privateKey: tls.key, certChain: tls.cert },
    auth: settings.auth === undefined ? undefined : { ...settings.auth, callOptions: deadline },
    defaultCallOptions: (context) => (context.isStream ? {} : deadline()),
    // Pings find a connection that died without a word (a partition) while a watch or keep-alive
    // stream is open. etcd accepts pings every 5 s or slower (--grpc-keepalive-min-time).
    grpcOptions: { "grpc.keepalive_time_ms": 10_000, "grpc.keepalive_timeout_ms": 5000 },
    faultHandling: {
      global: eachHost(Math.max(2, settings.hosts.length)),
      // etcd3 names hosts with their scheme; `rested` keys them without.
      host: (host) => restAfterFailure(host.replace(/^https?:\/\//, ""), rested),
      // The resolver cancels a watch that lost its connection and starts a new one itself.
      watchBackoff: SHORT_BACKOFF,
    },
  });
}

interface Backoff {
  readonly duration: number;
  next(): Backoff;
}

const SHORT_BACKOFF: Backoff = { duration: 100, next: () => SHORT_BACKOFF };
const NEVER = new AbortController().signal;

/** Tries a call up to `attempts` times, each on the next host, while it fails in a recoverable way. */
function eachHost(attempts: number): Policy {
  return policy(async (fn) => {
    let last: unknown;
    for (let attempt = 0; attempt < attempts; attempt++) {
      try {
        return await fn({ signal: NEVER });
      } catch (error) {
        if (!(error instanceof Error) || !isRecoverableError(error)) throw error;
        last = error;
      }
    }
    throw last;
  });
}

/** Passes over a host for a moment after it failed, unless every host failed: then all are tried. */
function restAfterFailure(host: string, rested: Map<string, number>): Policy {
  return policy(async (fn) => {
    const now = Date.now();
    const until = rested.get(host) ?? 0;
    if (until > now && [...rested.values()].filter((t) => t > now).length < rested.size) {
      throw new HostResting(host);
    }
    try {
      const result = await fn({ signal: NEVER });
      rested.set(host, 0);
      return result;
    } catch (error) {
      if (error instanceof Error && isRecoverableError(error)) rested.set(host, Date.now() + HOST_REST_MS);
      throw error;
    }
  });
}

/** A host passed over after a failure; etcd3 reports the failure before it instead. */
class HostResting extends Error {
  /** Marks it as a breaker's refusal, which etcd3 replaces by the call's own last error. */
  readonly isBrokenCircuitError = true;
  constructor(host: string) {
    super(`etcd host ${host} failed a moment ago`);
  }
}

/**
 * etcd3 calls only `execute` on its policies (cockatiel's `IPolicy`, which this package does not
 * depend on); the events are there for the type.
 */
function policy(execute: <T>(fn: (context: { signal: AbortSignal }) => PromiseLike<T> | T) => Promise<T>): Policy {
  const none = () => ({ dispose: () => undefined });
  return { execute, onSuccess: none, onFailure: none } as unknown as Policy;
}

/** True for failures that no retry mends: wrong credentials, missing permissions, auth not enabled. */
export function isPermanent(error: unknown): boolean {
  return (
    error instanceof EtcdAuthenticationFailedError ||
    error instanceof EtcdPermissionDeniedError ||
    error instanceof GRPCUnauthenticatedError ||
    (error instanceof GRPCFailedPreconditionError && error.message.includes("authentication is not enabled")) ||
    (error instanceof GRPCInvalidArgumentError && error.message.includes("user name is empty"))
  );
}

/** What went wrong, in words an operator can act on. */
export function describe(error: unknown): string {
  if (error instanceof EtcdAuthenticationFailedError) return "authentication failed: wrong user or password";
  if (error instanceof EtcdPermissionDeniedError) return `permission denied (${reason(error)})`;
  if (error instanceof GRPCFailedPreconditionError && error.message.includes("authentication is not enabled")) {
    return "the URL gives a user and password but authentication is not enabled on this etcd";
  }
  if (error instanceof GRPCInvalidArgumentError && error.message.includes("user name is empty")) {
    return "authentication is enabled on this etcd: give a user and password in the URL";
  }
  return reason(error).replace(/^\w*Error: /, "");
}

/** A GANTRY_ERR_ETCD for `url` from whatever etcd3 threw, or from a reason. */
export function etcdError(url: string, cause: unknown): GantryError {
  return discoveryErrors.create(
    "GANTRY_ERR_ETCD",
    { url, reason: typeof cause === "string" ? cause : describe(cause) },
    typeof cause === "string" ? {} : { cause },
  );
}

/** A GANTRY_ERR_REGISTRY_CLOSED for `url`. */
export function closedError(url: string): GantryError {
  return discoveryErrors.create("GANTRY_ERR_REGISTRY_CLOSED", { url });
}

/**
 * `promise`, or a rejection with the signal's reason as soon as `signal` aborts: for a loop that must
 * stop at once, whatever a call to etcd that does not answer is still waiting for (its deadline ends it).
 */
export function unlessAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) {
    promise.catch(() => undefined);
    return Promise.reject(signal.reason);
  }
  return new Promise<T>((resolve, reject) => {
    const abort = () => reject(signal.reason);
    signal.addEventListener("abort", abort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener("abort", abort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener("abort", abort);
        reject(error);
      },
    );
  });
}

/** `promise`, or a rejection with `message` after `ms`; the timer never holds the process open. */
export function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), ms).unref();
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
