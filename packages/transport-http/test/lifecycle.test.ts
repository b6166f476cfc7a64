import { Agent, request } from "node:http";
import type { Registrar } from "@gantry/core/registry";
import { discoveryOf } from "@gantry/core/testing";
import { afterEach, describe, expect, test } from "vitest";
import { json, type Served, serve } from "./fixtures.js";

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** One request over a given agent (so that connections are kept alive and reused). */
function send(url: string, agent: Agent, body?: unknown): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      { agent, method: body === undefined ? "GET" : "POST", headers: { "content-type": "application/json" } },
      (res) => {
        let text = "";
        res.on("data", (chunk: Buffer) => {
          text += chunk.toString();
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
      },
    );
    req.on("error", reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

describe("the HTTP transport through the app's lifecycle", () => {
  const opened: Served[] = [];
  const agents: Agent[] = [];

  afterEach(async () => {
    for (const agent of agents.splice(0)) agent.destroy();
    for (const served of opened.splice(0)) await served.close();
  });

  const keepAlive = () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 8 });
    agents.push(agent);
    return agent;
  };

  test("fails to start with a clear error when the port is taken", async () => {
    const first = await serve();
    opened.push(first);
    const port = Number(new URL(first.url).port);
    const second = serve({ port }).catch((error: unknown) => error);
    expect(await second).toMatchObject({
      code: "GANTRY_ERR_PORT_IN_USE",
      message: expect.stringContaining(String(port)),
    });
  });

  test("is live but not ready (503 on /readyz) until the first registration succeeded", async () => {
    let release: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    let listening: (url: string) => void = () => undefined;
    const address = new Promise<string>((resolve) => {
      listening = resolve;
    });
    const registrar: Registrar = {
      register: async (instances) => {
        listening(instances[0].endpoints.http);
        await gate;
      },
      deregister: async () => undefined,
    };
    const starting = serve({}, { discovery: discoveryOf({ registrar }) });
    const url = await address;
    const notReady = await fetch(`${url}/readyz`);
    expect(notReady.status).toBe(503);
    expect(await json(notReady)).toEqual({ status: "starting" });
    expect((await fetch(`${url}/healthz`)).status).toBe(200);
    release();
    const served = await starting;
    opened.push(served);
    expect((await fetch(`${url}/readyz`)).status).toBe(200);
  });

  test("fails readiness first at shutdown, completes calls in flight, then refuses connections", async () => {
    const served = await serve({}, { shutdown: { propagationDelayMs: 300, drainTimeoutMs: 5000 } });
    const agent = keepAlive();
    const slow = [send(`${served.url}/sleep`, agent, { ms: 600 }), send(`${served.url}/sleep`, agent, { ms: 600 })];
    await expect.poll(() => served.app.inFlight, { timeout: 3000 }).toBe(2);
    const closing = served.close();
    // During the propagation delay the listener is still open, and readiness already fails.
    const readiness = await fetch(`${served.url}/readyz`);
    expect(readiness.status).toBe(503);
    expect(await json(readiness)).toEqual({ status: "draining" });
    for (const answer of await Promise.all(slow)) {
      expect(answer.status).toBe(200);
      expect(JSON.parse(answer.body)).toEqual({ aborted: false });
      expect(answer.headers.connection).toBe("close");
    }
    await closing;
    await expect(fetch(`${served.url}/healthz`)).rejects.toThrow();
  });

  test("a call sent on an idle keep-alive connection while draining is answered, never reset", async () => {
    const served = await serve({}, { shutdown: { drainTimeoutMs: 5000 } });
    const agent = new Agent({ keepAlive: true, maxSockets: 2 });
    agents.push(agent);
    // Two connections: one holds a slow call through the drain, the other is idle when it begins.
    await Promise.all([send(`${served.url}/sleep`, agent, { ms: 50 }), send(`${served.url}/sleep`, agent, { ms: 50 })]);
    const slow = send(`${served.url}/sleep`, agent, { ms: 500 });
    await expect.poll(() => served.app.inFlight, { timeout: 3000 }).toBe(1);
    const closing = served.close();
    await expect.poll(() => served.http.draining).toBe(true);
    const late = await send(`${served.url}/sleep`, agent, { ms: 1 });
    expect(late.status).toBe(503);
    expect(late.headers.connection).toBe("close");
    expect(JSON.parse(late.body)).toMatchObject({ code: "GANTRY_ERR_SHUTTING_DOWN", retryable: true });
    expect((await slow).status).toBe(200);
    await closing;
  });

  test("sheds calls over the concurrency cap with a retryable RESOURCE_EXHAUSTED", async () => {
    const served = await serve({}, { maxConcurrentCalls: 2 });
    opened.push(served);
    const agent = keepAlive();
    const first = [send(`${served.url}/sleep`, agent, { ms: 400 }), send(`${served.url}/sleep`, agent, { ms: 400 })];
    await expect.poll(() => served.app.inFlight, { timeout: 3000 }).toBe(2);
    const shed = await send(`${served.url}/sleep`, agent, { ms: 1 });
    expect(shed.status).toBe(503);
    expect(shed.headers["retry-after"]).toBe("1");
    expect(JSON.parse(shed.body)).toMatchObject({
      code: "GANTRY_ERR_OVERLOADED",
      canonicalStatus: "RESOURCE_EXHAUSTED",
      retryable: true,
    });
    for (const answer of await Promise.all(first)) expect(answer.status).toBe(200);
  });
});
