import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Dnsmasq, type EtcdServer, startDnsmasq, startEtcd } from "@gantry/discovery/testing";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { gantry, type Started, startEntry } from "./processes.js";

/** `gantry ls --json`, as instances. */
async function ls(env: Record<string, string>, ...args: string[]) {
  const result = await gantry(["ls", "--json", ...args], env);
  expect(result.stderr).not.toMatch(/\n\s+at /);
  return JSON.parse(result.stdout) as {
    service: string;
    version: string;
    health: string;
    endpoints: Record<string, string>;
  }[];
}

describe("hello and world as two processes, through local:// with no other configuration", () => {
  let dir: string;
  let env: Record<string, string>;
  let hello: Started;
  let world: Started;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "gantry-hw-"));
    // Only the namespace's directory is chosen, so the test never shows in the machine's `gantry ls`.
    env = { GANTRY_REGISTRY: `local://hello-world?dir=${encodeURIComponent(dir)}` };
    [hello, world] = await Promise.all([
      startEntry("hello.main.js", env, ["log.level=debug"]),
      startEntry("world.main.js", env),
    ]);
  });

  afterAll(async () => {
    await Promise.all([hello?.stop(), world?.stop()]);
    await rm(dir, { recursive: true, force: true });
  });

  test("gantry ls shows both services with their endpoints, version and health", async () => {
    const instances = await ls(env);
    expect(instances.map((i) => i.service).sort()).toEqual(["hello.v1.HelloService", "world.v1.WorldService"]);
    const byService = Object.fromEntries(instances.map((i) => [i.service, i]));
    expect(byService["hello.v1.HelloService"]).toMatchObject({
      version: "0.1.0",
      apiVersion: "v1",
      health: "serving",
      endpoints: { http: hello.http, grpc: hello.grpc },
    });
    expect(byService["world.v1.WorldService"]).toMatchObject({ endpoints: { http: world.http, grpc: world.grpc } });

    const table = await gantry(["ls"], env);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/^SERVICE\s+INSTANCE\s+VERSION\s+API\s+HEALTH\s+AGE\s+ENDPOINTS$/m);
    expect(table.stdout).toMatch(
      new RegExp(`^hello\\.v1\\.HelloService .* 0\\.1\\.0 +v1 +serving +\\d+s +${hello.http}`, "m"),
    );

    const one = await ls(env, "world.v1.WorldService");
    expect(one.map((i) => i.service)).toEqual(["world.v1.WorldService"]);
  });

  test("World calls Hello in the other process, found through the registry", async () => {
    const response = await fetch(`${world.http}/world/greet`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-request-id": "trace-me" },
      body: JSON.stringify({ names: ["Ada", "Grace"] }),
    });
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ messages: ["Hello, Ada!", "Hello, Grace!"], count: 2 });
    // The request id went with the outbound calls: Hello logged it.
    await expect.poll(() => hello.output()).toContain('"requestId":"trace-me"');
  });

  test("gantry call finds a service through the registry and prints its reply, or its error and code", async () => {
    const reply = await gantry(["call", "hello.v1.HelloService.SayHello", '{"name":"Ada","tone":"WARM"}'], env);
    expect(reply.code).toBe(0);
    expect(JSON.parse(reply.stdout)).toMatchObject({ message: "Hello, Ada!" });
    const greet = await gantry(["call", "world.v1.WorldService/Greet", '{"names":["Ada"]}', "--timeout", "5s"], env);
    expect(JSON.parse(greet.stdout)).toEqual({ messages: ["Hello, Ada!"], count: 1 });
    const invalid = await gantry(["call", "hello.v1.HelloService.SayHello", '{"name":""}'], env);
    expect(invalid.code).toBe(1);
    expect(invalid.stderr).toMatch(/name must be at least 1 character .*\[GANTRY_ERR_VALIDATION\]/);
    const missing = await gantry(["call", "nope.v1.Nope.Call", "{}", "-t", "500ms"], env);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain("[GANTRY_ERR_NO_INSTANCES]");
    for (const args of [
      ["call"],
      ["call", "nodots", "{}"],
      ["call", "a.v1.B.C", "{"],
      ["call", "a.v1.B.C", "[1]"],
      ["call", "a.v1.B.C", "{}", "-t", "soon"],
      ["call", "a.v1.B.C", "{}", "-m", "novalue"],
    ]) {
      const bad = await gantry(args, env);
      expect(bad.code, args.join(" ")).toBe(2);
      expect(bad.stderr).toContain("[GANTRY_ERR_USAGE]");
    }
  });

  test("a stopped process leaves at once; asking for a service with no instances exits 1", async () => {
    expect(await world.stop()).toBe(0);
    expect((await ls(env)).map((i) => i.service)).toEqual(["hello.v1.HelloService"]);
    const missing = await gantry(["ls", "world.v1.WorldService"], env);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain("no instances of world.v1.WorldService in local://hello-world");
  });

  test("a SIGKILLed process is gone from gantry ls within its TTL", async () => {
    hello.child.kill("SIGKILL");
    await hello.stop();
    await expect.poll(async () => (await ls(env)).length, { timeout: 7000, interval: 250 }).toBe(0);
  });
});

describe("the same two processes through etcd://", () => {
  let etcd: EtcdServer;
  let env: Record<string, string>;
  let started: Started[] = [];

  beforeAll(async () => {
    etcd = await startEtcd();
    env = { GANTRY_REGISTRY: etcd.url("/hello-world", { ttl: "2s" }) };
    started = await Promise.all([startEntry("hello.main.js", env), startEntry("world.main.js", env)]);
  });

  afterAll(async () => {
    await Promise.all(started.map((s) => s.stop()));
    await etcd?.close();
  });

  test("gantry ls shows both, and a SIGKILLed one is gone within its TTL", async () => {
    const instances = await ls(env);
    expect(instances.map((i) => [i.service, i.health]).sort()).toEqual([
      ["hello.v1.HelloService", "serving"],
      ["world.v1.WorldService", "serving"],
    ]);
    expect(started[0].output()).toContain(`registered in ${etcd.url("/hello-world", { ttl: "2s" })}`);
    started[1].child.kill("SIGKILL");
    await expect
      .poll(async () => (await ls(env)).map((i) => i.service), { timeout: 6000, interval: 250 })
      .toEqual(["hello.v1.HelloService"]);
  });
});

describe("gantry ls through dns:// (a real dnsmasq), as on Kubernetes", () => {
  let dns: Dnsmasq;
  let dir: string;
  let hello: Started;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "gantry-hw-dns-"));
    hello = await startEntry("hello.main.js", { GANTRY_REGISTRY: `local://dns?dir=${encodeURIComponent(dir)}` });
    // A headless Service's SRV records, with the pod's named ports grpc and http.
    const grpcPort = new URL(hello.grpc).port;
    const httpPort = new URL(hello.http).port;
    dns = await startDnsmasq({
      srv: {
        "_grpc._tcp.hello.test": [`pod-1.hello.test:${grpcPort}`],
        "_http._tcp.hello.test": [`pod-1.hello.test:${httpPort}`],
      },
      hosts: { "pod-1.hello.test": ["127.0.0.1"] },
    });
  });

  afterAll(async () => {
    await hello?.stop();
    await dns?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  test("one pod is one instance with both endpoints, serving; NXDOMAIN is no instances", async () => {
    const env = { GANTRY_REGISTRY: `dns://${dns.server}/hello.test` };
    const instances = await ls(env, "hello.v1.HelloService");
    expect(instances).toEqual([
      expect.objectContaining({
        service: "hello.v1.HelloService",
        health: "serving",
        endpoints: { grpc: hello.grpc, http: hello.http },
      }),
    ]);
    const grpcOnly = await ls(
      { GANTRY_REGISTRY: `dns://${dns.server}/pod-1.hello.test:${new URL(hello.grpc).port}` },
      "hello.v1.HelloService",
    );
    expect(grpcOnly.map((i) => [i.endpoints, i.health])).toEqual([[{ grpc: hello.grpc }, "serving"]]);
    const missing = await gantry(["ls", "hello.v1.HelloService", "--registry", `dns://${dns.server}/nothing.test`], {});
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain("no instances of hello.v1.HelloService");
  });
});

describe("gantry ls with bad input", () => {
  test("--help shows the usage, the registries it reads and the exit statuses", async () => {
    const help = await gantry(["ls", "--help"], {});
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^Usage: gantry ls \[service\] \[options\]/);
    expect(help.stdout).toContain("--registry <url>");
    expect(help.stdout).toContain("Exit status:");
  });

  test.each([
    [
      ["ls", "--registry", "zookeeper://x"],
      1,
      /unknown registry scheme zookeeper:\/\/.*known schemes: local:\/\/, etcd:\/\//,
    ],
    [["ls", "a", "b"], 2, /give at most one service/],
    [["ls", "--registry", "local://bad name"], 1, /GANTRY_ERR_REGISTRY_URL/],
    [["ls", "--nope"], 2, /Unknown option '--nope'/],
  ])("gantry %j exits %d with a clear error", async (args, code, message) => {
    const result = await gantry(args, {});
    expect(result.code).toBe(code);
    expect(result.stderr).toMatch(message);
    expect(result.stderr).not.toMatch(/\n\s+at /);
  });
});
