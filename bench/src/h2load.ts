import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import { promisify } from "node:util";

const run = promisify(execFile);

export interface H2loadOptions {
  readonly url: string;
  /** Calls to make in all (`-n`): h2load runs until every one has its answer. */
  readonly requests: number;
  /** The core h2load is pinned to; the server gets the other one. */
  readonly core: number;
  /** HTTP/2 connections (`-c`). */
  readonly connections: number;
  /** Streams in flight per connection (`-m`). */
  readonly streams: number;
  /** The request body, sent with every call (`-d`): for gRPC, a length-prefixed message. */
  readonly body: string;
  readonly headers: readonly string[];
  /** Where h2load writes one line per call (`--log-file`), read for the latency percentiles. */
  readonly logFile: string;
}

export interface H2loadResult {
  /** The command line h2load ran with. */
  readonly command: readonly string[];
  /** Calls that got an answer (`done`), and those with a 2xx HTTP status among them. */
  readonly requests: number;
  readonly succeeded: number;
  /** Calls h2load counted as failed (no 2xx), errored (stream or connection error) or timed out. */
  readonly failed: number;
  readonly errored: number;
  readonly timeout: number;
  readonly non2xx: number;
  readonly requestsPerSec: number;
  /** Percentiles of the time from sending a call to the end of its answer (its trailers, for gRPC). */
  readonly p50Ms: number;
  readonly p99Ms: number;
  /** h2load's own output, kept in the results file. */
  readonly output: string;
}

/** The command line of one h2load run: one thread pinned to `core`, a fixed number of calls. */
export function h2loadCommand(options: H2loadOptions): string[] {
  const headers = options.headers.flatMap((header) => ["-H", header]);
  const load = [
    "-t1",
    `-c${options.connections}`,
    `-m${options.streams}`,
    `-n${options.requests}`,
    "-d",
    options.body,
    ...headers,
    `--log-file=${options.logFile}`,
    options.url,
  ];
  return ["taskset", "-c", String(options.core), "h2load", ...load];
}

/** What one h2load run printed; `readH2load` turns it into figures. */
export interface H2loadRun {
  readonly command: readonly string[];
  readonly output: string;
  readonly logFile: string;
}

/**
 * Runs h2load to the end, and only that: reading the figures (the log file above all) is left to
 * `readH2load`, outside any window whose CPU time is measured.
 */
export async function runH2load(options: H2loadOptions): Promise<H2loadRun> {
  const command = h2loadCommand(options);
  // The timeout only catches an h2load that hangs (a server that stopped answering, say).
  const { stdout } = await run(command[0], command.slice(1), { timeout: 120_000, maxBuffer: 16 * 1024 * 1024 });
  return { command, output: stdout.replace(/^progress: .*\n/gm, ""), logFile: options.logFile };
}

export async function readH2load(run: H2loadRun): Promise<H2loadResult> {
  const latencies = await readLatencies(run.logFile);
  const figures = parseH2load(run.output);
  const { command, output } = run;
  return { command, ...figures, p50Ms: percentile(latencies, 0.5), p99Ms: percentile(latencies, 0.99), output };
}

const UNITS: Record<string, number> = { us: 0.001, ms: 1, s: 1000 };

/** Reads the figures out of h2load's text output (nghttp2 1.52). Throws when a line it needs is missing. */
export function parseH2load(output: string): Omit<H2loadResult, "command" | "p50Ms" | "p99Ms" | "output"> {
  const finished = /^finished in ([\d.]+)(us|ms|s), ([\d.]+) req\/s/m.exec(output);
  const requests =
    /^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/m.exec(
      output,
    );
  const status = /^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/m.exec(output);
  if (finished === null || requests === null || status === null || UNITS[finished[2]] === undefined) {
    throw new Error(`h2load printed no "finished in", "requests:" or "status codes:" line:\n${output}`);
  }
  const [done, succeeded, failed, errored, timeout] = requests.slice(3).map(Number);
  return {
    requests: done,
    succeeded,
    failed,
    errored,
    timeout,
    non2xx: Number(status[2]) + Number(status[3]) + Number(status[4]),
    requestsPerSec: Number(finished[3]),
  };
}

/** The third column of h2load's log file: microseconds from sending a call to the end of its answer. */
async function readLatencies(logFile: string): Promise<Float64Array> {
  const lines = (await readFile(logFile, "utf8")).split("\n").filter((line) => line !== "");
  const micros = new Float64Array(lines.length);
  for (const [i, line] of lines.entries()) micros[i] = Number(line.slice(line.lastIndexOf("\t") + 1));
  return micros.sort();
}

/** The nearest-rank percentile of sorted microseconds, in milliseconds. */
function percentile(sortedMicros: Float64Array, share: number): number {
  if (sortedMicros.length === 0) return Number.NaN;
  return sortedMicros[Math.max(0, Math.ceil(share * sortedMicros.length) - 1)] / 1000;
}

/** A gRPC request body: the 5-byte prefix (not compressed, then the length, big-endian) and the message. */
export function grpcFrame(message: Uint8Array): Buffer {
  const frame = Buffer.alloc(5 + message.length);
  frame.writeUInt32BE(message.length, 1);
  frame.set(message, 5);
  return frame;
}
