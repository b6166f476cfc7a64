import { execFileSync, spawn } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createLogger } from "@gantry/core";
import { type Registry, type RegistryEvent, registryChannel, type WatchEvent } from "@gantry/core/registry";
import {
  type EtcdServer,
  instance,
  type RegistryHarness,
  registryConformanceCases,
  startEtcd,
} from "@gantry/discovery/testing";
import { afterAll, afterEach, beforeAll, describe, expect, test } from "vitest";
import { openRegistry } from "../src/open.js";
import { startEchoApp } from "./fixtures/etcd-app.js";
import { startEtcdProxy } from "./fixtures/etcd-proxy.js";

let etcd: EtcdServer;
beforeAll(async () => {
  etcd = await startEtcd();
});
afterAll(async () => {
  await etcd?.close();
});

const opened: Registry[] = [];
afterEach(async () => {
  for (const registry of opened.splice(0).reverse()) await registry.close();
});

let prefixes = 0;
/** A URL of a fresh prefix in the shared etcd, with a short TTL. */
const fresh = (name: string, params: Record<string, string> = {}) =>
  etcd.url(`/${name}-${++prefixes}`, { ttl: "2s", ...params });

/** Opens a registry that is closed after the test; its warnings (and info lines) land in `lines`. */
async function open(url: string, lines: string[] = []): Promise<Registry> {
  const log = createLogger("etcd-test", { level: "info", destination: { write: (line: string) => lines.push(line) } });
  const registry = await openRegistry(url, { log });
  opened.push(registry);
  return registry;
}

/** Polls until `check` holds, for at most `timeoutMs`. */
async function until(
  check: () => boolean | Promise<boolean>,
  timeoutMs = 10_000,
  what: string | (() => string) = "the condition",
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) {
      throw new Error(`${typeof what === "string" ? what : what()} did not hold within ${timeoutMs} ms`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Records a watch's events; `next` waits for one that matches, after those already taken. */
function watching(registry: Registry, service?: string, onEvent: (event: WatchEvent) => void = () => undefined) {
  const seen: WatchEvent[] = [];
  const watch = registry.resolver?.watch(service, (event) => {
    seen.push(event);
    onEvent(event);
  });
  let cursor = 0;
  return {
    seen,
    close: () => watch?.close(),
    async next(match: (event: WatchEvent) => boolean, timeoutMs = 10_000): Promise<WatchEvent> {
      let found: WatchEvent | undefined;
      await until(
        () => {
          const index = seen.findIndex((event, i) => i >= cursor && match(event));
          if (index === -1) return false;
          cursor = index + 1;
          found = seen[index];
          return true;
        },
        timeoutMs,
        () => `a matching watch event (saw ${seen.map((e) => e.type).join(", ")})`,
      );
      return found as WatchEvent;
    },
  };
}

/** The registry events published while `fn` runs. */
async function recordingEvents<T>(fn: (events: RegistryEvent[]) => Promise<T>): Promise<T> {
  const events: RegistryEvent[] = [];
  const listener = (message: unknown) => events.push(message as RegistryEvent);
  registryChannel.subscribe(listener);
  try {
    return await fn(events);
  } finally {
    registryChannel.unsubscribe(listener);
  }
}

async function revokeEveryLease(server: EtcdServer): Promise<void> {
  const [, ...ids] = (await server.etcdctl("lease", "list")).split("\n");
  for (const id of ids.map((line) => line.trim()).filter((line) => line !== "")) {
    await server.etcdctl("lease", "revoke", id).catch(() => undefined);
  }
}

const ids = (instances: readonly { id: string }[]) => instances.map((i) => i.id).sort();
const warnings = (lines: readonly string[]) => lines.map((line) => JSON.parse(line)).filter((l) => l.level === "warn");

describe("etcd:// conformance", () => {
  const harness: RegistryHarness = {
    name: "etcd://",
    ttlMs: 2000,
    url: () => fresh("conf"),
    restart: () => etcd.restart(),
    forget: () => revokeEveryLease(etcd),
    async writeMalformed(url, service) {
      const base = `${new URL(url).pathname}/services/${service}`;
      const valid = instance(service);
      const other = instance("conf.v1.Other");
      await etcd.etcdctl("put", `${base}/not-json`, "{ this is not json");
      await etcd.etcdctl("put", `${base}/array`, "[1, 2, 3]");
      await etcd.etcdctl("put", `${base}/no-fields`, JSON.stringify({ id: "no-fields" }));
      await etcd.etcdctl("put", `${base}/${other.id}`, JSON.stringify(other));
      await etcd.etcdctl("put", `${base}/not-its-id`, JSON.stringify(valid));
    },
  };
  for (const c of registryConformanceCases(harness)) {
    if (c.skip !== undefined) test.skip(`${c.name} (skipped: ${c.skip})`, () => undefined);
    else test(c.name, c.run, 40_000);
  }
});

describe("etcd:// registrar", () => {
  test("deregister removes the records at once, and one lease holds every instance", async () => {
    const url = fresh("dereg");
    const holder = await open(url);
    const reader = await open(url);
    const instances = [instance("dereg.v1.Alpha"), instance("dereg.v1.Beta"), instance("dereg.v1.Beta")];
    await holder.registrar?.register(instances);
    expect(ids((await reader.resolver?.list()) ?? [])).toEqual(ids(instances));
    const leases = (await etcd.etcdctl("get", "--prefix", new URL(url).pathname, "--write-out=fields"))
      .split("\n")
      .filter((line) => line.startsWith('"Lease"'));
    expect(new Set(leases).size).toBe(1);
    await holder.registrar?.deregister();
    expect(await reader.resolver?.list()).toEqual([]);
  });

  test("records are the instances' JSON under <prefix>/services/<service>/<id>", async () => {
    const url = etcd.url("/layout", { ttl: "2s" });
    const holder = await open(url);
    const one = instance("layout.v1.Alpha");
    await holder.registrar?.register([one]);
    const value = await etcd.etcdctl("get", "--print-value-only", `/layout/services/layout.v1.Alpha/${one.id}`);
    expect(JSON.parse(value)).toMatchObject({ ...one, registeredAt: expect.any(Number) });
    await holder.close();
  });

  test("after close every method rejects with GANTRY_ERR_REGISTRY_CLOSED, and the records are gone", async () => {
    const url = fresh("closed");
    const holder = await open(url);
    const reader = await open(url);
    await holder.registrar?.register([instance("closed.v1.Alpha")]);
    const watch = watching(holder, undefined);
    await watch.next((e) => e.type === "snapshot");
    await holder.close();
    await holder.close();
    expect(await reader.resolver?.list()).toEqual([]);
    const closed = { code: "GANTRY_ERR_REGISTRY_CLOSED" };
    await expect(holder.registrar?.register([instance("closed.v1.Alpha")])).rejects.toMatchObject(closed);
    await expect(holder.registrar?.deregister()).rejects.toMatchObject(closed);
    await expect(holder.resolver?.list()).rejects.toMatchObject(closed);
    expect(() => holder.resolver?.watch(undefined, () => undefined)).toThrow(expect.objectContaining(closed));
  });

  test("a register() while a deregister() is still revoking keeps the new instance registered", async () => {
    await recordingEvents(async (events) => {
      const url = fresh("rereg");
      const holder = await open(url);
      const reader = await open(url);
      const a = instance("rereg.v1.Alpha");
      const b = instance("rereg.v1.Alpha");
      await holder.registrar?.register([a]);
      const deregistering = holder.registrar?.deregister();
      await holder.registrar?.register([b]);
      await deregistering;
      expect(ids((await reader.resolver?.list()) ?? [])).toEqual([b.id]);
      const watch = watching(reader, "rereg.v1.Alpha");
      await watch.next((e) => e.type === "snapshot" && ids(e.instances).includes(b.id));
      // It must stay past a TTL (2 s): its lease is kept alive, not the revoked one. Only time shows that.
      await new Promise((resolve) => setTimeout(resolve, 3000));
      expect(ids((await reader.resolver?.list()) ?? [])).toEqual([b.id]);
      expect(watch.seen.some((e) => e.type === "remove")).toBe(false);
      // The revoke and the new registration run side by side: their events come in either order.
      const mine = events
        .filter((e) => e.type === "registered" || e.type === "deregistered")
        .map((e) => `${e.type} ${ids(e.instances).join(",")}`);
      expect(mine.sort()).toEqual([`deregistered ${a.id}`, `registered ${a.id}`, `registered ${b.id}`].sort());
      expect(events.some((e) => e.type === "lost")).toBe(false);
    });
  });

  test("a process that registers, watches and closes exits by itself", async () => {
    const script = `
      import { createLogger } from "@gantry/core";
      import { openRegistry } from "@gantry/discovery";
      import { instance } from "@gantry/discovery/testing";
      const registry = await openRegistry(process.argv[1], { log: createLogger("exit", { level: "silent" }) });
      await registry.registrar.register([instance("exit.v1.Alpha")]);
      await new Promise((resolve) => {
        const watch = registry.resolver.watch(undefined, (event) => {
          if (event.type === "snapshot") { watch.close(); resolve(); }
        });
      });
      await registry.resolver.list();
      await registry.close();
      process.stdout.write("closed\\n");
    `;
    const cwd = fileURLToPath(new URL("..", import.meta.url));
    const child = spawn(process.execPath, ["--input-type=module", "-e", script, fresh("exit")], {
      cwd,
      stdio: ["ignore", "pipe", "inherit"],
    });
    let output = "";
    child.stdout.on("data", (chunk: Buffer) => {
      output += chunk.toString();
    });
    let closedAt = 0;
    child.stdout.on("data", () => {
      if (output.includes("closed") && closedAt === 0) closedAt = Date.now();
    });
    const exited = new Promise<number | null>((resolve) => child.once("exit", resolve));
    const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
    const code = await exited;
    clearTimeout(timer);
    expect(output).toContain("closed");
    expect(code).toBe(0);
    // Nothing left open holds the event loop once the registry is closed.
    expect(Date.now() - closedAt).toBeLessThan(1000);
  }, 20_000);
});

describe("etcd:// faults", () => {
  test("an app keeps serving and stays ready while etcd is down for 10 s, and is listed again after", async () => {
    const url = fresh("outage");
    const { app, base } = await startEchoApp(url);
    try {
      const reader = await open(url);
      expect((await reader.resolver?.list("etcdtest.v1.EchoService"))?.length).toBe(1);
      await etcd.stop();
      const downUntil = Date.now() + 10_000;
      let calls = 0;
      while (Date.now() < downUntil) {
        const reply = await fetch(`${base}/etcdtest.v1.EchoService/Echo`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ text: `call ${calls}` }),
        });
        expect(reply.status).toBe(200);
        expect(await reply.json()).toEqual({ text: `call ${calls}` });
        expect((await fetch(`${base}/readyz`)).status).toBe(200);
        calls++;
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
      expect(calls).toBeGreaterThan(20);
      await etcd.start();
      const back = Date.now();
      await until(
        async () => ((await reader.resolver?.list("etcdtest.v1.EchoService").catch(() => [])) ?? []).length === 1,
        5000,
        "the app's instance listed again",
      );
      expect(Date.now() - back).toBeLessThan(5000);
      expect((await fetch(`${base}/readyz`)).status).toBe(200);
    } finally {
      if (!etcd.running) await etcd.start();
      await app.close();
    }
  }, 40_000);

  test("leases revoked with etcdctl are replaced and the records written again within seconds", async () => {
    await recordingEvents(async (events) => {
      const url = fresh("revoked");
      const holder = await open(url);
      const reader = await open(url);
      const one = instance("revoked.v1.Alpha");
      await holder.registrar?.register([one]);
      const watch = watching(reader, "revoked.v1.Alpha");
      await watch.next((e) => e.type === "snapshot" && e.instances.length === 1);
      await revokeEveryLease(etcd);
      const revokedAt = Date.now();
      await watch.next((e) => e.type === "remove" && e.instance.id === one.id);
      await watch.next((e) => e.type === "add" && e.instance.id === one.id);
      expect(Date.now() - revokedAt).toBeLessThan(3000);
      const mine = events.filter((e) => e.type !== "changed").map((e) => e.type);
      expect(mine).toEqual(["registered", "lost", "registered"]);
    });
  });

  test("after etcd restarts on an emptied data dir, the records are written again and watches resync", async () => {
    const url = fresh("emptied");
    const holder = await open(url);
    const reader = await open(url);
    const one = instance("emptied.v1.Alpha");
    await holder.registrar?.register([one]);
    const watch = watching(reader, undefined);
    await watch.next((e) => e.type === "snapshot" && e.instances.length === 1);
    await etcd.restart({ empty: true });
    const back = Date.now();
    await watch.next((e) => e.type === "error");
    await watch.next((e) => e.type === "snapshot");
    await until(
      async () => ids((await reader.resolver?.list().catch(() => [])) ?? []).includes(one.id),
      5000,
      "the instance listed again",
    );
    // The new etcd's revisions start over: the watch must follow them, not wait for the old ones.
    const late = instance("emptied.v1.Beta");
    const other = await open(url);
    await other.registrar?.register([late]);
    await watch.next((e) => e.type === "add" && e.instance.id === late.id);
    expect(Date.now() - back).toBeLessThan(8000);
  });

  test("malformed records put straight into etcd are skipped with a warning, and the watch goes on", async () => {
    await recordingEvents(async (events) => {
      const url = fresh("malformed");
      const prefix = new URL(url).pathname;
      const lines: string[] = [];
      const reader = await open(url, lines);
      const watch = watching(reader, undefined);
      await watch.next((e) => e.type === "snapshot");
      const one = instance("malformed.v1.Alpha");
      const holder = await open(url);
      await holder.registrar?.register([one]);
      await watch.next((e) => e.type === "add" && e.instance.id === one.id);
      // The valid record turns bad: it no longer stands for its instance.
      const key = `${prefix}/services/malformed.v1.Alpha/${one.id}`;
      await etcd.etcdctl("put", key, "{ not json");
      await watch.next((e) => e.type === "remove" && e.instance.id === one.id);
      await etcd.etcdctl("put", `${prefix}/services/malformed.v1.Alpha/array`, "[1]");
      await etcd.etcdctl("put", `${prefix}/services/no-id-here`, "{}");
      expect(await reader.resolver?.list()).toEqual([]);
      const skipped = events.filter((e) => e.type === "skipped");
      expect(skipped.map((e) => e.type === "skipped" && e.key)).toEqual(
        expect.arrayContaining([key, `${prefix}/services/malformed.v1.Alpha/array`, `${prefix}/services/no-id-here`]),
      );
      expect(warnings(lines).some((l) => l.key === key && l.reason === "the value is not JSON")).toBe(true);
      const two = instance("malformed.v1.Alpha");
      const second = await open(url);
      await second.registrar?.register([two]);
      await watch.next((e) => e.type === "add" && e.instance.id === two.id);
    });
  });

  test("a watch whose start revision was compacted while it was cut off resyncs with a snapshot", async () => {
    const proxy = await startEtcdProxy(etcd.address);
    try {
      const name = `/compaction-${++prefixes}`;
      const direct = etcd.url(name, { ttl: "2s" });
      const viaProxy = `etcd://${proxy.address}${name}?ttl=2s`;
      const a = instance("compaction.v1.Alpha");
      const holderA = await open(direct);
      await holderA.registrar?.register([a]);
      const lines: string[] = [];
      const reader = await open(viaProxy, lines);
      let armed = false;
      let held: () => void = () => undefined;
      const heldOnce = new Promise<void>((resolve) => {
        held = resolve;
      });
      const watch = watching(reader, undefined, (event) => {
        // The snapshot comes right after the list and before the watch starts: hold what the client
        // sends next (the watch request) while the revision after the list is compacted.
        if (event.type === "snapshot" && armed) {
          armed = false;
          proxy.hold();
          held();
        }
      });
      await watch.next((e) => e.type === "snapshot" && e.instances.length === 1);
      proxy.cut();
      await watch.next((e) => e.type === "error");
      const b = instance("compaction.v1.Alpha");
      const holderB = await open(direct);
      await holderB.registrar?.register([b]);
      await compactNow();
      armed = true;
      proxy.restore();
      await heldOnce;
      const relisted = await watch.next((e) => e.type === "snapshot");
      expect(relisted.type === "snapshot" && ids(relisted.instances)).toEqual(ids([a, b]));
      const c = instance("compaction.v1.Alpha");
      const holderC = await open(direct);
      await holderC.registrar?.register([c]);
      await holderB.registrar?.deregister();
      await compactNow();
      proxy.release();
      const resynced = await watch.next((e) => e.type === "snapshot");
      expect(resynced.type === "snapshot" && ids(resynced.instances)).toEqual(ids([a, c]));
      expect(lines.some((line) => line.includes("compacted"))).toBe(true);
      const d = instance("compaction.v1.Alpha");
      const holderD = await open(direct);
      await holderD.registrar?.register([d]);
      await watch.next((e) => e.type === "add" && e.instance.id === d.id);
    } finally {
      proxy.release();
      await proxy.close();
    }
  });

  test("deregister and close return within 3 s while etcd takes requests but does not answer", async () => {
    const proxy = await startEtcdProxy(etcd.address);
    try {
      const lines: string[] = [];
      const holder = await open(`etcd://${proxy.address}/unanswered-${++prefixes}?ttl=2s`, lines);
      await holder.registrar?.register([instance("unanswered.v1.Alpha")]);
      const watch = watching(holder, undefined);
      await watch.next((e) => e.type === "snapshot");
      // As a SIGSTOPped etcd: connections stay up, nothing is answered. Once the keep-alive stream
      // has gone silent for a TTL, the registrar checks its lease, a call that waits out its deadline.
      proxy.hold();
      await until(
        () => warnings(lines).some((l) => l.msg.includes("no keep-alive answer")),
        5000,
        "the keep-alive stream given up",
      );
      // Past the backoff (at most 100 ms) the lease check is sent, and waits; no event tells when.
      await new Promise((resolve) => setTimeout(resolve, 300));
      const started = Date.now();
      await holder.registrar?.deregister();
      const deregistered = Date.now() - started;
      await holder.close();
      const closed = Date.now() - started;
      // The revoke is bounded by 2 s, and the watch's cancel by 1 s; nothing else is waited for.
      expect(deregistered).toBeLessThan(2500);
      expect(closed).toBeLessThan(3500);
    } finally {
      proxy.release();
      await proxy.close();
    }
  });

  test("a keep-alive stream that breaks soon after each answer is reopened with a growing backoff", async () => {
    const proxy = await startEtcdProxy(etcd.address);
    try {
      const lines: string[] = [];
      const holder = await open(`etcd://${proxy.address}/flapping-${++prefixes}?ttl=2s`, lines);
      await holder.registrar?.register([instance("flapping.v1.Alpha")]);
      // Every connection answers for 300 ms, then drops: the stream answers once and breaks.
      proxy.flap(300);
      const delays = () =>
        warnings(lines)
          .map((l) => /keeping the registration failed, trying again in (\d+) ms/.exec(l.msg)?.[1])
          .filter((delay) => delay !== undefined)
          .map(Number);
      await until(
        () => delays().length >= 5,
        15_000,
        () => `five failures (saw delays ${delays().join(", ")})`,
      );
      // The backoff doubles from 50–100 ms to its ceiling of TTL/3 (333–667 ms), never starting over.
      expect(delays()[4]).toBeGreaterThanOrEqual(333);
    } finally {
      proxy.flap(0);
      await proxy.close();
    }
  });

  test("one dead endpoint among live ones does not stop registering, listing or watching", async () => {
    const dead = await freePort();
    const name = `/dead-${++prefixes}`;
    const url = `etcd://127.0.0.1:${dead},${etcd.address}${name}?ttl=2s`;
    const holder = await open(url);
    const reader = await open(url);
    const one = instance("dead.v1.Alpha");
    await holder.registrar?.register([one]);
    for (let i = 0; i < 20; i++) expect(ids((await reader.resolver?.list()) ?? [])).toEqual([one.id]);
    const watch = watching(reader, undefined);
    await watch.next((e) => e.type === "snapshot" && e.instances.length === 1);
    await holder.registrar?.deregister();
    await watch.next((e) => e.type === "remove" && e.instance.id === one.id);
    expect(reader.url).toBe(`etcd://127.0.0.1:${dead},${etcd.address}${name}?ttl=2s`);
  });
});

describe("etcd:// with auth", () => {
  let secured: EtcdServer;
  beforeAll(async () => {
    secured = await startEtcd({ auth: { password: "s3cret" } });
  });
  afterAll(async () => {
    await secured?.close();
  });

  test("registers and lists with a user and password, which never show in the registry's URL", async () => {
    const url = secured.url("/auth", { ttl: "2s" });
    const holder = await open(url);
    expect(holder.url).toBe(`etcd://root@${secured.address}/auth?ttl=2s`);
    const one = instance("auth.v1.Alpha");
    await holder.registrar?.register([one]);
    const reader = await open(`etcd://${secured.address}/auth?user=root&password=s3cret`);
    expect(reader.url).toBe(`etcd://${secured.address}/auth?user=root`);
    expect(ids((await reader.resolver?.list()) ?? [])).toEqual([one.id]);
  });

  test("records whose write failed after a lost lease are written again, not left out under the new lease", async () => {
    // A user that may write only under /lapse/: taking that away makes the writes after the lost
    // lease fail, after the new lease was granted.
    await secured.etcdctl("role", "add", "lapse");
    await secured.etcdctl("role", "grant-permission", "--prefix=true", "lapse", "readwrite", "/lapse/");
    await secured.etcdctl("user", "add", "lapse:l4pse-pw", "--interactive=false");
    await secured.etcdctl("user", "grant-role", "lapse", "lapse");
    const lines: string[] = [];
    const holder = await open(`etcd://lapse:l4pse-pw@${secured.address}/lapse?ttl=2s`, lines);
    const reader = await open(secured.url("/lapse", { ttl: "2s" }));
    const one = instance("lapse.v1.Alpha");
    await holder.registrar?.register([one]);
    await secured.etcdctl("role", "revoke-permission", "--prefix=true", "lapse", "/lapse/");
    await revokeEveryLease(secured);
    await until(
      () => warnings(lines).some((l) => /keeping the registration failed.*permission denied/.test(l.msg)),
      5000,
      "a failed write after the lost lease",
    );
    expect(await reader.resolver?.list()).toEqual([]);
    await secured.etcdctl("role", "grant-permission", "--prefix=true", "lapse", "readwrite", "/lapse/");
    await until(
      async () => ids((await reader.resolver?.list()) ?? []).includes(one.id),
      3000,
      "the record written again",
    );
  });

  test("a wrong password fails register at once with a clear coded error", async () => {
    const holder = await open(`etcd://root:wrong@${secured.address}/auth?ttl=2s`);
    const started = Date.now();
    const failure = await holder.registrar
      ?.register([instance("auth.v1.Alpha")], AbortSignal.timeout(10_000))
      .catch((error: unknown) => error);
    expect(failure).toMatchObject({ code: "GANTRY_ERR_ETCD", message: expect.stringMatching(/authentication failed/) });
    expect(Date.now() - started).toBeLessThan(5000);
    await expect(holder.resolver?.list()).rejects.toMatchObject({ code: "GANTRY_ERR_ETCD" });
  });

  test("no credentials against an etcd with auth fails register with a clear coded error", async () => {
    const holder = await open(`etcd://${secured.address}/auth?ttl=2s`);
    const failure = await holder.registrar
      ?.register([instance("auth.v1.Alpha")], AbortSignal.timeout(10_000))
      .catch((error: unknown) => error);
    expect(failure).toMatchObject({ code: "GANTRY_ERR_ETCD", message: expect.stringMatching(/user and password/) });
  });
});

describe("etcd:// over TLS", () => {
  let secured: EtcdServer;
  let mutual: EtcdServer;
  beforeAll(async () => {
    [secured, mutual] = await Promise.all([startEtcd({ tls: true }), startEtcd({ tls: { clientCerts: true } })]);
  });
  afterAll(async () => {
    await Promise.all([secured?.close(), mutual?.close()]);
  });

  test("etcds:// with the CA file registers, lists and watches; so does tls=true", async () => {
    const url = secured.url("/tls", { ttl: "2s" });
    expect(url).toMatch(/^etcds:\/\/.*\?ttl=2s&ca=/);
    const holder = await open(url);
    const reader = await open(url.replace(/^etcds:/, "etcd:").replace("?", "?tls=true&"));
    const watch = watching(reader, undefined);
    await watch.next((e) => e.type === "snapshot");
    const one = instance("tls.v1.Alpha");
    await holder.registrar?.register([one]);
    await watch.next((e) => e.type === "add" && e.instance.id === one.id);
    expect(ids((await reader.resolver?.list()) ?? [])).toEqual([one.id]);
  });

  test("an etcd with --trusted-ca-file takes a client certificate given as cert and key", async () => {
    const url = mutual.url("/mtls", { ttl: "2s" });
    expect(url).toMatch(/&cert=.*&key=/);
    const holder = await open(url);
    const one = instance("mtls.v1.Alpha");
    await holder.registrar?.register([one]);
    expect(ids((await holder.resolver?.list()) ?? [])).toEqual([one.id]);
  });

  test("without the client certificate etcd wants, register fails once its signal aborts, with a coded error", async () => {
    const lines: string[] = [];
    const ca = mutual.tls?.ca as string;
    const holder = await open(`etcds://${mutual.address}/mtls?ttl=2s&ca=${encodeURIComponent(ca)}`, lines);
    const failure = await holder.registrar
      ?.register([instance("mtls.v1.Alpha")], AbortSignal.timeout(1500))
      .catch((error: unknown) => error);
    expect(failure).toMatchObject({ code: "GANTRY_ERR_ETCD", message: expect.stringContaining("gave up registering") });
    expect(warnings(lines).length).toBeGreaterThan(0);
    expect(warnings(lines).every((l) => l.stack === undefined && l.err === undefined)).toBe(true);
  });
});

describe("etcd:// URLs", () => {
  test.each([
    ["etcd://127.0.0.1:2379?ttl=abc", /ttl must be a duration such as 10s/],
    ["etcd://127.0.0.1:2379?ttl=0s", /ttl must be at least 1s/],
    ["etcd://127.0.0.1:2379?ttl=1500ms", /whole seconds/],
    ["etcd://127.0.0.1:2379?ttl=10", /ttl must be a duration/],
    ["etcd://127.0.0.1:2379?ttl=25h", /ttl must be at most 24h, got 25h/],
    ["etcd://127.0.0.1:2379?ttl=2147484s", /ttl must be at most 24h/],
    ["etcd://127.0.0.1:2379?ttl=99999999999999999999999m", /ttl must be at most 24h/],
    ["etcd://127.0.0.1:2379?colour=blue", /unknown option colour; etcd:\/\/ takes ttl, user, password/],
    ["etcd://127.0.0.1:2379?ttl=1s&ttl=2s", /ttl is given more than once/],
    ["etcd:///prefix-only", /names no etcd endpoint/],
    ["etcd://127.0.0.1:2379?user=root", /a user needs a password/],
    ["etcd://root:pw@127.0.0.1:2379?user=root&password=pw", /not both/],
    ["etcd://127.0.0.1:2379?tls=maybe", /tls must be true or false/],
    ["etcds://127.0.0.1:2379?tls=false", /etcds:\/\/ always uses TLS/],
    ["etcd://127.0.0.1:2379?ca=/tmp/ca.pem", /ca, cert and key are for TLS/],
    ["etcds://127.0.0.1:2379?cert=/tmp/cert.pem", /cert and key go together/],
    [
      "etcds://127.0.0.1:2379?ca=/nonexistent/gantry-ca.pem",
      /cannot read the ca file \/nonexistent\/gantry-ca.pem: ENOENT/,
    ],
  ])("%s is GANTRY_ERR_REGISTRY_URL", async (url, problem) => {
    const log = createLogger("etcd-test", { level: "silent" });
    const failure = await openRegistry(url, { log }).catch((error: unknown) => error);
    expect(failure).toMatchObject({ code: "GANTRY_ERR_REGISTRY_URL", message: expect.stringMatching(problem) });
  });

  test("a ttl of 24h is the longest taken", async () => {
    const registry = await open("etcd://127.0.0.1:2379?ttl=24h");
    expect(registry.url).toBe("etcd://127.0.0.1:2379?ttl=24h");
  });

  test("a password never shows in a URL error", async () => {
    const log = createLogger("etcd-test", { level: "silent" });
    const failure = await openRegistry("etcd://root:hunter2@127.0.0.1:2379?ttl=abc", { log }).catch((e: unknown) => e);
    expect(failure).toMatchObject({ code: "GANTRY_ERR_REGISTRY_URL" });
    expect(String((failure as Error).message)).not.toContain("hunter2");
  });

  test("defaults: port 2379, prefix /gantry, and the URL shown without its password", async () => {
    const registry = await open("etcd://root:pw@localhost");
    expect(registry.url).toBe("etcd://root@localhost");
    const layout = await open(etcd.url("", { ttl: "2s" }));
    const one = instance("defaults.v1.Alpha");
    await layout.registrar?.register([one]);
    expect(await etcd.etcdctl("get", "--keys-only", `/gantry/services/defaults.v1.Alpha/${one.id}`)).toContain(one.id);
  });
});

describe("the etcd test server", () => {
  test("startEtcd stops its etcd when a setup step fails, and never shows the password", async () => {
    // An etcdctl that fails to add the user, after etcd has started.
    const bin = await mkdtemp(join(tmpdir(), "gantry-etcdctl-"));
    const fake = join(bin, "etcdctl");
    const real = process.env.ETCDCTL_BIN ?? "etcdctl";
    const script = `#!/bin/sh\ncase "$*" in *"user add"*) echo "refused: $*" >&2; exit 1;; esac\nexec "${real}" "$@"\n`;
    await writeFile(fake, script, { mode: 0o755 });
    const before = etcdChildren();
    expect(before.length).toBeGreaterThan(0); // the shared etcd: pgrep sees this process's children
    const saved = process.env.ETCDCTL_BIN;
    process.env.ETCDCTL_BIN = fake;
    try {
      const failure = await startEtcd({ auth: { password: "pa55-w0rd" } }).catch((error: unknown) => error);
      expect(failure).toBeInstanceOf(Error);
      expect((failure as Error).message).toContain("user add");
      expect((failure as Error).message).not.toContain("pa55-w0rd");
    } finally {
      if (saved === undefined) delete process.env.ETCDCTL_BIN;
      else process.env.ETCDCTL_BIN = saved;
      await rm(bin, { recursive: true, force: true });
    }
    expect(etcdChildren()).toEqual(before);
  });
});

/** The etcd processes this test process started and that still run. */
function etcdChildren(): string[] {
  try {
    return execFileSync("pgrep", ["-P", String(process.pid), "-x", "etcd"], { encoding: "utf8" })
      .split("\n")
      .filter((line) => line !== "")
      .sort();
  } catch {
    // pgrep exits with 1 when nothing matches.
    return [];
  }
}

/** Compacts etcd's history up to its current revision. */
async function compactNow(): Promise<void> {
  const status = await etcd.etcdctl("get", "/", "--write-out=json");
  const revision = /"revision":(\d+)/.exec(status)?.[1];
  if (revision === undefined) throw new Error(`no revision in ${status}`);
  await etcd.etcdctl("compact", revision);
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  await new Promise((resolve) => server.close(resolve));
  if (address === null || typeof address === "string") throw new Error("no port");
  return address.port;
}
