/** @gantry/cli: the gantry command, and its pieces for tools that embed it. */
export { runCli } from "./cli.js";
export type { Command, CommandInput, Io } from "./command.js";
export { cliErrors } from "./errors.js";
export { loadApp } from "./load-app.js";
