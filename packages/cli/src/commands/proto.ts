import { mkdir, writeFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { describeService } from "@gantry/core";
import { generateProto } from "@gantry/transport-grpc";
import type { Command, CommandInput } from "../command.js";
import { cliErrors } from "../errors.js";
import { loadApp } from "../load-app.js";

export const proto: Command = {
  name: "proto",
  summary: "Write the .proto files of an app's services",
  help: `Usage: gantry proto <entry> [options]

Loads the compiled module <entry> (its default export is the app made by createApp)
without starting it, and writes the proto3 files of its services: one file per proto
package, at the package's path (hello.v1 is written to hello/v1/hello.proto). Prints
each path it writes. The files import only the well-known google/protobuf/*.proto
files that protoc ships, so protoc and every gRPC toolchain read them as they are.
Files of packages the app no longer serves are left in place.

Options:
  -o, --out <dir>  Where to write the files. Default: proto
  --verbose        Print stack traces with errors
  -h, --help       Show this help

Exit status: 0 when the files are written, 1 when the app cannot be loaded or its
services cannot be written as .proto, 2 for a usage error.

Examples:
  gantry proto dist/main.js
  gantry proto dist/main.js --out ../contracts
  protoc -I proto --descriptor_set_out=app.pb proto/hello/v1/hello.proto`,
  options: {
    out: { type: "string", short: "o" },
  },
  async run({ positionals, values, io }: CommandInput): Promise<number> {
    if (positionals.length !== 1) {
      throw cliErrors.create("GANTRY_ERR_USAGE", {
        problem:
          positionals.length === 0 ? "give the entry module: gantry proto dist/main.js" : "give one entry module",
      });
    }
    const out = (values.out as string | undefined) ?? "proto";
    if (out === "") throw cliErrors.create("GANTRY_ERR_USAGE", { problem: "--out needs a directory" });
    const app = await loadApp(positionals[0], io.cwd);
    // The app is not started, so its own list of described services is still empty: describe the
    // classes it was created with, as start() would.
    const files = generateProto(app.options.services.map((type) => describeService(type)));
    if (files.length === 0) {
      io.stderr.write(`gantry proto: ${positionals[0]} serves no services; nothing to write\n`);
      return 0;
    }
    for (const file of files) {
      const path = resolve(io.cwd, out, file.path);
      await mkdir(dirname(path), { recursive: true });
      await writeFile(path, file.content);
      io.stdout.write(`${join(out, file.path)}\n`);
    }
    return 0;
  },
};
