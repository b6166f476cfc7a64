import { readFile } from "node:fs/promises";
import { discoveryErrors } from "../errors.js";
import { urlHosts } from "../open.js";

/**
 * The default lease TTL. A SIGKILLed process's records go when its lease expires: at most TTL after
 * its last keep-alive, and etcd reaps expired leases within half a second, so removal lands within
 * TTL + 1 s of the kill. Ten seconds keeps that bound short while clients route around a dead
 * instance at once anyway (connection refused ejects it). Keep-alive traffic is one small message on
 * one stream per process every TTL/3 (3.3 s), however many instances it holds. And a short blip does
 * not drop instances: an etcd restart keeps leases (etcd renews every lease when a leader takes
 * over), a leader election takes a few hundred milliseconds, and a client cut off from a running
 * etcd has at least 2/3 of the TTL (6.7 s) to get back before its records go. go-zero's etcd
 * registry uses the same default.
 */
export const DEFAULT_TTL_SECONDS = 10;
/**
 * The longest TTL: a day is far past any sensible one, and keeps the keep-alive timers (TTL/3, TTL)
 * well under the 2^31 - 1 ms beyond which Node fires a timer after 1 ms instead.
 */
const MAX_TTL_SECONDS = 24 * 60 * 60;
export const DEFAULT_PREFIX = "/gantry";
const DEFAULT_PORT = 2379;

/** Every option an `etcd://` URL takes (`hosts` carries the host list of `etcd://a:2379,b:2379`). */
const OPTIONS = ["ttl", "user", "password", "tls", "ca", "cert", "key"] as const;

/** What an `etcd://` URL says, checked, with its TLS files read. */
export interface EtcdSettings {
  /** The URL without its password, for logs, errors and `Registry.url`. */
  readonly url: string;
  /** `host:port` of every endpoint, in the URL's order. */
  readonly hosts: readonly string[];
  /** The key prefix, without a trailing slash: `/gantry`. */
  readonly prefix: string;
  readonly ttlSeconds: number;
  readonly auth: { readonly username: string; readonly password: string } | undefined;
  /** Set when the connection uses TLS; each file is read when given, else the system's CAs are used. */
  readonly tls: { readonly ca?: Buffer; readonly cert?: Buffer; readonly key?: Buffer } | undefined;
}

/**
 * Reads `etcd://[user:password@]host:2379[,host:2379...][/prefix][?ttl=10s&tls=true&ca=...]`; any
 * problem is GANTRY_ERR_REGISTRY_URL.
 */
export async function parseEtcdUrl(url: URL): Promise<EtcdSettings> {
  const shown = displayUrl(url);
  const fail = (problem: string) => discoveryErrors.create("GANTRY_ERR_REGISTRY_URL", { url: shown, problem });
  const params = url.searchParams;
  for (const name of new Set(params.keys())) {
    if (name === "hosts") continue;
    if (!(OPTIONS as readonly string[]).includes(name)) {
      throw fail(`unknown option ${name}; etcd:// takes ${OPTIONS.join(", ")}`);
    }
    if (params.getAll(name).length > 1) throw fail(`${name} is given more than once`);
  }
  const option = (name: (typeof OPTIONS)[number]) => params.get(name) ?? undefined;

  const hosts = urlHosts(url).map((host) => {
    const parsed = URL.parse(`etcd://${host}`);
    if (parsed === null || parsed.hostname === "" || parsed.pathname !== "" || parsed.username !== "") {
      throw fail(`${host} is not host:port`);
    }
    return `${parsed.hostname}:${parsed.port === "" ? DEFAULT_PORT : parsed.port}`;
  });
  if (hosts.length === 0) throw fail("names no etcd endpoint, as in etcd://127.0.0.1:2379");

  const path = decode(url.pathname, "prefix", fail).replace(/\/+$/, "");
  const prefix = path === "" ? DEFAULT_PREFIX : path;

  const ttlSeconds = parseTtl(option("ttl"), fail);

  const fromUrl = url.username !== "" || url.password !== "";
  const fromQuery = option("user") !== undefined || option("password") !== undefined;
  if (fromUrl && fromQuery)
    throw fail("give the credentials either as user:password@ or as user and password, not both");
  const username = fromUrl ? decode(url.username, "user", fail) : option("user");
  const password = fromUrl ? decode(url.password, "password", fail) : option("password");
  if ((username === undefined || username === "") !== (password === undefined || password === "")) {
    throw fail("a user needs a password, and a password a user");
  }
  const auth = username === undefined || username === "" ? undefined : { username, password: password as string };

  const secure = url.protocol === "etcds:";
  const tlsOption = option("tls");
  if (tlsOption !== undefined && tlsOption !== "true" && tlsOption !== "false") {
    throw fail(`tls must be true or false, got ${JSON.stringify(tlsOption)}`);
  }
  if (secure && tlsOption === "false") throw fail("etcds:// always uses TLS: drop tls=false or use etcd://");
  const useTls = secure || tlsOption === "true";
  const files = { ca: option("ca"), cert: option("cert"), key: option("key") };
  if (!useTls && Object.values(files).some((file) => file !== undefined)) {
    throw fail("ca, cert and key are for TLS: use etcds:// or add tls=true");
  }
  if ((files.cert === undefined) !== (files.key === undefined)) throw fail("cert and key go together: give both");
  const read = async (name: keyof typeof files): Promise<Buffer | undefined> => {
    const file = files[name];
    if (file === undefined) return undefined;
    if (file === "") throw fail(`${name} is empty: give the path of a PEM file`);
    try {
      return await readFile(file);
    } catch (error) {
      throw fail(`cannot read the ${name} file ${file}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`);
    }
  };
  const tls = useTls ? { ca: await read("ca"), cert: await read("cert"), key: await read("key") } : undefined;

  return { url: shown, hosts, prefix, ttlSeconds, auth, tls };
}

function decode(text: string, what: string, fail: (problem: string) => Error): string {
  try {
    return decodeURIComponent(text);
  } catch {
    throw fail(`the ${what} is not percent-encoded correctly`);
  }
}

/**
 * The longest wait between two tries to reach etcd again: at least three tries per TTL. etcd renews
 * every lease when it starts, so a registrar back within a TTL of etcd's return finds its lease
 * alive, and its records never went.
 */
export function retryCeiling(settings: EtcdSettings): number {
  return Math.min(5000, (settings.ttlSeconds * 1000) / 3);
}

/** `10s`, `1m`, `2500ms` (whole seconds only: etcd leases count seconds), from 1 s to 24 h. */
function parseTtl(raw: string | undefined, fail: (problem: string) => Error): number {
  if (raw === undefined) return DEFAULT_TTL_SECONDS;
  const match = /^(\d+)(ms|s|m|h)$/.exec(raw.trim());
  if (match === null) throw fail(`ttl must be a duration such as 10s or 1m, got ${JSON.stringify(raw)}`);
  const ms = Number(match[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[match[2] as "ms" | "s" | "m" | "h"];
  if (ms < 1000) throw fail(`ttl must be at least 1s, got ${raw}`);
  if (!(ms <= MAX_TTL_SECONDS * 1000)) throw fail(`ttl must be at most 24h, got ${raw}`);
  if (ms % 1000 !== 0) throw fail(`ttl must be whole seconds (etcd leases count seconds), got ${raw}`);
  return ms / 1000;
}

/** The URL as given, without its password (in the user info or in `password=`) or the kept host list. */
function displayUrl(url: URL): string {
  const user = url.username === "" ? "" : `${url.username}@`;
  const hosts = url.searchParams.get("hosts") ?? url.host;
  const query = new URLSearchParams(url.searchParams);
  query.delete("hosts");
  query.delete("password");
  const search = query.size === 0 ? "" : `?${decodeURIComponent(query.toString())}`;
  return `${url.protocol}//${user}${hosts}${url.pathname}${search}`;
}
