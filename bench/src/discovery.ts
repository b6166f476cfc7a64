/**
 * The discovery section: for `local://` and `etcd://` (a real etcd this section starts), how long an
 * app takes from start to registered, how long a registration or removal takes to reach a watcher in
 * another registry client, and how long a SIGKILLed instance stays listed, against its TTL (target:
 * gone within TTL + 1 s).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { createApp, createLogger, Field, Message, Method, Service } from "@gantry/core";
import type { Registry, WatchEvent } from "@gantry/core/registry";
import { discovery, openRegistry } from "@gantry/discovery";
import { instance, startEtcd } from "@gantry/discovery/testing";
import { httpTransport } from "@gantry/transport-http";
import type { BenchOptions, Section } from "./section.js";
import { type Spread, spread } from "./stats.js";
import { formatTable } from "./table.js";

/** Samples of registration and propagation per backend. */
const SAMPLES = 20;

@Message()
class Pong {
  @Field(1) message!: string;
}

@Service({ package: "bench", version: "v1" })
class BenchService {
  @Method()
  ping(): Pong {
    return { message: "pong" };
  }
}

interface Backend {
  readonly name: string;
  readonly url: string;
  /** The TTL a SIGKILLed holder's registration has at this URL. */
  readonly ttlMs: number;
}

interface BackendResult {
  readonly backend: string;
  readonly ttlMs: number;
  /** app.start() until it resolved (listen + first registration). */
  readonly startToRegisteredMs: Spread;
  /** register() called → the watcher's add event. */
  readonly addPropagationMs: Spread;
  /** deregister() called → the watcher's remove event. */
  readonly removePropagationMs: Spread;
  /** SIGKILL of the holder → the watcher's remove event. */
  readonly killToRemovalMs: Spread;
  readonly killWithinTarget: boolean;
}

export const discoverySection: Section = {
  name: "discovery",
  description: "local:// and etcd://: start to registered, watch propagation, SIGKILL to removal vs TTL",
  tools: [{ command: "etcd", debianPackage: "etcd-server" }],
  async run(options: BenchOptions) {
    const dir = await mkdtemp(join(tmpdir(), "gantry-bench-discovery-"));
    const etcd = await startEtcd();
    try {
      const backends: Backend[] = [
        // The defaults each backend ships with: what users get.
        { name: "local://", url: `local://bench?dir=${encodeURIComponent(dir)}`, ttlMs: 5000 },
        { name: "etcd://", url: etcd.url("/bench"), ttlMs: 10_000 },
      ];
      const results: BackendResult[] = [];
      for (const backend of backends) results.push(await measure(backend, options.reps));
      print(results);
      return { samples: SAMPLES, kills: options.reps, results };
    } finally {
      await etcd.close();
      await rm(dir, { recursive: true, force: true });
    }
  },
};

async function measure(backend: Backend, kills: number): Promise<BackendResult> {
  const log = createLogger("bench", { level: "warn" });
  const watcher = await openRegistry(backend.url, { log });
  const holder = await openRegistry(backend.url, { log });
  try {
    const events = watchAll(watcher);
    const start: number[] = [];
    for (let i = 0; i < SAMPLES; i++) {
      const app = createApp({
        name: "bench",
        services: [BenchService],
        transports: [httpTransport({ host: "127.0.0.1", port: 0 })],
        discovery: discovery(),
        logger: { level: "warn" },
      });
      const began = performance.now();
      await app.start({ env: { GANTRY_REGISTRY: backend.url } });
      start.push(performance.now() - began);
      await app.close();
    }
    const added: number[] = [];
    const removed: number[] = [];
    const registrar = holder.registrar;
    if (registrar === undefined) throw new Error(`${backend.url} cannot register`);
    for (let i = 0; i < SAMPLES; i++) {
      // From the call that writes the change (its answer may come after the watch event).
      const one = instance("bench.v1.Propagation");
      const registering = performance.now();
      await registrar.register([one]);
      added.push((await events.next((e) => e.type === "add" && e.instance.id === one.id)).at - registering);
      const deregistering = performance.now();
      await registrar.deregister();
      removed.push((await events.next((e) => e.type === "remove" && e.instance.id === one.id)).at - deregistering);
    }
    const killed: number[] = [];
    for (let i = 0; i < kills; i++) {
      const child = await startHolder(backend.url, "bench.v1.Doomed");
      const { event } = await events.next((e) => e.type === "add" && e.instance.service === "bench.v1.Doomed");
      const id = event.type === "add" ? event.instance.id : "";
      // Killed at a random point of the readers' rescan period, not just after the scan that saw it come.
      await sleep(200 + Math.random() * 1000);
      const at = performance.now();
      child.kill("SIGKILL");
      const gone = await events.next((e) => e.type === "remove" && e.instance.id === id, backend.ttlMs + 10_000);
      killed.push(gone.at - at);
    }
    events.close();
    return {
      backend: backend.name,
      ttlMs: backend.ttlMs,
      startToRegisteredMs: spread(start),
      addPropagationMs: spread(added),
      removePropagationMs: spread(removed),
      killToRemovalMs: spread(killed),
      killWithinTarget: Math.max(...killed) <= backend.ttlMs + 1000,
    };
  } finally {
    await Promise.all([watcher.close(), holder.close()]);
  }
}

interface Events {
  /** The next matching event and when (performance.now()) it arrived; waits for it. */
  next(match: (event: WatchEvent) => boolean, timeoutMs?: number): Promise<{ event: WatchEvent; at: number }>;
  close(): void;
}

function watchAll(registry: Registry): Events {
  const queue: { event: WatchEvent; at: number }[] = [];
  let wake: (() => void) | undefined;
  const watch = registry.resolver?.watch(undefined, (event) => {
    queue.push({ event, at: performance.now() });
    wake?.();
  });
  return {
    async next(match, timeoutMs = 10_000) {
      const deadline = performance.now() + timeoutMs;
      for (;;) {
        const index = queue.findIndex((item) => match(item.event));
        if (index !== -1) {
          return queue.splice(0, index + 1)[index];
        }
        if (performance.now() > deadline) throw new Error(`no matching watch event within ${timeoutMs} ms`);
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, 100);
          wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
    },
    close: () => watch?.close(),
  };
}

/** The conformance suite's holder: a process that registers one instance and waits to be killed. */
async function startHolder(url: string, service: string): Promise<ChildProcess> {
  const testing = fileURLToPath(import.meta.resolve("@gantry/discovery/testing"));
  const child = spawn(process.execPath, [join(dirname(testing), "holder.js"), url, service], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  await new Promise<void>((resolve, reject) => {
    child.once("exit", (code) => reject(new Error(`the holder exited with ${code}`)));
    child.stdout?.on("data", (chunk: Buffer) => {
      if (chunk.toString().includes("registered")) resolve();
    });
  });
  return child;
}

function print(results: readonly BackendResult[]): void {
  const ms = (s: Spread) => `${s.median.toFixed(1)} (${s.min.toFixed(1)}–${s.max.toFixed(1)})`;
  console.log(
    `\ndiscovery: medians (min–max) in ms; ${SAMPLES} samples each, SIGKILL once per rep\n${formatTable(
      [
        "backend",
        "start → registered",
        "register → watcher",
        "deregister → watcher",
        "SIGKILL → removed",
        "TTL",
        "target",
      ],
      results.map((r) => [
        r.backend,
        ms(r.startToRegisteredMs),
        ms(r.addPropagationMs),
        ms(r.removePropagationMs),
        ms(r.killToRemovalMs),
        `${r.ttlMs}`,
        `${r.killWithinTarget ? "PASS" : "FAIL"} (<= TTL + 1 s)`,
      ]),
      ["left", "right", "right", "right", "right", "right", "left"],
    )}`,
  );
}
