import { execFile } from "node:child_process";
import { promisify } from "node:util";

const run = promisify(execFile);

export interface WrkOptions {
  readonly url: string;
  readonly durationS: number;
  /** The core wrk is pinned to; the server gets the other one. */
  readonly core: number;
  readonly connections: number;
  /** A Lua script (for a POST body and its content type). */
  readonly script?: string;
}

export interface WrkResult {
  readonly requests: number;
  readonly requestsPerSec: number;
  readonly p99Ms: number;
  /** Responses with a status outside 2xx and 3xx. */
  readonly non2xx: number;
  readonly socketErrors: { connect: number; read: number; write: number; timeout: number };
  /** wrk's own output, kept in the results file. */
  readonly output: string;
}

/** The command line of one wrk run: one thread pinned to `core`, with the latency distribution. */
export function wrkCommand(options: WrkOptions): string[] {
  const script = options.script === undefined ? [] : ["-s", options.script];
  const load = ["-t1", `-c${options.connections}`, `-d${options.durationS}s`, "--latency", ...script, options.url];
  return ["taskset", "-c", String(options.core), "wrk", ...load];
}

export async function runWrk(options: WrkOptions): Promise<WrkResult> {
  const [command, ...args] = wrkCommand(options);
  // wrk runs for a fixed time; the timeout only catches a wrk that hangs.
  const { stdout } = await run(command, args, { timeout: (options.durationS + 30) * 1000 });
  return parseWrk(stdout);
}

const UNITS: Record<string, number> = { us: 0.001, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Reads the figures out of wrk 4's text output. Throws when a line it needs is missing. */
export function parseWrk(output: string): WrkResult {
  const requestsPerSec = find(output, /^Requests\/sec:\s+([\d.]+)/m, "Requests/sec");
  const requests = find(output, /^\s*(\d+) requests in /m, "requests in");
  const p99 = /^\s*99%\s+([\d.]+)(us|ms|s|m|h)\s*$/m.exec(output);
  if (p99 === null) throw new Error(`wrk printed no 99% latency line (was --latency given?):\n${output}`);
  const errors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(output);
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(output);
  return {
    requests,
    requestsPerSec,
    p99Ms: Number(p99[1]) * UNITS[p99[2]],
    // wrk prints these two lines only when they are not zero.
    non2xx: non2xx === null ? 0 : Number(non2xx[1]),
    socketErrors:
      errors === null
        ? { connect: 0, read: 0, write: 0, timeout: 0 }
        : {
            connect: Number(errors[1]),
            read: Number(errors[2]),
            write: Number(errors[3]),
            timeout: Number(errors[4]),
          },
    output,
  };
}

function find(output: string, pattern: RegExp, what: string): number {
  const match = pattern.exec(output);
  if (match === null) throw new Error(`wrk printed no "${what}" line:\n${output}`);
  return Number(match[1]);
}

/** A wrk Lua script that sends every request as a POST with this JSON body. */
export function postScript(body: string): string {
  if (body.includes("]]")) throw new Error("the body must not hold ]] (it goes in a Lua long string)");
  return `wrk.method = "POST"\nwrk.body = [[${body}]]\nwrk.headers["Content-Type"] = "application/json"\n`;
}
