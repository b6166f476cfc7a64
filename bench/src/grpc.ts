import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Client, credentials, Metadata, type StatusObject, status } from "@grpc/grpc-js";
import { grpcFrame, type H2loadResult, readH2load, runH2load } from "./h2load.js";
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
  summaryCells,
  type Target,
  verdictOf,
} from "./measure.js";
import { type CpuShares, measureCpu } from "./proc-cpu.js";
import type { BenchOptions, Section } from "./section.js";
import { type ServerExit, startServer } from "./server-process.js";
import { formatInteger, formatMs, formatPercent, formatTable } from "./table.js";
import { toolVersion } from "./tools.js";

/**
 * The gRPC section: a unary call served by a Gantry `@Method` on GrpcTransport against the same
 * method hand-written on @grpc/grpc-js, both doing the same work (protobuf decoding, the name check,
 * the greeting, protobuf encoding), loaded by h2load over HTTP/2.
 */

const SERVERS = fileURLToPath(new URL("./servers/", import.meta.url));
const PATH = "/bench.v1.Greeter/SayHello";
/**
 * 16 connections of 8 streams each: 128 calls in flight, enough to hold the server at 99% of its core
 * while h2load uses about a fifth of its own (on a quiet machine). Several connections, as a
 * service's many clients would open: on few connections with many streams (-c4 -m32) HTTP/2 batches
 * more calls per socket read and write, which cuts grpc-js's own cost per call by about a quarter
 * here and measures a load few servers see; on one stream per connection (-c64 -m1) it batches
 * nothing and the server serves less than half the calls.
 */
const CONNECTIONS = 16;
const STREAMS = 8;
/**
 * The warm-up is a fixed number of calls: its options.warmupS seconds at the rate grpc-js serves here
 * (DESIGN.md: about 26k calls/s). Both the warm-up and the measured load are counted calls (`-n`), not
 * a duration, so that the server's count of OK replies can be held to h2load's count exactly: a run
 * cut off by time leaves calls in flight that the server answered and h2load never counted.
 */
const WARMUP_CALLS_PER_SECOND = 25_000;
/** A run counts only with the server this busy; below it, it was waiting (on h2load, or for its core). */
const MIN_SERVER_CPU = 0.95;

type ContenderId = "grpc-js" | "gantry";

interface Contender {
  readonly id: ContenderId;
  readonly label: string;
  /** The script Node runs, and its arguments. */
  readonly script: string;
  readonly args: readonly string[];
}

/** Gantry runs the way users run it: `gantry start <entry>`, with its config given as flags. */
const GANTRY_BIN = fileURLToPath(new URL("./bin.js", import.meta.resolve("@gantry/cli")));
const GANTRY_SETTINGS = ["grpc.port=0", "grpc.host=127.0.0.1", "log.level=silent"];

const CONTENDERS: readonly Contender[] = [
  { id: "grpc-js", label: "grpc-js (hand-written)", script: join(SERVERS, "grpc-js.js"), args: [] },
  {
    id: "gantry",
    label: "gantry (GrpcTransport)",
    script: GANTRY_BIN,
    args: ["start", join(SERVERS, "gantry-grpc.js"), ...GANTRY_SETTINGS.flatMap((setting) => ["--set", setting])],
  },
];

/** DESIGN.md, "Numbers we hold ourselves to": a decorated method >= 0.95x a hand-written grpc-js handler. */
const TARGET: Target = { name: "gantry / grpc-js", numerator: "gantry", denominator: "grpc-js", min: 0.95 } as const;

const NAME = "gantry";
/** HelloReply { message: "Hello, gantry." }, byte for byte: what every contender must answer. */
const EXPECTED_REPLY = stringField(1, `Hello, ${NAME}.`);

/** Calls sent before the load, and the status each contender must answer them with. */
const CHECKS: readonly { readonly name: string; readonly why: string; readonly code: status }[] = [
  { name: NAME, why: "the benchmark's call", code: status.OK },
  { name: "😀".repeat(64), why: "64 characters (128 UTF-16 units)", code: status.OK },
  { name: "", why: "an empty name", code: status.INVALID_ARGUMENT },
  { name: "x".repeat(65), why: "65 characters", code: status.INVALID_ARGUMENT },
];
const CHECKS_OK = CHECKS.filter((check) => check.code === status.OK).length;

/**
 * Metadata (response headers and trailers) a contender may send: what grpc-js sends on its own for
 * a hand-written handler. grpc-js's client keeps the pseudo-headers, grpc-status and grpc-message to itself.
 */
const ALLOWED_METADATA = new Set(["content-type", "grpc-accept-encoding", "grpc-encoding", "date"]);

interface Run extends MeasuredRun {
  readonly contender: ContenderId;
  /** Who used the cores during the measured window (1 = one core fully busy). */
  readonly cpu: CpuShares;
  readonly warmup: Omit<H2loadResult, "output">;
  readonly measured: H2loadResult;
  readonly server: ServerExit;
}

export const grpcSection: Section = {
  name: "grpc",
  description: "Gantry's GrpcTransport against a hand-written @grpc/grpc-js server (unary, h2load)",
  tools: [
    { command: "h2load", debianPackage: "nghttp2-client" },
    { command: "taskset", debianPackage: "util-linux" },
  ],
  run: runGrpc,
};

async function runGrpc(options: BenchOptions): Promise<unknown> {
  const dir = await mkdtemp(join(tmpdir(), "gantry-bench-"));
  try {
    const body = join(dir, "hello.bin");
    await writeFile(body, grpcFrame(stringField(1, NAME)));
    console.log(`\n== grpc: unary ${PATH} ==`);
    const runs = await interleaved(CONTENDERS, options.reps, async (contender, place) => {
      const run = await runOnce(contender, { ...place, body, dir }, options);
      logRun(run, options);
      return run;
    });
    const summaries = CONTENDERS.map((contender) => summarize(contender, runs));
    const ratio = ratioOf(TARGET, summaries);
    printReport(options, summaries, ratio, runs);
    return {
      section: "grpc",
      date: new Date().toISOString(),
      node: process.version,
      h2load: toolVersion("h2load", ["--version"]),
      options,
      connections: CONNECTIONS,
      streams: STREAMS,
      warmupCalls: warmupCalls(options),
      minServerCpu: MIN_SERVER_CPU,
      contenders: summaries,
      ratios: [ratio],
      runs,
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

interface RunPlace extends Place {
  /** The request body file, and the directory for h2load's log files. */
  readonly body: string;
  readonly dir: string;
}

function loadOf(url: string, body: string, options: BenchOptions, logFile: string) {
  return {
    url,
    core: options.loadCore,
    connections: CONNECTIONS,
    streams: STREAMS,
    body,
    headers: ["content-type: application/grpc", "te: trailers"],
    logFile,
  };
}

function warmupCalls(options: BenchOptions): number {
  return options.warmupS * WARMUP_CALLS_PER_SECOND;
}

/** One run: a fresh server, a check of its answers, a warm-up, then the measured load. */
async function runOnce(contender: Contender, place: RunPlace, options: BenchOptions): Promise<Run> {
  const server = await startServer(contender.script, contender.args, options.serverCore);
  let measured: { warmup: H2loadResult; result: H2loadResult; cpu: CpuShares };
  try {
    await checkAnswers(server.port);
    const url = `http://127.0.0.1:${server.port}${PATH}`;
    const load = loadOf(url, place.body, options, join(place.dir, `${contender.id}.log`));
    const warmup = await readH2load(await runH2load({ ...load, requests: warmupCalls(options) }));
    // As many calls as the warm-up's rate serves in the measured window.
    const requests = Math.max(CONNECTIONS * STREAMS * 10, Math.round(warmup.requestsPerSec * options.durationS));
    const cores = { load: options.loadCore, server: options.serverCore };
    const { result, cpu } = await measureCpu(cores, server.pid, () => runH2load({ ...load, requests }));
    measured = { warmup, result: await readH2load(result), cpu };
  } catch (error) {
    await server.stop();
    throw error;
  }
  const exit = await server.stop();
  const { output: _, ...warmup } = measured.warmup;
  const discardedBecause = discardReasons(contender, measured.result, measured.cpu, exit, warmup);
  return {
    contender: contender.id,
    rep: place.rep,
    attempt: place.attempt,
    position: place.position,
    requestsPerSec: measured.result.requestsPerSec,
    cpuMicrosPerRequest: (measured.cpu.serverSeconds * 1e6) / measured.result.succeeded,
    p99Ms: measured.result.p99Ms,
    cpu: measured.cpu,
    warmup,
    measured: measured.result,
    server: exit,
    counted: discardedBecause.length === 0,
    discardedBecause,
  };
}

/** Why a run does not count; empty when it does. */
function discardReasons(
  contender: Contender,
  measured: H2loadResult,
  cpu: CpuShares,
  exit: ServerExit,
  warmup: Omit<H2loadResult, "output">,
): string[] {
  const reasons: string[] = [];
  if (cpu.server < MIN_SERVER_CPU) {
    reasons.push(
      `server CPU ${formatPercent(cpu.server, 1)} < ${formatPercent(MIN_SERVER_CPU)}` +
        ` (h2load ${formatPercent(cpu.load)}; other processes ${formatPercent(cpu.otherOnLoadCore)} of h2load's core,` +
        ` ${formatPercent(cpu.otherOnServerCore)} of the server's)`,
    );
  }
  for (const [what, result] of [
    ["warm-up", warmup],
    ["measured", measured],
  ] as const) {
    const { failed, errored, timeout, non2xx } = result;
    if (failed + errored + timeout + non2xx > 0) {
      reasons.push(`${what}: h2load saw ${failed} failed, ${errored} errored, ${timeout} timed out, ${non2xx} non-2xx`);
    }
  }
  if (!exit.clean) reasons.push(`server did not exit cleanly on SIGTERM (code ${exit.code}, signal ${exit.signal})`);
  // h2load counts HTTP status 200 as success, and a gRPC error is a 200 with its status in the trailers:
  // the server's count of OK statuses must be exactly the calls h2load saw succeed, plus the checks.
  const stats = exit.stats as {
    served?: unknown;
    ok?: unknown;
    calls?: { started?: number };
    stats?: { calls?: number };
  };
  const expected = CHECKS_OK + warmup.succeeded + measured.succeeded;
  if (typeof stats.served !== "number") reasons.push("server printed no count of OK replies");
  else if (stats.served !== expected) {
    reasons.push(
      `server sent ${stats.served} OK replies, h2load saw ${warmup.succeeded + measured.succeeded} succeed` +
        ` (+ ${CHECKS_OK} checks = ${expected})`,
    );
  }
  // Its own count (the handler's, the method's) must agree with grpc-js's count of OK statuses sent.
  if (stats.ok !== stats.served) reasons.push(`the handler counted ${stats.ok} OK replies, grpc-js ${stats.served}`);
  if (contender.id === "gantry" && stats.stats?.calls !== stats.calls?.started) {
    reasons.push(`GrpcTransport counted ${stats.stats?.calls} calls, grpc-js ${stats.calls?.started}`);
  }
  return reasons;
}

/**
 * Before any load: the call h2load sends must be answered OK with exactly the expected reply bytes and
 * no metadata beyond what grpc-js sends on its own, and invalid names refused with INVALID_ARGUMENT.
 * A contender that does less than the other stops the benchmark.
 */
async function checkAnswers(port: number): Promise<void> {
  const client = new Client(`127.0.0.1:${port}`, credentials.createInsecure());
  try {
    for (const check of CHECKS) {
      const answer = await call(client, stringField(1, check.name));
      const fail = (problem: string): never => {
        throw new Error(`the server on port ${port}, asked with ${check.why}: ${problem}`);
      };
      if (answer.status.code !== check.code) {
        fail(`answered ${status[answer.status.code]} (${answer.status.details}), not ${status[check.code]}`);
      }
      if (check.name === NAME && !answer.reply?.equals(EXPECTED_REPLY)) {
        fail(`replied ${answer.reply?.toString("hex")}, not ${EXPECTED_REPLY.toString("hex")}`);
      }
      // Only on OK answers, the load's: Gantry also sends error details (grpc-status-details-bin) with an error.
      if (check.code !== status.OK) continue;
      const keys = [...Object.keys(answer.headers), ...Object.keys(answer.status.metadata.getMap())];
      const extra = keys.filter((key) => !ALLOWED_METADATA.has(key));
      if (extra.length > 0) fail(`sent metadata beyond the agreed: ${extra.join(", ")}`);
    }
  } finally {
    client.close();
  }
}

interface Answer {
  readonly reply: Buffer | undefined;
  readonly headers: Record<string, unknown>;
  readonly status: StatusObject;
}

/** One unary call with raw bytes in and out, so that the check sees exactly what the server sent. */
function call(client: Client, request: Buffer): Promise<Answer> {
  return new Promise((resolve) => {
    let reply: Buffer | undefined;
    let headers: Record<string, unknown> = {};
    const identity = (bytes: Buffer) => bytes;
    const deadline = { deadline: Date.now() + 10_000 };
    const unary = client.makeUnaryRequest(PATH, identity, identity, request, new Metadata(), deadline, (_, value) => {
      reply = value;
    });
    unary.on("metadata", (metadata: Metadata) => {
      headers = metadata.getMap();
    });
    unary.on("status", (result: StatusObject) => resolve({ reply, headers, status: result }));
  });
}

/**
 * A message of one string field, in protobuf's binary format, written by hand so that the check does
 * not lean on either contender's library. An empty string is the default: no bytes at all.
 */
function stringField(field: number, value: string): Buffer {
  const bytes = Buffer.from(value, "utf8");
  if (bytes.length === 0) return Buffer.alloc(0);
  return Buffer.concat([Buffer.from(varint((field << 3) | 2)), Buffer.from(varint(bytes.length)), bytes]);
}

function varint(value: number): number[] {
  const out: number[] = [];
  let rest = value;
  while (rest > 0x7f) {
    out.push((rest & 0x7f) | 0x80);
    rest >>>= 7;
  }
  out.push(rest);
  return out;
}

function logRun(run: Run, options: BenchOptions): void {
  const figures =
    `${formatInteger(run.requestsPerSec).padStart(7)} calls/s  p99 ${formatMs(run.p99Ms).padStart(9)}` +
    `  CPU ${formatPercent(run.cpu.server).padStart(4)}  ${run.cpuMicrosPerRequest.toFixed(1).padStart(5)} µs/call`;
  console.log(
    `  unary ${repLabel(run, options.reps).padEnd(16)} ${run.contender.padEnd(8)}  ${figures}  ${verdictOf(run)}`,
  );
}

function printReport(options: BenchOptions, summaries: readonly Summary[], ratio: Ratio, runs: readonly Run[]): void {
  console.log(
    `\nunary ${PATH}: medians of the counted runs of about ${options.durationS} s` +
      ` (after ${formatInteger(warmupCalls(options))} warm-up calls), ${options.reps} per contender;` +
      ` h2load -t1 -c${CONNECTIONS} -m${STREAMS} on core ${options.loadCore}, server on core ${options.serverCore}`,
  );
  const rows = summaries.map((s) => summaryCells(s, options.reps));
  const header = ["contender", "calls/s", "spread (min–max)", "µs CPU/call", "p99", "CPU", "counted", "discarded"];
  console.log(formatTable(header, rows, ["left", "right", "right", "right", "right", "right", "right", "right"]));
  console.log(ratioLine(ratio, "call"));
  console.log(
    "p99: of the time from h2load sending a call to the end of its answer (the trailers), with" +
      ` ${CONNECTIONS * STREAMS} calls in flight; every counted run's OK replies (server) = succeeded calls (h2load)`,
  );
  printDiscarded(runs);
}
