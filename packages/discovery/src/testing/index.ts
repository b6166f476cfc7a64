/**
 * The registry conformance suite: the cases every discovery backend runs for the capabilities it
 * declares, so `local://`, `etcd://`, `dns://` and `static://` cannot drift apart. Runner-free: each
 * case is a function that throws (node:assert) when the backend gets it wrong; a case the backend
 * cannot run carries the reason instead.
 *
 * @example
 * for (const c of registryConformanceCases(harness)) {
 *   if (c.skip !== undefined) test.skip(`${c.name} (skipped: ${c.skip})`, () => {});
 *   else test(c.name, c.run);
 * }
 */
import { strict as assert } from "node:assert";
import { type ChildProcess, spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { fileURLToPath } from "node:url";
import { createLogger, type Logger } from "@gantry/core";
import type { Registry, ServiceInstance, WatchEvent } from "@gantry/core/registry";
import { openRegistry } from "../open.js";

export interface RegistryHarness {
  /** The backend's name in case titles: `local://`. */
  readonly name: string;
  /** A URL of a fresh, empty namespace of the registry under test; called once per case. */
  url(): string;
  /** The TTL that URL gives registrations: a SIGKILLed holder must be gone within it (plus 1 s). */
  readonly ttlMs?: number;
  /** Stops the registry server and starts it again on the same data. */
  restart?(): Promise<void>;
  /** Makes the registry forget the registrations under `url` (revoke leases, delete records). */
  forget?(url: string): Promise<void>;
  /** Writes records under `url`'s namespace that are not valid instances, next to valid ones. */
  writeMalformed?(url: string, service: string): Promise<void>;
  /**
   * For a resolver-only backend: a URL whose registry serves these instances of `service` (only
   * their endpoints matter), and a way to change them while it is watched.
   */
  seed?(
    service: string,
    endpoints: readonly Readonly<Record<string, string>>[],
  ): Promise<{ url: string; update?(endpoints: readonly Readonly<Record<string, string>>[]): Promise<void> }>;
  /** Why `seed`'s sources cannot change, when they cannot (`static://`). */
  readonly fixed?: string;
}

export interface RegistryCase {
  readonly name: string;
  /** Why the case does not apply to this backend; the runner lists it as skipped. */
  readonly skip?: string;
  run(): Promise<void>;
}

/** How long a case waits for a change to show before it fails. */
const WAIT_MS = 10_000;

/** The cases, for the capabilities the harness (and the backend it opens) has. */
export function registryConformanceCases(harness: RegistryHarness): RegistryCase[] {
  const cases: RegistryCase[] = [];
  const add = (name: string, skip: string | undefined, run: () => Promise<void>) =>
    cases.push(skip === undefined ? { name, run } : { name, skip, run });
  const registers = harness.seed === undefined;
  const resolverOnly = `${harness.name} is a resolver only: it cannot register`;
  const registering = registers ? undefined : resolverOnly;

  add("register, then list finds each instance with every field", registering, async () => {
    await using r = await open(harness.url());
    const instances = [instance("conf.v1.Alpha"), instance("conf.v1.Beta")];
    await registrar(r.registry).register(instances);
    for (const expected of instances) {
      const listed = await resolver(r.registry).list(expected.service);
      assert.equal(listed.length, 1, `list(${expected.service}) found ${listed.length} instances`);
      assertSame(listed[0], expected);
    }
    const all = await resolver(r.registry).list();
    assert.deepEqual(all.map((i) => i.service).sort(), ["conf.v1.Alpha", "conf.v1.Beta"]);
  });

  add("a watch gets a snapshot first, then adds and removes", registering, async () => {
    await using holder = await open(harness.url());
    await registrar(holder.registry).register([instance("conf.v1.Alpha")]);
    await using watcher = await open(holder.url);
    const events = record(watcher.registry, "conf.v1.Alpha");
    const first = await events.next((e) => e.type === "snapshot");
    assert.equal(first.type === "snapshot" && first.instances.length, 1, "the snapshot holds the existing instance");
    await using second = await open(holder.url);
    const late = instance("conf.v1.Alpha");
    await registrar(second.registry).register([late]);
    const added = await events.next((e) => e.type === "add" && e.instance.id === late.id);
    assert.ok(added.type === "add");
    assertSame(added.instance, late);
    await registrar(second.registry).deregister();
    await events.next((e) => e.type === "remove" && e.instance.id === late.id);
  });

  add("a watch only sees its own service, and an empty registry gives an empty snapshot", registering, async () => {
    await using r = await open(harness.url());
    const events = record(r.registry, "conf.v1.Alpha");
    const first = await events.next((e) => e.type === "snapshot");
    assert.deepEqual(first.type === "snapshot" && first.instances, []);
    await registrar(r.registry).register([instance("conf.v1.Beta"), instance("conf.v1.Alpha")]);
    const added = await events.next((e) => e.type === "add");
    assert.equal(added.type === "add" && added.instance.service, "conf.v1.Alpha");
    assert.ok(events.seen.every((e) => e.type !== "add" || e.instance.service === "conf.v1.Alpha"));
  });

  add("deregister removes the instances, and a closed watch hears nothing more", registering, async () => {
    await using holder = await open(harness.url());
    await using watcher = await open(holder.url);
    const events = record(watcher.registry, undefined);
    await events.next((e) => e.type === "snapshot");
    const one = instance("conf.v1.Alpha");
    await registrar(holder.registry).register([one]);
    await events.next((e) => e.type === "add" && e.instance.id === one.id);
    await registrar(holder.registry).deregister();
    await events.next((e) => e.type === "remove" && e.instance.id === one.id);
    assert.deepEqual(await resolver(watcher.registry).list("conf.v1.Alpha"), []);
    events.close();
    const count = events.seen.length;
    await registrar(holder.registry).register([instance("conf.v1.Alpha")]);
    await poll(async () => (await resolver(watcher.registry).list("conf.v1.Alpha")).length === 1);
    assert.equal(events.seen.length, count, "a closed watch got an event");
  });

  const timed = registers ? (harness.ttlMs === undefined ? "the harness gives no TTL" : undefined) : resolverOnly;
  /** A holder process registers, gets `signal`, and its instance must be gone within the TTL + 1 s. */
  const goneWithinTtl = async (signal: "SIGKILL" | "SIGSTOP", service: string) => {
    const ttl = harness.ttlMs as number;
    await using watcher = await open(harness.url());
    const events = record(watcher.registry, service);
    await events.next((e) => e.type === "snapshot");
    const holder = await startHolder(watcher.url, service);
    try {
      const added = await events.next((e) => e.type === "add");
      const signalledAt = performance.now();
      holder.kill(signal);
      await events.next((e) => e.type === "remove" && added.type === "add" && e.instance.id === added.instance.id, {
        timeoutMs: ttl + WAIT_MS,
      });
      const elapsed = performance.now() - signalledAt;
      // The target is TTL + 1 s; the extra second here is for a loaded CI machine, not the backend.
      assert.ok(elapsed <= ttl + 2000, `removed ${Math.round(elapsed)} ms after ${signal} (TTL ${ttl} ms)`);
    } finally {
      holder.kill("SIGKILL");
    }
  };
  add("an instance whose process is SIGKILLed leaves within its TTL + 1 s", timed, () =>
    goneWithinTtl("SIGKILL", "conf.v1.Doomed"),
  );
  add("an instance whose process hangs (SIGSTOP: alive, no keep-alive) leaves within its TTL + 1 s", timed, () =>
    goneWithinTtl("SIGSTOP", "conf.v1.Hung"),
  );

  add(
    "after the registry restarts, watches get a fresh snapshot and instances are there again",
    harness.restart === undefined ? `${harness.name} has no server to restart` : undefined,
    async () => {
      await using holder = await open(harness.url());
      const one = instance("conf.v1.Alpha");
      if (registers) await registrar(holder.registry).register([one]);
      await using watcher = await open(holder.url);
      const events = record(watcher.registry, "conf.v1.Alpha");
      await events.next((e) => e.type === "snapshot");
      const before = events.seen.length;
      await harness.restart?.();
      await events.next((e) => e.type === "snapshot", { after: before, timeoutMs: 30_000 });
      if (registers) {
        // The instance is in the resynced set, or comes back in it (registered again) soon after.
        const present = () => {
          const last = events.seen.findLast((e) => e.type === "snapshot");
          const snapshot = last?.type === "snapshot" ? last.instances.some((i) => i.id === one.id) : false;
          const since = events.seen.slice(events.seen.lastIndexOf(last as WatchEvent) + 1);
          const removed = since.findLastIndex((e) => e.type === "remove" && e.instance.id === one.id);
          const added = since.findLastIndex((e) => e.type === "add" && e.instance.id === one.id);
          return (snapshot && removed === -1) || added > removed;
        };
        await poll(async () => present(), 30_000);
        await poll(async () => (await resolver(watcher.registry).list("conf.v1.Alpha")).some((i) => i.id === one.id));
      }
    },
  );

  add(
    "registrations the registry forgot are made again by the registrar",
    harness.forget === undefined ? `${harness.name} cannot be made to forget` : registering,
    async () => {
      await using holder = await open(harness.url());
      const one = instance("conf.v1.Alpha");
      await registrar(holder.registry).register([one]);
      await using watcher = await open(holder.url);
      const events = record(watcher.registry, "conf.v1.Alpha");
      await events.next((e) => e.type === "snapshot");
      await harness.forget?.(holder.url);
      await events.next((e) => e.type === "remove" && e.instance.id === one.id);
      await events.next((e) => e.type === "add" && e.instance.id === one.id);
      assert.equal((await resolver(watcher.registry).list("conf.v1.Alpha")).length, 1);
    },
  );

  add(
    "malformed records are skipped with a warning, never a crash",
    harness.writeMalformed === undefined ? `${harness.name} has no records to corrupt` : undefined,
    async () => {
      const url = harness.url();
      await using holder = await open(url);
      const one = instance("conf.v1.Alpha");
      if (registers) await registrar(holder.registry).register([one]);
      const lines: string[] = [];
      await using watcher = await open(url, lines);
      const events = record(watcher.registry, "conf.v1.Alpha");
      await events.next((e) => e.type === "snapshot");
      await harness.writeMalformed?.(url, "conf.v1.Alpha");
      const listed = await resolver(watcher.registry).list("conf.v1.Alpha");
      assert.deepEqual(
        listed.map((i) => i.id),
        registers ? [one.id] : listed.map((i) => i.id),
      );
      await poll(async () => lines.some((line) => JSON.parse(line).level === "warn"));
      // The backend still works after the bad records.
      if (registers) {
        const two = instance("conf.v1.Alpha");
        await registrar(holder.registry).deregister();
        await using other = await open(url);
        await registrar(other.registry).register([two]);
        await events.next((e) => e.type === "add" && e.instance.id === two.id);
      }
    },
  );

  const seeded = registers ? `${harness.name} registers; the cases above cover it` : undefined;
  add("a resolver-only backend lists, and gives a snapshot of, what its source says", seeded, async () => {
    const seed = harness.seed as NonNullable<RegistryHarness["seed"]>;
    const source = await seed("conf.v1.Alpha", [
      { grpc: "grpc://127.0.0.1:50001" },
      { grpc: "grpc://127.0.0.1:50002" },
    ]);
    await using r = await open(source.url);
    assert.equal(r.registry.registrar, undefined, "a resolver-only backend has no registrar");
    const listed = await resolver(r.registry).list("conf.v1.Alpha");
    assert.deepEqual(endpointsOf(listed), ["grpc://127.0.0.1:50001", "grpc://127.0.0.1:50002"]);
    assert.ok(listed.every((i) => i.service === "conf.v1.Alpha"));
    const events = record(r.registry, "conf.v1.Alpha");
    const first = await events.next((e) => e.type === "snapshot");
    assert.deepEqual(first.type === "snapshot" && endpointsOf(first.instances), endpointsOf(listed));
  });

  add("a resolver-only backend's watchers see its source change", seeded ?? harness.fixed, async () => {
    const seed = harness.seed as NonNullable<RegistryHarness["seed"]>;
    const source = await seed("conf.v1.Alpha", [
      { grpc: "grpc://127.0.0.1:50001" },
      { grpc: "grpc://127.0.0.1:50002" },
    ]);
    await using r = await open(source.url);
    const events = record(r.registry, "conf.v1.Alpha");
    await events.next((e) => e.type === "snapshot");
    await source.update?.([{ grpc: "grpc://127.0.0.1:50002" }, { grpc: "grpc://127.0.0.1:50003" }]);
    await events.next((e) => e.type === "add" && e.instance.endpoints.grpc === "grpc://127.0.0.1:50003", { after: 1 });
    await events.next((e) => e.type === "remove" && e.instance.endpoints.grpc === "grpc://127.0.0.1:50001", {
      after: 1,
    });
  });

  return cases;
}

/** An instance of `service` with every field set, unique per call. */
export function instance(service: string, overrides: Partial<ServiceInstance> = {}): ServiceInstance {
  return {
    id: `${service}-${randomUUID()}`,
    service,
    apiVersion: "v1",
    version: "1.4.2",
    endpoints: { http: "http://127.0.0.1:8080", grpc: "grpc://127.0.0.1:50051" },
    metadata: { team: "conformance" },
    zone: "zone-a",
    registeredAt: Date.now(),
    ...overrides,
  };
}

interface Opened {
  readonly url: string;
  readonly registry: Registry;
  [Symbol.asyncDispose](): Promise<void>;
}

/** Opens a registry with a logger that keeps its lines (JSON) in `lines`. */
async function open(url: string, lines: string[] = []): Promise<Opened> {
  const registry = await openRegistry(url, { log: collectingLogger(lines) });
  return { url, registry, [Symbol.asyncDispose]: () => registry.close() };
}

function collectingLogger(lines: string[]): Logger {
  return createLogger("conformance", { level: "warn", destination: { write: (line: string) => lines.push(line) } });
}

function registrar(registry: Registry) {
  assert.ok(registry.registrar !== undefined, `${registry.url} has no registrar`);
  return registry.registrar;
}

function resolver(registry: Registry) {
  assert.ok(registry.resolver !== undefined, `${registry.url} has no resolver`);
  return registry.resolver;
}

function assertSame(actual: ServiceInstance, expected: ServiceInstance): void {
  const { registeredAt: _a, ...rest } = actual;
  const { registeredAt: _e, ...wanted } = expected;
  assert.deepEqual(rest, wanted);
}

function endpointsOf(instances: readonly ServiceInstance[]): string[] {
  return instances.flatMap((i) => Object.values(i.endpoints)).sort();
}

interface Recorder {
  readonly seen: WatchEvent[];
  /** The first event from index `after` on that matches, waiting for it. */
  next(match: (event: WatchEvent) => boolean, options?: { after?: number; timeoutMs?: number }): Promise<WatchEvent>;
  close(): void;
}

function record(registry: Registry, service: string | undefined): Recorder {
  const seen: WatchEvent[] = [];
  let wake: () => void = () => undefined;
  const watch = resolver(registry).watch(service, (event) => {
    seen.push(event);
    wake();
  });
  let cursor = 0;
  return {
    seen,
    close: () => watch.close(),
    async next(match, options = {}) {
      const start = options.after ?? cursor;
      const deadline = Date.now() + (options.timeoutMs ?? WAIT_MS);
      for (;;) {
        const index = seen.findIndex((event, i) => i >= start && match(event));
        if (index !== -1) {
          cursor = index + 1;
          return seen[index];
        }
        const left = deadline - Date.now();
        if (left <= 0) {
          throw new assert.AssertionError({
            message: `no matching watch event within ${options.timeoutMs ?? WAIT_MS} ms; saw: ${seen.map((e) => e.type).join(", ")}`,
          });
        }
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, Math.min(left, 200));
          wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
    },
  };
}

async function poll(check: () => Promise<boolean>, timeoutMs = WAIT_MS): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new assert.AssertionError({ message: `not true within ${timeoutMs} ms` });
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** A child process that registers one instance of `service` in `url` and waits to be killed. */
async function startHolder(url: string, service: string): Promise<ChildProcess> {
  const script = fileURLToPath(new URL("./holder.js", import.meta.url));
  const child = spawn(process.execPath, [script, url, service], { stdio: ["ignore", "pipe", "inherit"] });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`the holder did not register within ${WAIT_MS} ms`));
    }, WAIT_MS);
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`the holder exited with ${code} before registering`));
    });
    child.stdout?.on("data", (chunk: Buffer) => {
      if (chunk.toString().includes("registered")) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  return child;
}

export { type Dnsmasq, type DnsRecords, startDnsmasq } from "./dnsmasq.js";
export { type EtcdServer, type EtcdServerOptions, type EtcdTlsFiles, startEtcd } from "./etcd-server.js";
