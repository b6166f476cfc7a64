import type { ParseArgsConfig } from "node:util";

/** Where a command writes, and what it runs in; replaceable in tests. */
export interface Io {
  readonly stdout: NodeJS.WritableStream;
  readonly stderr: NodeJS.WritableStream;
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly cwd: string;
}

export interface CommandInput {
  readonly positionals: readonly string[];
  readonly values: Readonly<Record<string, string | boolean | (string | boolean)[] | undefined>>;
  readonly io: Io;
}

/** One `gantry <name>` command. `run` resolves with the exit status. */
export interface Command {
  readonly name: string;
  /** One line, for `gantry --help`. */
  readonly summary: string;
  /** The whole `gantry <name> --help` text. */
  readonly help: string;
  readonly options: NonNullable<ParseArgsConfig["options"]>;
  run(input: CommandInput): Promise<number>;
}
