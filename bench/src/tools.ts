import { spawnSync } from "node:child_process";
import { accessSync, constants } from "node:fs";
import { delimiter, join } from "node:path";

/** A command a section runs, and the Debian package that installs it. */
export interface Tool {
  readonly command: string;
  readonly debianPackage: string;
}

/** The tools not found on PATH. */
export function missingTools(tools: readonly Tool[]): Tool[] {
  const dirs = (process.env.PATH ?? "").split(delimiter).filter((dir) => dir !== "");
  return tools.filter((tool) => !dirs.some((dir) => isExecutable(join(dir, tool.command))));
}

function isExecutable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The first line a command prints about its version, for the results file. */
export function toolVersion(command: string, args: readonly string[]): string {
  const run = spawnSync(command, args, { encoding: "utf8" });
  return `${run.stdout ?? ""}${run.stderr ?? ""}`.split("\n")[0].trim();
}
