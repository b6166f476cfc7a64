import { type ConfigOf, config, defineConfig } from "@gantry/core";
import type { Discovery, DiscoveryHost, Registry, Resolver, Watch, WatchEvent } from "@gantry/core/registry";
import { inContainer } from "@gantry/core/transport";
import { discoveryErrors } from "./errors.js";
import { openRegistry } from "./open.js";

export interface DiscoveryOptions {
  /** The registry URL when `registry.url` (`GANTRY_REGISTRY`) is not set; `local://` by default. */
  url?: string;
  /** Per-service resolver URLs, such as `{ "hello.v1.HelloService": "dns:///hello.default.svc.cluster.local:50051" }`. */
  targets?: Readonly<Record<string, string>>;
}

/** The `registry.*` config keys. */
export function discoveryConfigSchema(options: DiscoveryOptions = {}) {
  return defineConfig(
    {
      registry: {
        url: config.string({
          env: "GANTRY_REGISTRY",
          doc: "Where services register and are found: local:// (default), local://<namespace>, etcd://host:2379[,host:2379], dns:///name:port, static://host:port[,host:port]",
        }),
        targets: config.record({
          default: { ...options.targets },
          env: "GANTRY_REGISTRY_TARGETS",
          doc: 'Per-service resolver URLs, as JSON: {"hello.v1.HelloService": "dns:///hello.default.svc.cluster.local:50051"}',
        }),
      },
    },
    { name: "registry", envPrefix: "GANTRY_" },
  );
}

export type DiscoveryConfig = ConfigOf<ReturnType<typeof discoveryConfigSchema>>;

/**
 * The app's discovery: registers its services in the registry `GANTRY_REGISTRY` names (`local://` by
 * default) and resolves others there, or at the per-service targets of `registry.targets`.
 *
 * @example
 * createApp({ services: [HelloService], transports: [grpcTransport()], discovery: discovery() });
 */
export function discovery(options: DiscoveryOptions = {}): Discovery {
  const schema = discoveryConfigSchema(options);
  return {
    config: schema,
    async open(host: DiscoveryHost): Promise<Registry> {
      const values = host.config(schema).registry;
      const configured = values.url ?? options.url;
      if (configured === undefined && inContainer()) {
        host.log.warn(
          "GANTRY_REGISTRY is not set, so this app registers in local://, which only this container sees: other services will not find it. Set GANTRY_REGISTRY=etcd://<host>:2379, or registry.targets to dns:// names on Kubernetes.",
        );
      }
      const main = await openRegistry(configured ?? "local://", { log: host.log });
      const targets = new Map<string, Registry>();
      try {
        for (const [service, url] of Object.entries(values.targets)) {
          targets.set(service, await openRegistry(url, { log: host.log }));
        }
      } catch (error) {
        await Promise.allSettled([main, ...targets.values()].map((r) => r.close()));
        throw error;
      }
      return targets.size === 0 ? main : routed(main, targets);
    },
  };
}

/** One registry that registers in `main` and resolves each service at its target, else in `main`. */
function routed(main: Registry, targets: ReadonlyMap<string, Registry>): Registry {
  const resolverFor = (service: string | undefined): Resolver => {
    const registry = (service === undefined ? undefined : targets.get(service)) ?? main;
    if (registry.resolver === undefined) {
      throw discoveryErrors.create("GANTRY_ERR_REGISTRY_NO_TARGET", { url: registry.url, service: service ?? "*" });
    }
    return registry.resolver;
  };
  return {
    url: main.url,
    registrar: main.registrar,
    resolver: {
      async list(service) {
        if (service !== undefined) return resolverFor(service).list(service);
        const lists = await Promise.all([
          // A service with a target is found there, not in the main registry.
          (await main.resolver?.list())?.filter((instance) => !targets.has(instance.service)) ?? [],
          ...[...targets].map(([name, registry]) => registry.resolver?.list(name) ?? []),
        ]);
        return lists.flat();
      },
      /** Every service's watch goes to its target; `watch(undefined)` watches the main registry only. */
      watch(service, listener: (event: WatchEvent) => void): Watch {
        return resolverFor(service).watch(service, listener);
      },
      refresh(service) {
        resolverFor(service).refresh?.(service);
      },
    },
    async close() {
      await Promise.all([main, ...targets.values()].map((registry) => registry.close()));
    },
  };
}
