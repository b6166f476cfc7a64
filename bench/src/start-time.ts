/**
 * How long `gantry start` takes to be ready: from spawning the command to the lines it prints once
 * the transports listen and the first registration succeeded.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { createInterface } from "node:readline";

export interface StartTime {
  /** Spawn → `<app> <version> ready`. */
  readonly readyMs: number;
  /** Spawn → `  registered in <url>`. */
  readonly registeredMs: number;
  /** How the process ended after SIGTERM; 0 is a clean shutdown. */
  readonly exitCode: number | null;
}

const START_TIMEOUT_MS = 15_000;
const STOP_TIMEOUT_MS = 10_000;

/** Started processes still running, killed if the driver itself dies part way. */
const running = new Set<ChildProcess>();
process.on("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});

/**
 * Spawns `node <gantry bin> ...args` pinned to `core` (taskset) with `env` added to this process's
 * environment, times its ready and registered lines, then stops it with SIGTERM and waits for it.
 */
export async function timeStart(
  bin: string,
  args: readonly string[],
  core: number,
  env: Readonly<Record<string, string>>,
): Promise<StartTime> {
  const started = performance.now();
  const child = spawn("taskset", ["-c", String(core), process.execPath, bin, ...args], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, ...env },
  });
  running.add(child);
  const closed = once(child, "close") as Promise<[number | null, NodeJS.Signals | null]>;
  let stderr = "";
  child.stderr?.setEncoding("utf8").on("data", (text: string) => {
    stderr += text;
  });
  const times: { ready?: number; registered?: number } = {};
  const timer = setTimeout(() => child.kill("SIGKILL"), START_TIMEOUT_MS);
  await new Promise<void>((resolve, reject) => {
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).on("line", (line) => {
      if (/ ready$/.test(line)) times.ready ??= performance.now() - started;
      if (/^\s+registered in /.test(line)) times.registered ??= performance.now() - started;
      if (times.ready !== undefined && times.registered !== undefined) resolve();
    });
    closed.then(([code, signal]) =>
      reject(
        new Error(`gantry ${args.join(" ")} ended before it was ready (code ${code}, signal ${signal})\n${stderr}`),
      ),
    );
  });
  clearTimeout(timer);
  child.kill("SIGTERM");
  const kill = setTimeout(() => child.kill("SIGKILL"), STOP_TIMEOUT_MS);
  const [code] = await closed;
  clearTimeout(kill);
  running.delete(child);
  return { readyMs: times.ready as number, registeredMs: times.registered as number, exitCode: code };
}
