import type { Logger } from "@gantry/core";
import type { Registry } from "@gantry/core/registry";
import { discoveryErrors } from "./errors.js";

/** What opening a registry needs besides its URL. */
export interface OpenOptions {
  /** Where backends warn (malformed records, lost leases, retries). */
  log: Logger;
}

/** Opens a registry of one scheme from its parsed URL. */
export type OpenBackend = (url: URL, options: OpenOptions) => Promise<Registry>;

/** The backends, by URL scheme; each is loaded only when used. */
const backends: Readonly<Record<string, () => Promise<OpenBackend>>> = {
  local: async () => (await import("./local.js")).openLocal,
  etcd: async () => (await import("./etcd.js")).openEtcd,
  etcds: async () => (await import("./etcd.js")).openEtcd,
  dns: async () => (await import("./dns.js")).openDns,
  static: async () => (await import("./static.js")).openStatic,
};

/** The schemes `openRegistry` knows. */
export const registrySchemes: readonly string[] = Object.keys(backends);

/**
 * Opens the registry a URL names: `local://`, `local://my-project`, `etcd://10.0.0.1:2379,10.0.0.2:2379`,
 * `dns:///hello.default.svc.cluster.local:50051`, `static://127.0.0.1:50051,127.0.0.1:50052`. An unknown scheme is
 * GANTRY_ERR_REGISTRY_SCHEME, listing the known ones.
 */
export async function openRegistry(url: string, options: OpenOptions): Promise<Registry> {
  const parsed = parseRegistryUrl(url);
  const scheme = parsed.protocol.slice(0, -1);
  const load = Object.hasOwn(backends, scheme) ? backends[scheme] : undefined;
  if (load === undefined) {
    throw discoveryErrors.create("GANTRY_ERR_REGISTRY_SCHEME", {
      scheme: `${scheme}://`,
      url: redact(url),
      known: registrySchemes.map((s) => `${s}://`).join(", "),
    });
  }
  return (await load())(parsed, options);
}

/** A registry URL, parsed; a URL that does not parse is GANTRY_ERR_REGISTRY_URL. */
export function parseRegistryUrl(url: string): URL {
  // gRPC's short form `dns:name:port` is `dns:///name:port`.
  const short = /^([a-z][a-z0-9+.-]*):(?!\/\/)([^/].*)$/i.exec(url.trim());
  if (short !== null && !/^\d+$/.test(short[2].split(/[/?#]/)[0]))
    return parseRegistryUrl(`${short[1]}:///${short[2]}`);
  // `etcd://a:2379,b:2379` is not a valid WHATWG host: the URL gets the first, `hosts` keeps them all.
  const match = /^([a-z][a-z0-9+.-]*):\/\/([^/?#]*)(.*)$/i.exec(url.trim());
  if (match === null) {
    throw discoveryErrors.create("GANTRY_ERR_REGISTRY_URL", {
      url: redact(url),
      problem: "is not a URL such as local://, etcd://127.0.0.1:2379 or dns:///hello.default.svc.cluster.local:50051",
    });
  }
  const [, scheme, authority, rest] = match;
  const at = authority.lastIndexOf("@");
  const credentials = at === -1 ? "" : authority.slice(0, at + 1);
  const hosts = authority.slice(at + 1);
  const many = hosts.includes(",");
  const parsed = URL.parse(`${scheme.toLowerCase()}://${credentials}${hosts.split(",")[0]}${rest}`);
  if (parsed === null) {
    throw discoveryErrors.create("GANTRY_ERR_REGISTRY_URL", { url: redact(url), problem: "does not parse as a URL" });
  }
  if (many) parsed.searchParams.set("hosts", hosts);
  return parsed;
}

/** The hosts of a URL: `a:1,b:2` (kept by parseRegistryUrl) or its one host. */
export function urlHosts(url: URL): string[] {
  return (url.searchParams.get("hosts") ?? url.host)
    .split(",")
    .map((host) => host.trim())
    .filter((host) => host !== "");
}

/** A URL without its password, for logs and errors. */
export function redact(url: string): string {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/[^:/@]*):[^@]*@/i, "$1:***@").replace(/([?&]password=)[^&#]*/gi, "$1***");
}
