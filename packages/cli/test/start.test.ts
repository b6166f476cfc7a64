import { once } from "node:events";
import { Agent, request } from "node:http";
import { createServer, type Server } from "node:net";
import { join } from "node:path";
import { afterEach, describe, expect, test } from "vitest";
import { FIXTURES, gantry, type Running, runGantry } from "./gantry.js";

const LOOPBACK = ["--set", "http.host=127.0.0.1", "--set", "http.port=0"];
const URL_LINE = /^\s+http\s+(http:\/\/\S+)$/m;

function post(
  url: string,
  agent: Agent,
  body: unknown,
): Promise<{ status: number; body: string; connection?: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { agent, method: "POST", headers: { "content-type": "application/json" } }, (res) => {
      let text = "";
      res.on("data", (chunk: Buffer) => {
        text += chunk.toString();
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text, connection: res.headers.connection }));
    });
    req.on("error", reject);
    req.end(JSON.stringify(body));
  });
}

describe("gantry start", () => {
  const running: Running[] = [];
  const cleanups: (() => void)[] = [];

  afterEach(async () => {
    for (const cleanup of cleanups.splice(0)) cleanup();
    for (const process of running.splice(0)) {
      if (process.child.exitCode === null && process.child.signalCode === null) process.child.kill("SIGKILL");
      await process.exited;
    }
  });

  const start = (args: readonly string[], env: Record<string, string> = {}) => {
    const process = gantry(["start", ...args], env);
    running.push(process);
    return process;
  };

  test("starts the app, prints where it listens and its routes, and serves", async () => {
    const process = start([join(FIXTURES, "slow-app.js"), ...LOOPBACK]);
    const [, url] = await process.waitFor(URL_LINE);
    expect(process.stdout()).toContain("slow-app 1.0.0 ready");
    expect(process.stdout()).toContain("service slow.v1.SlowService");
    expect(process.stdout()).toContain("Slow  POST /slow, POST /slow.v1.SlowService/Slow");
    const response = await fetch(`${url}/slow`, {
      method: "POST",
      body: '{"ms":1,"id":"a"}',
      headers: { "content-type": "application/json" },
    });
    expect(response.status).toBe(200);
    process.child.kill("SIGTERM");
    expect((await process.exited).code).toBe(0);
  });

  test("on SIGTERM lets every call in flight finish, on kept-alive and new connections, then exits 0", async () => {
    const process = start([join(FIXTURES, "slow-app.js"), ...LOOPBACK]);
    const [, url] = await process.waitFor(URL_LINE);
    const reused = new Agent({ keepAlive: true, maxSockets: 3 });
    const fresh = new Agent({ keepAlive: false });
    cleanups.push(
      () => reused.destroy(),
      () => fresh.destroy(),
    );
    // Open three connections and keep them alive, so the slow calls below reuse them.
    await Promise.all([0, 1, 2].map((i) => post(`${url}/slow`, reused, { ms: 1, id: `warm-${i}` })));
    const calls = [
      ...[0, 1, 2].map((i) => post(`${url}/slow`, reused, { ms: 400 + i * 100, id: `kept-${i}` })),
      ...[0, 1].map((i) => post(`${url}/slow`, fresh, { ms: 350, id: `fresh-${i}` })),
    ];
    for (const id of ["kept-0", "kept-1", "kept-2", "fresh-0", "fresh-1"]) {
      await process.waitFor(new RegExp(`"id":"${id}","msg":"slow started"`));
    }
    process.child.kill("SIGTERM");
    const answers = await Promise.all(calls);
    for (const answer of answers) {
      expect(answer.status).toBe(200);
      expect(JSON.parse(answer.body).sleptMs).toBeGreaterThanOrEqual(300);
    }
    expect(answers.slice(0, 3).every((answer) => answer.connection === "close")).toBe(true);
    const finished = await process.exited;
    expect(finished.code).toBe(0);
    expect(finished.stderr).toContain("SIGTERM, shutting down");
    const log = finished.stdout;
    expect(log.indexOf('"msg":"slow-app is shutting down"')).toBeLessThan(log.indexOf('"msg":"slow-app closed"'));
    await expect(fetch(`${url}/healthz`)).rejects.toThrow();
  });

  test("shuts down on SIGINT too, and exits 1 at once on a second signal", async () => {
    const quiet = start([join(FIXTURES, "slow-app.js"), ...LOOPBACK]);
    await quiet.waitFor(URL_LINE);
    quiet.child.kill("SIGINT");
    expect((await quiet.exited).code).toBe(0);

    const busy = start([join(FIXTURES, "slow-app.js"), ...LOOPBACK, "--set", "shutdown.drainTimeout=30s"]);
    const [, url] = await busy.waitFor(URL_LINE);
    const agent = new Agent();
    cleanups.push(() => agent.destroy());
    const call = post(`${url}/slow`, agent, { ms: 10_000, id: "long" }).catch((error: Error) => error);
    await busy.waitFor(/"id":"long","msg":"slow started"/);
    busy.child.kill("SIGTERM");
    await once(busy.child.stderr as NodeJS.ReadableStream, "data");
    busy.child.kill("SIGTERM");
    const finished = await busy.exited;
    expect(finished.code).toBe(1);
    expect(finished.stderr).toContain("SIGTERM again, exiting now");
    expect(await call).toBeInstanceOf(Error);
  });

  test("loads an entry that exports a function building the app", async () => {
    const process = start([join(FIXTURES, "factory-app.js"), ...LOOPBACK]);
    await process.waitFor(/factory-app 0\.0\.0 ready/);
    process.child.kill("SIGTERM");
    expect((await process.exited).code).toBe(0);
  });

  test("takes config from --set over the environment over the file, and names the key and source of a bad value", async () => {
    const bad = await runGantry(["start", join(FIXTURES, "slow-app.js"), "--set", "http.host=127.0.0.1"], {
      GANTRY_HTTP_PORT: "eighty",
    });
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain(
      'config key http.port: must be a port number (0 to 65535), got "eighty" (from environment variable GANTRY_HTTP_PORT)',
    );
    expect(bad.stderr).not.toMatch(/\n\s+at /);

    const overridden = start([join(FIXTURES, "slow-app.js"), ...LOOPBACK], { GANTRY_HTTP_PORT: "eighty" });
    await overridden.waitFor(URL_LINE);
    overridden.child.kill("SIGTERM");
    expect((await overridden.exited).code).toBe(0);

    const unknown = await runGantry(["start", join(FIXTURES, "slow-app.js"), "--set", "http.prot=1"]);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain(
      "config key http.prot is not known (from --set http.prot); did you mean http.port?",
    );
  });

  test("fails with exit 1 and a clear message when the port is in use", async () => {
    const blocker: Server = createServer();
    blocker.listen(0, "127.0.0.1");
    await once(blocker, "listening");
    cleanups.push(() => blocker.close());
    const port = (blocker.address() as { port: number }).port;
    const finished = await runGantry([
      "start",
      join(FIXTURES, "slow-app.js"),
      "--set",
      "http.host=127.0.0.1",
      "--set",
      `http.port=${port}`,
    ]);
    expect(finished.code).toBe(1);
    expect(finished.stderr).toContain(`http: port ${port} on 127.0.0.1 is in use`);
    expect(finished.stderr).toContain("[GANTRY_ERR_PORT_IN_USE]");
  });

  test.each([
    ["a missing entry", ["start", "dist/nope.js"], 1, "dist/nope.js does not exist; build the app first"],
    ["a TypeScript entry", ["start", "src/main.ts"], 1, "gantry runs compiled JavaScript"],
    [
      "an entry that exports no app",
      ["start", join(FIXTURES, "no-app.js")],
      1,
      "exports no Gantry app; export one: export default createApp",
    ],
    [
      "an entry that throws while loading",
      ["start", join(FIXTURES, "throws.js")],
      1,
      "failed to load: the database URL is missing",
    ],
    [
      "an app with a duplicate field number",
      ["start", join(FIXTURES, "bad-service.js")],
      1,
      "Twice: @Field 1 is used twice, by a and b [GANTRY_ERR_DUPLICATE_FIELD]",
    ],
    ["no entry", ["start"], 2, "give the entry module: gantry start dist/main.js"],
    ["two entries", ["start", "a.js", "b.js"], 2, "give one entry module"],
    ["an unknown option", ["start", "a.js", "--port", "1"], 2, "Unknown option '--port'"],
    ["a malformed --set", ["start", "a.js", "--set", "http.port"], 2, "--set http.port: write it as key=value"],
    ["an unknown command", ["launch"], 2, 'unknown command "launch"'],
  ])("reports %s (exit %i)", async (_name, args, code, message) => {
    const finished = await runGantry(args);
    expect(finished.code).toBe(code);
    expect(finished.stderr).toContain(message);
    expect(finished.stderr).not.toMatch(/\n\s+at /);
  });

  test("prints the stack with --verbose", async () => {
    const finished = await runGantry(["start", join(FIXTURES, "throws.js"), "--verbose"]);
    expect(finished.code).toBe(1);
    expect(finished.stderr).toMatch(/caused by: Error: the database URL is missing\n\s+at /);
  });

  test("documents itself: gantry --help, gantry start --help, gantry --version", async () => {
    const main = await runGantry(["--help"]);
    expect(main.code).toBe(0);
    expect(main.stdout).toContain("start  Start an app from its compiled entry module");
    const help = await runGantry(["start", "--help"]);
    expect(help.code).toBe(0);
    for (const text of [
      "Usage: gantry start <entry> [options]",
      "--set <key=value>",
      "Exit status: 0",
      "defaults in code < config file < environment < --set",
    ]) {
      expect(help.stdout).toContain(text);
    }
    const version = await runGantry(["--version"]);
    expect(version.stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/);
    expect((await runGantry([])).code).toBe(2);
  });
});
