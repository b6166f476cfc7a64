import { type ChildProcessByStdio, execFile, spawn } from "node:child_process";
import { once } from "node:events";
import type { Readable } from "node:stream";
import { fileURLToPath } from "node:url";

const bin = fileURLToPath(new URL("../../../packages/cli/dist/bin.js", import.meta.url));

/** A `gantry start` child process of one of the example's entries, on free loopback ports. */
export interface Started {
  readonly child: ChildProcessByStdio<null, Readable, Readable>;
  readonly http: string;
  readonly grpc: string;
  readonly output: () => string;
  /** SIGTERM, and the exit code. */
  stop(): Promise<number | null>;
}

export async function startEntry(entry: string, env: Record<string, string>, sets: string[] = []): Promise<Started> {
  const path = fileURLToPath(new URL(`../dist/${entry}`, import.meta.url));
  const flags = ["http.port=0", "http.host=127.0.0.1", "grpc.port=0", "grpc.host=127.0.0.1", "log.level=warn", ...sets];
  const child = spawn(process.execPath, [bin, "start", path, ...flags.flatMap((flag) => ["--set", flag])], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, ...env },
  });
  const exited = once(child, "exit") as Promise<[number | null, NodeJS.Signals | null]>;
  let out = "";
  child.stderr.on("data", (chunk: Buffer) => {
    out += chunk.toString();
  });
  const urls = await new Promise<{ http: string; grpc: string }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${entry} did not start within 15 s: ${out}`)), 15_000);
    child.stdout.on("data", (chunk: Buffer) => {
      out += chunk.toString();
      const http = /^\s+http\s+(http:\/\/\S+)$/m.exec(out);
      const grpc = /^\s+grpc\s+(grpc:\/\/\S+)$/m.exec(out);
      if (http !== null && grpc !== null && /registered in /.test(out)) {
        clearTimeout(timer);
        resolve({ http: http[1], grpc: grpc[1] });
      }
    });
    void exited.then(() => {
      clearTimeout(timer);
      reject(new Error(`${entry} exited early: ${out}`));
    });
  }).catch((error: unknown) => {
    child.kill("SIGKILL");
    throw error;
  });
  return {
    child,
    ...urls,
    output: () => out,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      const [code] = await exited;
      return code;
    },
  };
}

/** Runs `gantry <args>` to its end (at most 20 s). */
export function gantry(
  args: readonly string[],
  env: Record<string, string>,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [bin, ...args],
      { env: { ...process.env, ...env }, timeout: 20_000 },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === "number" ? error.code : 1;
        resolve({ code, stdout, stderr });
      },
    );
  });
}
