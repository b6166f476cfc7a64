#!/usr/bin/env node
/**
 * The gantry command. Before anything loads: on Node 22 and 23, AsyncLocalStorage (which carries
 * every call's context) runs on promise hooks that slow every promise in the process; the async
 * context frame (the default from Node 24) does not. `gantry start` therefore starts over in that
 * mode, in place (same process id, so signals and supervisors see no difference). Set
 * GANTRY_ASYNC_CONTEXT_FRAME=0 to keep the process as it was started.
 */
const FRAME = "--experimental-async-context-frame";
const major = Number(process.versions.node.split(".")[0]);
const wantsFrame =
  process.argv[2] === "start" &&
  major < 24 &&
  !process.execArgv.includes(FRAME) &&
  !(process.env.NODE_OPTIONS ?? "").includes(FRAME) &&
  process.env.GANTRY_ASYNC_CONTEXT_FRAME !== "0";
if (wantsFrame && process.execve !== undefined) {
  process.execve(
    process.execPath,
    [process.execPath, FRAME, ...process.execArgv, ...process.argv.slice(1)],
    process.env,
  );
}

const { runCli } = await import("./cli.js");
const status = await runCli(process.argv.slice(2), {
  stdout: process.stdout,
  stderr: process.stderr,
  env: process.env,
  cwd: process.cwd(),
});
// The one place that ends the process: after the command finished (or shut its app down).
process.exit(status);
