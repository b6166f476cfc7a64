import type { Registry, ServiceInstance, WatchEvent } from "@gantry/core/registry";
import { discoveryErrors } from "./errors.js";
import type { OpenOptions } from "./open.js";
import { redact, urlHosts } from "./open.js";

/**
 * `static://127.0.0.1:50051,127.0.0.1:50052?transport=grpc&service=hello.v1.HelloService`: a fixed
 * list of addresses, for fixed topologies and tests. A resolver only. Without `service`, the
 * addresses serve whichever service is asked for.
 */
export async function openStatic(url: URL, _options: OpenOptions): Promise<Registry> {
  const text = redact(url.href);
  const transport = url.searchParams.get("transport") ?? "grpc";
  const only = url.searchParams.get("service") ?? undefined;
  const addresses = urlHosts(url);
  if (addresses.length === 0) {
    throw discoveryErrors.create("GANTRY_ERR_REGISTRY_URL", { url: text, problem: "names no host:port" });
  }
  for (const address of addresses) {
    const parsed = URL.parse(`${transport}://${address}`);
    if (parsed === null || parsed.port === "") {
      throw discoveryErrors.create("GANTRY_ERR_REGISTRY_URL", { url: text, problem: `${address} is not host:port` });
    }
  }
  const instances = (service: string | undefined): ServiceInstance[] =>
    only !== undefined && service !== undefined && service !== only
      ? []
      : addresses.map((address) => ({
          id: `${service ?? only ?? "*"}@${address}`,
          service: service ?? only ?? "*",
          apiVersion: undefined,
          version: "",
          endpoints: { [transport]: `${transport}://${address}` },
          metadata: {},
        }));
  return {
    url: text,
    registrar: undefined,
    resolver: {
      list: async (service) => instances(service),
      watch(service, listener: (event: WatchEvent) => void) {
        let open = true;
        queueMicrotask(() => {
          try {
            if (open) listener({ type: "snapshot", instances: instances(service) });
          } catch {
            // A listener's failure is its own.
          }
        });
        return {
          close: () => {
            open = false;
          },
        };
      },
    },
    close: async () => undefined,
  };
}
