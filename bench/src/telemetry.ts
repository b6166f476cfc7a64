/**
 * The telemetry section: what tracing every call costs a Gantry server. The same servers as the HTTP
 * and gRPC sections, started by `gantry start` with tracing off and on (every call sampled, batch
 * export over OTLP http/protobuf to a receiver that counts every span), on each serving path; beside
 * them, what the OpenTelemetry SDK alone costs for spans of the same shape, so that what the framework
 * adds on top can be told apart. Then how long `gantry start` takes to be ready with and without
 * telemetry.
 */

import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { type ReceivedSpan, startOtlpReceiver } from "@gantry/telemetry/testing";
import { grpcFrame, type H2loadResult, readH2load, runH2load } from "./h2load.js";
import {
  interleaved,
  type MeasuredRun,
  type Place,
  printDiscarded,
  repLabel,
  type Summary,
  summarize,
  summaryCells,
  verdictOf,
} from "./measure.js";
import { type CpuShares, measureCpu } from "./proc-cpu.js";
import type { BenchOptions, Section } from "./section.js";
import { type ServerExit, type ServerProcess, startServer } from "./server-process.js";
import type { SpanCostOptions, SpanShape } from "./span-cost.js";
import { type StartTime, timeStart } from "./start-time.js";
import { type Spread, spread } from "./stats.js";
import { formatInteger, formatMs, formatPercent, formatTable } from "./table.js";
import { toolVersion } from "./tools.js";
import { runWrk, type WrkResult } from "./wrk.js";

const execute = promisify(execFile);

const SERVERS = fileURLToPath(new URL("./servers/", import.meta.url));
const RECEIVER = join(SERVERS, "otlp-receiver.js");
const SPAN_COST = fileURLToPath(new URL("./span-cost.js", import.meta.url));
/** Gantry runs the way users run it: `gantry start <entry>`, with its config given as flags. */
const GANTRY_BIN = fileURLToPath(new URL("./bin.js", import.meta.resolve("@gantry/cli")));

/**
 * What turns tracing on, besides the receiver's endpoint: every call sampled (the default sampler,
 * with no caller's trace context, samples all), spans batched and sent over OTLP http/protobuf, and
 * no metrics, so that only tracing is measured. The batch processor's queue holds far more than a
 * server makes between two exports, so that none is dropped and every span can be counted.
 */
const TRACING_ENV: Readonly<Record<string, string>> = {
  OTEL_TRACES_EXPORTER: "otlp",
  OTEL_EXPORTER_OTLP_PROTOCOL: "http/protobuf",
  OTEL_TRACES_SAMPLER: "parentbased_always_on",
  OTEL_METRICS_EXPORTER: "none",
  OTEL_BSP_SCHEDULE_DELAY: "200",
  OTEL_BSP_MAX_QUEUE_SIZE: "262144",
  OTEL_BSP_MAX_EXPORT_BATCH_SIZE: "8192",
};

/** Variables that would turn telemetry on in the servers meant to run without it. */
const TELEMETRY_SWITCHES = /^(?:OTEL_|GANTRY_TELEMETRY_)/;

/** A run counts only with the server this busy; below it, it was waiting (on the load, or for its core). */
const MIN_SERVER_CPU = 0.95;
/** DESIGN.md, "Numbers we hold ourselves to". */
const MIN_EXPRESS_RATIO = 0.9;
const MAX_FRAMEWORK_MICROS = 1;

/** wrk's load, as the HTTP section's GET scenario. */
const CONNECTIONS = 64;
const HELLO_PATH = "/hello/gantry";
/** h2load's load, as the gRPC section's. */
const GRPC_PATH = "/bench.v1.Greeter/SayHello";
const GRPC_CONNECTIONS = 16;
const GRPC_STREAMS = 8;
/**
 * The gRPC warm-up is a number of calls, as in the gRPC section: options.warmupS seconds at a rate
 * between what the server serves with tracing (about 12k calls/s here) and without (about 25k).
 */
const GRPC_WARMUP_CALLS_PER_SECOND = 15_000;
/** HelloRequest { name: "gantry" }: field 1, length-delimited, 6 bytes. */
const HELLO_REQUEST = Buffer.from([0x0a, 0x06, ...Buffer.from("gantry")]);

/** The SDK-alone warm-up: as many spans as a traced fast-path server makes in its warm-up here. */
const SDK_WARMUP_SPANS = 40_000;
/** Where Node < 24 gets the async context frame that `gantry start` runs apps on (packages/cli/src/bin.ts). */
const FRAME_FLAG = "--experimental-async-context-frame";

/** Attributes core sets when a server span ends (ServerSpan.end); the rest are given at its start. */
const END_ATTRIBUTES: ReadonlySet<string> = new Set(["http.response.status_code", "rpc.status_code"]);

/** `gantry start` to ready: timed starts of each kind, interleaved, after one start of each not timed. */
const STARTS = 10;

type PathId = "fast" | "express" | "grpc";

interface TracedPath {
  readonly id: PathId;
  readonly label: string;
  readonly load: "wrk" | "h2load";
  /** The arguments of `gantry start`. */
  readonly args: readonly string[];
}

function gantryStart(entry: string, settings: readonly string[]): readonly string[] {
  return ["start", join(SERVERS, entry), ...settings.flatMap((setting) => ["--set", setting])];
}

const HTTP_SETTINGS = ["http.port=0", "http.host=127.0.0.1", "log.level=silent"];

/** The HTTP section's Gantry server on each of its paths, and the gRPC section's. */
const PATHS: readonly TracedPath[] = [
  {
    id: "fast",
    label: "HTTP fast path",
    load: "wrk",
    args: gantryStart("gantry.js", ["http.path=fast", ...HTTP_SETTINGS]),
  },
  {
    id: "express",
    label: "HTTP express path",
    load: "wrk",
    args: gantryStart("gantry.js", ["http.path=express", ...HTTP_SETTINGS]),
  },
  {
    id: "grpc",
    label: "gRPC",
    load: "h2load",
    args: gantryStart("gantry-grpc.js", ["grpc.port=0", "grpc.host=127.0.0.1", "log.level=silent"]),
  },
];

type ContenderId = "off" | "on" | "sdk";

interface Contender<Id extends ContenderId> {
  readonly id: Id;
  readonly label: string;
}

const SERVER_CONTENDERS: readonly Contender<"off" | "on">[] = [
  { id: "off", label: "tracing off" },
  { id: "on", label: "tracing on" },
];
const SDK: Contender<"sdk"> = { id: "sdk", label: "OpenTelemetry SDK alone" };

/** A run of the server under load, tracing off or on. */
interface ServerRun extends MeasuredRun {
  readonly contender: "off" | "on";
  readonly cpu: CpuShares;
  /** The measured load's figures, without the load generator's output. */
  readonly load: Omit<WrkResult | H2loadResult, "output">;
  readonly server: ServerExit;
  /** What the receiver counted (tracing on). */
  readonly receiver?: Record<string, unknown>;
}

/**
 * A run of the SDK alone: `requestsPerSec` is spans per second of the process's CPU time and
 * `cpuMicrosPerRequest` its CPU time per span.
 */
interface SdkRun extends MeasuredRun {
  readonly contender: "sdk";
  readonly spans: number;
  readonly cpuMicros: number;
  readonly receiver: Record<string, unknown>;
}

type Run = ServerRun | SdkRun;

interface PathResult {
  readonly path: PathId;
  readonly label: string;
  readonly shape: SpanShape;
  readonly contenders: readonly Summary[];
  /** Throughput with tracing on over off (medians). */
  readonly ratio: number;
  /** Server CPU per call, on minus off (medians): what tracing costs a call in all. */
  readonly tracingMicrosPerCall: number;
  /** The rate the SDK-alone runs made spans at: the traced server's (median). */
  readonly sdkSpansPerSecond: number;
  /** The SDK's own CPU per span of the same shape (median). */
  readonly sdkMicrosPerSpan: number;
  /** What the framework adds per traced call beyond the SDK's cost. */
  readonly frameworkMicrosPerCall: number;
  readonly target: { readonly name: string; readonly pass: boolean };
  readonly runs: readonly Run[];
}

export const telemetrySection: Section = {
  name: "telemetry",
  description: "tracing off vs on (every span counted) on each path, the SDK's own cost per span, start to ready",
  tools: [
    { command: "wrk", debianPackage: "wrk" },
    { command: "h2load", debianPackage: "nghttp2-client" },
    { command: "taskset", debianPackage: "util-linux" },
  ],
  run: runTelemetry,
};

async function runTelemetry(options: BenchOptions): Promise<unknown> {
  const switches = Object.keys(process.env).filter((name) => TELEMETRY_SWITCHES.test(name));
  if (switches.length > 0) {
    throw new Error(`unset ${switches.join(", ")}: the servers meant to run without tracing would trace`);
  }
  const dir = await mkdtemp(join(tmpdir(), "gantry-bench-telemetry-"));
  try {
    await writeFile(join(dir, "hello.bin"), grpcFrame(HELLO_REQUEST));
    const paths: PathResult[] = [];
    for (const path of PATHS) paths.push(await runPath(path, dir, options));
    printTargets(paths);
    const startup = await runStartup(dir, options);
    return {
      section: "telemetry",
      date: new Date().toISOString(),
      node: process.version,
      wrk: toolVersion("wrk", ["-v"]),
      h2load: toolVersion("h2load", ["--version"]),
      options,
      tracingEnv: TRACING_ENV,
      minServerCpu: MIN_SERVER_CPU,
      paths,
      startup,
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

// ---- tracing off and on, and the SDK alone, on one path

async function runPath(path: TracedPath, dir: string, options: BenchOptions): Promise<PathResult> {
  console.log(`\n== telemetry: ${path.label} (${path.load === "wrk" ? `GET ${HELLO_PATH}` : GRPC_PATH}) ==`);
  const shape = await spanShape(path, dir, options);
  const serverRuns = await interleaved(SERVER_CONTENDERS, options.reps, async (contender, place) => {
    const run = await runServer(path, contender.id, place, dir, options);
    logRun(path, run, options);
    return run;
  });
  const servers = SERVER_CONTENDERS.map((contender) => summarize(contender, serverRuns));
  // Then the SDK alone, at the rate the traced server made spans (none when no traced run counted).
  const tracedRate = servers[1].requestsPerSec?.median ?? Number.NaN;
  const sdkRuns = Number.isNaN(tracedRate)
    ? []
    : await interleaved([SDK], options.reps, async (_, place) => {
        const run = await runSdk(shape, tracedRate, place, dir, options);
        logRun(path, run, options);
        return run;
      });
  const contenders = [...servers, summarize(SDK, sdkRuns)];
  const runs: Run[] = [...serverRuns, ...sdkRuns];
  const of = (id: ContenderId) => contenders.find((s) => s.contender === id);
  const rate = (id: ContenderId) => of(id)?.requestsPerSec?.median ?? Number.NaN;
  const micros = (id: ContenderId) => of(id)?.cpuMicrosPerRequest?.median ?? Number.NaN;
  const ratio = rate("on") / rate("off");
  const tracingMicrosPerCall = micros("on") - micros("off");
  const sdkMicrosPerSpan = micros("sdk");
  const frameworkMicrosPerCall = tracingMicrosPerCall - sdkMicrosPerSpan;
  const target =
    path.id === "express"
      ? { name: `on/off >= ${MIN_EXPRESS_RATIO.toFixed(2)}`, pass: ratio >= MIN_EXPRESS_RATIO }
      : { name: `framework <= ${MAX_FRAMEWORK_MICROS} µs/call`, pass: frameworkMicrosPerCall <= MAX_FRAMEWORK_MICROS };
  const result = {
    path: path.id,
    label: path.label,
    shape,
    contenders,
    ratio,
    tracingMicrosPerCall,
    sdkSpansPerSecond: tracedRate,
    sdkMicrosPerSpan,
    frameworkMicrosPerCall,
    target,
    runs,
  };
  printPath(path, result, options);
  return result;
}

/**
 * The span a traced server makes for one call like the load's (the same request, from a client that
 * sends no more headers than wrk or h2load), as a receiver that keeps it decodes it: what the SDK-alone
 * runs make. A server that answers wrongly, or makes other than one server span, stops the section.
 */
async function spanShape(path: TracedPath, dir: string, options: BenchOptions): Promise<SpanShape> {
  await using receiver = await startOtlpReceiver();
  const env = await tracingEnvFile(dir, `${path.id}-shape`, receiver.url);
  const server = await startServer(`--env-file=${env}`, [GANTRY_BIN, ...path.args], options.serverCore);
  try {
    if (path.load === "wrk") await checkHello(server.port);
    else await runH2load({ ...grpcLoad(server, dir, options, `${path.id}-shape`), connections: 1, requests: 1 });
  } finally {
    await server.stop();
  }
  const spans = await receiver.waitForSpans(1);
  const span = spans[0] as ReceivedSpan;
  const fail = (problem: string): never => {
    throw new Error(`${path.label} with tracing on: ${problem}`);
  };
  if (spans.length !== 1) fail(`one call made ${spans.length} spans: ${spans.map((s) => s.name).join(", ")}`);
  if (span.kind !== "server") fail(`its call's span is of kind ${span.kind}, not server`);
  const ok =
    path.load === "wrk"
      ? span.attributes["http.response.status_code"] === 200
      : span.attributes["rpc.status_code"] === "OK";
  if (!ok) fail(`its call's span does not say it succeeded: ${JSON.stringify(span.attributes)}`);
  const startAttributes: Record<string, string | number | boolean> = {};
  const endAttributes: Record<string, string | number | boolean> = {};
  for (const [key, value] of Object.entries(span.attributes)) {
    if (typeof value !== "string" && typeof value !== "number" && typeof value !== "boolean") {
      fail(`attribute ${key} is not a string, number or boolean`);
    }
    (END_ATTRIBUTES.has(key) ? endAttributes : startAttributes)[key] = value as string | number | boolean;
  }
  return { name: span.name, startAttributes, endAttributes };
}

/** GET /hello/gantry with the headers wrk sends (Host; node adds Connection) must answer the greeting. */
async function checkHello(port: number): Promise<void> {
  const { status, body } = await new Promise<{ status: number | undefined; body: string }>((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, path: HELLO_PATH, agent: false }, (res) => {
      let body = "";
      res.setEncoding("utf8").on("data", (chunk: string) => {
        body += chunk;
      });
      res.on("end", () => resolve({ status: res.statusCode, body }));
    });
    req.on("error", reject).end();
  });
  if (status !== 200 || body !== JSON.stringify({ message: "Hello, gantry." })) {
    throw new Error(`GET ${HELLO_PATH} answered ${status} ${body}`);
  }
}

/** The traced server's variables, in a file for `node --env-file`. */
async function tracingEnvFile(dir: string, name: string, endpoint: string): Promise<string> {
  const file = join(dir, `${name}.env`);
  const env = { ...TRACING_ENV, OTEL_EXPORTER_OTLP_ENDPOINT: endpoint };
  await writeFile(
    file,
    Object.entries(env)
      .map(([key, value]) => `${key}=${value}\n`)
      .join(""),
  );
  return file;
}

function grpcLoad(server: ServerProcess, dir: string, options: BenchOptions, name: string) {
  return {
    url: `http://127.0.0.1:${server.port}${GRPC_PATH}`,
    core: options.loadCore,
    connections: GRPC_CONNECTIONS,
    streams: GRPC_STREAMS,
    body: join(dir, "hello.bin"),
    headers: ["content-type: application/grpc", "te: trailers"],
    logFile: join(dir, `${name}.log`),
  };
}

/**
 * One run of the server under load: a fresh server (and, tracing on, a fresh receiver on the load
 * core, given to the server by `node --env-file`, the same command otherwise), a warm-up, the
 * measured load, then SIGTERM: the server flushes its spans as it shuts down, and the receiver's
 * count is read once both have stopped.
 */
async function runServer(
  path: TracedPath,
  tracing: "off" | "on",
  place: Place,
  dir: string,
  options: BenchOptions,
): Promise<ServerRun> {
  const name = `${path.id}-${tracing}-${place.rep}-${place.attempt}`;
  const receiver = tracing === "on" ? await startServer(RECEIVER, [], options.loadCore) : undefined;
  let server: ServerProcess;
  try {
    const node =
      receiver === undefined
        ? { script: GANTRY_BIN, args: path.args }
        : {
            script: `--env-file=${await tracingEnvFile(dir, name, `http://127.0.0.1:${receiver.port}`)}`,
            args: [GANTRY_BIN, ...path.args],
          };
    server = await startServer(node.script, node.args, options.serverCore);
  } catch (error) {
    await receiver?.stop();
    throw error;
  }
  let measured: Awaited<ReturnType<typeof loadServer>>;
  try {
    measured = await loadServer(path, server, dir, name, options);
  } catch (error) {
    await server.stop();
    await receiver?.stop();
    throw error;
  }
  const exit = await server.stop();
  const counted = await receiver?.stop();
  const { warmup, result, cpu, requests } = measured;
  const discardedBecause = discardReasons(path, { warmup, result, cpu, exit, receiver: counted?.stats });
  return {
    contender: tracing,
    rep: place.rep,
    attempt: place.attempt,
    position: place.position,
    requestsPerSec: result.requestsPerSec,
    cpuMicrosPerRequest: (cpu.serverSeconds * 1e6) / requests,
    p99Ms: result.p99Ms,
    cpu,
    load: withoutOutput(result),
    server: exit,
    receiver: counted?.stats,
    counted: discardedBecause.length === 0,
    discardedBecause,
  };
}

function withoutOutput<T extends { output: string }>(result: T): Omit<T, "output"> {
  const { output: _, ...rest } = result;
  return rest;
}

/** The warm-up and the measured load of the path's load generator, with the CPU shares of the window. */
async function loadServer(path: TracedPath, server: ServerProcess, dir: string, name: string, options: BenchOptions) {
  const cores = { load: options.loadCore, server: options.serverCore };
  if (path.load === "wrk") {
    const load = {
      url: `http://127.0.0.1:${server.port}${HELLO_PATH}`,
      core: options.loadCore,
      connections: CONNECTIONS,
    };
    const warmup = await runWrk({ ...load, durationS: options.warmupS });
    const { result, cpu } = await measureCpu(cores, server.pid, () =>
      runWrk({ ...load, durationS: options.durationS }),
    );
    return { warmup, result, cpu, requests: result.requests };
  }
  const load = grpcLoad(server, dir, options, name);
  const warmup = await readH2load(
    await runH2load({ ...load, requests: options.warmupS * GRPC_WARMUP_CALLS_PER_SECOND }),
  );
  // As many calls as the warm-up's rate serves in the measured window, as in the gRPC section.
  const requests = Math.max(
    GRPC_CONNECTIONS * GRPC_STREAMS * 10,
    Math.round(warmup.requestsPerSec * options.durationS),
  );
  const { result, cpu } = await measureCpu(cores, server.pid, () => runH2load({ ...load, requests }));
  const measured = await readH2load(result);
  return { warmup, result: measured, cpu, requests: measured.succeeded };
}

interface RunFigures {
  readonly warmup: WrkResult | H2loadResult;
  readonly result: WrkResult | H2loadResult;
  readonly cpu: CpuShares;
  readonly exit: ServerExit;
  /** What the receiver counted, tracing on. */
  readonly receiver: Record<string, unknown> | undefined;
}

/** Why a run does not count; empty when it does. */
function discardReasons(path: TracedPath, run: RunFigures): string[] {
  const reasons: string[] = [];
  const { cpu, exit } = run;
  if (cpu.server < MIN_SERVER_CPU) {
    reasons.push(
      `server CPU ${formatPercent(cpu.server, 1)} < ${formatPercent(MIN_SERVER_CPU)}` +
        ` (${path.load} ${formatPercent(cpu.load)}; other processes ${formatPercent(cpu.otherOnLoadCore)} of` +
        ` ${path.load}'s core, ${formatPercent(cpu.otherOnServerCore)} of the server's)`,
    );
  }
  if (!exit.clean) reasons.push(`server did not exit cleanly on SIGTERM (code ${exit.code}, signal ${exit.signal})`);
  const calls = path.load === "wrk" ? httpReasons(path, run, reasons) : grpcReasons(run, reasons);
  // Every call the server ran made one span, and every span reached the receiver.
  if (run.receiver !== undefined && run.receiver.spans !== calls) {
    reasons.push(`the receiver counted ${run.receiver.spans} spans, the server ran ${calls} calls`);
  }
  return reasons;
}

/** The HTTP section's rules; returns the requests the server served (each one a call with a span). */
function httpReasons(path: TracedPath, run: RunFigures, reasons: string[]): number | undefined {
  const warmup = run.warmup as WrkResult;
  const measured = run.result as WrkResult;
  if (measured.non2xx > 0) reasons.push(`${measured.non2xx} non-2xx/3xx responses`);
  const { connect, read, write, timeout } = measured.socketErrors;
  if (connect + read + write + timeout > 0) {
    reasons.push(`socket errors: connect ${connect}, read ${read}, write ${write}, timeout ${timeout}`);
  }
  const served = run.exit.stats.served;
  const stats = run.exit.stats.stats as { fast?: number; express?: number } | undefined;
  if (typeof served !== "number") {
    reasons.push("server printed no stats");
    return undefined;
  }
  const answered = warmup.requests + measured.requests;
  if (served < answered) reasons.push(`server counted ${served} requests, wrk got ${answered} responses`);
  const other = path.id === "fast" ? "express" : "fast";
  if (!stats?.[path.id as "fast" | "express"] || stats[other] !== 0) {
    reasons.push(`not all requests took the ${path.id} path: ${JSON.stringify(stats)}`);
  }
  return served;
}

/** The gRPC section's rules; returns the calls GrpcTransport ran (each one with a span). */
function grpcReasons(run: RunFigures, reasons: string[]): number | undefined {
  const warmup = run.warmup as H2loadResult;
  const measured = run.result as H2loadResult;
  for (const [what, result] of [
    ["warm-up", warmup],
    ["measured", measured],
  ] as const) {
    const { failed, errored, timeout, non2xx } = result;
    if (failed + errored + timeout + non2xx > 0) {
      reasons.push(`${what}: h2load saw ${failed} failed, ${errored} errored, ${timeout} timed out, ${non2xx} non-2xx`);
    }
  }
  const stats = run.exit.stats as {
    served?: unknown;
    ok?: unknown;
    calls?: { started?: number };
    stats?: { calls?: number };
  };
  const succeeded = warmup.succeeded + measured.succeeded;
  if (stats.served !== succeeded)
    reasons.push(`server sent ${stats.served} OK replies, h2load saw ${succeeded} succeed`);
  if (stats.ok !== stats.served) reasons.push(`the method counted ${stats.ok} OK replies, grpc-js ${stats.served}`);
  if (stats.stats?.calls !== stats.calls?.started) {
    reasons.push(`GrpcTransport counted ${stats.stats?.calls} calls, grpc-js ${stats.calls?.started}`);
  }
  return stats.stats?.calls;
}

/**
 * One run of the SDK alone (src/span-cost.ts): spans of the path's shape, made at the traced server's
 * rate for as long as its measured load (after a warm-up at full speed), and exported by the same
 * tracer provider a traced server gets (the same variables, a fresh receiver on the load core), in a
 * process pinned to the server core, run as `gantry start` runs apps.
 */
async function runSdk(
  shape: SpanShape,
  spansPerSecond: number,
  place: Place,
  dir: string,
  options: BenchOptions,
): Promise<SdkRun> {
  const receiver = await startServer(RECEIVER, [], options.loadCore);
  const spans = Math.round(options.durationS * spansPerSecond);
  const costOptions: SpanCostOptions = { shape, warmupSpans: SDK_WARMUP_SPANS, spans, spansPerSecond };
  const reasons: string[] = [];
  let figures = { spans: 0, cpuMicros: Number.NaN };
  const started = performance.now();
  try {
    const env = await tracingEnvFile(dir, `sdk-${place.rep}-${place.attempt}`, `http://127.0.0.1:${receiver.port}`);
    const flags = Number(process.versions.node.split(".")[0]) < 24 ? [FRAME_FLAG] : [];
    const node = [process.execPath, `--env-file=${env}`, ...flags, SPAN_COST, JSON.stringify(costOptions)];
    const { stdout } = await execute("taskset", ["-c", String(options.serverCore), ...node], { timeout: 120_000 });
    figures = JSON.parse(stdout.trim().split("\n").at(-1) as string);
  } catch (error) {
    reasons.push(`the SDK-alone process failed: ${(error as Error).message}`);
  }
  const seconds = (performance.now() - started) / 1000;
  const counted = (await receiver.stop()).stats;
  if (counted.spans !== SDK_WARMUP_SPANS + spans) {
    reasons.push(`the receiver counted ${counted.spans} spans, the SDK made ${SDK_WARMUP_SPANS + spans}`);
  }
  return {
    contender: "sdk",
    rep: place.rep,
    attempt: place.attempt,
    position: place.position,
    requestsPerSec: (figures.spans * 1e6) / figures.cpuMicros,
    cpuMicrosPerRequest: figures.cpuMicros / figures.spans,
    p99Ms: Number.NaN,
    cpu: { server: figures.cpuMicros / 1e6 / seconds },
    spans: figures.spans,
    cpuMicros: figures.cpuMicros,
    receiver: counted,
    counted: reasons.length === 0,
    discardedBecause: reasons,
  };
}

function logRun(path: TracedPath, run: Run, options: BenchOptions): void {
  const where = `  ${path.id} ${repLabel(run, options.reps).padEnd(16)} ${run.contender.padEnd(4)}`;
  if (run.contender === "sdk") {
    console.log(
      `${where}  ${formatInteger(run.spans).padStart(7)} spans  ${run.cpuMicrosPerRequest.toFixed(1).padStart(5)} µs CPU/span  ${verdictOf(run)}`,
    );
    return;
  }
  const unit = path.load === "wrk" ? "req/s  " : "calls/s";
  console.log(
    `${where}  ${formatInteger(run.requestsPerSec).padStart(7)} ${unit}  p99 ${formatMs(run.p99Ms).padStart(9)}` +
      `  CPU ${formatPercent(run.cpu.server).padStart(4)}  ${run.cpuMicrosPerRequest.toFixed(1).padStart(5)} µs/call  ${verdictOf(run)}`,
  );
}

function printPath(path: TracedPath, result: PathResult, options: BenchOptions): void {
  const load = path.load === "wrk" ? `wrk -t1 -c${CONNECTIONS}` : `h2load -t1 -c${GRPC_CONNECTIONS} -m${GRPC_STREAMS}`;
  console.log(
    `\n${path.label}: medians of the counted runs of ${options.durationS} s (after a ${options.warmupS} s warm-up),` +
      ` ${options.reps} per contender; ${load} on core ${options.loadCore}, server on core ${options.serverCore},` +
      ` OTLP receiver on core ${options.loadCore}`,
  );
  const rows = result.contenders.map((s) => {
    const cells = summaryCells(s, options.reps);
    // The SDK alone serves no requests: its figures are spans per CPU second and CPU time per span.
    return s.contender === "sdk" ? [cells[0], "-", "-", cells[3], "-", "-", cells[6], cells[7]] : cells;
  });
  const header = ["contender", "calls/s", "spread (min–max)", "µs CPU/call", "p99", "CPU", "counted", "discarded"];
  console.log(formatTable(header, rows, ["left", "right", "right", "right", "right", "right", "right", "right"]));
  console.log(
    `span of each call: "${result.shape.name}", server, ${Object.keys(result.shape.startAttributes).length} attributes` +
      ` at start, ${Object.keys(result.shape.endAttributes).join(", ")} at end; the SDK alone made such spans at` +
      ` the traced server's rate, ${formatInteger(result.sdkSpansPerSecond)}/s, after ${formatInteger(SDK_WARMUP_SPANS)}` +
      " at full speed",
  );
  printDiscarded(result.runs);
}

function printTargets(paths: readonly PathResult[]): void {
  console.log(
    `\ntracing on: every call sampled, batched (OTEL_BSP_SCHEDULE_DELAY=${TRACING_ENV.OTEL_BSP_SCHEDULE_DELAY},` +
      ` _MAX_EXPORT_BATCH_SIZE=${TRACING_ENV.OTEL_BSP_MAX_EXPORT_BATCH_SIZE}), OTLP http/protobuf to a counting` +
      ` receiver; OTEL_METRICS_EXPORTER=none (tracing alone). Every counted run: receiver's spans = calls the server ran.`,
  );
  const micros = (value: number) => (Number.isNaN(value) ? "n/a" : value.toFixed(1));
  const rows = paths.map((p) => {
    const off = p.contenders.find((s) => s.contender === "off")?.requestsPerSec?.median ?? Number.NaN;
    const on = p.contenders.find((s) => s.contender === "on")?.requestsPerSec?.median ?? Number.NaN;
    return [
      p.label,
      formatInteger(off),
      formatInteger(on),
      Number.isNaN(p.ratio) ? "n/a" : p.ratio.toFixed(2),
      micros(p.tracingMicrosPerCall),
      micros(p.sdkMicrosPerSpan),
      micros(p.frameworkMicrosPerCall),
      p.target.name,
      verdictOfPath(p),
    ];
  });
  const header = [
    "path",
    "off calls/s",
    "on calls/s",
    "on/off",
    "tracing µs/call",
    "SDK µs/span",
    "framework µs/call",
    "target",
    "",
  ];
  console.log(
    formatTable(header, rows, ["left", "right", "right", "right", "right", "right", "right", "left", "left"]),
  );
  console.log(
    "tracing µs/call: server CPU per call, on minus off; SDK µs/span: the SDK alone, the same span and exporter," +
      " at the same rate; framework: the difference of the two",
  );
}

function verdictOfPath(result: PathResult): string {
  if (Number.isNaN(result.path === "express" ? result.ratio : result.frameworkMicrosPerCall)) return "NO DATA";
  return result.target.pass ? "PASS" : "FAIL";
}

// ---- gantry start to ready

interface StartupResult {
  readonly starts: number;
  readonly without: { readonly readyMs: Spread; readonly registeredMs: Spread };
  readonly withTelemetry: { readonly readyMs: Spread; readonly registeredMs: Spread };
  readonly differenceMs: number;
  readonly samples: readonly (StartTime & { readonly telemetry: boolean })[];
}

/**
 * `gantry start` of an app on HTTP and gRPC with `local://` discovery, with and without telemetry
 * (OTEL_EXPORTER_OTLP_ENDPOINT set to a receiver, and nothing else: traces and metrics over OTLP, as a
 * user gets them), interleaved, each start in a registry namespace of its own.
 */
async function runStartup(dir: string, options: BenchOptions): Promise<StartupResult> {
  console.log("\n== telemetry: gantry start to ready (HTTP + gRPC + local://) ==");
  const receiver = await startServer(RECEIVER, [], options.loadCore);
  const samples: (StartTime & { telemetry: boolean })[] = [];
  try {
    const env = { OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${receiver.port}` };
    let n = 0;
    const start = async (telemetry: boolean) => {
      const registry = `local://start-${++n}?dir=${encodeURIComponent(dir)}`;
      const settings = [...HTTP_SETTINGS, "grpc.port=0", "grpc.host=127.0.0.1", `registry.url=${registry}`];
      const args = gantryStart("gantry-start.js", settings);
      const time = await timeStart(GANTRY_BIN, args, options.serverCore, telemetry ? env : {});
      if (time.exitCode !== 0)
        throw new Error(`gantry start ${telemetry ? "with" : "without"} telemetry exited with ${time.exitCode}`);
      return { ...time, telemetry };
    };
    // The first starts read every module from disk: not timed.
    await start(false);
    await start(true);
    for (let i = 0; i < STARTS; i++) {
      const order = Math.random() < 0.5 ? [false, true] : [true, false];
      for (const telemetry of order) samples.push(await start(telemetry));
    }
  } finally {
    await receiver.stop();
  }
  const of = (telemetry: boolean) => {
    const mine = samples.filter((s) => s.telemetry === telemetry);
    return { readyMs: spread(mine.map((s) => s.readyMs)), registeredMs: spread(mine.map((s) => s.registeredMs)) };
  };
  const result = {
    starts: STARTS,
    without: of(false),
    withTelemetry: of(true),
    differenceMs: of(true).readyMs.median - of(false).readyMs.median,
    samples,
  };
  printStartup(result, options);
  return result;
}

function printStartup(result: StartupResult, options: BenchOptions): void {
  const ms = (value: number) => `${value.toFixed(0)} ms`;
  const cells = (label: string, figures: StartupResult["without"]) => [
    label,
    ms(figures.readyMs.median),
    `${ms(figures.readyMs.min)}–${ms(figures.readyMs.max)}`,
    ms(figures.registeredMs.median),
  ];
  console.log(
    `medians of ${result.starts} starts each, interleaved, server on core ${options.serverCore};` +
      " from spawning gantry start to the line it prints",
  );
  const header = ["gantry start", "to ready", "spread (min–max)", "to registered in"];
  const rows = [cells("no telemetry", result.without), cells("telemetry (OTLP endpoint set)", result.withTelemetry)];
  console.log(formatTable(header, rows, ["left", "right", "right", "right"]));
  console.log(`telemetry adds ${result.differenceMs.toFixed(0)} ms to the start (median minus median); no target`);
}
