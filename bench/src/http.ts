import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { isDeepStrictEqual } from "node:util";
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
import { postScript, runWrk, type WrkResult, wrkCommand } from "./wrk.js";

/**
 * The HTTP section: Gantry on both serving paths against raw node:http and hand-written express 5,
 * all doing the same work (routing, body reading, validation, the same response headers).
 */

const SERVERS = fileURLToPath(new URL("./servers/", import.meta.url));
const CONNECTIONS = 64;
/** A run counts only with the server this busy; below it, it was waiting (on wrk, or for its core). */
const MIN_SERVER_CPU = 0.95;

type ContenderId = "raw-node" | "express" | "gantry-fast" | "gantry-express";

interface Contender {
  readonly id: ContenderId;
  readonly label: string;
  /** The script Node runs, and its arguments. */
  readonly script: string;
  readonly args: readonly string[];
  /** For Gantry: the serving path every request must have taken. */
  readonly path?: "fast" | "express";
}

/** Gantry runs the way users run it: `gantry start <entry>`, with its config given as flags. */
const GANTRY_BIN = fileURLToPath(new URL("./bin.js", import.meta.resolve("@gantry/cli")));

function gantry(path: "fast" | "express"): readonly string[] {
  const settings = [`http.path=${path}`, "http.port=0", "http.host=127.0.0.1", "log.level=silent"];
  return ["start", join(SERVERS, "gantry.js"), ...settings.flatMap((setting) => ["--set", setting])];
}

const CONTENDERS: readonly Contender[] = [
  { id: "raw-node", label: "raw node:http", script: join(SERVERS, "raw-node.js"), args: [] },
  { id: "express", label: "express 5", script: join(SERVERS, "express.js"), args: [] },
  { id: "gantry-fast", label: "gantry (fast path)", script: GANTRY_BIN, args: gantry("fast"), path: "fast" },
  {
    id: "gantry-express",
    label: "gantry (express path)",
    script: GANTRY_BIN,
    args: gantry("express"),
    path: "express",
  },
];

interface Scenario {
  readonly id: string;
  readonly title: string;
  readonly method: "GET" | "POST";
  readonly path: string;
  readonly body?: string;
  /** The JSON body every contender must answer with. */
  readonly expected: unknown;
  /** Bodies every contender must refuse with 400: proof that each one validates. */
  readonly invalid: readonly string[];
}

const ECHO = { name: "Ada Lovelace", count: 42, tags: ["math", "engine", "notes"] };

const SCENARIOS: readonly Scenario[] = [
  {
    id: "hello",
    title: "GET /hello/:name",
    method: "GET",
    path: "/hello/gantry",
    expected: { message: "Hello, gantry." },
    invalid: [],
  },
  {
    id: "echo",
    title: "POST /echo (JSON body, validated)",
    method: "POST",
    path: "/echo",
    body: JSON.stringify(ECHO),
    expected: ECHO,
    invalid: [
      { ...ECHO, name: "" },
      { ...ECHO, name: "x".repeat(65) },
      { ...ECHO, count: 1001 },
      { ...ECHO, count: 1.5 },
      { ...ECHO, tags: Array.from({ length: 11 }, (_, i) => `t${i}`) },
      { ...ECHO, tags: [1] },
    ].map((body) => JSON.stringify(body)),
  },
];

/** DESIGN.md, "Numbers we hold ourselves to". */
const TARGETS: readonly (Target & { numerator: ContenderId; denominator: ContenderId })[] = [
  { name: "gantry-express / express", numerator: "gantry-express", denominator: "express", min: 0.95 },
  { name: "gantry-fast / raw node:http", numerator: "gantry-fast", denominator: "raw-node", min: 0.8 },
];

interface Run extends MeasuredRun {
  readonly contender: ContenderId;
  /** Who used the cores during the measured window (1 = one core fully busy). */
  readonly cpu: CpuShares;
  readonly warmup: Omit<WrkResult, "output">;
  readonly measured: WrkResult;
  readonly server: ServerExit;
}

interface HttpSummary extends Summary {
  /** The serving path the server's stats show (Gantry only). */
  readonly path: string;
}

export const httpSection: Section = {
  name: "http",
  description: "Gantry over HTTP (fast and express paths) against raw node:http and hand-written express 5",
  tools: [
    { command: "wrk", debianPackage: "wrk" },
    { command: "taskset", debianPackage: "util-linux" },
  ],
  run: runHttp,
};

async function runHttp(options: BenchOptions): Promise<unknown> {
  const scripts = await mkdtemp(join(tmpdir(), "gantry-bench-"));
  try {
    const scenarios = [];
    for (const scenario of SCENARIOS) scenarios.push(await runScenario(scenario, options, scripts));
    return {
      section: "http",
      date: new Date().toISOString(),
      node: process.version,
      wrk: toolVersion("wrk", ["-v"]),
      command: wrkCommand({
        url: "<url>",
        durationS: options.durationS,
        core: options.loadCore,
        connections: CONNECTIONS,
      }),
      options,
      minServerCpu: MIN_SERVER_CPU,
      scenarios,
    };
  } finally {
    await rm(scripts, { recursive: true, force: true });
  }
}

async function runScenario(scenario: Scenario, options: BenchOptions, scripts: string) {
  console.log(`\n== http: ${scenario.title} ==`);
  let script: string | undefined;
  if (scenario.body !== undefined) {
    script = join(scripts, `${scenario.id}.lua`);
    await writeFile(script, postScript(scenario.body));
  }
  const runs = await interleaved(CONTENDERS, options.reps, async (contender, place) => {
    const run = await runOnce(scenario, contender, { ...place, script }, options);
    logRun(scenario, run, options);
    return run;
  });
  const summaries: HttpSummary[] = CONTENDERS.map((contender) => ({
    ...summarize(contender, runs),
    path: servedPath(runs.filter((run) => run.contender === contender.id && run.counted)),
  }));
  const ratios = TARGETS.map((target) => ratioOf(target, summaries));
  printReport(scenario, options, summaries, ratios, runs);
  return { id: scenario.id, title: scenario.title, contenders: summaries, ratios, runs };
}

interface RunPlace extends Place {
  readonly script: string | undefined;
}

/** One run: a fresh server, a check of its answers, a warm-up, then the measured load. */
async function runOnce(scenario: Scenario, contender: Contender, place: RunPlace, options: BenchOptions): Promise<Run> {
  const server = await startServer(contender.script, contender.args, options.serverCore);
  let measured: { warmup: WrkResult; result: WrkResult; cpu: CpuShares };
  try {
    const url = `http://127.0.0.1:${server.port}${scenario.path}`;
    await checkAnswers(url, scenario, contender);
    const load = { url, core: options.loadCore, connections: CONNECTIONS, script: place.script };
    const warmup = await runWrk({ ...load, durationS: options.warmupS });
    const cores = { load: options.loadCore, server: options.serverCore };
    const { result, cpu } = await measureCpu(cores, server.pid, () =>
      runWrk({ ...load, durationS: options.durationS }),
    );
    measured = { warmup, result, cpu };
  } catch (error) {
    await server.stop();
    throw error;
  }
  const exit = await server.stop();
  const { output: _, ...warmup } = measured.warmup;
  const discardedBecause = discardReasons(contender, measured.result, measured.cpu, exit, warmup.requests);
  return {
    contender: contender.id,
    rep: place.rep,
    attempt: place.attempt,
    position: place.position,
    requestsPerSec: measured.result.requestsPerSec,
    cpuMicrosPerRequest: (measured.cpu.serverSeconds * 1e6) / measured.result.requests,
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
  measured: WrkResult,
  cpu: CpuShares,
  exit: ServerExit,
  warmupRequests: number,
): string[] {
  const reasons: string[] = [];
  if (cpu.server < MIN_SERVER_CPU) {
    // Say who else was busy: most often other tenants of the machine on the load generator's core.
    reasons.push(
      `server CPU ${formatPercent(cpu.server, 1)} < ${formatPercent(MIN_SERVER_CPU)}` +
        ` (wrk ${formatPercent(cpu.load)}; other processes ${formatPercent(cpu.otherOnLoadCore)} of wrk's core,` +
        ` ${formatPercent(cpu.otherOnServerCore)} of the server's)`,
    );
  }
  if (measured.non2xx > 0) reasons.push(`${measured.non2xx} non-2xx/3xx responses`);
  const { connect, read, write, timeout } = measured.socketErrors;
  if (connect + read + write + timeout > 0) {
    reasons.push(`socket errors: connect ${connect}, read ${read}, write ${write}, timeout ${timeout}`);
  }
  if (!exit.clean) reasons.push(`server did not exit cleanly on SIGTERM (code ${exit.code}, signal ${exit.signal})`);
  // The server's own count must cover every response wrk got (it also served the checks).
  const served = exit.stats.served;
  const answered = warmupRequests + measured.requests;
  if (typeof served !== "number") reasons.push("server printed no stats");
  else if (served < answered) reasons.push(`server counted ${served} requests, wrk got ${answered} responses`);
  if (contender.path !== undefined) {
    const stats = exit.stats.stats as { fast?: number; express?: number } | undefined;
    const other = contender.path === "fast" ? "express" : "fast";
    if (!stats?.[contender.path] || stats[other] !== 0) {
      reasons.push(`not all requests took the ${contender.path} path: ${JSON.stringify(stats)}`);
    }
  }
  return reasons;
}

const CHECK_ID = "bench-check-1";
/** The only response headers allowed: the three every contender sets, and those node:http adds. */
const ALLOWED_HEADERS = new Set(["content-type", "content-length", "x-request-id", "date", "connection", "keep-alive"]);

/**
 * Before any load, one request with fetch(): the contender must answer 200 with the expected body
 * and exactly the agreed headers, and refuse each invalid body with 400. A contender doing less
 * work than the others would make the comparison meaningless, so this stops the benchmark.
 */
async function checkAnswers(url: string, scenario: Scenario, contender: Contender): Promise<void> {
  const fail = (problem: string): never => {
    throw new Error(`${contender.label}, ${scenario.title}: ${problem}`);
  };
  const res = await send(url, scenario, scenario.body);
  const text = await res.text();
  if (res.status !== 200) fail(`status ${res.status}, not 200: ${text}`);
  if (!isDeepStrictEqual(parseJson(text), scenario.expected)) fail(`unexpected body ${text}`);
  const type = res.headers.get("content-type");
  if (type !== "application/json; charset=utf-8") fail(`content-type ${type}`);
  if (res.headers.get("content-length") !== String(Buffer.byteLength(text))) fail("wrong content-length");
  if (res.headers.get("x-request-id") !== CHECK_ID) fail("the request's x-request-id was not echoed");
  const extra = [...res.headers.keys()].filter((name) => !ALLOWED_HEADERS.has(name));
  if (extra.length > 0) fail(`headers beyond the agreed ones: ${extra.join(", ")}`);
  for (const body of scenario.invalid) {
    const refused = await send(url, scenario, body);
    const answer = await refused.text();
    if (refused.status !== 400) fail(`answered ${refused.status}, not 400, to ${body}: ${answer}`);
    if (!refused.headers.get("content-type")?.includes("json")) fail(`a 400 without a JSON body: ${answer}`);
  }
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function send(url: string, scenario: Scenario, body: string | undefined): Promise<Response> {
  const headers: Record<string, string> = { "x-request-id": CHECK_ID };
  if (body !== undefined) headers["content-type"] = "application/json";
  return fetch(url, { method: scenario.method, headers, body });
}

/** Which path the server's stats say served Gantry routes, over the counted runs. */
function servedPath(runs: readonly Run[]): string {
  const paths = new Set<string>();
  for (const run of runs) {
    const stats = run.server.stats.stats as Record<string, number> | undefined;
    if (stats === undefined) continue;
    for (const [path, count] of Object.entries(stats)) if (count > 0) paths.add(path);
  }
  return paths.size === 0 ? "-" : [...paths].join("+");
}

function logRun(scenario: Scenario, run: Run, options: BenchOptions): void {
  const figures =
    `${formatInteger(run.requestsPerSec).padStart(7)} req/s  p99 ${formatMs(run.p99Ms).padStart(9)}` +
    `  CPU ${formatPercent(run.cpu.server).padStart(4)}`;
  console.log(
    `  ${scenario.id} ${repLabel(run, options.reps).padEnd(16)} ${run.contender.padEnd(14)}  ${figures}  ${verdictOf(run)}`,
  );
}

function printReport(
  scenario: Scenario,
  options: BenchOptions,
  summaries: readonly HttpSummary[],
  ratios: readonly Ratio[],
  runs: readonly Run[],
): void {
  console.log(
    `\n${scenario.title}: medians of the counted runs of ${options.durationS} s (after a ${options.warmupS} s warm-up),` +
      ` ${options.reps} per contender; wrk -t1 -c${CONNECTIONS} on core ${options.loadCore}, server on core ${options.serverCore}`,
  );
  const rows = summaries.map((s) => [...summaryCells(s, options.reps), s.path]);
  const header = ["contender", "req/s", "spread (min–max)", "µs CPU/req", "p99", "CPU", "counted", "discarded", "path"];
  console.log(
    formatTable(header, rows, ["left", "right", "right", "right", "right", "right", "right", "right", "left"]),
  );
  for (const r of ratios) console.log(ratioLine(r, "request"));
  printDiscarded(runs);
}
