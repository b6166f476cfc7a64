/**
 * The registry contract, for discovery backends (`@gantry/discovery` implements it). Registering
 * (register, keep alive, deregister) and resolving (list, watch) are separate capabilities: a backend
 * gives the ones it has, and `dns://` or `static://` give only a resolver.
 *
 * An app opens its registry at start, registers one instance per service once its transports
 * listen, and deregisters first at shutdown.
 */
import diagnostics from "node:diagnostics_channel";
import type { ConfigSchema } from "../config/schema.js";
import { createToken } from "../di/token.js";
import type { Logger } from "../logger.js";

/** One running instance of a service, as it appears in the registry. */
export interface ServiceInstance {
  /** Unique in the registry (Gantry makes `<service>-<uuid>`); a record with a known id replaces it. */
  readonly id: string;
  /** `hello.v1.HelloService` */
  readonly service: string;
  /** `v1`: the API version, from the proto package. */
  readonly apiVersion: string | undefined;
  /** `1.4.2`: the release version of the app, for selection; `""` where the backend cannot know it (`dns://`, `static://`). */
  readonly version: string;
  /** Transport → URL: `{ http: "http://10.0.0.5:8080", grpc: "grpc://10.0.0.5:50051" }`. */
  readonly endpoints: Readonly<Record<string, string>>;
  readonly metadata: Readonly<Record<string, string>>;
  readonly zone?: string;
  /** When the instance registered (ms since the epoch), if the backend knows. */
  readonly registeredAt?: number;
}

/** Holds an app's instances in a registry: register, keep alive, deregister. */
export interface Registrar {
  /**
   * Registers the instances and resolves once they are registered; retries on its own until then, or
   * until `signal` aborts. From then on it keeps them alive and registers them again by itself after
   * a lost lease or a registry outage, without ever stopping the app from serving.
   */
  register(instances: readonly ServiceInstance[], signal?: AbortSignal): Promise<void>;
  /** Removes the instances; the first step of shutdown. Keeping alive stops. */
  deregister(): Promise<void>;
}

/** What a resolver reports to a watcher. */
export type WatchEvent =
  /** The whole set: the first event of every watch, and again after any reconnect (a resync). */
  | { readonly type: "snapshot"; readonly instances: readonly ServiceInstance[] }
  /** An instance appeared, or changed (same id). */
  | { readonly type: "add"; readonly instance: ServiceInstance }
  | { readonly type: "remove"; readonly instance: ServiceInstance }
  /** The registry cannot be reached: the last known instances stand until the next snapshot. */
  | { readonly type: "error"; readonly error: Error };

export interface Watch {
  /** Stops the watch; its listener is not called again. */
  close(): void;
}

/** Finds instances: list them, or watch them change. */
export interface Resolver {
  /** The instances of one service, or of every service. */
  list(service?: string): Promise<ServiceInstance[]>;
  /** A snapshot, then every change; a new snapshot after any reconnect. */
  watch(service: string | undefined, listener: (event: WatchEvent) => void): Watch;
  /**
   * Asks for a fresh look now, because a caller saw an instance fail: a backend that polls (`dns://`)
   * resolves again at once instead of at its next tick. Backends that are told of changes ignore it.
   */
  refresh?(service?: string): void;
}

/** An open registry: what it can do, and how to close it. */
export interface Registry {
  /** Its URL, without credentials: `etcd://127.0.0.1:2379/gantry`. */
  readonly url: string;
  readonly registrar: Registrar | undefined;
  readonly resolver: Resolver | undefined;
  /** Stops keeping alive and watching; closes connections. */
  close(): Promise<void>;
}

/** What an app gives discovery when it opens it. */
export interface DiscoveryHost {
  readonly app: { readonly name: string; readonly version: string };
  readonly log: Logger;
  /** The resolved values of the config schema discovery declared. */
  config<T>(schema: ConfigSchema<T>): T;
}

/** How an app finds its registry: `discovery()` from `@gantry/discovery` reads `GANTRY_REGISTRY`. */
export interface Discovery {
  /** The config keys it reads, if any. */
  readonly config?: ConfigSchema<unknown>;
  open(host: DiscoveryHost): Registry | Promise<Registry>;
}

/** DI token of the app's open registry (for outbound clients' resolvers). */
export const REGISTRY = createToken<Registry>("Registry");

/** What the `gantry:registry` diagnostics channel carries. */
export type RegistryEvent =
  | { readonly type: "registered"; readonly url: string; readonly instances: readonly ServiceInstance[] }
  | { readonly type: "deregistered"; readonly url: string; readonly instances: readonly ServiceInstance[] }
  /** Keeping alive failed (lease lost, registry down); the registrar is registering again. */
  | { readonly type: "lost"; readonly url: string; readonly error: Error }
  /** A watch saw instances come or go. */
  | {
      readonly type: "changed";
      readonly url: string;
      readonly added: readonly ServiceInstance[];
      readonly removed: readonly ServiceInstance[];
    }
  /** A record that is not a valid instance was skipped. */
  | { readonly type: "skipped"; readonly url: string; readonly key: string; readonly reason: string };

export const registryChannel = diagnostics.channel("gantry:registry");

/** Publishes a registry event for telemetry; costs nothing while no one subscribes. */
export function publishRegistryEvent(event: RegistryEvent): void {
  if (registryChannel.hasSubscribers) registryChannel.publish(event);
}

/** The fields of a ServiceInstance, checked; the reason a record is not one. */
export function checkInstance(value: unknown): ServiceInstance | string {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return "not an object";
  const record = value as Record<string, unknown>;
  for (const key of ["id", "service", "version"] as const) {
    if (typeof record[key] !== "string" || record[key] === "") return `${key} is not a non-empty string`;
  }
  if (record.apiVersion !== undefined && typeof record.apiVersion !== "string") return "apiVersion is not a string";
  if (record.zone !== undefined && typeof record.zone !== "string") return "zone is not a string";
  if (record.registeredAt !== undefined && !Number.isFinite(record.registeredAt)) {
    return "registeredAt is not a number";
  }
  const endpoints = stringRecord(record.endpoints);
  if (endpoints === undefined) return "endpoints is not an object of strings";
  for (const [transport, url] of Object.entries(endpoints)) {
    if (!URL.canParse(url)) return `endpoint ${transport} is not a URL`;
  }
  const metadata = record.metadata === undefined ? {} : stringRecord(record.metadata);
  if (metadata === undefined) return "metadata is not an object of strings";
  return {
    id: record.id as string,
    service: record.service as string,
    apiVersion: record.apiVersion as string | undefined,
    version: record.version as string,
    endpoints,
    metadata,
    ...(record.zone === undefined ? {} : { zone: record.zone as string }),
    ...(record.registeredAt === undefined ? {} : { registeredAt: record.registeredAt as number }),
  };
}

function stringRecord(value: unknown): Record<string, string> | undefined {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return undefined;
  const entries = Object.entries(value);
  if (!entries.every(([, v]) => typeof v === "string")) return undefined;
  return Object.fromEntries(entries) as Record<string, string>;
}
