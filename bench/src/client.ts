/**
 * The client section: the same Gantry gRPC server called by a hand-written @grpc/grpc-js client and by
 * the Gantry client (an app's typed client: discovery through `local://`, the client runtime's
 * deadline, retry budget, p2c balancer and outlier ejection, then the gRPC channel), with the same
 * number of calls in flight, the same request, the same codec and the same deadline on every call.
 * The load generator (src/client-load.ts) is what is measured: it holds both clients and runs them in
 * pairs of blocks, and the section's figure is the median of the pairs' ratios.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import type { BlockFigures, LoadContender, LoadOptions, LoadTotals } from "./client-load.js";
import { type Ratio, ratioLine } from "./measure.js";
import type { BenchOptions, Section } from "./section.js";
import { parseJsonLine, type ServerExit, startServer } from "./server-process.js";
import { median, type Spread, spread } from "./stats.js";
import { formatInteger, formatMs, formatPercent, formatTable } from "./table.js";

/**
 * Calls in flight at every moment, on one connection each: 64 loops of one call at a time, as a busy
 * service's handlers calling one dependency would keep them.
 */
const CONCURRENCY = 64;
/** Every call of both contenders carries a deadline, as calls between services do. */
const DEADLINE_MS = 10_000;
/** About how long each block lasts: two blocks of a pair are this close in time. */
const BLOCK_S = 0.25;
/**
 * Above this the server's core, not the client, may be what holds the rate back: the pair measures the
 * server and does not count. (The server is the same for both contenders and costs a fraction of what
 * a client does per call, so on a quiet machine it stays far below.)
 */
const MAX_SERVER_CPU = 0.9;
/**
 * A block in which other processes took more than this share of either core measures them, not the
 * contenders: its pair does not count. The load generator does not fill its core (it waits on the
 * connection's round trips), so a neighbour on the server's core slows it too, through the latency.
 */
const MAX_OTHER_CPU = 0.2;
/**
 * Seconds of load per client before the first pair (at least; `--duration` does not change it). Both
 * clients run slower for their first seconds under load, until V8 has optimized their code; the
 * Gantry client, with more code on its path, for longer: with 2 s its first pairs ran 20–40% below
 * its later ones, which measured the JIT, not the client.
 */
const WARMUP_S = 6;
/** How many times a discarded repetition is taken again (a fresh server and load generator). */
const ATTEMPTS = 3;

const LOAD = fileURLToPath(new URL("./client-load.js", import.meta.url));
const SERVER = fileURLToPath(new URL("./servers/gantry-client-server.js", import.meta.url));
const GANTRY_BIN = fileURLToPath(new URL("./bin.js", import.meta.resolve("@gantry/cli")));

const BASELINE: LoadContender = "raw";
const CONTENDER: LoadContender = "gantry";
const LABELS: Readonly<Record<string, string>> = {
  raw: "grpc-js client (hand-written)",
  gantry: "gantry client (discovery + runtime)",
};

/** DESIGN.md, "Numbers we hold ourselves to": the Gantry client >= 0.9x a raw grpc-js client. */
const TARGET = { name: "gantry / grpc-js client", min: 0.9 };

/** One pair of blocks, and whether it counts. */
interface Pair {
  readonly rep: number;
  readonly pair: number;
  /** calls/s of the Gantry client over the grpc-js client's. */
  readonly ratio: number;
  /** The grpc-js client's CPU time per call over the Gantry client's (less time is faster). */
  readonly byCpuTime: number;
  /** What the Gantry client's CPU time per call exceeds the grpc-js client's by, µs. */
  readonly addedMicros: number;
  readonly counted: boolean;
  readonly discardedBecause: readonly string[];
}

/** One repetition: a fresh server and load generator, its blocks, and whether it counts. */
interface Rep {
  readonly rep: number;
  readonly attempt: number;
  readonly blocks: readonly BlockFigures[];
  readonly pairs: readonly Pair[];
  readonly totals: LoadTotals | undefined;
  readonly loadExit: { readonly code: number | null; readonly signal: NodeJS.Signals | null; readonly stderr: string };
  readonly server: ServerExit;
  readonly counted: boolean;
  readonly discardedBecause: readonly string[];
}

interface ContenderSummary {
  readonly contender: LoadContender;
  readonly label: string;
  readonly callsPerSec: Spread | undefined;
  readonly cpuMicrosPerCall: number;
  readonly p99Ms: number;
  readonly clientCpu: number;
  readonly serverCpu: number;
}

export const clientSection: Section = {
  name: "client",
  description: "Gantry's typed client (discovery, balancer, breaker, retry) against a raw grpc-js client, same server",
  tools: [{ command: "taskset", debianPackage: "util-linux" }],
  run: runClient,
};

async function runClient(options: BenchOptions): Promise<unknown> {
  const dir = await mkdtemp(join(tmpdir(), "gantry-bench-client-"));
  const pairsPerRep = Math.max(1, Math.round(options.durationS / BLOCK_S));
  try {
    console.log(
      `\n== client: unary /bench.v1.Greeter/SayHello, ${CONCURRENCY} calls in flight,` +
        ` ${pairsPerRep} pairs of ~${BLOCK_S} s blocks per repetition ==`,
    );
    const reps: Rep[] = [];
    for (let rep = 1; rep <= options.reps; rep++) {
      for (let attempt = 1; attempt <= ATTEMPTS; attempt++) {
        const taken = await runRep(rep, attempt, pairsPerRep, dir, options);
        reps.push(taken);
        logRep(taken, options);
        if (taken.counted) break;
      }
    }
    const counted = reps.filter((rep) => rep.counted).flatMap((rep) => rep.pairs.filter((pair) => pair.counted));
    const blocks = countedBlocks(reps);
    const summaries = [BASELINE, CONTENDER].map((contender) => summarize(contender, blocks));
    const value = median(counted.map((pair) => pair.ratio));
    const ratio: Ratio = {
      name: TARGET.name,
      value,
      byCpuTime: median(counted.map((pair) => pair.byCpuTime)),
      min: TARGET.min,
      pass: value >= TARGET.min,
    };
    const addedMicrosPerCall = median(counted.map((pair) => pair.addedMicros));
    printReport(options, pairsPerRep, summaries, ratio, addedMicrosPerCall, counted, reps);
    return {
      section: "client",
      date: new Date().toISOString(),
      node: process.version,
      options,
      concurrency: CONCURRENCY,
      deadlineMs: DEADLINE_MS,
      blockS: BLOCK_S,
      pairsPerRep,
      maxServerCpu: MAX_SERVER_CPU,
      maxOtherCpu: MAX_OTHER_CPU,
      contenders: summaries,
      ratios: [ratio],
      addedMicrosPerCall,
      ratioSpread: counted.length === 0 ? undefined : spread(counted.map((pair) => pair.ratio)),
      reps,
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** One repetition: a fresh server in a registry of its own, a fresh load generator holding both clients. */
async function runRep(rep: number, attempt: number, pairs: number, dir: string, options: BenchOptions): Promise<Rep> {
  const namespace = `client-${rep}-${attempt}`;
  const registry = `local://${namespace}?dir=${encodeURIComponent(dir)}`;
  const settings = ["grpc.port=0", "grpc.host=127.0.0.1", "log.level=silent", `registry.url=${registry}`];
  const args = ["start", SERVER, ...settings.flatMap((setting) => ["--set", setting])];
  // `gantry start` prints the port once the server listens and has registered.
  const server = await startServer(GANTRY_BIN, args, options.serverCore);
  // Which contender opens the first pair alternates between repetitions.
  const contenders = rep % 2 === 1 ? [BASELINE, CONTENDER] : [CONTENDER, BASELINE];
  let load: LoadResult;
  try {
    load = await runLoad({
      contenders,
      address: `127.0.0.1:${server.port}`,
      registry,
      concurrency: CONCURRENCY,
      warmupS: Math.max(options.warmupS, WARMUP_S),
      pairs,
      blockS: BLOCK_S,
      deadlineMs: DEADLINE_MS,
      serverPid: server.pid,
      loadCore: options.loadCore,
      serverCore: options.serverCore,
    });
  } catch (error) {
    await server.stop();
    throw error;
  }
  const exit = await server.stop();
  const { blocks, totals, loadExit } = load;
  const discardedBecause = repDiscardReasons(blocks, totals, loadExit, exit, pairs);
  return {
    rep,
    attempt,
    blocks,
    pairs: pairsOf(rep, blocks),
    totals,
    loadExit,
    server: exit,
    counted: discardedBecause.length === 0,
    discardedBecause,
  };
}

/** The pairs of a repetition's blocks, each with its ratio and whether it counts. */
function pairsOf(rep: number, blocks: readonly BlockFigures[]): Pair[] {
  const pairs: Pair[] = [];
  const numbers = new Set(blocks.map((block) => block.pair));
  for (const pair of numbers) {
    const base = blocks.find((block) => block.pair === pair && block.contender === BASELINE);
    const ours = blocks.find((block) => block.pair === pair && block.contender === CONTENDER);
    if (base === undefined || ours === undefined) continue;
    const reasons = [...blockDiscardReasons(base), ...blockDiscardReasons(ours)];
    const baseMicros = (base.cpuSeconds * 1e6) / base.calls;
    const ourMicros = (ours.cpuSeconds * 1e6) / ours.calls;
    pairs.push({
      rep,
      pair,
      ratio: ours.callsPerSec / base.callsPerSec,
      byCpuTime: baseMicros / ourMicros,
      addedMicros: ourMicros - baseMicros,
      counted: reasons.length === 0,
      discardedBecause: reasons,
    });
  }
  return pairs;
}

/** Why a block's pair does not count; empty when it may. */
function blockDiscardReasons(block: BlockFigures): string[] {
  const reasons: string[] = [];
  const { cpu } = block;
  if (cpu.server >= MAX_SERVER_CPU) {
    reasons.push(
      `${block.contender}: server CPU ${formatPercent(cpu.server, 1)} >= ${formatPercent(MAX_SERVER_CPU)}: the server may be the limit`,
    );
  }
  if (cpu.otherOnLoadCore > MAX_OTHER_CPU || cpu.otherOnServerCore > MAX_OTHER_CPU) {
    reasons.push(
      `${block.contender}: other processes used ${formatPercent(cpu.otherOnLoadCore)} of the load generator's core and` +
        ` ${formatPercent(cpu.otherOnServerCore)} of the server's (> ${formatPercent(MAX_OTHER_CPU)})`,
    );
  }
  if (block.calls === 0) reasons.push(`${block.contender}: no call succeeded`);
  return reasons;
}

/** Why a whole repetition does not count; empty when it does. */
function repDiscardReasons(
  blocks: readonly BlockFigures[],
  totals: LoadTotals | undefined,
  loadExit: Rep["loadExit"],
  exit: ServerExit,
  pairs: number,
): string[] {
  const reasons: string[] = [];
  if (totals === undefined) return [`the load generator ended early (code ${loadExit.code}): ${loadExit.stderr}`];
  if (totals.errors > 0) reasons.push(`${totals.errors} calls failed (${totals.firstError})`);
  if (loadExit.code !== 0) reasons.push(`the load generator exited with code ${loadExit.code}: ${loadExit.stderr}`);
  if (blocks.length !== 2 * pairs) reasons.push(`${blocks.length} blocks instead of ${2 * pairs}`);
  if (!exit.clean) reasons.push(`server did not exit cleanly on SIGTERM (code ${exit.code}, signal ${exit.signal})`);
  // Every call a client saw succeed is one the server answered OK, and no other: no retries, no calls
  // a client gave up on that the server still ran.
  const stats = exit.stats as { served?: unknown; ok?: unknown };
  if (stats.served !== totals.ok) reasons.push(`server sent ${stats.served} OK replies, the clients got ${totals.ok}`);
  if (stats.ok !== stats.served) reasons.push(`the method counted ${stats.ok} OK replies, grpc-js ${stats.served}`);
  return reasons;
}

interface LoadResult {
  readonly blocks: BlockFigures[];
  readonly totals: LoadTotals | undefined;
  readonly loadExit: Rep["loadExit"];
}

/** Long enough for the warm-ups and every block at a tenth of this machine's rate. */
const LOAD_TIMEOUT_MS = 600_000;

/** Load generators still running, killed if the driver itself dies part way. */
const loads = new Set<ChildProcess>();
process.on("exit", () => {
  for (const child of loads) child.kill("SIGKILL");
});

/** Runs the load generator pinned to the load core, and collects its blocks as they end. */
async function runLoad(load: LoadOptions): Promise<LoadResult> {
  const child = spawn("taskset", ["-c", String(load.loadCore), process.execPath, LOAD, JSON.stringify(load)], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  loads.add(child);
  const closed = once(child, "close") as Promise<[number | null, NodeJS.Signals | null]>;
  let stderr = "";
  child.stderr?.setEncoding("utf8").on("data", (text: string) => {
    stderr += text;
  });
  const blocks: BlockFigures[] = [];
  let totals: LoadTotals | undefined;
  createInterface({ input: child.stdout as NodeJS.ReadableStream }).on("line", (line) => {
    const message = parseJsonLine(line);
    if (message?.event === "block") blocks.push(message as unknown as BlockFigures);
    else if (message?.event === "exit") totals = message as unknown as LoadTotals;
  });
  const timer = setTimeout(() => child.kill("SIGKILL"), LOAD_TIMEOUT_MS);
  const [code, signal] = await closed;
  clearTimeout(timer);
  loads.delete(child);
  return { blocks, totals, loadExit: { code, signal, stderr } };
}

/** The blocks of counted pairs of counted repetitions. */
function countedBlocks(reps: readonly Rep[]): BlockFigures[] {
  return reps
    .filter((rep) => rep.counted)
    .flatMap((rep) => {
      const counted = new Set(rep.pairs.filter((pair) => pair.counted).map((pair) => pair.pair));
      return rep.blocks.filter((block) => counted.has(block.pair));
    });
}

function summarize(contender: LoadContender, blocks: readonly BlockFigures[]): ContenderSummary {
  const mine = blocks.filter((block) => block.contender === contender);
  return {
    contender,
    label: LABELS[contender] ?? contender,
    callsPerSec: mine.length === 0 ? undefined : spread(mine.map((block) => block.callsPerSec)),
    cpuMicrosPerCall: median(mine.map((block) => (block.cpuSeconds * 1e6) / block.calls)),
    p99Ms: median(mine.map((block) => block.p99Ms)),
    clientCpu: median(mine.map((block) => block.cpu.client)),
    serverCpu: median(mine.map((block) => block.cpu.server)),
  };
}

function logRep(rep: Rep, options: BenchOptions): void {
  const label = `rep ${rep.rep}/${options.reps}${rep.attempt > 1 ? ` (run ${rep.attempt})` : ""}`;
  const counted = rep.pairs.filter((pair) => pair.counted);
  const rate = (contender: LoadContender) =>
    formatInteger(median(rep.blocks.filter((b) => b.contender === contender).map((b) => b.callsPerSec)));
  const figures =
    `grpc-js ${rate(BASELINE).padStart(6)} calls/s  gantry ${rate(CONTENDER).padStart(6)} calls/s` +
    `  ratio ${median(counted.map((pair) => pair.ratio)).toFixed(3)} (median of ${counted.length}/${rep.pairs.length} pairs)` +
    `  added ${median(counted.map((pair) => pair.addedMicros)).toFixed(1)} µs/call`;
  const verdict = rep.counted ? "counted" : `DISCARDED: ${rep.discardedBecause.join("; ")}`;
  console.log(`  ${label.padEnd(16)} ${figures}  ${verdict}`);
  for (const pair of rep.pairs.filter((p) => !p.counted)) {
    console.log(`    pair ${pair.pair} not counted: ${pair.discardedBecause.join("; ")}`);
  }
}

function printReport(
  options: BenchOptions,
  pairsPerRep: number,
  summaries: readonly ContenderSummary[],
  ratio: Ratio,
  addedMicrosPerCall: number,
  counted: readonly Pair[],
  reps: readonly Rep[],
): void {
  console.log(
    `\nunary /bench.v1.Greeter/SayHello: ${options.reps} repetitions (a fresh server and load generator each,` +
      ` ${Math.max(options.warmupS, WARMUP_S)} s of warm-up per client), ${pairsPerRep} pairs of blocks each (one block per client,` +
      ` ~${BLOCK_S} s, the order alternating); ${CONCURRENCY} calls in flight, a ${DEADLINE_MS / 1000} s deadline on each;` +
      ` load generator on core ${options.loadCore}, server (gantry start, local://) on core ${options.serverCore}`,
  );
  const rows = summaries.map((summary) => {
    const rate = summary.callsPerSec;
    return [
      summary.label,
      formatInteger(rate?.median ?? Number.NaN),
      rate === undefined ? "n/a" : `${formatInteger(rate.min)}–${formatInteger(rate.max)}`,
      summary.cpuMicrosPerCall.toFixed(1),
      formatMs(summary.p99Ms),
      formatPercent(summary.clientCpu),
      formatPercent(summary.serverCpu),
    ];
  });
  const header = ["contender", "calls/s", "spread (min–max)", "client µs CPU/call", "p99", "client CPU", "server CPU"];
  console.log(formatTable(header, rows, ["left", "right", "right", "right", "right", "right", "right"]));
  console.log(ratioLine(ratio, "call"));
  const ratios = counted.map((pair) => pair.ratio);
  const quartiles =
    ratios.length === 0 ? "n/a" : `${quantile(ratios, 0.25).toFixed(3)}–${quantile(ratios, 0.75).toFixed(3)}`;
  console.log(
    `the ratio is the median of ${counted.length} counted pairs' ratios (interquartile range ${quartiles});` +
      ` the table's figures are medians over the counted blocks`,
  );
  const added = Number.isNaN(addedMicrosPerCall) ? "n/a" : `${addedMicrosPerCall.toFixed(1)} µs`;
  console.log(`added by the Gantry client: ${added} of client CPU per call (median of the pairs' differences)`);
  console.log(
    "every counted repetition: zero failed calls, the server's OK replies = the clients' OK replies;" +
      ` every counted pair: server CPU < ${formatPercent(MAX_SERVER_CPU)}, other processes <= ${formatPercent(MAX_OTHER_CPU)} of each core`,
  );
  const discarded = reps.filter((rep) => !rep.counted);
  if (discarded.length === 0) console.log("discarded repetitions: none");
  for (const rep of discarded) {
    console.log(`discarded: rep ${rep.rep} (run ${rep.attempt}): ${rep.discardedBecause.join("; ")}`);
  }
}

/** The `q` quantile of `values`, by linear interpolation between the nearest ranks. */
function quantile(values: readonly number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  const position = (sorted.length - 1) * q;
  const below = Math.floor(position);
  const above = Math.min(sorted.length - 1, below + 1);
  return sorted[below] + (sorted[above] - sorted[below]) * (position - below);
}
