import { execFileSync } from "node:child_process";
import { mkdir, mkdtemp, readdir, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createLogger } from "@gantry/core";
import { instance, type RegistryHarness, registryConformanceCases } from "@gantry/discovery/testing";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { openRegistry } from "../src/open.js";

let base: string;
let namespaces = 0;
beforeAll(async () => {
  base = await mkdtemp(join(tmpdir(), "gantry-local-"));
});
afterAll(async () => {
  await rm(base, { recursive: true, force: true });
});

const log = createLogger("test", { level: "silent" });
const namespaceOf = (url: string) => new URL(url).host;

const harness: RegistryHarness = {
  name: "local://",
  ttlMs: 1000,
  url: () => `local://conf-${++namespaces}?dir=${encodeURIComponent(base)}&ttl=1s`,
  async forget(url) {
    const dir = join(base, namespaceOf(url));
    for (const name of await readdir(dir)) await rm(join(dir, name), { force: true });
  },
  async writeMalformed(url, service) {
    const dir = join(base, namespaceOf(url));
    const valid = instance(service);
    await writeFile(join(dir, "not-json.json"), "{ this is not json");
    await writeFile(join(dir, "array.json"), "[1, 2, 3]");
    await writeFile(
      join(dir, "no-fields.json"),
      JSON.stringify({ instance: { id: "x" }, pid: process.pid, ttlMs: 1000 }),
    );
    await writeFile(join(dir, "wrong-name.json"), JSON.stringify({ instance: valid, pid: process.pid, ttlMs: 60_000 }));
    await writeFile(join(dir, "bad-pid.json"), JSON.stringify({ instance: valid, pid: -1, ttlMs: 1000 }));
  },
};

describe("local:// conformance", () => {
  for (const c of registryConformanceCases(harness)) {
    if (c.skip !== undefined) test.skip(`${c.name} (skipped: ${c.skip})`, () => undefined);
    else test(c.name, c.run, 30_000);
  }
});

describe("local://", () => {
  test("keeps records in a private directory per namespace, and namespaces do not see each other", async () => {
    await using a = await opened(`local://alpha?dir=${encodeURIComponent(base)}`);
    await using b = await opened(`local://beta?dir=${encodeURIComponent(base)}`);
    await a.registry.registrar?.register([instance("ns.v1.Alpha")]);
    expect(await a.registry.resolver?.list()).toHaveLength(1);
    expect(await b.registry.resolver?.list()).toEqual([]);
    expect(((await stat(base)).mode & 0o777).toString(8)).toBe("700");
    const files = await readdir(join(base, "alpha"));
    expect(files).toHaveLength(1);
    expect(((await stat(join(base, "alpha", files[0]))).mode & 0o777).toString(8)).toBe("600");
  });

  test("refuses a base directory other users can read", async () => {
    const open = join(base, "too-open");
    const { mkdir, chmod } = await import("node:fs/promises");
    await mkdir(open);
    await chmod(open, 0o755);
    await expect(openRegistry(`local://x?dir=${encodeURIComponent(open)}`, { log })).rejects.toMatchObject({
      code: "GANTRY_ERR_LOCAL_DIRECTORY",
      status: "FAILED_PRECONDITION",
      message: expect.stringContaining("has mode 755; it must be 700"),
    });
  });

  test.each([
    ["local://bad name", "does not parse"],
    ["local://-x", "namespace"],
    ["local://x/path", "no path"],
    ["local://x?ttl=abc", "ttl must be a duration"],
    ["local://x?ttl=0", "ttl must be at least 300"],
    ["local://x?ttl=2h", "ttl must be at most 3600000"],
    ["local://x?color=red", "unknown option color"],
  ])("%s is GANTRY_ERR_REGISTRY_URL", async (url, problem) => {
    await expect(openRegistry(url, { log })).rejects.toMatchObject({
      code: "GANTRY_ERR_REGISTRY_URL",
      message: expect.stringContaining(problem),
    });
  });

  test("a FIFO or a directory named like a record is skipped with a warning, and never blocks a scan", async () => {
    const url = `local://fifo?dir=${encodeURIComponent(base)}`;
    const lines: string[] = [];
    const registry = await openRegistry(url, {
      log: createLogger("test", { level: "warn", destination: { write: (line: string) => lines.push(line) } }),
    });
    try {
      execFileSync("mkfifo", [join(base, "fifo", "pipe.json")]);
      await mkdir(join(base, "fifo", "dir.json"));
      await registry.registrar?.register([instance("fifo.v1.Alpha")]);
      expect(await registry.resolver?.list()).toHaveLength(1);
      expect(lines.filter((line) => line.includes("not a regular file"))).toHaveLength(2);
    } finally {
      await registry.close();
    }
  });

  test("a record that can never be written fails register at once, with the reason", async () => {
    await using r = await opened(`local://long?dir=${encodeURIComponent(base)}`);
    const began = performance.now();
    await expect(
      r.registry.registrar?.register([instance("long.v1.Alpha", { id: "x".repeat(300) })]),
    ).rejects.toMatchObject({
      code: "GANTRY_ERR_REGISTRY_UNAVAILABLE",
      message: expect.stringContaining("ENAMETOOLONG"),
    });
    expect(performance.now() - began).toBeLessThan(1000);
  });

  test("after close, list and watch are GANTRY_ERR_REGISTRY_CLOSED and the records are gone", async () => {
    const url = `local://closing?dir=${encodeURIComponent(base)}`;
    const registry = await openRegistry(url, { log });
    await registry.registrar?.register([instance("close.v1.Alpha")]);
    await registry.close();
    await expect(registry.resolver?.list()).rejects.toMatchObject({ code: "GANTRY_ERR_REGISTRY_CLOSED" });
    expect(() => registry.resolver?.watch(undefined, () => undefined)).toThrow(/is closed/);
    expect(await readdir(join(base, "closing"))).toEqual([]);
  });
});

async function opened(url: string) {
  const registry = await openRegistry(url, { log });
  return { registry, [Symbol.asyncDispose]: () => registry.close() };
}
