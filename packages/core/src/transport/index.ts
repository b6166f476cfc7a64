/**
 * The transport contract: what a transport gets from the app, and what it gives back. A transport
 * only decodes requests into calls of the one pipeline (`host.invoke`) and encodes what comes out.
 */
import { existsSync } from "node:fs";
import { networkInterfaces } from "node:os";
import type { AppState } from "../app/state.js";
import type { ClientTransport } from "../client/types.js";
import type { ConfigSchema } from "../config/schema.js";
import type { CallContext, CallInit } from "../context/call-context.js";
import type { Logger } from "../logger.js";
import type { Done } from "../pipeline/invoker.js";
import type { MethodDescriptor, ServiceDescriptor } from "../service/descriptor.js";

export type { AppState } from "../app/state.js";
export type { Done } from "../pipeline/invoker.js";
export type { ServerSpanInfo } from "../telemetry/tracing.js";

/** Where a transport listens. */
export interface Endpoint {
  /** `http`, `grpc` */
  readonly transport: string;
  /** The address to call it at, never 0.0.0.0: `http://127.0.0.1:8080`. */
  readonly url: string;
  readonly host: string;
  readonly port: number;
}

/** What the app gives a transport when it starts it. */
export interface TransportHost {
  readonly app: { readonly name: string; readonly version: string };
  readonly services: readonly ServiceDescriptor[];
  readonly log: Logger;
  /** The app's state: a transport reports ready only in `ready`. */
  readonly state: AppState;
  /** Calls `listener` on every change of the app's state (health watches); returns the unsubscribe. */
  onStateChange(listener: (state: AppState) => void): () => void;
  /** The resolved values of a config schema the transport declared. */
  config<T>(schema: ConfigSchema<T>): T;
  /**
   * The host to give callers for a listening host: `advertise.host` when set, else `advertisedHost`.
   * Never a wildcard.
   */
  advertise(listenHost: string): string;
  /** A new call context for a request. */
  createCall(init: CallInit): CallContext;
  /** Runs one call through the pipeline; rejects with a GantryError. */
  invoke(method: MethodDescriptor, input: unknown, call: CallContext): Promise<unknown>;
  /**
   * Runs one call through the pipeline and calls `done` once, with a GantryError or the output: what
   * `invoke` does, without a promise between the method and the transport (for hot paths).
   */
  dispatch(method: MethodDescriptor, input: unknown, call: CallContext, done: Done): void;
}

/**
 * A transport. The app calls `listen` at start, then at shutdown `drain` (stop taking new
 * connections; calls in flight go on) and, once calls have drained, `close`.
 */
export interface Transport {
  readonly kind: string;
  /** The config keys it reads (`http.*`), if any. */
  readonly config?: ConfigSchema<unknown>;
  listen(host: TransportHost): Promise<readonly Endpoint[]>;
  /** Its client side, for the app's typed clients to call instances over it. */
  client?(): ClientTransport;
  drain(): void | Promise<void>;
  close(): Promise<void>;
}

/** True inside a container or a Kubernetes pod. */
export function inContainer(): boolean {
  return (
    process.env.KUBERNETES_SERVICE_HOST !== undefined || existsSync("/.dockerenv") || existsSync("/run/.containerenv")
  );
}

/** Where a transport listens by default: every interface in a container or pod, loopback on a laptop. */
export function defaultHost(): string {
  return inContainer() ? "0.0.0.0" : "127.0.0.1";
}

/** The address to give callers for a listening host: a wildcard becomes the first external IPv4 address. */
export function advertisedHost(host: string): string {
  if (host !== "0.0.0.0" && host !== "::") return host;
  for (const addresses of Object.values(networkInterfaces())) {
    for (const address of addresses ?? []) {
      if (address.family === "IPv4" && !address.internal) return address.address;
    }
  }
  return "127.0.0.1";
}

/** `scheme://host:port`, with an IPv6 host in brackets. */
export function endpointUrl(scheme: string, host: string, port: number): string {
  return `${scheme}://${host.includes(":") ? `[${host}]` : host}:${port}`;
}
