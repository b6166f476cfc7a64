import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { isGantryError } from "@gantry/core";
import type { Command, Io } from "./command.js";
import { call } from "./commands/call.js";
import { ls } from "./commands/ls.js";
import { proto } from "./commands/proto.js";
import { start } from "./commands/start.js";

const COMMANDS: readonly Command[] = [start, ls, call, proto];

const VERSION = (JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string })
  .version;

function mainHelp(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  return `Usage: gantry <command> [options]

Commands:
${COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`).join("\n")}

Options:
  -h, --help     Show help (also: gantry <command> --help)
  -v, --version  Show the version

Exit status: 0 success, 1 failure, 2 usage error.`;
}

/**
 * Runs the gantry command line and resolves with the exit status. Only the bin exits the process.
 */
export async function runCli(argv: readonly string[], io: Io): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "-h" || name === "--help" || name === "help") {
    io.stdout.write(`${mainHelp()}\n`);
    return name === undefined ? 2 : 0;
  }
  if (name === "-v" || name === "--version") {
    io.stdout.write(`${VERSION}\n`);
    return 0;
  }
  const command = COMMANDS.find((c) => c.name === name);
  if (command === undefined) {
    io.stderr.write(`gantry: unknown command "${name}"\n\n${mainHelp()}\n`);
    return 2;
  }
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({
      args: [...rest],
      options: { ...command.options, help: { type: "boolean", short: "h" }, verbose: { type: "boolean" } },
      allowPositionals: true,
      strict: true,
    });
  } catch (error) {
    io.stderr.write(`gantry ${name}: ${(error as Error).message}\n\nRun gantry ${name} --help for usage.\n`);
    return 2;
  }
  if (parsed.values.help === true) {
    io.stdout.write(`${command.help}\n`);
    return 0;
  }
  try {
    return await command.run({ positionals: parsed.positionals, values: parsed.values, io });
  } catch (error) {
    io.stderr.write(`${describeError(name, error, parsed.values.verbose === true)}\n`);
    return isGantryError(error) && error.code === "GANTRY_ERR_USAGE" ? 2 : 1;
  }
}

function describeError(command: string, error: unknown, verbose: boolean): string {
  const code = isGantryError(error) ? ` [${error.code}]` : "";
  const message = error instanceof Error ? error.message : String(error);
  let text = `gantry ${command}: ${message}${code}`;
  if (verbose && error instanceof Error) {
    text += `\n${error.stack ?? ""}`;
    for (let cause = error.cause; cause instanceof Error; cause = cause.cause)
      text += `\ncaused by: ${cause.stack ?? cause.message}`;
  } else if (!isGantryError(error) || error.status === "INTERNAL") {
    text += "\n(run with --verbose for the stack)";
  }
  return text;
}
