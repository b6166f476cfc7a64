/**
 * `pnpm demo`: HelloService and WorldService as two processes that find each other through the
 * registry (local://, no setup) and call each other through typed clients. Ctrl-C stops both (each
 * deregisters, drains and exits 0).
 */
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";

const gantry = fileURLToPath(new URL("../../packages/cli/dist/bin.js", import.meta.url));
const entries = [
  ["hello", fileURLToPath(new URL("dist/hello.main.js", import.meta.url))],
  ["world", fileURLToPath(new URL("dist/world.main.js", import.meta.url))],
];

const children = entries.map(([name, entry]) => {
  const child = spawn(process.execPath, [gantry, "start", entry, ...process.argv.slice(2)], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  for (const stream of [child.stdout, child.stderr]) {
    let rest = "";
    stream.on("data", (chunk) => {
      const lines = (rest + chunk).split("\n");
      rest = lines.pop() ?? "";
      for (const line of lines) process.stdout.write(`${name} | ${line}\n`);
    });
  }
  return child;
});

let stopping = false;
const stop = (signal) => {
  if (stopping) return;
  stopping = true;
  for (const child of children) if (child.exitCode === null) child.kill(signal);
};
for (const signal of ["SIGINT", "SIGTERM"]) process.on(signal, () => stop(signal));

const codes = await Promise.all(
  children.map(
    (child) =>
      new Promise((resolve) =>
        child.once("exit", (code) => {
          stop("SIGTERM"); // one gone: stop the other too
          resolve(code ?? 1);
        }),
      ),
  ),
);
process.exitCode = codes.every((code) => code === 0) ? 0 : 1;
