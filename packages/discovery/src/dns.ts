import { Resolver as DnsClient } from "node:dns/promises";
import { isIP } from "node:net";
import type { Logger } from "@gantry/core";
import type { Registry, Resolver, ServiceInstance, Watch, WatchEvent } from "@gantry/core/registry";
import { discoveryErrors } from "./errors.js";
import { WatchHub } from "./hub.js";
import type { OpenOptions } from "./open.js";
import { redact, urlHosts } from "./open.js";
import { backoff, reason } from "./retry.js";

/**
 * How often a watched name is resolved again. New pods must show up soon: clients that only
 * re-resolve when a connection breaks (grpc-js) never learn of pods added by a scale-up while the old
 * ones stay healthy. CoreDNS gives cluster records a 5 s TTL, so a new pod is in DNS within about 5 s
 * and in every client within 15 s at this interval; asking more often mostly gets cached answers back.
 * The cost is one query per watched name and client every 10 s (A/AAAA), or two plus one per pod
 * (SRV): light for CoreDNS even with thousands of client processes. Failing instances need no timer:
 * `refresh()` re-resolves at once.
 */
const DEFAULT_INTERVAL_MS = 10_000;
/** `refresh()` re-resolves a name at most this often, so a storm of failing calls is one query a second. */
const REFRESH_GAP_MS = 1000;
/** Per query attempt; a lookup gives up after `tries` attempts. */
const DEFAULT_TIMEOUT_MS = 2000;
const DEFAULT_TRIES = 2;
/** The Kubernetes named ports read when the URL gives no port: `_grpc._tcp.<name>`, `_http._tcp.<name>`. */
const SRV_TRANSPORTS: readonly string[] = ["grpc", "http"];
/** `hosts` is where parseRegistryUrl keeps an authority of several servers. */
const OPTIONS = ["transport", "interval", "timeout", "tries", "service", "hosts"];
const DNS_NAME = /^(?=.{1,253}$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62})(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62}))*$/;
const TRANSPORT = /^[a-z][a-z0-9-]{0,62}$/;

/**
 * `dns:[//server/]name[:port][?transport=grpc&interval=10s&timeout=2s&tries=2&service=...]`, gRPC's
 * naming: the instances behind a DNS name, such as a Kubernetes headless Service. A resolver only.
 *
 * - With a port, `dns:///hello.default.svc.cluster.local:50051`: every address of the name (A, or
 *   AAAA when it has no A records) is one instance on that port, for `transport` (grpc by default).
 * - Without, `dns:///hello.default.svc.cluster.local`: the SRV records of the named ports
 *   `_grpc._tcp.<name>` and `_http._tcp.<name>` (`transport=grpc,http` by default), each target
 *   resolved to its addresses. The records of one target and address make one instance, so a pod
 *   with ports `grpc` and `http` is one instance with both endpoints.
 * - The authority names the DNS server(s) to ask (`dns://10.96.0.10:53/...`); without one, the
 *   system's. Names are asked as written: resolv.conf search domains do not apply.
 *
 * Without `service`, the name serves whichever service is asked for; a URL without a name opens but
 * resolves nothing (GANTRY_ERR_REGISTRY_NO_TARGET): give each service its own in `registry.targets`.
 *
 * @example
 * discovery({ targets: { "hello.v1.HelloService": "dns:///hello.default.svc.cluster.local:50051" } });
 */
export async function openDns(url: URL, options: OpenOptions): Promise<Registry> {
  const text = redact(url.href);
  const problem = (what: string) => discoveryErrors.create("GANTRY_ERR_REGISTRY_URL", { url: text, problem: what });
  for (const key of url.searchParams.keys()) {
    if (!OPTIONS.includes(key)) {
      throw problem(`unknown option ${key}; dns:// takes ${OPTIONS.filter((o) => o !== "hosts").join(", ")}`);
    }
  }
  if (url.username !== "" || url.password !== "") throw problem("takes no user or password");
  const target = parseTarget(url, problem);
  const settings: Settings = {
    interval: parseDuration(url.searchParams.get("interval"), "interval", DEFAULT_INTERVAL_MS, 100, 3_600_000, problem),
    only: url.searchParams.get("service") ?? undefined,
    log: options.log,
  };
  const timeout = parseDuration(url.searchParams.get("timeout"), "timeout", DEFAULT_TIMEOUT_MS, 10, 60_000, problem);
  const tries = Number(url.searchParams.get("tries") ?? DEFAULT_TRIES);
  if (!Number.isInteger(tries) || tries < 1 || tries > 10) throw problem("tries must be a whole number from 1 to 10");
  if (settings.only === "") throw problem("service must name a service, such as hello.v1.HelloService");
  const client = new DnsClient({ timeout, tries });
  const servers = urlHosts(url);
  if (servers.length > 0) {
    try {
      client.setServers(servers);
    } catch {
      throw problem(`the DNS server ${servers.join(",")} must be an IP address with an optional port`);
    }
  }
  return new DnsRegistry(text, target, client, settings);
}

/** The name a URL asks for. */
interface Target {
  /** `hello.default.svc.cluster.local`, without a final dot; or an IP address. */
  readonly name: string;
  /** Given: the addresses of the name, on this port. Not given: the SRV records of `transports`. */
  readonly port: number | undefined;
  readonly transports: readonly string[];
}

interface Settings {
  readonly interval: number;
  /** The one service these instances are, if the URL says. */
  readonly only: string | undefined;
  readonly log: Logger;
}

/** One instance found in DNS, before it is named for a service. */
interface Found {
  /** Stable across lookups: `10.1.2.3:50051`, or `<srv target>/<address>`. */
  readonly key: string;
  readonly endpoints: Readonly<Record<string, string>>;
}

interface SrvRecord {
  readonly name: string;
  readonly port: number;
  readonly priority: number;
  readonly weight: number;
}

/**
 * Failure semantics. NXDOMAIN and NODATA are answers: the name has no instances (a headless Service
 * without ready pods is NXDOMAIN), so the set becomes empty. Anything else (SERVFAIL, REFUSED, a
 * timeout, a refused or unreachable server) says nothing about the instances: watchers get an error
 * event and keep the last known set, the name is tried again with backoff, and list() rejects with
 * GANTRY_ERR_DNS_LOOKUP. Emptying the set on a DNS outage would turn it into an outage of every
 * service resolved through it.
 */
class DnsRegistry implements Registry {
  readonly url: string;
  readonly registrar = undefined;
  readonly resolver: Resolver;
  readonly #target: Target | undefined;
  readonly #client: DnsClient;
  readonly #settings: Settings;
  /** The watchers of each service, fed by one shared lookup of the name. */
  readonly #hubs = new Map<string, WatchHub>();
  /** What the last lookup found, while someone watches. */
  #found: readonly Found[] | undefined;
  /** Why the last lookup failed, until one succeeds. */
  #failure: Error | undefined;
  #failures = 0;
  #running: Promise<readonly Found[]> | undefined;
  #startedAt = Number.NEGATIVE_INFINITY;
  #timer: NodeJS.Timeout | undefined;
  #dueAt = Number.POSITIVE_INFINITY;
  #refreshWanted = false;
  #hinted = false;
  #closed = false;

  constructor(url: string, target: Target | undefined, client: DnsClient, settings: Settings) {
    this.url = url;
    this.#target = target;
    this.#client = client;
    this.#settings = settings;
    this.resolver = {
      list: (service) => this.#list(service),
      watch: (service, listener) => this.#watch(service, listener),
      refresh: () => this.#refresh(),
    };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#stopPolling();
    for (const hub of this.#hubs.values()) hub.close();
    this.#hubs.clear();
    const running = this.#running;
    this.#client.cancel();
    await running?.catch(() => undefined);
  }

  async #list(service: string | undefined): Promise<ServiceInstance[]> {
    this.#checkOpen();
    const label = this.#label(service);
    if (this.#target === undefined) throw this.#noTarget(label);
    if (!this.#serves(label)) return [];
    return this.#instances(label, await this.#resolve());
  }

  #watch(service: string | undefined, listener: (event: WatchEvent) => void): Watch {
    this.#checkOpen();
    const label = this.#label(service);
    if (this.#target === undefined) return once(listener, { type: "error", error: this.#noTarget(label) });
    if (!this.#serves(label)) return once(listener, { type: "snapshot", instances: [] });
    const existing = this.#hubs.get(label);
    const hub = existing ?? new WatchHub(this.url);
    if (existing === undefined) this.#hubs.set(label, hub);
    const watch = hub.watch(label, listener, () => this.#unwatched(label, hub));
    if (existing === undefined) this.#catchUp(label, hub);
    return watch;
  }

  /** A caller saw an instance fail: look again now, or as soon as the rate limit allows. */
  #refresh(): void {
    if (this.#closed || this.#hubs.size === 0) return;
    if (this.#running !== undefined) {
      this.#refreshWanted = true;
      return;
    }
    const delay = this.#refreshDelay();
    if (performance.now() + delay < this.#dueAt) this.#schedule(delay);
  }

  /** A new service's watchers: what is known now, else the first lookup's answer. */
  #catchUp(label: string, hub: WatchHub): void {
    const polling = this.#timer !== undefined || this.#running !== undefined;
    if (!polling) {
      void this.#resolve().catch(() => undefined);
      return;
    }
    const found = this.#found;
    const failure = this.#failure;
    queueMicrotask(() => {
      if (this.#hubs.get(label) !== hub) return;
      if (found !== undefined) hub.reconcile(this.#instances(label, found));
      if (failure !== undefined) hub.error(failure);
    });
  }

  #unwatched(label: string, hub: WatchHub): void {
    if (hub.size > 0 || this.#hubs.get(label) !== hub) return;
    this.#hubs.delete(label);
    if (this.#hubs.size === 0) this.#stopPolling();
  }

  /** The lookup in flight, or a new one; watchers hear of its outcome. */
  #resolve(): Promise<readonly Found[]> {
    if (this.#running !== undefined) return this.#running;
    this.#startedAt = performance.now();
    const running = this.#lookup(this.#target as Target).then(
      (found) => {
        this.#running = undefined;
        this.#succeeded(found);
        return found;
      },
      (error: unknown) => {
        this.#running = undefined;
        throw this.#failed(error);
      },
    );
    this.#running = running;
    return running;
  }

  #succeeded(found: readonly Found[]): void {
    if (this.#closed) return;
    const log = this.#settings.log;
    const name = (this.#target as Target).name;
    if (found.length === 0 && !this.#hinted) {
      this.#hinted = true;
      log.warn(
        { registry: this.url, name },
        "dns registry: the name has no records (yet); it is looked up as written, without resolv.conf search domains, so on Kubernetes give the full name, such as hello.default.svc.cluster.local",
      );
    }
    if (this.#hubs.size === 0) return;
    const recovered = this.#failure !== undefined;
    if (recovered) log.info({ registry: this.url, name }, "dns registry: lookups work again");
    this.#found = found;
    this.#failure = undefined;
    this.#failures = 0;
    // After errors, watchers get a whole snapshot again (as after any reconnect), not just changes.
    for (const [label, hub] of this.#hubs) {
      if (recovered) hub.resync(this.#instances(label, found));
      else hub.reconcile(this.#instances(label, found));
    }
    this.#schedule(this.#refreshWanted ? this.#refreshDelay() : this.#settings.interval);
  }

  #failed(error: unknown): Error {
    if (this.#closed) return discoveryErrors.create("GANTRY_ERR_REGISTRY_CLOSED", { url: this.url });
    const failure = error instanceof Error ? error : new Error(reason(error));
    if (this.#hubs.size === 0) return failure;
    if (this.#failure === undefined) {
      this.#settings.log.warn(
        { registry: this.url, reason: failure.message },
        "dns registry: lookup failed; watchers keep the last known instances while it is retried",
      );
    }
    this.#failure = failure;
    this.#failures += 1;
    for (const hub of this.#hubs.values()) hub.error(failure);
    const interval = this.#settings.interval;
    const retry = backoff(this.#failures - 1, Math.min(250, interval), Math.min(5000, interval));
    this.#schedule(this.#refreshWanted ? Math.min(retry, this.#refreshDelay()) : retry);
    return failure;
  }

  #schedule(ms: number): void {
    this.#refreshWanted = false;
    clearTimeout(this.#timer);
    this.#dueAt = performance.now() + ms;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#dueAt = Number.POSITIVE_INFINITY;
      if (!this.#closed && this.#hubs.size > 0) void this.#resolve().catch(() => undefined);
    }, ms);
    this.#timer.unref();
  }

  #stopPolling(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#dueAt = Number.POSITIVE_INFINITY;
    this.#refreshWanted = false;
    this.#found = undefined;
    this.#failure = undefined;
    this.#failures = 0;
  }

  #refreshDelay(): number {
    return Math.max(0, this.#startedAt + Math.min(REFRESH_GAP_MS, this.#settings.interval) - performance.now());
  }

  async #lookup({ name, port, transports }: Target): Promise<Found[]> {
    if (port !== undefined) {
      const transport = transports[0];
      const addresses = isIP(name) === 0 ? await this.#addresses(name) : [name];
      return [...new Set(addresses)].sort().map((address) => {
        const at = hostPort(address, port);
        return { key: at, endpoints: { [transport]: `${transport}://${at}` } };
      });
    }
    const answers = await Promise.all(
      transports.map(async (transport) => ({ transport, records: await this.#srv(`_${transport}._tcp.${name}`) })),
    );
    const targets = [...new Set(answers.flatMap(({ records }) => records.map((record) => record.name)))];
    const addressesOf = new Map(
      await Promise.all(
        targets.map(async (target) => [target, isIP(target) === 0 ? await this.#addresses(target) : [target]] as const),
      ),
    );
    // One instance per target and address: a pod's named ports share its target name.
    const groups = new Map<string, { address: string; records: Map<string, SrvRecord> }>();
    for (const { transport, records } of answers) {
      for (const record of records) {
        for (const address of addressesOf.get(record.name) ?? []) {
          const key = `${record.name}/${address}`;
          const group = groups.get(key) ?? { address, records: new Map<string, SrvRecord>() };
          groups.set(key, group);
          const held = group.records.get(transport);
          if (held === undefined || preferred(record, held)) group.records.set(transport, record);
        }
      }
    }
    return [...groups]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([key, { address, records }]) => ({
        key,
        endpoints: Object.fromEntries(
          transports
            .filter((transport) => records.has(transport))
            .map((transport) => {
              const record = records.get(transport) as SrvRecord;
              return [transport, `${transport}://${hostPort(address, record.port)}`];
            }),
        ),
      }));
  }

  /** The SRV records of a name; none if it does not exist. A target of "." means "no service here". */
  async #srv(name: string): Promise<SrvRecord[]> {
    const records = (await this.#query(name, () => this.#client.resolveSrv(name))) ?? [];
    return records
      .map((record) => ({ ...record, name: record.name.replace(/\.$/, "").toLowerCase() }))
      .filter((record) => record.name !== "" && record.port > 0);
  }

  /** The IPv4 addresses of a name, else its IPv6 ones (a dual-stack pod is one instance, not two). */
  async #addresses(name: string): Promise<string[]> {
    const v4 = await this.#query(name, () => this.#client.resolve4(name));
    if (v4 === undefined) return []; // NXDOMAIN: no AAAA records either.
    if (v4.length > 0) return v4;
    return (await this.#query(name, () => this.#client.resolve6(name))) ?? [];
  }

  /** One query: its records, none for NODATA, undefined for NXDOMAIN; a failure is GANTRY_ERR_DNS_LOOKUP. */
  async #query<T>(name: string, run: () => Promise<T[]>): Promise<T[] | undefined> {
    try {
      return await run();
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === "ENOTFOUND") return undefined;
      if (code === "ENODATA") return [];
      const servers = this.#client.getServers().join(",") || "the system's DNS servers";
      throw discoveryErrors.create(
        "GANTRY_ERR_DNS_LOOKUP",
        { name, reason: `${code ?? reason(error)} from ${servers}` },
        { cause: error, details: { name, code: code ?? "", servers } },
      );
    }
  }

  #instances(label: string, found: readonly Found[]): ServiceInstance[] {
    if (!this.#serves(label)) return [];
    return found.map(({ key, endpoints }) => ({
      id: `${label}@${key}`,
      service: label,
      apiVersion: undefined,
      version: "",
      endpoints,
      metadata: {},
    }));
  }

  #label(service: string | undefined): string {
    return service ?? this.#settings.only ?? "*";
  }

  #serves(label: string): boolean {
    return this.#settings.only === undefined || label === this.#settings.only;
  }

  #noTarget(label: string): Error {
    return discoveryErrors.create("GANTRY_ERR_REGISTRY_NO_TARGET", { url: this.url, service: label });
  }

  #checkOpen(): void {
    if (this.#closed) throw discoveryErrors.create("GANTRY_ERR_REGISTRY_CLOSED", { url: this.url });
  }
}

/** The name, port and transports of a URL; undefined when it names nothing (`dns://`, `dns:///`). */
function parseTarget(url: URL, problem: (what: string) => Error): Target | undefined {
  let path: string;
  try {
    path = decodeURIComponent(url.pathname).replace(/^\//, "");
  } catch {
    throw problem("the name is not valid percent-encoding");
  }
  const transport = url.searchParams.get("transport");
  const transports = transport === null ? undefined : transport.split(",").map((t) => t.trim());
  for (const t of transports ?? []) {
    if (!TRANSPORT.test(t))
      throw problem(`transport ${JSON.stringify(t)} is not a transport name such as grpc or http`);
  }
  if (path === "") return undefined;
  const bracketed = /^\[([^\]]*)\](?::(.*))?$/.exec(path);
  const colon = path.lastIndexOf(":");
  if (bracketed === null && colon !== path.indexOf(":")) {
    throw problem(`${path}: write an IPv6 address in brackets, such as [::1]:50051`);
  }
  const host = bracketed !== null ? bracketed[1] : colon === -1 ? path : path.slice(0, colon);
  const portText = bracketed !== null ? bracketed[2] : colon === -1 ? undefined : path.slice(colon + 1);
  if (bracketed !== null && isIP(host) !== 6) throw problem(`[${host}] is not an IPv6 address`);
  const name = host.replace(/\.$/, "");
  if (isIP(name) === 0 && !DNS_NAME.test(name)) {
    throw problem(`${JSON.stringify(host)} is not a DNS name such as hello.default.svc.cluster.local`);
  }
  if (portText === undefined) {
    if (isIP(name) !== 0) throw problem(`${host} is an address: give its port, such as ${path}:50051`);
    return { name, port: undefined, transports: transports ?? SRV_TRANSPORTS };
  }
  const port = /^\d{1,5}$/.test(portText) ? Number(portText) : Number.NaN;
  if (!(port >= 1 && port <= 65535)) throw problem(`port ${JSON.stringify(portText)} is not a port from 1 to 65535`);
  if (transports !== undefined && transports.length !== 1) {
    throw problem("with a port, transport names the one transport it serves, such as transport=http");
  }
  return { name, port, transports: transports ?? ["grpc"] };
}

/** `5s`, `500ms`, `2m`, or seconds; within [min, max] ms. */
function parseDuration(
  raw: string | null,
  option: string,
  fallback: number,
  min: number,
  max: number,
  problem: (what: string) => Error,
): number {
  if (raw === null) return fallback;
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(raw.trim());
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[match?.[2] ?? "s"] ?? Number.NaN;
  const ms = match === null ? Number.NaN : Number(match[1]) * unit;
  if (!(ms >= min && ms <= max)) {
    throw problem(
      `${option} must be a duration from ${min}ms to ${max / 1000}s, such as 10s; got ${JSON.stringify(raw)}`,
    );
  }
  return ms;
}

/** Which of two SRV records of one target and named port to use: RFC 2782 order, then the lower port. */
function preferred(a: SrvRecord, b: SrvRecord): boolean {
  if (a.priority !== b.priority) return a.priority < b.priority;
  if (a.weight !== b.weight) return a.weight > b.weight;
  return a.port < b.port;
}

function hostPort(address: string, port: number): string {
  return isIP(address) === 6 ? `[${address}]:${port}` : `${address}:${port}`;
}

/** A watch that hears one event, after watch() returned, and nothing more. */
function once(listener: (event: WatchEvent) => void, event: WatchEvent): Watch {
  let open = true;
  queueMicrotask(() => {
    if (!open) return;
    try {
      listener(event);
    } catch {
      // A listener's failure is its own.
    }
  });
  return {
    close: () => {
      open = false;
    },
  };
}
