import { createSocket, type Socket } from "node:dgram";
import { setTimeout as sleep } from "node:timers/promises";
import { type ConfigSchema, createLogger, isGantryError, loadConfig } from "@gantry/core";
import type { DiscoveryHost, Registry, Resolver, ServiceInstance, WatchEvent } from "@gantry/core/registry";
import { until } from "@gantry/core/testing";
import { afterAll, afterEach, beforeAll, describe, expect, test } from "vitest";
import { discovery } from "../src/discovery.js";
import { openRegistry } from "../src/open.js";
import {
  type Dnsmasq,
  type DnsRecords,
  type RegistryHarness,
  registryConformanceCases,
  startDnsmasq,
} from "../src/testing/index.js";

const SERVICE = "hello.v1.HelloService";
/** Fast lookups against a server that is down: one 200 ms attempt. */
const FAST = "timeout=200ms&tries=1";

let dns: Dnsmasq;
/** The records each test serves, by zone; dnsmasq serves them all at once. */
const zones = new Map<string, DnsRecords>();
let counter = 0;
const opened: Registry[] = [];

beforeAll(async () => {
  dns = await startDnsmasq();
});

afterAll(async () => {
  await dns?.stop();
});

afterEach(async () => {
  await Promise.all(opened.splice(0).map((registry) => registry.close()));
});

/** A fresh zone name under the test domain: `shop-3.test`. */
function zone(prefix: string): string {
  counter += 1;
  return `${prefix}-${counter}.${dns.domain}`;
}

/** Serves `records` for `name`, next to every other zone's (an empty set removes them). */
async function serve(name: string, records: DnsRecords): Promise<void> {
  zones.set(name, records);
  const srv: Record<string, readonly string[]> = {};
  const hosts: Record<string, readonly string[]> = {};
  for (const records of zones.values()) {
    Object.assign(srv, records.srv);
    Object.assign(hosts, records.hosts);
  }
  await dns.update({ srv, hosts });
}

async function open(url: string, lines: string[] = []): Promise<Registry> {
  const log = createLogger("dns-test", { level: "info", destination: { write: (line: string) => lines.push(line) } });
  const registry = await openRegistry(url, { log });
  opened.push(registry);
  return registry;
}

function resolverOf(registry: Registry): Resolver {
  if (registry.resolver === undefined) throw new Error(`${registry.url} has no resolver`);
  return registry.resolver;
}

interface Recorder {
  readonly events: WatchEvent[];
  /** The first event from the cursor on that matches, waiting up to `timeoutMs` for it. */
  next(match: (event: WatchEvent) => boolean, timeoutMs?: number): Promise<WatchEvent>;
  close(): void;
}

function watch(registry: Registry, service: string | undefined = SERVICE): Recorder {
  const events: WatchEvent[] = [];
  let wake: () => void = () => undefined;
  const handle = resolverOf(registry).watch(service, (event) => {
    events.push(event);
    wake();
  });
  let cursor = 0;
  return {
    events,
    close: () => handle.close(),
    async next(match, timeoutMs = 5000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const index = events.findIndex((event, i) => i >= cursor && match(event));
        if (index !== -1) {
          cursor = index + 1;
          return events[index];
        }
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`no matching event in ${timeoutMs} ms; saw ${events.map((e) => e.type)}`);
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, Math.min(left, 100));
          wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
    },
  };
}

const snapshot = (e: WatchEvent) => e.type === "snapshot";
const added = (url: string) => (e: WatchEvent) => e.type === "add" && Object.values(e.instance.endpoints).includes(url);
/** After errors, recovery is a whole snapshot again, holding `url`. */
const resynced = (url: string) => (e: WatchEvent) =>
  e.type === "snapshot" && e.instances.some((i) => Object.values(i.endpoints).includes(url));
const removed = (url: string) => (e: WatchEvent) =>
  e.type === "remove" && Object.values(e.instance.endpoints).includes(url);

function endpointsOf(instances: readonly ServiceInstance[]): Record<string, string>[] {
  return instances.map((instance) => ({ ...instance.endpoints }));
}

async function rejection(promise: Promise<unknown>): Promise<Error & { code?: string }> {
  try {
    await promise;
  } catch (error) {
    return error as Error & { code?: string };
  }
  throw new Error("it resolved");
}

function append(lists: Record<string, string[]>, key: string, value: string): void {
  lists[key] = [...(lists[key] ?? []), value];
}

/** A shop whose pods have the named ports grpc and http, as a Kubernetes headless Service. */
function shop(name: string, pods: Readonly<Record<string, { grpc?: number; http?: number; addresses: string[] }>>) {
  const records = { srv: {} as Record<string, string[]>, hosts: {} as Record<string, string[]> };
  for (const [pod, { grpc, http, addresses }] of Object.entries(pods)) {
    const target = `${pod}.${name}`;
    if (grpc !== undefined) append(records.srv, `_grpc._tcp.${name}`, `${target}:${grpc}`);
    if (http !== undefined) append(records.srv, `_http._tcp.${name}`, `${target}:${http}`);
    if (addresses.length > 0) records.hosts[target] = addresses;
  }
  return records;
}

describe("dns:// registry conformance", () => {
  /**
   * Each seeded instance is one SRV target with an A (or AAAA) record of its endpoints' address, and
   * one SRV record per transport pointing at it; an endpoint set keeps its target name across
   * updates, so an unchanged instance keeps its id. The backend makes one instance per SRV target
   * and address, so instances on one address with different ports stay apart.
   */
  const harness: RegistryHarness = {
    name: "dns://",
    url: () => `dns://${dns.server}/${zone("empty")}:50051?interval=100ms&${FAST}`,
    async seed(service, endpoints) {
      const name = zone(service.toLowerCase().replace(/[^a-z0-9-]/g, "-"));
      const targets = new Map<string, string>();
      const records = (sets: readonly Readonly<Record<string, string>>[]): DnsRecords => {
        const srv: Record<string, string[]> = {};
        const hosts: Record<string, string[]> = {};
        for (const set of sets) {
          const key = JSON.stringify(Object.entries(set).sort());
          const target = targets.get(key) ?? `i${targets.size + 1}.${name}`;
          targets.set(key, target);
          const urls = Object.entries(set).map(([transport, url]) => [transport, new URL(url)] as const);
          const addresses = new Set(urls.map(([, url]) => url.hostname.replace(/^\[|\]$/g, "")));
          if (addresses.size !== 1) throw new Error(`the endpoints of one instance must share an address: ${key}`);
          hosts[target] = [...addresses];
          for (const [transport, url] of urls) append(srv, `_${transport}._tcp.${name}`, `${target}:${url.port}`);
        }
        return { srv, hosts };
      };
      await serve(name, records(endpoints));
      return {
        url: `dns://${dns.server}/${name}?interval=100ms&${FAST}`,
        update: (next) => serve(name, records(next)),
      };
    },
  };
  for (const c of registryConformanceCases(harness)) {
    if (c.skip !== undefined) test.skip(`${c.name} (skipped: ${c.skip})`, () => {});
    else test(c.name, c.run, 15_000);
  }
});

describe("dns:// records", () => {
  test("SRV records of the named ports grpc and http make one instance per pod, with both endpoints", async () => {
    const name = zone("shop");
    await serve(
      name,
      shop(name, {
        "pod-1": { grpc: 50051, http: 8080, addresses: ["127.0.0.1"] },
        // Dual-stack: the IPv4 address only, so the pod is one instance.
        "pod-2": { grpc: 50051, http: 8080, addresses: ["127.0.0.2", "::1"] },
        "pod-3": { grpc: 50052, addresses: ["::1"] },
        // A target without addresses gives no instance.
        "pod-4": { grpc: 50051, addresses: [] },
      }),
    );
    const registry = await open(`dns://${dns.server}/${name}`);
    expect(registry.registrar).toBeUndefined();
    const listed = await resolverOf(registry).list(SERVICE);
    expect(listed).toEqual([
      {
        id: `${SERVICE}@pod-1.${name}/127.0.0.1`,
        service: SERVICE,
        apiVersion: undefined,
        version: "",
        endpoints: { grpc: "grpc://127.0.0.1:50051", http: "http://127.0.0.1:8080" },
        metadata: {},
      },
      {
        id: `${SERVICE}@pod-2.${name}/127.0.0.2`,
        service: SERVICE,
        apiVersion: undefined,
        version: "",
        endpoints: { grpc: "grpc://127.0.0.2:50051", http: "http://127.0.0.2:8080" },
        metadata: {},
      },
      {
        id: `${SERVICE}@pod-3.${name}/::1`,
        service: SERVICE,
        apiVersion: undefined,
        version: "",
        endpoints: { grpc: "grpc://[::1]:50052" },
        metadata: {},
      },
    ]);
    const events = watch(registry);
    const first = await events.next(snapshot);
    expect(first.type === "snapshot" && first.instances).toEqual(listed);
    // transport= picks the named ports read.
    const grpcOnly = await open(`dns://${dns.server}/${name}?transport=grpc`);
    expect(endpointsOf(await resolverOf(grpcOnly).list(SERVICE))).toEqual([
      { grpc: "grpc://127.0.0.1:50051" },
      { grpc: "grpc://127.0.0.2:50051" },
      { grpc: "grpc://[::1]:50052" },
    ]);
    // One lookup for the list and one for the watch; the grpc-only registry asks for no http records.
    await until(() => dns.queries(`_http._tcp.${name}`).length >= 2, 5000);
    expect(dns.queries(`_http._tcp.${name}`)).toHaveLength(2);
  });

  test("A records with a port: each address is an instance on that port", async () => {
    const web = zone("web");
    const six = zone("six");
    await serve(web, { hosts: { [web]: ["127.0.0.2", "127.0.0.1"], [six]: ["::1"] } });
    const registry = await open(`dns://${dns.server}/${web}:8080?transport=http`);
    expect(await resolverOf(registry).list(SERVICE)).toEqual([
      {
        id: `${SERVICE}@127.0.0.1:8080`,
        service: SERVICE,
        apiVersion: undefined,
        version: "",
        endpoints: { http: "http://127.0.0.1:8080" },
        metadata: {},
      },
      {
        id: `${SERVICE}@127.0.0.2:8080`,
        service: SERVICE,
        apiVersion: undefined,
        version: "",
        endpoints: { http: "http://127.0.0.2:8080" },
        metadata: {},
      },
    ]);
    // AAAA when the name has no A records; grpc is the default transport.
    const v6 = await open(`dns://${dns.server}/${six}.:50051`);
    expect(endpointsOf(await resolverOf(v6).list(SERVICE))).toEqual([{ grpc: "grpc://[::1]:50051" }]);
    // An address needs no lookup.
    const literal = await open(`dns://${dns.server}/127.0.0.9:50051`);
    expect(endpointsOf(await resolverOf(literal).list(SERVICE))).toEqual([{ grpc: "grpc://127.0.0.9:50051" }]);
    expect(dns.queries("127.0.0.9")).toEqual([]);
    // service= says which service the name is; without it, the name serves what is asked for.
    const only = await open(`dns://${dns.server}/${web}:8080?service=web.v1.Web`);
    expect(await resolverOf(only).list("other.v1.Other")).toEqual([]);
    expect((await resolverOf(only).list()).map((i) => i.id)).toEqual([
      "web.v1.Web@127.0.0.1:8080",
      "web.v1.Web@127.0.0.2:8080",
    ]);
  });

  test("watchers see records added and removed within the interval", async () => {
    const name = zone("shop");
    await serve(name, shop(name, { "pod-1": { grpc: 50051, addresses: ["127.0.0.1"] } }));
    const registry = await open(`dns://${dns.server}/${name}?interval=200ms&${FAST}`);
    const events = watch(registry);
    const first = await events.next(snapshot);
    expect(first.type === "snapshot" && endpointsOf(first.instances)).toEqual([{ grpc: "grpc://127.0.0.1:50051" }]);

    let since = performance.now();
    await serve(
      name,
      shop(name, {
        "pod-1": { grpc: 50051, addresses: ["127.0.0.1"] },
        "pod-2": { grpc: 50051, addresses: ["127.0.0.2"] },
      }),
    );
    await events.next(added("grpc://127.0.0.2:50051"));
    expect(performance.now() - since).toBeLessThan(2000);

    since = performance.now();
    const mark = events.events.length;
    await serve(name, shop(name, { "pod-2": { grpc: 50051, http: 8080, addresses: ["127.0.0.2"] } }));
    const later = () => events.events.slice(mark);
    await until(
      () => later().some(removed("grpc://127.0.0.1:50051")) && later().some(added("http://127.0.0.2:8080")),
      5000,
    );
    expect(performance.now() - since).toBeLessThan(2000);
    // A changed instance (a port added) is an add with the same id.
    const changed = later().find(added("http://127.0.0.2:8080"));
    expect(changed?.type === "add" && changed.instance.id).toBe(`${SERVICE}@pod-2.${name}/127.0.0.2`);
  });

  test("refresh() resolves again at once, without waiting for the interval", async () => {
    const name = zone("web");
    await serve(name, { hosts: { [name]: ["127.0.0.1"] } });
    const registry = await open(`dns://${dns.server}/${name}:50051?interval=1h`);
    const events = watch(registry);
    await events.next(snapshot);
    await serve(name, { hosts: { [name]: ["127.0.0.1", "127.0.0.2"] } });
    resolverOf(registry).refresh?.();
    await events.next(added("grpc://127.0.0.2:50051"), 3000);
  });

  test("a storm of refresh() calls is at most one lookup a second", async () => {
    const name = zone("web");
    await serve(name, { hosts: { [name]: ["127.0.0.1"] } });
    const registry = await open(`dns://${dns.server}/${name}:50051?interval=1h`);
    const events = watch(registry);
    await events.next(snapshot);
    await sleep(50); // dnsmasq's log of the snapshot's query may still be on its way
    const before = dns.queries(name).length;
    const started = performance.now();
    while (performance.now() - started < 1500) {
      resolverOf(registry).refresh?.();
      await sleep(5);
    }
    await until(() => dns.queries(name).length > before, 5000);
    expect(dns.queries(name).length - before).toBeLessThanOrEqual(2);
  });

  test("one lookup serves every watcher of a name, and stops with the last one", async () => {
    const name = zone("web");
    await serve(name, { hosts: { [name]: ["127.0.0.1"] } });
    const registry = await open(`dns://${dns.server}/${name}:50051?interval=200ms`);
    const watchers = [watch(registry, "a.v1.A"), watch(registry, "a.v1.A"), watch(registry, "b.v1.B")];
    const snapshots = await Promise.all(watchers.map((w) => w.next(snapshot)));
    expect(snapshots.map((s) => s.type === "snapshot" && s.instances.map((i) => i.id))).toEqual([
      ["a.v1.A@127.0.0.1:50051"],
      ["a.v1.A@127.0.0.1:50051"],
      ["b.v1.B@127.0.0.1:50051"],
    ]);
    const before = dns.queries(name).length;
    await sleep(1000);
    // About five lookups in a second at 200 ms; three timers would make fifteen.
    expect(dns.queries(name).length - before).toBeLessThanOrEqual(8);
    for (const w of watchers) w.close();
    await sleep(250); // a lookup already on its way may still land
    const after = dns.queries(name).length;
    await sleep(600);
    expect(dns.queries(name).length).toBe(after);
  });
});

describe("dns:// failures", () => {
  test("NXDOMAIN: the name has no instances, and the set becomes empty", async () => {
    const name = zone("shop");
    await serve(name, shop(name, { "pod-1": { grpc: 50051, addresses: ["127.0.0.1"] } }));
    const registry = await open(`dns://${dns.server}/${name}?interval=200ms&${FAST}`);
    const events = watch(registry);
    await events.next(snapshot);
    await serve(name, {});
    await events.next(removed("grpc://127.0.0.1:50051"));
    expect(await resolverOf(registry).list(SERVICE)).toEqual([]);
    expect(events.events.filter((e) => e.type === "error")).toEqual([]);

    const lines: string[] = [];
    const never = await open(`dns://${dns.server}/${zone("never")}:50051`, lines);
    expect(await resolverOf(never).list(SERVICE)).toEqual([]);
    const empty = await watch(never).next(snapshot);
    expect(empty.type === "snapshot" && empty.instances).toEqual([]);
    expect(lines.some((line) => line.includes("without resolv.conf search domains"))).toBe(true);
  });

  test("SERVFAIL: an error event, the last known instances stay, list rejects with GANTRY_ERR_DNS_LOOKUP", async () => {
    const name = zone("shop");
    const good = shop(name, { "pod-1": { grpc: 50051, addresses: ["127.0.0.1"] } });
    await serve(name, good);
    const registry = await open(`dns://${dns.server}/${name}?interval=200ms&${FAST}`);
    const events = watch(registry);
    await events.next(snapshot);

    // A new target whose lookup fails: the whole answer is unknown, not just that pod.
    await serve(name, {
      srv: { [`_grpc._tcp.${name}`]: [`pod-1.${name}:50051`, `pod-2.${dns.servfail}:50051`] },
      hosts: good.hosts,
    });
    const failed = await events.next((e) => e.type === "error");
    const error = failed.type === "error" ? (failed.error as Error & { code?: string }) : undefined;
    expect(error?.code).toBe("GANTRY_ERR_DNS_LOOKUP");
    expect(error?.message).toContain(`pod-2.${dns.servfail}`);
    expect(error?.message).toContain("ESERVFAIL");
    const listed = await rejection(resolverOf(registry).list(SERVICE));
    expect(listed.code).toBe("GANTRY_ERR_DNS_LOOKUP");
    expect(listed.message).toContain("ESERVFAIL");
    expect(isGantryError(listed) && listed.retryable).toBe(true);
    // A watcher that comes now gets the last known instances, then hears of the failure.
    const late = watch(registry);
    const kept = await late.next(snapshot);
    expect(kept.type === "snapshot" && endpointsOf(kept.instances)).toEqual([{ grpc: "grpc://127.0.0.1:50051" }]);
    await late.next((e) => e.type === "error");
    expect(events.events.some((e) => e.type === "remove")).toBe(false);

    // Fixed: it recovers on its own.
    await serve(
      name,
      shop(name, {
        "pod-1": { grpc: 50051, addresses: ["127.0.0.1"] },
        "pod-3": { grpc: 50051, addresses: ["127.0.0.3"] },
      }),
    );
    await events.next(resynced("grpc://127.0.0.3:50051"));
    expect(events.events.some((e) => e.type === "remove")).toBe(false);

    for (const url of [`dns://${dns.server}/${dns.servfail}:50051`, `dns://${dns.server}/${dns.servfail}`]) {
      const direct = await rejection(resolverOf(await open(url)).list(SERVICE));
      expect(direct.code).toBe("GANTRY_ERR_DNS_LOOKUP");
      expect(direct.message).toMatch(/servfail\.test failed: ESERVFAIL from 127\.0\.0\.1:\d+/);
    }
  });

  test("the DNS server down: errors while the last known instances stay, then it recovers by itself", async () => {
    const name = zone("web");
    await serve(name, { hosts: { [name]: ["127.0.0.1"] } });
    const registry = await open(`dns://${dns.server}/${name}:50051?interval=200ms&${FAST}`);
    const events = watch(registry);
    await events.next(snapshot);
    await dns.stop();
    try {
      const failed = await events.next((e) => e.type === "error");
      const error = failed.type === "error" ? (failed.error as Error & { code?: string }) : undefined;
      expect(error?.code).toBe("GANTRY_ERR_DNS_LOOKUP");
      // On loopback a stopped server refuses at once (ICMP port unreachable); elsewhere it times out.
      expect(error?.message).toMatch(/ECONNREFUSED|ETIMEOUT/);
      const listed = await rejection(resolverOf(registry).list(SERVICE));
      expect(listed.code).toBe("GANTRY_ERR_DNS_LOOKUP");
      await serve(name, { hosts: { [name]: ["127.0.0.1", "127.0.0.2"] } });
    } finally {
      await dns.start();
    }
    await events.next(resynced("grpc://127.0.0.2:50051"));
    expect(events.events.some((e) => e.type === "remove")).toBe(false);
    expect(endpointsOf(await resolverOf(registry).list(SERVICE))).toHaveLength(2);
  });

  test("a DNS server that never answers: the lookup times out with GANTRY_ERR_DNS_LOOKUP", async () => {
    const hole: Socket = createSocket("udp4");
    await new Promise<void>((resolve) => hole.bind(0, "127.0.0.1", resolve));
    try {
      const server = `127.0.0.1:${hole.address().port}`;
      const registry = await open(`dns://${server}/hole.test:50051?timeout=100ms&tries=1`);
      const error = await rejection(resolverOf(registry).list(SERVICE));
      expect(error.code).toBe("GANTRY_ERR_DNS_LOOKUP");
      expect(error.message).toBe(`dns: looking up hole.test failed: ETIMEOUT from ${server}`);

      // Closing while a lookup waits ends it at once.
      const slow = await open(`dns://${server}/hole.test:50051?timeout=10s&tries=1`);
      const pending = rejection(resolverOf(slow).list(SERVICE));
      await sleep(50);
      const closedAt = performance.now();
      await slow.close();
      expect((await pending).code).toBe("GANTRY_ERR_REGISTRY_CLOSED");
      expect(performance.now() - closedAt).toBeLessThan(1000);
    } finally {
      hole.close();
    }
  });
});

describe("dns:// URLs and lifecycle", () => {
  test.each([
    ["dns:///hello.test:0", "port"],
    ["dns:///hello.test:65536", "port"],
    ["dns:///hello.test:http", "port"],
    ["dns:///hello.test:", "port"],
    ["dns:///hello..test:50051", "DNS name"],
    ["dns:///hello test:50051", "DNS name"],
    ["dns:///a/b:50051", "DNS name"],
    ["dns:///::1:50051", "brackets"],
    ["dns:///[hello]:50051", "IPv6"],
    ["dns:///127.0.0.1", "give its port"],
    ["dns:///hello.test?interval=fast", "interval"],
    ["dns:///hello.test?interval=1ms", "interval"],
    ["dns:///hello.test?timeout=0s", "timeout"],
    ["dns:///hello.test?tries=0", "tries"],
    ["dns:///hello.test?tries=1.5", "tries"],
    ["dns:///hello.test?intervl=5s", "unknown option intervl"],
    ["dns:///hello.test:50051?transport=grpc,http", "one transport"],
    ["dns:///hello.test?transport=GRPC", "transport"],
    ["dns:///hello.test?service=", "service"],
    ["dns://localhost:53/hello.test:50051", "IP address"],
    ["dns://user:secret@127.0.0.1/hello.test:50051", "user or password"],
  ])("%s is GANTRY_ERR_REGISTRY_URL (%s)", async (url, words) => {
    const error = await rejection(open(url));
    expect(error.code).toBe("GANTRY_ERR_REGISTRY_URL");
    expect(error.message).toContain(words);
    expect(error.message).not.toContain("secret");
  });

  test("a URL without a name opens, but has no target for any service", async () => {
    for (const url of ["dns://", "dns:///", `dns://${dns.server}/`, `dns://${dns.server}`]) {
      const registry = await open(url);
      expect(registry.registrar).toBeUndefined();
      expect((await rejection(resolverOf(registry).list(SERVICE))).code).toBe("GANTRY_ERR_REGISTRY_NO_TARGET");
      const failed = await watch(registry).next((e) => e.type === "error");
      expect(failed.type === "error" && (failed.error as Error & { code?: string }).code).toBe(
        "GANTRY_ERR_REGISTRY_NO_TARGET",
      );
    }
  });

  test("close() stops the watches; afterwards list rejects with GANTRY_ERR_REGISTRY_CLOSED", async () => {
    const name = zone("web");
    await serve(name, { hosts: { [name]: ["127.0.0.1"] } });
    const url = `dns://${dns.server}/${name}:50051?interval=100ms`;
    const registry = await open(url);
    const events = watch(registry);
    await events.next(snapshot);
    await registry.close();
    await registry.close();
    expect((await rejection(resolverOf(registry).list(SERVICE))).code).toBe("GANTRY_ERR_REGISTRY_CLOSED");
    expect(() => resolverOf(registry).watch(SERVICE, () => undefined)).toThrow(/closed/);
    resolverOf(registry).refresh?.();
    const seen = events.events.length;
    await sleep(50); // dnsmasq's log of a query sent before close() may still be on its way
    const before = dns.queries(name).length;
    await sleep(300);
    expect(dns.queries(name).length, "a closed registry kept looking up").toBe(before);
    // Another registry sees a change that the closed one does not.
    await serve(name, { hosts: { [name]: ["127.0.0.1", "127.0.0.2"] } });
    const other = watch(await open(url));
    await other.next((e) => e.type === "snapshot" && e.instances.length === 2);
    expect(events.events.length).toBe(seen);
  });

  test("discovery() routes a service's target to dns://", async () => {
    const name = zone("hello");
    await serve(name, { hosts: { [name]: ["127.0.0.1", "127.0.0.2"] } });
    const chosen = discovery({
      url: "static://127.0.0.1:50099",
      targets: { [SERVICE]: `dns://${dns.server}/${name}:50051` },
    });
    const loaded = loadConfig(chosen.config === undefined ? [] : [chosen.config], { env: {} });
    const host: DiscoveryHost = {
      app: { name: "caller", version: "1.0.0" },
      log: createLogger("caller", { level: "silent" }),
      config: <T>(schema: ConfigSchema<T>) => loaded.values.get(schema as ConfigSchema<unknown>) as T,
    };
    const registry = await chosen.open(host);
    opened.push(registry);
    expect(endpointsOf(await resolverOf(registry).list(SERVICE))).toEqual([
      { grpc: "grpc://127.0.0.1:50051" },
      { grpc: "grpc://127.0.0.2:50051" },
    ]);
    expect(endpointsOf(await resolverOf(registry).list("other.v1.Other"))).toEqual([
      { grpc: "grpc://127.0.0.1:50099" },
    ]);
    await until(() => dns.queries(name).length > 0, 5000);
    expect(dns.queries(name)).toEqual([`A ${name}`]);
  });
});
