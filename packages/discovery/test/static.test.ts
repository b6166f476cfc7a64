import { createLogger } from "@gantry/core";
import { instance, type RegistryHarness, registryConformanceCases } from "@gantry/discovery/testing";
import { describe, expect, test } from "vitest";
import { WatchHub } from "../src/hub.js";
import { openRegistry, parseRegistryUrl, redact, registrySchemes } from "../src/open.js";

const log = createLogger("test", { level: "silent" });

const harness: RegistryHarness = {
  name: "static://",
  url: () => "static://127.0.0.1:1",
  fixed: "static:// addresses never change",
  async seed(_service, endpoints) {
    return { url: `static://${endpoints.map((e) => new URL(Object.values(e)[0]).host).join(",")}` };
  },
};

describe("static:// conformance", () => {
  for (const c of registryConformanceCases(harness)) {
    if (c.skip !== undefined) test.skip(`${c.name} (skipped: ${c.skip})`, () => undefined);
    else test(c.name, c.run);
  }
});

describe("static://", () => {
  test("lists its addresses as instances of the service asked for, and watches give one snapshot", async () => {
    const registry = await openRegistry("static://127.0.0.1:50001,127.0.0.1:50002?transport=http", { log });
    expect(registry.registrar).toBeUndefined();
    const listed = await registry.resolver?.list("hello.v1.HelloService");
    expect(listed?.map((i) => [i.service, i.endpoints])).toEqual([
      ["hello.v1.HelloService", { http: "http://127.0.0.1:50001" }],
      ["hello.v1.HelloService", { http: "http://127.0.0.1:50002" }],
    ]);
    const events: unknown[] = [];
    const watch = registry.resolver?.watch("hello.v1.HelloService", (event) => events.push(event));
    await expect.poll(() => events.length).toBe(1);
    expect(events[0]).toMatchObject({ type: "snapshot", instances: listed });
    watch?.close();
    await registry.close();
  });

  test("with service=, serves only that service", async () => {
    const registry = await openRegistry("static://127.0.0.1:50001?service=hello.v1.HelloService", { log });
    expect(await registry.resolver?.list("world.v1.WorldService")).toEqual([]);
    expect(await registry.resolver?.list("hello.v1.HelloService")).toHaveLength(1);
  });

  test.each([
    ["static://", "names no host:port"],
    ["static://127.0.0.1", "127.0.0.1 is not host:port"],
    ["static://127.0.0.1:99999", "does not parse as a URL"],
  ])("%s is GANTRY_ERR_REGISTRY_URL", async (url, problem) => {
    await expect(openRegistry(url, { log })).rejects.toMatchObject({
      code: "GANTRY_ERR_REGISTRY_URL",
      message: expect.stringContaining(problem),
    });
  });
});

describe("registry URLs", () => {
  test("an unknown scheme is GANTRY_ERR_REGISTRY_SCHEME, listing the known ones", async () => {
    const error = await openRegistry("consul://127.0.0.1:8500", { log }).catch((caught: Error) => caught);
    expect(error).toMatchObject({
      code: "GANTRY_ERR_REGISTRY_SCHEME",
      status: "FAILED_PRECONDITION",
      message: `unknown registry scheme consul:// in consul://127.0.0.1:8500; known schemes: ${registrySchemes.map((s) => `${s}://`).join(", ")}`,
    });
  });

  test.each(["", "127.0.0.1:2379", "etcd:/x", "://x", "__proto__://x"])(
    "%j is a coded error, not a crash",
    async (url) => {
      const error = await openRegistry(url, { log }).catch((caught: Error) => caught);
      expect((error as { code?: string }).code).toMatch(/^GANTRY_ERR_REGISTRY_(URL|SCHEME)$/);
    },
  );

  test("several hosts, credentials and options parse; passwords never show", () => {
    const url = parseRegistryUrl("etcd://root:s3cret@10.0.0.1:2379,10.0.0.2:2379/gantry?ttl=10s");
    expect(url.username).toBe("root");
    expect(url.password).toBe("s3cret");
    expect(url.searchParams.get("hosts")).toBe("10.0.0.1:2379,10.0.0.2:2379");
    expect(url.pathname).toBe("/gantry");
    expect(redact("etcd://root:s3cret@10.0.0.1:2379")).toBe("etcd://root:***@10.0.0.1:2379");
    expect(redact("etcd://root:a/b@10.0.0.1:2379/gantry")).toBe("etcd://root:***@10.0.0.1:2379/gantry");
    expect(redact("etcd://10.0.0.1:2379?user=root&password=s3cret&ttl=5s")).toBe(
      "etcd://10.0.0.1:2379?user=root&password=***&ttl=5s",
    );
  });

  test("gRPC's short form dns:name:port is dns:///name:port", () => {
    const url = parseRegistryUrl("dns:hello.default.svc.cluster.local:50051");
    expect(url.href).toBe("dns:///hello.default.svc.cluster.local:50051");
    expect(() => parseRegistryUrl("localhost:2379")).toThrow(/is not a URL such as/);
  });
});

describe("WatchHub", () => {
  test("a new watcher gets its snapshot before any change", async () => {
    const hub = new WatchHub("test://");
    hub.resync([]);
    const events: string[] = [];
    hub.watch(undefined, (event) => events.push(event.type));
    hub.put(instance("hub.v1.Alpha"));
    await Promise.resolve();
    expect(events).toEqual(["snapshot"]);
    const late = instance("hub.v1.Alpha");
    hub.put(late);
    hub.delete(late.id);
    expect(events).toEqual(["snapshot", "add", "remove"]);
  });
});
