import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { fileURLToPath } from "node:url";
import { runCli } from "@gantry/cli";
import { afterEach, describe, expect, test } from "vitest";
import { FIXTURES, runGantry } from "./gantry.js";

/** The compiled hello-world example (built by `tsc -b` with everything else). */
const HELLO_WORLD = fileURLToPath(new URL("../../../examples/hello-world/dist/main.js", import.meta.url));
/** The .proto files of hello-world that @gantry/transport-grpc's tests keep. */
const GOLDEN = fileURLToPath(new URL("../../transport-grpc/test/golden/hello-world/", import.meta.url));
const FILES = ["hello/v1/hello.proto", "world/v1/world.proto"];

describe("gantry proto", () => {
  const temporary: string[] = [];
  afterEach(() => {
    for (const dir of temporary.splice(0)) rmSync(dir, { recursive: true, force: true });
  });
  const tempDir = () => {
    const dir = mkdtempSync(join(tmpdir(), "gantry-proto-cli-"));
    temporary.push(dir);
    return dir;
  };

  test("writes one file per package under --out, prints each path, and protoc accepts them", async () => {
    const out = tempDir();
    const finished = await runGantry(["proto", HELLO_WORLD, "--out", out]);
    expect(finished.stderr).toBe("");
    expect(finished.code).toBe(0);
    expect(finished.stdout).toBe(FILES.map((file) => `${join(out, file)}\n`).join(""));
    for (const file of FILES) {
      expect(readFileSync(join(out, file), "utf8"), file).toBe(readFileSync(join(GOLDEN, file), "utf8"));
    }
    // Throws with protoc's own error output if it refuses a file.
    execFileSync("protoc", ["-I", out, "-I", "/usr/include", "--fatal_warnings", "-o", join(out, "set.pb"), ...FILES], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    expect(existsSync(join(out, "set.pb"))).toBe(true);
  });

  test("writes to ./proto by default", async () => {
    const cwd = tempDir();
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    let printed = "";
    stdout.on("data", (chunk: Buffer) => {
      printed += chunk.toString();
    });
    const code = await runCli(["proto", HELLO_WORLD], { stdout, stderr, env: {}, cwd });
    expect(code).toBe(0);
    expect(printed).toBe(FILES.map((file) => `${join("proto", file)}\n`).join(""));
    for (const file of FILES) expect(existsSync(join(cwd, "proto", file)), file).toBe(true);
  });

  test("documents itself in gantry --help and gantry proto --help", async () => {
    const main = await runGantry(["--help"]);
    expect(main.code).toBe(0);
    expect(main.stdout).toContain("proto  Write the .proto files of an app's services");
    const help = await runGantry(["proto", "--help"]);
    expect(help.code).toBe(0);
    for (const text of [
      "Usage: gantry proto <entry> [options]",
      "-o, --out <dir>",
      "Default: proto",
      "Exit status: 0",
    ]) {
      expect(help.stdout).toContain(text);
    }
  });

  test.each([
    {
      name: "a missing entry",
      args: ["proto", "dist/nowhere.js"],
      code: 1,
      message:
        "dist/nowhere.js does not exist; build the app first (tsc -b), and check the path [GANTRY_ERR_ENTRY_NOT_FOUND]",
    },
    {
      name: "a module that exports no app",
      args: ["proto", join(FIXTURES, "no-app.js")],
      code: 1,
      message: "exports no Gantry app; export one: export default createApp",
    },
    {
      name: "an app whose messages are invalid",
      args: ["proto", join(FIXTURES, "bad-service.js")],
      code: 1,
      message: "Twice: @Field 1 is used twice, by a and b [GANTRY_ERR_DUPLICATE_FIELD]",
    },
    { name: "no entry", args: ["proto"], code: 2, message: "give the entry module: gantry proto dist/main.js" },
    { name: "two entries", args: ["proto", "a.js", "b.js"], code: 2, message: "give one entry module" },
    {
      name: "an unknown option",
      args: ["proto", "a.js", "--output", "x"],
      code: 2,
      message: "Unknown option '--output'",
    },
    {
      name: "--out without a directory",
      args: ["proto", "a.js", "--out"],
      code: 2,
      message: "Option '-o, --out <value>' argument missing",
    },
  ])("reports $name (exit $code)", async ({ args, code, message }) => {
    const finished = await runGantry(args);
    expect(finished.code).toBe(code);
    expect(finished.stderr).toContain(message);
    expect(finished.stderr).not.toMatch(/\n\s+at /);
    expect(finished.stdout).toBe("");
  });

  test("prints the stack with --verbose", async () => {
    const finished = await runGantry(["proto", join(FIXTURES, "bad-service.js"), "--verbose"]);
    expect(finished.code).toBe(1);
    expect(finished.stderr).toMatch(/GANTRY_ERR_DUPLICATE_FIELD\]\n.*\n\s+at /);
  });
});
