import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { createInterface } from "node:readline";

/**
 * A benchmark server in a process of its own, pinned to one core. The server prints one JSON line
 * with its port once it listens, and on SIGTERM closes, prints a JSON line with its stats and exits.
 */
export interface ServerProcess {
  readonly pid: number;
  readonly port: number;
  /** Sends SIGTERM and waits for the exit (killing the server if it does not exit in time). */
  stop(): Promise<ServerExit>;
}

export interface ServerExit {
  /** The last JSON line the server printed (its stats). */
  readonly stats: Record<string, unknown>;
  /** True when it exited by itself with code 0 after SIGTERM. */
  readonly clean: boolean;
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

const START_TIMEOUT_MS = 15_000;
const STOP_TIMEOUT_MS = 10_000;

/** Servers still running, killed if the driver itself dies part way. */
const running = new Set<ChildProcess>();
process.on("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});

/** Starts `node <script> ...args` with this Node (process.execPath), pinned to `core` with taskset. */
export async function startServer(script: string, args: readonly string[], core: number): Promise<ServerProcess> {
  const child = spawn("taskset", ["-c", String(core), process.execPath, script, ...args], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  running.add(child);
  // "close", not "exit": by then stdout has been read to the end, stats line included.
  const closed = once(child, "close") as Promise<[number | null, NodeJS.Signals | null]>;
  closed.then(() => running.delete(child));
  let stderr = "";
  child.stderr?.setEncoding("utf8").on("data", (text: string) => {
    stderr += text;
  });
  const lines: Record<string, unknown>[] = [];
  let onLine: (() => void) | undefined;
  createInterface({ input: child.stdout as NodeJS.ReadableStream }).on("line", (line) => {
    const value = parseJsonLine(line) ?? gantryEndpoint(line);
    if (value === undefined) return;
    lines.push(value);
    onLine?.();
  });
  const port = await new Promise<number>((resolve, reject) => {
    let settled = false;
    const fail = (why: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      child.kill("SIGKILL");
      reject(new Error(`server ${script} ${args.join(" ")} ${why}\n${stderr}`));
    };
    const timer = setTimeout(() => fail(`did not print its port within ${START_TIMEOUT_MS} ms`), START_TIMEOUT_MS);
    onLine = () => {
      const port = lines[0]?.port;
      if (settled || typeof port !== "number") return;
      settled = true;
      clearTimeout(timer);
      resolve(port);
    };
    closed.then(([code, signal]) => fail(`exited before listening (code ${code}, signal ${signal})`));
  });
  onLine = undefined;
  const pid = child.pid as number;
  return {
    pid,
    port,
    async stop() {
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), STOP_TIMEOUT_MS);
      const [code, signal] = await closed;
      clearTimeout(timer);
      const stats = lines.length > 1 ? lines[lines.length - 1] : {};
      // gantry start says on stderr that it is shutting down; anything else a server wrote is worth showing.
      const unexpected = stderr.replace(/^gantry: SIG\w+, shutting down\n/m, "");
      if (unexpected !== "")
        process.stderr.write(`server ${script} ${args.join(" ")} wrote to stderr:\n${unexpected}\n`);
      return { stats, clean: code === 0, code, signal };
    },
  };
}

/** A line a benchmark process printed, as the JSON object it holds; undefined for any other line. */
export function parseJsonLine(line: string): Record<string, unknown> | undefined {
  if (!line.startsWith("{")) return undefined;
  try {
    return JSON.parse(line) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

/**
 * `gantry start` prints where it listens as `  http  http://127.0.0.1:PORT` or
 * `  grpc  grpc://127.0.0.1:PORT`; the benchmark servers serve one transport each.
 */
function gantryEndpoint(line: string): Record<string, unknown> | undefined {
  const match = /^\s+(?:http\s+http|grpc\s+grpc):\/\/[^\s]+:(\d+)$/.exec(line);
  return match === null ? undefined : { port: Number(match[1]) };
}
