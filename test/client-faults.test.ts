/**
 * Faults of real processes, as the typed client of another process meets them: instances of
 * test/client-fixtures started with `gantry start` on free loopback ports and registered in a private
 * `local://` namespace, called from this process through `createApp({ clients: [FaultApi] })`
 * (discovery, p2c balancer, outlier ejection, retries with a budget, deadlines) and killed, restarted,
 * slowed down or made to fail under load.
 */
import { type ChildProcessByStdio, spawn } from "node:child_process";
import { subscribe, unsubscribe } from "node:diagnostics_channel";
import { once } from "node:events";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { clientToken, createApp, type GantryApp, isGantryError, type ServiceClient } from "@gantry/core";
import { type ClientPolicy, clientChannels, type RetryMessage } from "@gantry/core/client";
import { discovery } from "@gantry/discovery";
import { grpcClientTransport } from "@gantry/transport-grpc";
import { httpClientTransport } from "@gantry/transport-http";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { FaultApi } from "./client-fixtures/api.js";

const BIN = fileURLToPath(new URL("../packages/cli/dist/bin.js", import.meta.url));
const FIXTURE = fileURLToPath(new URL("./client-fixtures/dist/app.js", import.meta.url));
const SERVICE = "faults.v1.FaultService";

// ---------------------------------------------------------------------------------------------------
// Instances: `gantry start` child processes, every one killed in afterEach if a test left it running.
// ---------------------------------------------------------------------------------------------------

interface Instance {
  readonly child: ChildProcessByStdio<null, Readable, Readable>;
  /** What its replies carry as `instance`. */
  readonly pid: string;
  readonly http: string;
  readonly grpc: string;
  /** Its stdout and stderr so far. */
  output(): string;
  /** Resolves with the exit code and signal once it has exited. */
  readonly exited: Promise<[number | null, NodeJS.Signals | null]>;
  /** SIGTERM, and the exit code (null when a signal ended it). */
  stop(): Promise<number | null>;
  /** SIGKILL, and waits for the exit. */
  kill(): Promise<void>;
}

const running = new Set<Instance>();

function alive(instance: Instance): boolean {
  return instance.child.exitCode === null && instance.child.signalCode === null;
}

/** Starts one instance in the registry `registry`; resolves once it says it registered. */
async function startInstance(registry: string, sets: readonly string[] = []): Promise<Instance> {
  const flags = ["grpc.port=0", "grpc.host=127.0.0.1", "http.port=0", "http.host=127.0.0.1", "log.level=warn", ...sets];
  const child = spawn(process.execPath, [BIN, "start", FIXTURE, ...flags.flatMap((flag) => ["--set", flag])], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, GANTRY_REGISTRY: registry },
  });
  const exited = once(child, "exit") as Promise<[number | null, NodeJS.Signals | null]>;
  let out = "";
  const append = (chunk: Buffer) => {
    out += chunk.toString();
  };
  child.stderr.on("data", append);
  child.stdout.on("data", append);
  const instance: Instance = {
    child,
    pid: String(child.pid),
    http: "",
    grpc: "",
    output: () => out,
    exited,
    async stop() {
      if (alive(instance)) child.kill("SIGTERM");
      const [code] = await exited;
      return code;
    },
    async kill() {
      if (alive(instance)) child.kill("SIGKILL");
      await exited;
    },
  };
  running.add(instance);
  const urls = await new Promise<{ http: string; grpc: string }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`an instance did not register within 15 s:\n${out}`)), 15_000);
    const check = () => {
      const http = /^\s+http\s+(http:\/\/\S+)$/m.exec(out);
      const grpc = /^\s+grpc\s+(grpc:\/\/\S+)$/m.exec(out);
      if (http !== null && grpc !== null && /registered in /.test(out)) {
        clearTimeout(timer);
        child.stdout.off("data", check);
        resolve({ http: http[1], grpc: grpc[1] });
      }
    };
    child.stdout.on("data", check);
    void exited.then(() => {
      clearTimeout(timer);
      reject(new Error(`an instance exited before it registered:\n${out}`));
    });
  }).catch(async (error: unknown) => {
    await instance.kill();
    throw error;
  });
  return Object.assign(instance, urls);
}

function startInstances(registry: string, count: number, sets: readonly string[] = []): Promise<Instance[]> {
  return Promise.all(Array.from({ length: count }, () => startInstance(registry, sets)));
}

/** Work calls that reached the instance's method, from its Stats, asked over HTTP directly (not balanced). */
async function workAttempts(instance: Instance): Promise<number> {
  const response = await fetch(`${instance.http}/${SERVICE}/Stats`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: "{}",
    signal: AbortSignal.timeout(5000),
  });
  expect(response.status).toBe(200);
  return ((await response.json()) as { work: number }).work;
}

// ---------------------------------------------------------------------------------------------------
// Callers: apps in this process with a typed client of FaultApi, closed in afterEach.
// ---------------------------------------------------------------------------------------------------

const callers = new Set<GantryApp>();

/** An app in this process that calls FaultService, found in `registry`, with `policy`. */
async function startCaller(registry: string, policy?: ClientPolicy): Promise<ServiceClient<FaultApi>> {
  const app = createApp({
    name: "caller",
    services: [],
    clients: [policy === undefined ? FaultApi : { service: FaultApi, policy }],
    clientTransports: [grpcClientTransport(), httpClientTransport()],
    discovery: discovery(),
    logger: { level: "warn" },
  });
  callers.add(app);
  await app.start({ env: { GANTRY_REGISTRY: registry } });
  return app.get(clientToken(FaultApi));
}

/** Calls until `count` different instances have answered (each is then known and connected), at most 10 s. */
async function reachAll(client: ServiceClient<FaultApi>, count: number): Promise<void> {
  const seen = new Set<string>();
  const until = Date.now() + 10_000;
  while (seen.size < count && Date.now() < until) {
    const replies = await Promise.all(
      Array.from({ length: 8 }, (_, i) => client.work({ id: `warm-${i}`, sleepMs: 0 }, { timeoutMs: 2000 })),
    );
    for (const reply of replies) seen.add(reply.instance);
  }
  expect(seen.size, "instances that answered the warm-up calls").toBe(count);
}

// ---------------------------------------------------------------------------------------------------
// Load: a bounded number of workers, each making one call at a time, until told to stop or a hard limit.
// ---------------------------------------------------------------------------------------------------

interface Outcome {
  /** Date.now() when the call ended. */
  readonly at: number;
  readonly instance?: string;
  readonly error?: unknown;
}

interface Load {
  readonly outcomes: Outcome[];
  /** Ends the loop; resolves once every worker's last call has ended. */
  stop(): Promise<Outcome[]>;
  /** Resolves when the workers have stopped by themselves (the hard limit). */
  readonly done: Promise<Outcome[]>;
}

/**
 * `workers` loops of one call at a time, until stopped, `maxMs` has passed or `maxCalls` calls have
 * been made in all.
 */
function startLoad(
  workers: number,
  limits: { readonly maxMs: number; readonly maxCalls?: number },
  call: (id: string) => Promise<{ instance: string }>,
): Load {
  const outcomes: Outcome[] = [];
  let stopped = false;
  let calls = 0;
  const maxCalls = limits.maxCalls ?? Number.POSITIVE_INFINITY;
  const hardEnd = Date.now() + limits.maxMs;
  const worker = async (w: number) => {
    for (let n = 0; !stopped && Date.now() < hardEnd && calls < maxCalls; n++) {
      calls++;
      try {
        const reply = await call(`w${w}-${n}`);
        outcomes.push({ at: Date.now(), instance: reply.instance });
      } catch (error) {
        outcomes.push({ at: Date.now(), error });
      }
    }
  };
  const done = Promise.all(Array.from({ length: workers }, (_, w) => worker(w))).then(() => outcomes);
  return {
    outcomes,
    done,
    stop() {
      stopped = true;
      return done;
    },
  };
}

/** Resolves once `condition()` holds, checking every 10 ms; fails after `timeoutMs`. */
async function until(condition: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting until ${what}`);
    await sleep(10);
  }
}

/** The failed calls, as `STATUS CODE: message` lines, for an assertion that shows what failed. */
function failures(outcomes: readonly Outcome[]): string[] {
  return outcomes.filter((o) => o.error !== undefined).map((o) => describeError(o.error));
}

function describeError(error: unknown): string {
  return isGantryError(error) ? `${error.status} ${error.code}: ${error.message}` : String(error);
}

function sharesOf(outcomes: readonly Outcome[]): Map<string, number> {
  const shares = new Map<string, number>();
  for (const { instance } of outcomes)
    if (instance !== undefined) shares.set(instance, (shares.get(instance) ?? 0) + 1);
  return shares;
}

/** Counts the runtime's retries of calls to FaultService (the `gantry:client:retry` channel) until `close()`. */
function countRetries(): { readonly messages: RetryMessage[]; close(): void } {
  const messages: RetryMessage[] = [];
  const listener = (message: unknown) => {
    if ((message as RetryMessage).service === SERVICE) messages.push(message as RetryMessage);
  };
  subscribe(clientChannels.retry, listener);
  return { messages, close: () => unsubscribe(clientChannels.retry, listener) };
}

// ---------------------------------------------------------------------------------------------------

describe("the typed client against real instances that fail", () => {
  let dir: string;
  /** A local:// namespace of this test's own, in a temporary directory. */
  let registry: string;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "gantry-client-faults-"));
    registry = `local://faults?dir=${encodeURIComponent(dir)}`;
  });

  afterEach(async () => {
    await Promise.allSettled([...callers].map((app) => app.close()));
    callers.clear();
    await Promise.allSettled([...running].map((instance) => instance.kill()));
    running.clear();
    await rm(dir, { recursive: true, force: true });
  });

  test.each([["grpc"], ["http"]])(
    "a SIGKILLed instance under load (%s) costs no idempotent call, and the other two take its share",
    async (transport) => {
      const instances = await startInstances(registry, 3);
      const client = await startCaller(registry, { timeoutMs: 2000, transports: [transport] });
      await reachAll(client, 3);
      const retries = countRetries();
      try {
        // 8 workers for 3 s; the victim dies at 1 s, with calls in flight to it.
        const load = startLoad(8, { maxMs: 3000 }, (id) => client.work({ id, sleepMs: 2 }));
        await sleep(1000);
        const [victim, ...survivors] = instances;
        const killedAt = Date.now();
        await victim.kill();
        const outcomes = await load.done;

        expect(failures(outcomes)).toEqual([]);
        const before = sharesOf(outcomes.filter((o) => o.at < killedAt));
        expect(before.get(victim.pid) ?? 0, "calls the victim answered before it died").toBeGreaterThan(0);
        // After the kill, calls keep flowing, to the two survivors only.
        const after = sharesOf(outcomes.filter((o) => o.at > killedAt + 100));
        expect(after.get(victim.pid)).toBeUndefined();
        for (const survivor of survivors) expect(after.get(survivor.pid) ?? 0).toBeGreaterThan(50);
        console.info(
          `SIGKILL under load: ${outcomes.length} calls, 0 failed, ${retries.messages.length} retries` +
            ` (${[...new Set(retries.messages.map((m) => m.error.code))].join(", ") || "none"}); after the kill` +
            ` ${[...after.values()].join(" + ")} calls`,
        );
      } finally {
        retries.close();
      }
    },
    30_000,
  );

  // The fixture's propagation delay is 300 ms (the default with discovery is 1 s). gRPC holds with none
  // at all: a draining server answers calls on open connections with GANTRY_ERR_SHUTTING_DOWN, then
  // GOAWAY and refused connections, all of which prove the call never ran. HTTP/1.1 needs the delay:
  // it has no GOAWAY, so when the server finally closes its idle keep-alive connections a request
  // written on one at that instant meets a reset, which cannot tell "never read" from "ran and the
  // connection died"; the delay lets callers stop choosing the instance first.
  test.each([
    ["grpc", 300],
    ["http", 300],
    ["grpc", 0],
  ])(
    "a rolling SIGTERM restart of every instance (%s, propagation delay %i ms) costs no call of a non-idempotent method",
    async (transport, delayMs) => {
      const sets = [`shutdown.propagationDelay=${delayMs}`];
      const instances = await startInstances(registry, 3, sets);
      const client = await startCaller(registry, { timeoutMs: 2000, transports: [transport] });
      await reachAll(client, 3);
      const retries = countRetries();
      try {
        const load = startLoad(8, { maxMs: 30_000 }, (id) => client.append({ id, value: id }));
        const replacements: Instance[] = [];
        try {
          for (const old of instances) {
            // A replacement first, registered, then the old one: SIGTERM, and a clean exit.
            const replacement = await startInstance(registry, sets);
            replacements.push(replacement);
            await until(() => load.outcomes.some((o) => o.instance === replacement.pid), "the replacement answers");
            expect(await old.stop(), `exit code of ${old.pid}:\n${old.output()}`).toBe(0);
          }
          const total = load.outcomes.length;
          await until(() => load.outcomes.length > total + 100, "100 more calls after the last restart");
        } finally {
          await load.stop();
        }
        const outcomes = load.outcomes;
        expect(failures(outcomes)).toEqual([]);
        const shares = sharesOf(outcomes);
        for (const replacement of replacements) expect(shares.get(replacement.pid) ?? 0).toBeGreaterThan(0);
        console.info(
          `rolling restart over ${transport}, delay ${delayMs} ms: ${outcomes.length} Append calls, 0 failed,` +
            ` ${retries.messages.length} retries (${[...new Set(retries.messages.map((m) => m.error.code))].join(", ") || "none"})`,
        );
      } finally {
        retries.close();
      }
    },
    45_000,
  );

  test("p2c sends an instance 200 ms slower than the others a small share of the calls", async () => {
    const [slow] = await Promise.all([
      startInstance(registry, ["fixture.delayMs=200"]),
      startInstance(registry),
      startInstance(registry),
    ]);
    const client = await startCaller(registry, { timeoutMs: 2000 });
    // 300 calls, 4 at a time, with the default balancer (p2c).
    const outcomes = await startLoad(4, { maxMs: 20_000, maxCalls: 300 }, (id) => client.work({ id, sleepMs: 0 })).done;
    expect(failures(outcomes)).toEqual([]);
    expect(outcomes).toHaveLength(300);
    const shares = sharesOf(outcomes);
    const slowCalls = shares.get(slow.pid) ?? 0;
    console.info(`slow instance: ${slowCalls} of 300 calls; shares ${[...shares.values()].join(" / ")}`);
    // Uniform picks would give it 100 (a third). p2c compares latency EWMA × (calls in flight + 1): before
    // the slow instance's first answer it is probed like the others (at most 4 calls, one per worker);
    // once it has answered (200 ms) it costs more than a fast instance with all 4 workers on it, and over
    // a test this short its EWMA does not decay enough to be probed again. 10% (30) leaves room for a
    // loaded machine, where the fast instances' own first answers (connection set-up) are slow too.
    expect(slowCalls).toBeLessThan(30);
  }, 30_000);

  test("with every instance SIGKILLed a call fails fast with UNAVAILABLE, never waits out its deadline", async () => {
    const instances = await startInstances(registry, 3);
    const client = await startCaller(registry);
    await reachAll(client, 3);
    await Promise.all(instances.map((instance) => instance.kill()));

    const codes = new Set<string>();
    // At once (the registry may still list them, connections are refused), then for 3 s after, while the
    // registry removes them (local:// checks the holders' pids at every rescan, at least once a second).
    const end = Date.now() + 3000;
    for (let n = 0; Date.now() < end; n++) {
      const started = Date.now();
      const error = await client.work({ id: `down-${n}`, sleepMs: 0 }, { timeoutMs: 5000 }).then(
        () => undefined,
        (caught: unknown) => caught,
      );
      const elapsed = Date.now() - started;
      expect(isGantryError(error), `call ${n} failed with a GantryError, not ${String(error)}`).toBe(true);
      if (!isGantryError(error)) return;
      expect(error.status, describeError(error)).toBe("UNAVAILABLE");
      // Well under the 5 s deadline: refused connections and an empty registry are known at once.
      expect(elapsed, describeError(error)).toBeLessThan(1000);
      codes.add(error.code);
      await sleep(100);
    }
    // In the end the registry has dropped them: no instances at all.
    expect(codes).toContain("GANTRY_ERR_NO_INSTANCES");
    console.info(`all down: codes seen ${[...codes].join(", ")}`);
  }, 30_000);

  test("while every instance answers UNAVAILABLE, retries stay within the budget (10% of calls + 10/s)", async () => {
    const instances = await startInstances(registry, 3, ["fixture.unavailable=true"]);
    // The adaptive throttle off, so that every call goes out and the budget alone limits the retries
    // (with it on, it rejects most calls locally before they would deposit or spend anything).
    const client = await startCaller(registry, { timeoutMs: 2000, throttle: false });
    const retries = countRetries();
    try {
      const started = Date.now();
      const outcomes = await startLoad(4, { maxMs: 2000 }, (id) => client.work({ id, sleepMs: 0 })).done;
      const seconds = (Date.now() - started) / 1000;
      retries.close();

      const calls = outcomes.length;
      const codes = new Set(outcomes.map((o) => (isGantryError(o.error) ? o.error.code : describeError(o.error))));
      expect([...codes]).toEqual(["FIXTURE_UNAVAILABLE"]);
      const retried = retries.messages.length;
      // Every attempt reached one instance: the first of each call, and every retry.
      const attempts = (await Promise.all(instances.map(workAttempts))).reduce((a, b) => a + b, 0);
      expect(attempts).toBe(calls + retried);
      // Without a budget each call would be tried maxAttempts (3) times: 2 retries per call. The budget:
      // 0.1 token per call, plus a floor that starts at 10 and refills at 10 a second.
      const allowed = 0.1 * calls + 10 + 10 * seconds;
      console.info(
        `UNAVAILABLE everywhere: ${calls} calls in ${seconds.toFixed(1)} s, ${retried} retries` +
          ` (${((100 * retried) / calls).toFixed(1)}% of calls; the budget allows ${Math.floor(allowed)})`,
      );
      expect(retried).toBeGreaterThan(0);
      expect(retried).toBeLessThanOrEqual(Math.floor(allowed));
    } finally {
      retries.close();
    }
  }, 30_000);

  test.each([["grpc"], ["http"]])(
    "a 300 ms deadline over %s ends the call at 300 ms, and the callee's signal aborts",
    async (transport) => {
      const [instance] = await startInstances(registry, 1);
      const client = await startCaller(registry, { transports: [transport] });
      await reachAll(client, 1);

      const id = `deadline-over-${transport}`;
      const started = Date.now();
      const error = await client.work({ id, sleepMs: 1000 }, { timeoutMs: 300 }).then(
        () => undefined,
        (caught: unknown) => caught,
      );
      const elapsed = Date.now() - started;
      expect(isGantryError(error) ? error.status : error, describeError(error)).toBe("DEADLINE_EXCEEDED");
      expect(elapsed).toBeGreaterThanOrEqual(295);
      expect(elapsed).toBeLessThan(800);

      // The callee's own log: its call's signal aborted, long before its 1 s sleep would have ended.
      const logLine = () =>
        instance
          .output()
          .split("\n")
          .find((l) => l.includes(`"id":"${id}"`));
      await expect.poll(logLine, { timeout: 3000 }).toBeDefined();
      const line = logLine() as string;
      const logged = JSON.parse(line) as { msg: string; transport: string; afterMs: number; reason: string };
      expect(logged).toMatchObject({ msg: "work aborted", transport });
      expect(["GANTRY_ERR_DEADLINE_EXCEEDED", "GANTRY_ERR_CANCELLED"]).toContain(logged.reason);
      expect(logged.afterMs).toBeLessThan(800);
      console.info(
        `deadline over ${transport}: caller ${elapsed} ms; callee aborted after ${logged.afterMs} ms (${logged.reason})`,
      );
    },
    30_000,
  );
});
