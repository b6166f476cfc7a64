/**
 * The client section: the same Gantry gRPC server called by a hand-written @grpc/grpc-js client and by
 * the Gantry client (an app's typed client: discovery through `local://`, the client runtime's
 * deadline, retry budget, p2c balancer and outlier ejection, then the gRPC channel), with the same
 * number of calls in flight, the same request, the same codec and the same deadline on every call.
 * The load generator (src/client-load.ts) is what is measured: its calls/s and its CPU time per call.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import type { LoadOptions } from "./client-load.js";
import {
  interleaved,
  type MeasuredRun,
  type Place,
  printDiscarded,
  type Ratio,
  ratioLine,
  ratioOf,
  repLabel,
  type Summary,
  summarize,
  type Target,
  verdictOf,
} from "./measure.js";
import { clockTicks, coreTicks, processTicks } from "./proc-cpu.js";
import type { BenchOptions, Section } from "./section.js";
import { type ServerExit, startServer } from "./server-process.js";
import { median } from "./stats.js";
import { formatInteger, formatMs, formatPercent, formatTable } from "./table.js";

/**
 * Calls in flight at every moment, on one connection each way: 64 loops of one call at a time, as a
 * busy service's handlers calling one dependency would keep them.
 */
const CONCURRENCY = 64;
/** Every call of both contenders carries a deadline, as calls between services do. */
const DEADLINE_MS = 10_000;
/**
 * Above this the server's core, not the client, may be what holds the rate back: the run measures the
 * server and does not count. (The server is the same for both contenders and costs a fraction of what
 * a client does per call, so on a quiet machine it stays far below.)
 */
const MAX_SERVER_CPU = 0.9;
/**
 * A run in which other processes took more than this share of either core measures them, not the
 * contenders: not counted. The load generator does not fill its core (it waits on the connection's
 * round trips), so a neighbour on the server's core slows it too, through the server's latency.
 */
const MAX_OTHER_CPU = 0.2;

const LOAD = fileURLToPath(new URL("./client-load.js", import.meta.url));
const SERVER = fileURLToPath(new URL("./servers/gantry-client-server.js", import.meta.url));
const GANTRY_BIN = fileURLToPath(new URL("./bin.js", import.meta.resolve("@gantry/cli")));

type ContenderId = "grpc-js" | "gantry";

interface Contender {
  readonly id: ContenderId;
  readonly label: string;
  readonly load: LoadOptions["contender"];
}

const CONTENDERS: readonly Contender[] = [
  { id: "grpc-js", label: "grpc-js client (hand-written)", load: "raw" },
  { id: "gantry", label: "gantry client (discovery + runtime)", load: "gantry" },
];

/** DESIGN.md, "Numbers we hold ourselves to": the Gantry client >= 0.9x a raw grpc-js client. */
const TARGET: Target = { name: "gantry / grpc-js client", numerator: "gantry", denominator: "grpc-js", min: 0.9 };

/** What the load generator prints at the end of the measured window. */
interface WindowFigures {
  readonly calls: number;
  readonly errors: number;
  readonly seconds: number;
  readonly callsPerSec: number;
  /** Its own CPU time over the window (process.cpuUsage: every thread, user and system). */
  readonly cpuSeconds: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
}

/** What it prints once every call has ended and its client is closed. */
interface LoadTotals {
  /** OK replies over the whole run: warm-up, window and the calls in flight when it ended. */
  readonly ok: number;
  readonly errors: number;
  readonly firstError?: string;
}

interface CpuWindow {
  /** Shares of one core over the measured window (1 = fully busy). */
  readonly client: number;
  readonly server: number;
  readonly otherOnLoadCore: number;
  readonly otherOnServerCore: number;
}

interface Run extends MeasuredRun {
  readonly contender: ContenderId;
  readonly cpu: CpuWindow;
  readonly window: WindowFigures;
  readonly totals: LoadTotals;
  readonly loadExit: { readonly code: number | null; readonly signal: NodeJS.Signals | null; readonly stderr: string };
  readonly server: ServerExit;
}

export const clientSection: Section = {
  name: "client",
  description: "Gantry's typed client (discovery, balancer, breaker, retry) against a raw grpc-js client, same server",
  tools: [{ command: "taskset", debianPackage: "util-linux" }],
  run: runClient,
};

async function runClient(options: BenchOptions): Promise<unknown> {
  const dir = await mkdtemp(join(tmpdir(), "gantry-bench-client-"));
  try {
    console.log(`\n== client: unary /bench.v1.Greeter/SayHello, ${CONCURRENCY} calls in flight ==`);
    const runs = await interleaved(CONTENDERS, options.reps, async (contender, place) => {
      const run = await runOnce(contender, place, dir, options);
      logRun(run, options);
      return run;
    });
    const summaries = CONTENDERS.map((contender) => summarize(contender, runs));
    const ratio = ratioOf(TARGET, summaries);
    const addedMicrosPerCall = microsOf(summaries, "gantry") - microsOf(summaries, "grpc-js");
    printReport(options, summaries, ratio, addedMicrosPerCall, runs);
    return {
      section: "client",
      date: new Date().toISOString(),
      node: process.version,
      options,
      concurrency: CONCURRENCY,
      deadlineMs: DEADLINE_MS,
      maxServerCpu: MAX_SERVER_CPU,
      maxOtherCpu: MAX_OTHER_CPU,
      contenders: summaries,
      ratios: [ratio],
      addedMicrosPerCall,
      runs,
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** One run: a fresh server in a registry of its own, a fresh load generator, warm-up, measured window. */
async function runOnce(contender: Contender, place: Place, dir: string, options: BenchOptions): Promise<Run> {
  const namespace = `client-${place.rep}-${place.attempt}-${contender.id}`;
  const registry = `local://${namespace}?dir=${encodeURIComponent(dir)}`;
  const settings = ["grpc.port=0", "grpc.host=127.0.0.1", "log.level=silent", `registry.url=${registry}`];
  const args = ["start", SERVER, ...settings.flatMap((setting) => ["--set", setting])];
  // `gantry start` prints the port once the server listens and has registered.
  const server = await startServer(GANTRY_BIN, args, options.serverCore);
  let load: LoadResult;
  try {
    load = await runLoad(
      {
        contender: contender.load,
        address: `127.0.0.1:${server.port}`,
        registry,
        concurrency: CONCURRENCY,
        warmupS: options.warmupS,
        durationS: options.durationS,
        deadlineMs: DEADLINE_MS,
      },
      server.pid,
      options,
    );
  } catch (error) {
    await server.stop();
    throw error;
  }
  const exit = await server.stop();
  const { window, totals, cpu, loadExit } = load;
  const discardedBecause = discardReasons(window, totals, cpu, loadExit, exit);
  return {
    contender: contender.id,
    rep: place.rep,
    attempt: place.attempt,
    position: place.position,
    requestsPerSec: window.callsPerSec,
    cpuMicrosPerRequest: (window.cpuSeconds * 1e6) / window.calls,
    p99Ms: window.p99Ms,
    cpu,
    window,
    totals,
    loadExit,
    server: exit,
    counted: discardedBecause.length === 0,
    discardedBecause,
  };
}

interface LoadResult {
  readonly window: WindowFigures;
  readonly totals: LoadTotals;
  readonly cpu: CpuWindow;
  readonly loadExit: Run["loadExit"];
}

const LOAD_TIMEOUT_MS = 60_000;

/** Load generators still running, killed if the driver itself dies part way. */
const loads = new Set<ChildProcess>();
process.on("exit", () => {
  for (const child of loads) child.kill("SIGKILL");
});

/**
 * Runs the load generator pinned to the load core, and measures who used the two cores between its
 * `start` and `end` lines (the measured window).
 */
async function runLoad(load: LoadOptions, serverPid: number, options: BenchOptions): Promise<LoadResult> {
  const child = spawn("taskset", ["-c", String(options.loadCore), process.execPath, LOAD, JSON.stringify(load)], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  loads.add(child);
  const closed = once(child, "close") as Promise<[number | null, NodeJS.Signals | null]>;
  let stderr = "";
  child.stderr?.setEncoding("utf8").on("data", (text: string) => {
    stderr += text;
  });
  const cores = { load: options.loadCore, server: options.serverCore };
  const pid = child.pid as number;
  let before: Snapshot | undefined;
  let after: Snapshot | undefined;
  let window: WindowFigures | undefined;
  let totals: LoadTotals | undefined;
  createInterface({ input: child.stdout as NodeJS.ReadableStream }).on("line", (line) => {
    const message = parseLine(line);
    if (message?.event === "start") before = snapshot(cores, pid, serverPid);
    else if (message?.event === "end") {
      after = snapshot(cores, pid, serverPid);
      window = message as unknown as WindowFigures;
    } else if (message?.event === "exit") totals = message as unknown as LoadTotals;
  });
  const timer = setTimeout(() => child.kill("SIGKILL"), LOAD_TIMEOUT_MS);
  const [code, signal] = await closed;
  clearTimeout(timer);
  loads.delete(child);
  if (window === undefined || totals === undefined || before === undefined || after === undefined) {
    throw new Error(`the load generator (${load.contender}) ended early (code ${code}, signal ${signal}):\n${stderr}`);
  }
  const elapsed = ((after.at - before.at) / 1000) * clockTicks();
  const client = (after.client - before.client) / elapsed;
  const server = (after.server - before.server) / elapsed;
  const cpu: CpuWindow = {
    client,
    server,
    otherOnLoadCore: Math.max(0, (after.loadCore - before.loadCore) / elapsed - client),
    otherOnServerCore: Math.max(0, (after.serverCore - before.serverCore) / elapsed - server),
  };
  return { window, totals, cpu, loadExit: { code, signal, stderr } };
}

interface Snapshot {
  readonly at: number;
  readonly client: number;
  readonly server: number;
  readonly loadCore: number;
  readonly serverCore: number;
}

function snapshot(cores: { load: number; server: number }, clientPid: number, serverPid: number): Snapshot {
  return {
    at: performance.now(),
    client: processTicks(clientPid),
    server: processTicks(serverPid),
    loadCore: coreTicks(cores.load),
    serverCore: coreTicks(cores.server),
  };
}

function parseLine(line: string): Record<string, unknown> | undefined {
  if (!line.startsWith("{")) return undefined;
  try {
    return JSON.parse(line) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

/** Why a run does not count; empty when it does. */
function discardReasons(
  window: WindowFigures,
  totals: LoadTotals,
  cpu: CpuWindow,
  loadExit: Run["loadExit"],
  exit: ServerExit,
): string[] {
  const reasons: string[] = [];
  if (totals.errors > 0) reasons.push(`${totals.errors} calls failed (${totals.firstError})`);
  if (loadExit.code !== 0) reasons.push(`the load generator exited with code ${loadExit.code}: ${loadExit.stderr}`);
  if (cpu.server >= MAX_SERVER_CPU) {
    reasons.push(
      `server CPU ${formatPercent(cpu.server, 1)} >= ${formatPercent(MAX_SERVER_CPU)}: the server may be the limit`,
    );
  }
  if (cpu.otherOnLoadCore > MAX_OTHER_CPU || cpu.otherOnServerCore > MAX_OTHER_CPU) {
    reasons.push(
      `other processes used ${formatPercent(cpu.otherOnLoadCore)} of the load generator's core and` +
        ` ${formatPercent(cpu.otherOnServerCore)} of the server's (> ${formatPercent(MAX_OTHER_CPU)})`,
    );
  }
  if (!exit.clean) reasons.push(`server did not exit cleanly on SIGTERM (code ${exit.code}, signal ${exit.signal})`);
  // Every call the client saw succeed is one the server answered OK, and no other: no retries, no
  // calls the client gave up on that the server still ran.
  const stats = exit.stats as { served?: unknown; ok?: unknown };
  if (stats.served !== totals.ok) reasons.push(`server sent ${stats.served} OK replies, the client got ${totals.ok}`);
  if (stats.ok !== stats.served) reasons.push(`the method counted ${stats.ok} OK replies, grpc-js ${stats.served}`);
  if (window.calls === 0) reasons.push("no call ended in the measured window");
  return reasons;
}

function microsOf(summaries: readonly Summary[], id: ContenderId): number {
  return summaries.find((s) => s.contender === id)?.cpuMicrosPerRequest?.median ?? Number.NaN;
}

function logRun(run: Run, options: BenchOptions): void {
  const figures =
    `${formatInteger(run.requestsPerSec).padStart(7)} calls/s  p99 ${formatMs(run.p99Ms).padStart(9)}` +
    `  client CPU ${formatPercent(run.cpu.client).padStart(4)}  ${run.cpuMicrosPerRequest.toFixed(1).padStart(6)} µs/call` +
    `  server CPU ${formatPercent(run.cpu.server).padStart(4)}`;
  console.log(`  ${repLabel(run, options.reps).padEnd(16)} ${run.contender.padEnd(8)}  ${figures}  ${verdictOf(run)}`);
}

function printReport(
  options: BenchOptions,
  summaries: readonly Summary[],
  ratio: Ratio,
  addedMicrosPerCall: number,
  runs: readonly Run[],
): void {
  console.log(
    `\nunary /bench.v1.Greeter/SayHello: medians of the counted runs of ${options.durationS} s` +
      ` (after ${options.warmupS} s of warm-up), ${options.reps} per contender; ${CONCURRENCY} calls in flight,` +
      ` a ${DEADLINE_MS / 1000} s deadline on each; load generator on core ${options.loadCore},` +
      ` server (gantry start, local://) on core ${options.serverCore}`,
  );
  const rows = summaries.map((summary) => {
    const mine = runs.filter((run) => run.contender === summary.contender && run.counted);
    const rate = summary.requestsPerSec;
    return [
      summary.label,
      formatInteger(rate?.median ?? Number.NaN),
      rate === undefined ? "n/a" : `${formatInteger(rate.min)}–${formatInteger(rate.max)}`,
      summary.cpuMicrosPerRequest === undefined ? "n/a" : summary.cpuMicrosPerRequest.median.toFixed(1),
      formatMs(summary.p99Ms),
      formatPercent(median(mine.map((run) => run.cpu.client))),
      formatPercent(median(mine.map((run) => run.cpu.server))),
      `${summary.counted}/${options.reps}`,
      String(summary.discarded),
    ];
  });
  const header = [
    "contender",
    "calls/s",
    "spread (min–max)",
    "client µs CPU/call",
    "p99",
    "client CPU",
    "server CPU",
    "counted",
    "discarded",
  ];
  console.log(
    formatTable(header, rows, ["left", "right", "right", "right", "right", "right", "right", "right", "right"]),
  );
  console.log(ratioLine(ratio, "call"));
  const added = Number.isNaN(addedMicrosPerCall) ? "n/a" : `${addedMicrosPerCall.toFixed(1)} µs`;
  console.log(`added by the Gantry client: ${added} of client CPU per call (median minus median)`);
  console.log(
    "every counted run: zero failed calls, the server's OK replies = the client's OK replies," +
      ` server CPU < ${formatPercent(MAX_SERVER_CPU)}, other processes <= ${formatPercent(MAX_OTHER_CPU)} of each core`,
  );
  printDiscarded(runs);
}
