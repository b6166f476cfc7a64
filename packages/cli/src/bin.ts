#!/usr/bin/env node
import { runCli } from "./cli.js";

const status = await runCli(process.argv.slice(2), {
  stdout: process.stdout,
  stderr: process.stderr,
  env: process.env,
  cwd: process.cwd(),
});
// The one place that ends the process: after the command finished (or shut its app down).
process.exit(status);
