import type { Registry } from "@gantry/core/registry";
import { createClient } from "./etcd/client.js";
import { parseEtcdUrl } from "./etcd/options.js";
import { EtcdRegistrar } from "./etcd/registrar.js";
import { EtcdResolver } from "./etcd/resolver.js";
import type { OpenOptions } from "./open.js";

/**
 * `etcd://host:2379[,host:2379...][/prefix][?ttl=10s]`: a registry in etcd v3, for real clusters.
 * Each process keeps its instances under one lease, kept alive on one stream; resolvers list the
 * records under the prefix and share one watch. `etcds://` (or `tls=true`) connects over TLS, with
 * `ca`, `cert` and `key` files; credentials go in the user info or in `user` and `password`.
 *
 * @example
 * const registry = await openRegistry("etcd://10.0.0.1:2379,10.0.0.2:2379/prod?ttl=10s", { log });
 */
export async function openEtcd(url: URL, options: OpenOptions): Promise<Registry> {
  const settings = await parseEtcdUrl(url);
  const client = createClient(settings);
  let closing: Promise<void> | undefined;
  const isClosed = () => closing !== undefined;
  const resolver = new EtcdResolver(client, settings, options.log, isClosed);
  const registrar = new EtcdRegistrar(client, settings, options.log, (instance) => resolver.keyOf(instance), isClosed);
  return {
    url: settings.url,
    registrar,
    resolver,
    close() {
      closing ??= (async () => {
        // Side by side: against an etcd that does not answer, close takes the longer of their bounds
        // (the revoke's, the watch cancel's), not their sum.
        const stopped = await Promise.allSettled([registrar.stop(), resolver.stop()]);
        client.close();
        for (const result of stopped) if (result.status === "rejected") throw result.reason;
      })();
      return closing;
    },
  };
}
