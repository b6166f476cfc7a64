import { type ChildProcessByStdio, spawn } from "node:child_process";
import { once } from "node:events";
import { rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { fileURLToPath } from "node:url";
import { createTestApp } from "@gantry/core/testing";
import { Client, credentials, type ServiceError, status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { HelloService } from "../src/hello.service.js";
import app from "../src/main.js";
import { Tone } from "../src/messages.js";
import { WorldService } from "../src/world.service.js";
import { HEALTH_CHECK, methodOf, unary } from "./grpc.js";

describe("hello-world, in process", () => {
  test("HelloService greets with the configured word", async () => {
    await using t = await createTestApp(app, { config: { greeting: "Hi" } });
    const reply = await t.client(HelloService).sayHello({ name: "Ada", tone: Tone.WARM });
    expect(reply.message).toBe("Hi, Ada!");
    expect(reply.greetedAt).toBeInstanceOf(Date);
  });

  test("WorldService greets everyone through HelloService", async () => {
    await using t = await createTestApp(app);
    expect(await t.client(WorldService).greet({ names: ["Ada", "Grace"] })).toEqual({
      messages: ["Hello, Ada!", "Hello, Grace!"],
      count: 2,
    });
    await expect(t.client(WorldService).greet({ names: [] })).rejects.toMatchObject({ status: "INVALID_ARGUMENT" });
    await expect(t.client(WorldService).greet({ names: ["Ada", " "] })).rejects.toMatchObject({
      violations: [{ field: "names", description: "must not hold blank names" }],
    });
  });

  test("a test can replace a provider", async () => {
    class FakeHello {
      async sayHello(req: { name: string }) {
        return { message: `fake ${req.name}`, greetedAt: new Date(0) };
      }
    }
    await using t = await createTestApp(app, { overrides: [{ provide: HelloService, useClass: FakeHello as never }] });
    expect(await t.client(WorldService).greet({ names: ["Ada"] })).toEqual({ messages: ["fake Ada"], count: 1 });
  });
});

describe("hello-world, as gantry start runs it", () => {
  let child: ChildProcessByStdio<null, Readable, Readable>;
  let exited: Promise<[number | null, NodeJS.Signals | null]>;
  let http: string;
  let grpc: Client;
  const registryDir = join(tmpdir(), `gantry-hello-world-${process.pid}`);

  beforeAll(async () => {
    const bin = fileURLToPath(new URL("../../../packages/cli/dist/bin.js", import.meta.url));
    const entry = fileURLToPath(new URL("../dist/main.js", import.meta.url));
    const flags = ["http.port=0", "http.host=127.0.0.1", "grpc.port=0", "grpc.host=127.0.0.1"];
    child = spawn(process.execPath, [bin, "start", entry, ...flags.flatMap((flag) => ["--set", flag])], {
      stdio: ["ignore", "pipe", "pipe"],
      // A namespace of its own, so the test never shows in the machine's `gantry ls`.
      env: { ...process.env, GANTRY_REGISTRY: `local://test?dir=${encodeURIComponent(registryDir)}` },
    });
    exited = once(child, "exit") as Promise<[number | null, NodeJS.Signals | null]>;
    const urls = await new Promise<{ http: string; grpc: string }>((resolve, reject) => {
      let out = "";
      child.stdout.on("data", (chunk: Buffer) => {
        out += chunk.toString();
        const http = /^\s+http\s+(http:\/\/\S+)$/m.exec(out);
        const grpc = /^\s+grpc\s+grpc:\/\/(\S+)$/m.exec(out);
        if (http !== null && grpc !== null) resolve({ http: http[1], grpc: grpc[1] });
      });
      void exited.then(() => reject(new Error(`exited early: ${out}`)));
    });
    http = urls.http;
    grpc = new Client(urls.grpc, credentials.createInsecure());
  });

  afterAll(async () => {
    grpc?.close();
    child.kill("SIGTERM");
    const [code] = await exited;
    await rm(registryDir, { recursive: true, force: true });
    expect(code).toBe(0);
  });

  const post = (path: string, body: unknown) =>
    fetch(`${http}${path}`, {
      method: "POST",
      body: JSON.stringify(body),
      headers: { "content-type": "application/json" },
    });

  test("answers curl-style requests on its routes", async () => {
    const hello = await fetch(`${http}/hello/Ada?tone=WARM`);
    expect(hello.status).toBe(200);
    expect(await hello.json()).toMatchObject({ message: "Hello, Ada!" });
    const world = await post("/world/greet", { names: ["Ada", "Linus"] });
    expect(await world.json()).toEqual({ messages: ["Hello, Ada!", "Hello, Linus!"], count: 2 });
    const invalid = await fetch(`${http}/hello/${"x".repeat(65)}`);
    expect(invalid.status).toBe(400);
  });

  test("answers over gRPC as it does over HTTP", async () => {
    const sayHello = methodOf(HelloService, "SayHello");
    const input = { name: "Ada", tone: "WARM" };
    const overGrpc = await unary(grpc, sayHello, input);
    const overHttp = await (await post(sayHello.path, input)).json();
    expect(overGrpc).toEqual({ message: "Hello, Ada!", greetedAt: expect.any(String) });
    expect(overHttp).toEqual({ message: "Hello, Ada!", greetedAt: expect.any(String) });

    const greet = methodOf(WorldService, "Greet");
    const names = { names: ["Ada", "Linus"] };
    expect(await unary(grpc, greet, names)).toEqual({ messages: ["Hello, Ada!", "Hello, Linus!"], count: 2 });
    expect(await unary(grpc, greet, names)).toEqual(await (await post(greet.path, names)).json());
  });

  test("refuses invalid input over gRPC with INVALID_ARGUMENT, as HTTP does with 400", async () => {
    const sayHello = methodOf(HelloService, "SayHello");
    const error = await unary(grpc, sayHello, { name: "x".repeat(65) }).catch((caught: ServiceError) => caught);
    expect(error).toMatchObject({ code: status.INVALID_ARGUMENT });
    expect((error as ServiceError).details).toMatch(/^invalid HelloRequest: name /);
    expect((await post(sayHello.path, { name: "x".repeat(65) })).status).toBe(400);
  });

  test("serves grpc.health.v1.Health: SERVING for the server and each service", async () => {
    expect(await unary(grpc, HEALTH_CHECK, { service: "" })).toEqual({ status: "SERVING" });
    expect(await unary(grpc, HEALTH_CHECK, { service: "hello.v1.HelloService" })).toEqual({ status: "SERVING" });
    expect(await unary(grpc, HEALTH_CHECK, { service: "world.v1.WorldService" })).toEqual({ status: "SERVING" });
    await expect(unary(grpc, HEALTH_CHECK, { service: "nope.v1.Nope" })).rejects.toMatchObject({
      code: status.NOT_FOUND,
    });
  });
});
