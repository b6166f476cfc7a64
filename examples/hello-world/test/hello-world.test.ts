import { spawn } from "node:child_process";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import { createTestApp } from "@gantry/core/testing";
import { describe, expect, test } from "vitest";
import { HelloService } from "../src/hello.service.js";
import app from "../src/main.js";
import { Tone } from "../src/messages.js";
import { WorldService } from "../src/world.service.js";

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
  test("answers curl-style requests on its routes", async () => {
    const bin = fileURLToPath(new URL("../../../packages/cli/dist/bin.js", import.meta.url));
    const entry = fileURLToPath(new URL("../dist/main.js", import.meta.url));
    const child = spawn(
      process.execPath,
      [bin, "start", entry, "--set", "http.port=0", "--set", "http.host=127.0.0.1"],
      {
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    const exited = once(child, "exit") as Promise<[number | null, NodeJS.Signals | null]>;
    try {
      const url = await new Promise<string>((resolve, reject) => {
        let out = "";
        child.stdout.on("data", (chunk: Buffer) => {
          out += chunk.toString();
          const match = /^\s+http\s+(http:\/\/\S+)$/m.exec(out);
          if (match !== null) resolve(match[1]);
        });
        void exited.then(() => reject(new Error(`exited early: ${out}`)));
      });
      const hello = await fetch(`${url}/hello/Ada?tone=WARM`);
      expect(hello.status).toBe(200);
      expect(await hello.json()).toMatchObject({ message: "Hello, Ada!" });
      const world = await fetch(`${url}/world/greet`, {
        method: "POST",
        body: JSON.stringify({ names: ["Ada", "Linus"] }),
        headers: { "content-type": "application/json" },
      });
      expect(await world.json()).toEqual({ messages: ["Hello, Ada!", "Hello, Linus!"], count: 2 });
      const invalid = await fetch(`${url}/hello/${"x".repeat(65)}`);
      expect(invalid.status).toBe(400);
    } finally {
      child.kill("SIGTERM");
      const [code] = await exited;
      expect(code).toBe(0);
    }
  });
});
