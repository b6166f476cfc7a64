/**
 * The telemetry section: what tracing every call costs a Gantry server beyond what the same spans
 * cost an equivalent server without Gantry. On each serving path, the Gantry server of the HTTP or
 * gRPC section and that section's hand-written baseline (raw node:http, express 5, grpc-js) run with
 * tracing off and on, interleaved: on, both get the same OpenTelemetry SDK set up from the same
 * variables (every call sampled, batch export over OTLP http/protobuf to a receiver that counts every
 * span), Gantry through `gantry start`, the baseline through `startTelemetry` and server spans of the
 * same shape made by hand (src/servers/hand-tracing.ts). What tracing adds to the baseline's CPU per
 * call is the SDK's cost in a server; what it adds to Gantry's beyond that is the framework's. Then
 * how long `gantry start` takes to be ready with and without telemetry.
 */

import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { isDeepStrictEqual } from "node:util";
import { startOtlpReceiver } from "@gantry/telemetry/testing";
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
import { type StartTime, timeStart } from "./start-time.js";
import { type Spread, spread } from "./stats.js";
import { formatInteger, formatMs, formatPercent, formatTable } from "./table.js";
import { toolVersion } from "./tools.js";
import { runWrk, type WrkResult } from "./wrk.js";

const SERVERS = fileURLToPath(new URL("./servers/", import.meta.url));
const RECEIVER = join(SERVERS, "otlp-receiver.js");
/** Gantry runs the way users run it: `gantry start <entry>`, with its config given as flags. */
const GANTRY_BIN = fileURLToPath(new URL("./bin.js", import.meta.resolve("@gantry/cli")));

/**
 * What turns tracing on, besides the receiver's endpoint: every call sampled (the default sampler,
 * with no caller's trace context, samples all), spans batched and sent over OTLP http/protobuf, and
 * no metrics, so that only tracing is measured. The batch processor's queue holds far more than a
 * server makes between two exports, so that none is dropped and every span can be counted; the
 * exports go out every 200 ms or every 512 spans, whichever is first. 512 is the SDK's default
 * batch, what users get. Batches of 8192 (the override this section had) were measured against it on
 * the fast path, traced, 3 interleaved runs each: raw node:http took 61.0 µs CPU/call with 8192
 * against 44.9 with 512, Gantry 56.3 against 59.5 (runs 42–62): not better for both sides. With
 * 8192, at the 12–20k spans/s a traced server makes here, a span waits up to 200 ms for the timer
 * (up to 4,000 queued, not a few hundred), long enough for the GC to promote it.
 */
const TRACING_ENV: Readonly<Record<string, string>> = {
  OTEL_TRACES_EXPORTER: "otlp",
  OTEL_EXPORTER_OTLP_PROTOCOL: "http/protobuf",
  OTEL_TRACES_SAMPLER: "parentbased_always_on",
  OTEL_METRICS_EXPORTER: "none",
  OTEL_BSP_SCHEDULE_DELAY: "200",
  OTEL_BSP_MAX_QUEUE_SIZE: "262144",
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
 * between what the servers serve with tracing (about 12k calls/s here) and without (about 25k).
 */
const GRPC_WARMUP_CALLS_PER_SECOND = 15_000;
/** HelloRequest { name: "gantry" }: field 1, length-delimited, 6 bytes. */
const HELLO_REQUEST = Buffer.from([0x0a, 0x06, ...Buffer.from("gantry")]);

/**
 * `gantry start` runs apps on the async context frame on Node < 24 (packages/cli/src/bin.ts), which
 * changes what AsyncLocalStorage, and so every span's context, costs: the baselines get it too,
 * tracing off and on.
 */
const BASELINE_FLAGS = Number(process.versions.node.split(".")[0]) < 24 ? ["--experimental-async-context-frame"] : [];

/** Attributes whose values differ from one server or connection to the next; their types must still match. */
const VARYING_ATTRIBUTES: ReadonlySet<string> = new Set(["server.port", "network.peer.port"]);

/** `gantry start` to ready: timed starts of each kind, interleaved, after one start of each not timed. */
const STARTS = 5;

type PathId = "fast" | "express" | "grpc";
type Side = "gantry" | "baseline";
type Tracing = "off" | "on";

interface TracedPath {
  readonly id: PathId;
  readonly label: string;
  readonly load: "wrk" | "h2load";
  /** The arguments of `gantry start`. */
  readonly gantry: readonly string[];
  /** The other section's hand-written server for the same work. */
  readonly baseline: { readonly label: string; readonly script: string };
}

function gantryStart(entry: string, settings: readonly string[]): readonly string[] {
  return ["start", join(SERVERS, entry), ...settings.flatMap((setting) => ["--set", setting])];
}

const HTTP_SETTINGS = ["http.port=0", "http.host=127.0.0.1", "log.level=silent"];

/** The HTTP section's Gantry server on each of its paths and the gRPC section's, each with its baseline. */
const PATHS: readonly TracedPath[] = [
  {
    id: "fast",
    label: "HTTP fast path",
    load: "wrk",
    gantry: gantryStart("gantry.js", ["http.path=fast", ...HTTP_SETTINGS]),
    baseline: { label: "raw node:http", script: join(SERVERS, "raw-node.js") },
  },
  {
    id: "express",
    label: "HTTP express path",
    load: "wrk",
    gantry: gantryStart("gantry.js", ["http.path=express", ...HTTP_SETTINGS]),
    baseline: { label: "express 5", script: join(SERVERS, "express.js") },
  },
  {
    id: "grpc",
    label: "gRPC",
    load: "h2load",
    gantry: gantryStart("gantry-grpc.js", ["grpc.port=0", "grpc.host=127.0.0.1", "log.level=silent"]),
    baseline: { label: "grpc-js", script: join(SERVERS, "grpc-js.js") },
  },
];

type ContenderId = `${Side}-${Tracing}`;

interface Contender {
  readonly id: ContenderId;
  readonly label: string;
  readonly side: Side;
  readonly tracing: Tracing;
}

function contendersOf(path: TracedPath): readonly Contender[] {
  const sides: readonly [Side, string][] = [
    ["gantry", "gantry"],
    ["baseline", path.baseline.label],
  ];
  return sides.flatMap(([side, name]) =>
    (["off", "on"] as const).map((tracing) => ({
      id: `${side}-${tracing}` as const,
      label: `${name}, tracing ${tracing}${side === "baseline" && tracing === "on" ? " (spans by hand)" : ""}`,
      side,
      tracing,
    })),
  );
}

/** The command line (after `node`) of a path's server: Gantry's or the baseline's, traced with `envFile`. */
function serverCommand(path: TracedPath, side: Side, envFile: string | undefined): readonly string[] {
  const env = envFile === undefined ? [] : [`--env-file=${envFile}`];
  return side === "gantry" ? [...env, GANTRY_BIN, ...path.gantry] : [...BASELINE_FLAGS, ...env, path.baseline.script];
}

function startPathServer(command: readonly string[], options: BenchOptions): Promise<ServerProcess> {
  return startServer(command[0] as string, command.slice(1), options.serverCore);
}

/** The span a server makes for one call, as a receiver decodes it. */
interface SpanShape {
  readonly name: string;
  readonly kind: string;
  readonly attributes: Readonly<Record<string, unknown>>;
}

/** A run of a server under load, tracing off or on. */
interface ServerRun extends MeasuredRun {
  readonly contender: ContenderId;
  readonly cpu: CpuShares;
  /** The measured load's figures, without the load generator's output. */
  readonly load: Omit<WrkResult | H2loadResult, "output">;
  readonly server: ServerExit;
  /** What the receiver counted (tracing on). */
  readonly receiver?: Record<string, unknown>;
}

interface PathResult {
  readonly path: PathId;
  readonly label: string;
  readonly baseline: string;
  /** The span of one call, Gantry's (the baseline's is checked to be the same). */
  readonly shape: SpanShape;
  readonly contenders: readonly Summary[];
  /** Throughput with tracing on over off (medians), Gantry's and the baseline's. */
  readonly gantryRatio: number;
  readonly baselineRatio: number;
  /** Server CPU per call, on minus off (medians): what tracing costs a call in all. */
  readonly gantryTracingMicros: number;
  /** The same for the baseline: what the SDK costs an equivalent server for the same spans. */
  readonly baselineTracingMicros: number;
  /** What Gantry adds per traced call beyond the SDK's cost: the difference of the two. */
  readonly frameworkMicros: number;
  /** The same figure from each repetition's four runs alone, where all four counted: its noise. */
  readonly frameworkMicrosByRep: readonly number[];
  readonly target: { readonly name: string; readonly pass: boolean; readonly value: number };
  readonly runs: readonly ServerRun[];
}

export const telemetrySection: Section = {
  name: "telemetry",
  description:
    "tracing off vs on (every span counted) on each path, Gantry against its hand-written baseline with the same spans; start to ready",
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
      baselineFlags: BASELINE_FLAGS,
      minServerCpu: MIN_SERVER_CPU,
      paths,
      startup,
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

// ---- tracing off and on, Gantry and its baseline, on one path

async function runPath(path: TracedPath, dir: string, options: BenchOptions): Promise<PathResult> {
  console.log(`\n== telemetry: ${path.label} (${path.load === "wrk" ? `GET ${HELLO_PATH}` : GRPC_PATH}) ==`);
  const shape = await spanShape(path, "gantry", dir, options);
  const problem = shapeDifference(shape, await spanShape(path, "baseline", dir, options));
  if (problem !== undefined) {
    throw new Error(`${path.baseline.label}'s span is not Gantry's: ${problem}`);
  }
  const contenders = contendersOf(path);
  const runs = await interleaved(contenders, options.reps, async (contender, place) => {
    const run = await runServer(path, contender, place, dir, options);
    logRun(path, run, options);
    return run;
  });
  const summaries = contenders.map((contender) => summarize(contender, runs));
  const of = (id: ContenderId) => summaries.find((s) => s.contender === id);
  const rate = (id: ContenderId) => of(id)?.requestsPerSec?.median ?? Number.NaN;
  const micros = (id: ContenderId) => of(id)?.cpuMicrosPerRequest?.median ?? Number.NaN;
  const gantryTracingMicros = micros("gantry-on") - micros("gantry-off");
  const baselineTracingMicros = micros("baseline-on") - micros("baseline-off");
  const frameworkMicros = gantryTracingMicros - baselineTracingMicros;
  const gantryRatio = rate("gantry-on") / rate("gantry-off");
  const target =
    path.id === "express"
      ? {
          name: `gantry on/off >= ${MIN_EXPRESS_RATIO.toFixed(2)}`,
          value: gantryRatio,
          pass: gantryRatio >= MIN_EXPRESS_RATIO,
        }
      : {
          name: `framework <= ${MAX_FRAMEWORK_MICROS} µs/call`,
          value: frameworkMicros,
          pass: frameworkMicros <= MAX_FRAMEWORK_MICROS,
        };
  const result: PathResult = {
    path: path.id,
    label: path.label,
    baseline: path.baseline.label,
    shape,
    contenders: summaries,
    gantryRatio,
    baselineRatio: rate("baseline-on") / rate("baseline-off"),
    gantryTracingMicros,
    baselineTracingMicros,
    frameworkMicros,
    frameworkMicrosByRep: frameworkByRep(runs, options.reps),
    target,
    runs,
  };
  printPath(path, result, options);
  return result;
}

/** (gantry on - off) - (baseline on - off) from each repetition's own runs, where all four counted. */
function frameworkByRep(runs: readonly ServerRun[], reps: number): number[] {
  const figures: number[] = [];
  for (let rep = 1; rep <= reps; rep++) {
    const micros = (id: ContenderId) =>
      runs.find((run) => run.rep === rep && run.contender === id && run.counted)?.cpuMicrosPerRequest ?? Number.NaN;
    const value = micros("gantry-on") - micros("gantry-off") - (micros("baseline-on") - micros("baseline-off"));
    if (!Number.isNaN(value)) figures.push(value);
  }
  return figures;
}

/**
 * The span a traced server (Gantry's or the baseline) makes for one call like the load's (the same
 * request, from a client that sends no more headers than wrk or h2load), as a receiver that keeps it
 * decodes it. A server that answers wrongly, or makes other than one server span saying the call
 * succeeded, stops the section.
 */
async function spanShape(path: TracedPath, side: Side, dir: string, options: BenchOptions): Promise<SpanShape> {
  await using receiver = await startOtlpReceiver();
  const env = await tracingEnvFile(dir, `${path.id}-${side}-shape`, receiver.url);
  const server = await startPathServer(serverCommand(path, side, env), options);
  try {
    if (path.load === "wrk") await checkHello(server.port);
    else
      await runH2load({ ...grpcLoad(server, dir, options, `${path.id}-${side}-shape`), connections: 1, requests: 1 });
  } finally {
    await server.stop();
  }
  const spans = await receiver.waitForSpans(1);
  const fail = (problem: string): never => {
    throw new Error(
      `${side === "gantry" ? "gantry" : path.baseline.label} (${path.label}) with tracing on: ${problem}`,
    );
  };
  if (spans.length !== 1) fail(`one call made ${spans.length} spans: ${spans.map((s) => s.name).join(", ")}`);
  const span = spans[0] as (typeof spans)[number];
  if (span.kind !== "server") fail(`its call's span is of kind ${span.kind}, not server`);
  const ok =
    path.load === "wrk"
      ? span.attributes["http.response.status_code"] === 200
      : span.attributes["rpc.status_code"] === "OK";
  if (!ok) fail(`its call's span does not say it succeeded: ${JSON.stringify(span.attributes)}`);
  return { name: span.name, kind: span.kind, attributes: { ...span.attributes } };
}

/** What differs between two spans (ports only by type); undefined when they are the same. */
function shapeDifference(gantry: SpanShape, baseline: SpanShape): string | undefined {
  if (gantry.name !== baseline.name) return `named "${baseline.name}", not "${gantry.name}"`;
  if (gantry.kind !== baseline.kind) return `of kind ${baseline.kind}, not ${gantry.kind}`;
  const keys = new Set([...Object.keys(gantry.attributes), ...Object.keys(baseline.attributes)]);
  for (const key of keys) {
    const [mine, theirs] = [gantry.attributes[key], baseline.attributes[key]];
    const same = VARYING_ATTRIBUTES.has(key) ? typeof mine === typeof theirs : isDeepStrictEqual(mine, theirs);
    if (!same) return `${key} is ${JSON.stringify(theirs)}, Gantry's ${JSON.stringify(mine)}`;
  }
  return undefined;
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
 * One run of a server under load: a fresh server (and, tracing on, a fresh receiver on the load
 * core, given to the server by `node --env-file`, the same command otherwise), a warm-up, the
 * measured load, then SIGTERM: the server exports its last spans as it shuts down, and the
 * receiver's count is read once both have stopped.
 */
async function runServer(
  path: TracedPath,
  contender: Contender,
  place: Place,
  dir: string,
  options: BenchOptions,
): Promise<ServerRun> {
  const name = `${path.id}-${contender.id}-${place.rep}-${place.attempt}`;
  const receiver = contender.tracing === "on" ? await startServer(RECEIVER, [], options.loadCore) : undefined;
  let server: ServerProcess;
  try {
    const env =
      receiver === undefined ? undefined : await tracingEnvFile(dir, name, `http://127.0.0.1:${receiver.port}`);
    server = await startPathServer(serverCommand(path, contender.side, env), options);
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
  const discardedBecause = discardReasons(path, contender.side, {
    warmup,
    result,
    cpu,
    exit,
    receiver: counted?.stats,
  });
  return {
    contender: contender.id,
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
function discardReasons(path: TracedPath, side: Side, run: RunFigures): string[] {
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
  const calls = path.load === "wrk" ? httpReasons(path, side, run, reasons) : grpcReasons(side, run, reasons);
  // Every call the server ran made one span, and every span reached the receiver.
  if (run.receiver !== undefined && run.receiver.spans !== calls) {
    reasons.push(`the receiver counted ${run.receiver.spans} spans, the server ran ${calls} calls`);
  }
  return reasons;
}

/** The HTTP section's rules; returns the requests the server served (each one a call with a span). */
function httpReasons(path: TracedPath, side: Side, run: RunFigures, reasons: string[]): number | undefined {
  const warmup = run.warmup as WrkResult;
  const measured = run.result as WrkResult;
  if (measured.non2xx > 0) reasons.push(`${measured.non2xx} non-2xx/3xx responses`);
  const { connect, read, write, timeout } = measured.socketErrors;
  if (connect + read + write + timeout > 0) {
    reasons.push(`socket errors: connect ${connect}, read ${read}, write ${write}, timeout ${timeout}`);
  }
  const served = run.exit.stats.served;
  if (typeof served !== "number") {
    reasons.push("server printed no stats");
    return undefined;
  }
  const answered = warmup.requests + measured.requests;
  if (served < answered) reasons.push(`server counted ${served} requests, wrk got ${answered} responses`);
  if (side === "gantry") {
    const stats = run.exit.stats.stats as { fast?: number; express?: number } | undefined;
    const other = path.id === "fast" ? "express" : "fast";
    if (!stats?.[path.id as "fast" | "express"] || stats[other] !== 0) {
      reasons.push(`not all requests took the ${path.id} path: ${JSON.stringify(stats)}`);
    }
  }
  return served;
}

/**
 * The gRPC section's rules; returns the calls the server ran, each one with a span: those
 * GrpcTransport ran (held to grpc-js's count) for Gantry, those grpc-js started for the baseline.
 */
function grpcReasons(side: Side, run: RunFigures, reasons: string[]): number | undefined {
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
  if (side === "baseline") return stats.calls?.started;
  if (stats.stats?.calls !== stats.calls?.started) {
    reasons.push(`GrpcTransport counted ${stats.stats?.calls} calls, grpc-js ${stats.calls?.started}`);
  }
  return stats.stats?.calls;
}

function logRun(path: TracedPath, run: ServerRun, options: BenchOptions): void {
  const where = `  ${path.id} ${repLabel(run, options.reps).padEnd(16)} ${run.contender.padEnd(12)}`;
  const unit = path.load === "wrk" ? "req/s  " : "calls/s";
  console.log(
    `${where}  ${formatInteger(run.requestsPerSec).padStart(7)} ${unit}  p99 ${formatMs(run.p99Ms).padStart(9)}` +
      `  CPU ${formatPercent(run.cpu.server).padStart(4)}  ${run.cpuMicrosPerRequest.toFixed(1).padStart(5)} µs/call  ${verdictOf(run)}`,
  );
}

const formatMicros = (value: number) => (Number.isNaN(value) ? "n/a" : value.toFixed(1));

function printPath(path: TracedPath, result: PathResult, options: BenchOptions): void {
  const load = path.load === "wrk" ? `wrk -t1 -c${CONNECTIONS}` : `h2load -t1 -c${GRPC_CONNECTIONS} -m${GRPC_STREAMS}`;
  console.log(
    `\n${path.label}: medians of the counted runs of ${options.durationS} s (after a ${options.warmupS} s warm-up),` +
      ` ${options.reps} per contender; ${load} on core ${options.loadCore}, server on core ${options.serverCore},` +
      ` OTLP receiver on core ${options.loadCore}`,
  );
  const rows = result.contenders.map((s) => summaryCells(s, options.reps));
  const header = ["contender", "calls/s", "spread (min–max)", "µs CPU/call", "p99", "CPU", "counted", "discarded"];
  console.log(formatTable(header, rows, ["left", "right", "right", "right", "right", "right", "right", "right"]));
  const { shape } = result;
  console.log(
    `span of each call, the same from both servers: "${shape.name}", ${shape.kind},` +
      ` ${Object.keys(shape.attributes).length} attributes (${Object.keys(shape.attributes).join(", ")})`,
  );
  const byRep = result.frameworkMicrosByRep.map((value) => value.toFixed(1)).join(", ");
  console.log(
    `tracing costs a call (µs CPU, on minus off): gantry ${formatMicros(result.gantryTracingMicros)},` +
      ` ${result.baseline} ${formatMicros(result.baselineTracingMicros)}; framework ${formatMicros(result.frameworkMicros)}` +
      ` (from each repetition alone: ${byRep === "" ? "n/a" : byRep})`,
  );
  printDiscarded(result.runs);
}

function printTargets(paths: readonly PathResult[]): void {
  console.log(
    `\ntracing on: every call sampled, batched (OTEL_BSP_SCHEDULE_DELAY=${TRACING_ENV.OTEL_BSP_SCHEDULE_DELAY},` +
      " the SDK's default batch of 512), OTLP http/protobuf to a counting receiver; OTEL_METRICS_EXPORTER=none." +
      " Every counted traced run: receiver's spans = calls the server ran.",
  );
  const ratio = (value: number) => (Number.isNaN(value) ? "n/a" : value.toFixed(2));
  const rows = paths.map((p) => {
    const rate = (id: ContenderId) =>
      formatInteger(p.contenders.find((s) => s.contender === id)?.requestsPerSec?.median ?? Number.NaN);
    return [
      p.label,
      `${rate("gantry-off")} → ${rate("gantry-on")}`,
      ratio(p.gantryRatio),
      formatMicros(p.gantryTracingMicros),
      p.baseline,
      `${rate("baseline-off")} → ${rate("baseline-on")}`,
      ratio(p.baselineRatio),
      formatMicros(p.baselineTracingMicros),
      formatMicros(p.frameworkMicros),
      p.target.name,
      Number.isNaN(p.target.value) ? "NO DATA" : p.target.pass ? "PASS" : "FAIL",
    ];
  });
  const header = [
    "path",
    "gantry calls/s off → on",
    "on/off",
    "µs/call",
    "baseline",
    "calls/s off → on",
    "on/off",
    "µs/call",
    "framework µs/call",
    "target",
    "",
  ];
  const align = [
    "left",
    "right",
    "right",
    "right",
    "left",
    "right",
    "right",
    "right",
    "right",
    "left",
    "left",
  ] as const;
  console.log(formatTable(header, rows, align));
  console.log(
    "µs/call: what tracing adds to the server's CPU per call (on minus off, medians); the baseline's is what the" +
      " SDK costs an equivalent server for the same spans; framework: Gantry's minus the baseline's",
  );
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
