import diagnostics from "node:diagnostics_channel";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createApp, createLogger, Field, type GantryApp, Message, Method, Service } from "@gantry/core";
import type { RegistryEvent } from "@gantry/core/registry";
import { httpTransport } from "@gantry/transport-http";
import { afterAll, afterEach, beforeAll, describe, expect, test } from "vitest";
import { discovery } from "../src/discovery.js";

@Message()
class Pong {
  @Field(1) message!: string;
}

@Service({ package: "disco", version: "v1" })
class PingService {
  @Method()
  ping(): Pong {
    return { message: "pong" };
  }
}

let dir: string;
let namespaces = 0;
const apps: GantryApp[] = [];
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "gantry-discovery-"));
});
afterEach(async () => {
  await Promise.all(apps.splice(0).map((app) => app.close()));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function app(env: Record<string, string> = {}) {
  const created = createApp({
    name: "disco",
    version: "2.0.1",
    services: [PingService],
    transports: [httpTransport({ host: "127.0.0.1", port: 0 })],
    discovery: discovery(),
    metadata: { team: "platform" },
    logger: { level: "silent" },
  });
  apps.push(created);
  const registry = `local://ns-${++namespaces}?dir=${encodeURIComponent(dir)}&ttl=1s`;
  return { app: created, start: () => created.start({ env: { GANTRY_REGISTRY: registry, ...env } }) };
}

describe("discovery() in an app", () => {
  test("registers every service once the transports listen, with the advertised endpoints, and leaves first at close", async () => {
    const events: RegistryEvent[] = [];
    const listener = (event: unknown) => events.push(event as RegistryEvent);
    diagnostics.subscribe("gantry:registry", listener);
    try {
      const { app: a, start } = app({ GANTRY_ADVERTISE_HOST: "10.1.2.3", GANTRY_ZONE: "eu-west-1a" });
      await start();
      expect(a.ready).toBe(true);
      const listed = await a.registry?.resolver?.list("disco.v1.PingService");
      const port = a.endpoints[0].port;
      expect(listed).toEqual([
        {
          id: expect.stringMatching(/^disco\.v1\.PingService-/),
          service: "disco.v1.PingService",
          apiVersion: "v1",
          version: "2.0.1",
          endpoints: { http: `http://10.1.2.3:${port}` },
          metadata: { team: "platform" },
          zone: "eu-west-1a",
          registeredAt: expect.any(Number),
        },
      ]);
      expect(events.map((e) => e.type)).toContain("registered");
      const registry = a.registry;
      await a.close();
      expect(events.map((e) => e.type)).toContain("deregistered");
      expect(events.find((e) => e.type === "deregistered")).toMatchObject({ instances: listed });
      await expect(registry?.resolver?.list()).rejects.toMatchObject({ code: "GANTRY_ERR_REGISTRY_CLOSED" });
    } finally {
      diagnostics.unsubscribe("gantry:registry", listener);
    }
  });

  test("an advertised wildcard address is refused at start", async () => {
    const { start } = app({ GANTRY_ADVERTISE_HOST: "0.0.0.0" });
    await expect(start()).rejects.toMatchObject({
      code: "GANTRY_ERR_CONFIG_INVALID",
      message: expect.stringContaining("advertise.host: must be an address callers can reach"),
    });
  });

  test("an unknown scheme stops the start with the known schemes listed", async () => {
    const { app: a } = app();
    await expect(a.start({ env: { GANTRY_REGISTRY: "zk://127.0.0.1:2181" } })).rejects.toMatchObject({
      code: "GANTRY_ERR_REGISTRY_SCHEME",
      message: expect.stringContaining("known schemes: local://, etcd://"),
    });
    expect(a.state).toBe("closed");
  });

  test("a lost registration comes back by itself, and the app stays ready and serving", async () => {
    const { app: a, start } = app();
    await start();
    const resolver = a.registry?.resolver;
    const namespaceDir = join(dir, `ns-${namespaces}`);
    await rm(namespaceDir, { recursive: true, force: true });
    expect(await resolver?.list()).toEqual([]);
    expect(a.ready).toBe(true);
    const response = await fetch(`${a.endpoints[0].url}/disco.v1.PingService/Ping`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{}",
    });
    expect(await response.json()).toEqual({ message: "pong" });
    await expect.poll(async () => (await resolver?.list())?.length, { timeout: 5000 }).toBe(1);
  });

  test("registry.targets resolves a service at its own target and the rest in the main registry", async () => {
    const { app: a, start } = app({
      GANTRY_REGISTRY_TARGETS: JSON.stringify({ "other.v1.Other": "static://127.0.0.1:7000?transport=http" }),
    });
    await start();
    const resolver = a.registry?.resolver;
    expect((await resolver?.list("other.v1.Other"))?.map((i) => i.endpoints)).toEqual([
      { http: "http://127.0.0.1:7000" },
    ]);
    expect((await resolver?.list("disco.v1.PingService"))?.length).toBe(1);
    expect((await resolver?.list())?.map((i) => i.service).sort()).toEqual(["disco.v1.PingService", "other.v1.Other"]);
  });

  test.each([
    ["not JSON", "{", "must be a JSON object of strings"],
    ["a list", '["a"]', "must be a JSON object of strings"],
    ["a number value", '{"a.v1.A": 1}', "a.v1.A must be a string"],
  ])("registry.targets as %s is a config error", async (_what, value, problem) => {
    const { start } = app({ GANTRY_REGISTRY_TARGETS: value });
    await expect(start()).rejects.toMatchObject({
      code: "GANTRY_ERR_CONFIG_INVALID",
      message: expect.stringContaining(problem),
    });
  });

  test("in a container with no registry configured, it says so loudly; configured, it does not", async () => {
    const saved = process.env.KUBERNETES_SERVICE_HOST;
    process.env.KUBERNETES_SERVICE_HOST = "10.96.0.1";
    try {
      for (const [url, warns] of [
        [undefined, true],
        [`local://quiet?dir=${encodeURIComponent(dir)}`, false],
      ] as const) {
        const lines: string[] = [];
        const plugin = discovery();
        const host = {
          app: { name: "disco", version: "1.0.0" },
          log: createLogger("disco", { level: "warn", destination: { write: (line: string) => lines.push(line) } }),
          config: <T>() => ({ registry: { url, targets: {} } }) as T,
        };
        const registry = await plugin.open(host);
        await registry.close();
        expect(lines.some((line) => line.includes("only this container sees"))).toBe(warns);
      }
    } finally {
      if (saved === undefined) delete process.env.KUBERNETES_SERVICE_HOST;
      else process.env.KUBERNETES_SERVICE_HOST = saved;
    }
  });

  test("a target with an unknown scheme stops the start", async () => {
    const { start } = app({ GANTRY_REGISTRY_TARGETS: JSON.stringify({ "a.v1.A": "nope://x" }) });
    await expect(start()).rejects.toMatchObject({ code: "GANTRY_ERR_REGISTRY_SCHEME" });
  });
});
