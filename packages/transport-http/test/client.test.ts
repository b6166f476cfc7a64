import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from "node:http";
import { createServer, type Server as NetServer, type Socket, connect as tcpConnect } from "node:net";
import {
  createApp,
  Empty,
  Field,
  type GantryApp,
  GantryError,
  InjectClient,
  Message,
  Method,
  Service,
  type ServiceClient,
  Status,
  type StatusName,
} from "@gantry/core";
import {
  channelProbe,
  discoveryOf,
  failureOf,
  fixedResolver,
  Kitchen,
  kitchenDefaults,
  kitchenSample,
  type MetaReply,
  Mood,
  ProbeService,
  probeCall,
  probeMethod,
  promised,
} from "@gantry/core/testing";
import { afterAll, afterEach, beforeAll, describe, expect, test, vi } from "vitest";
import { httpClientTransport, httpTransport } from "../src/index.js";

// ------------------------------------------------------------------------------------------------
// Real servers, and a TCP proxy that counts and can cut connections

async function startApp(bodyLimit?: number): Promise<GantryApp> {
  const app = createApp({
    name: "http-client-test",
    services: [ProbeService],
    transports: [httpTransport({ host: "127.0.0.1", port: 0, bodyLimit })],
    shutdown: { drainTimeoutMs: 100 },
  });
  await app.start({ env: {}, flags: { "log.level": "silent" } });
  return app;
}

class TcpProxy {
  connections = 0;
  readonly open = new Set<Socket>();
  readonly #server: NetServer;

  private constructor(server: NetServer) {
    this.#server = server;
  }

  static async start(targetPort: number): Promise<TcpProxy> {
    const server = createServer({ noDelay: true });
    const proxy = new TcpProxy(server);
    server.on("connection", (client) => {
      proxy.connections++;
      proxy.open.add(client);
      const upstream = tcpConnect({ port: targetPort, host: "127.0.0.1", noDelay: true });
      client.pipe(upstream).pipe(client);
      client.on("error", () => {});
      upstream.on("error", () => {});
      client.on("close", () => {
        proxy.open.delete(client);
        upstream.destroy();
      });
      upstream.on("close", () => client.destroy());
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    return proxy;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.#server.address() as { port: number }).port}`;
  }

  /** Cuts every connection, as a peer that dies does. */
  cut(): void {
    for (const socket of this.open) socket.destroy();
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

function portOf(url: string): number {
  return Number(new URL(url).port);
}

const transport = httpClientTransport();
const channels: { close(): void }[] = [];

function channel(url: string, client = transport) {
  const made = promised(client.channel(url));
  channels.push(made);
  return made;
}

afterEach(() => {
  for (const made of channels.splice(0)) made.close();
});

// ------------------------------------------------------------------------------------------------

describe("HTTP client against a Gantry server", () => {
  let app: GantryApp;
  let url: string;

  beforeAll(async () => {
    app = await startApp(64 * 1024);
    url = app.endpoints[0].url;
  });

  afterAll(async () => {
    await app.close();
  });

  test("is the http kind", () => {
    expect(transport.kind).toBe("http");
  });

  test("round-trips every field kind", async () => {
    const input = kitchenSample;
    const output = (await channel(url).unary(probeCall("Echo"), input)) as Kitchen;
    expect(output).toEqual(input);
    expect(output).toBeInstanceOf(Kitchen);
    expect(typeof output.i64).toBe("bigint");
  });

  test("an empty message comes back with every default", async () => {
    const output = await channel(url).unary(probeCall("Echo"), {});
    expect(output).toEqual(kitchenDefaults);
  });

  test.each(Object.keys(Status) as StatusName[])(
    "%s arrives with its code, message, retryability, violations and details",
    async (status) => {
      const retryable = Status[status] % 2 === 0;
      const error = await failureOf(
        channel(url).unary(probeCall("Fail"), {
          status,
          code: `PROBE_${status}`,
          message: `it went ${status}`,
          retryable,
        }),
      );
      expect(error).toBeInstanceOf(GantryError);
      expect(error).toMatchObject({ status, code: `PROBE_${status}`, message: `it went ${status}`, retryable });
      expect(error.violations).toEqual(
        status === "INVALID_ARGUMENT" ? [{ field: "items[2].name", description: "is too short" }] : [],
      );
      // The server keeps the details of INTERNAL and UNKNOWN errors to itself.
      const internal = status === "INTERNAL" || status === "UNKNOWN";
      expect(error.details).toEqual(internal ? {} : { hint: "look left", limit: 5 });
    },
  );

  test("the server's validation arrives as INVALID_ARGUMENT with every violation", async () => {
    const error = await failureOf(channel(url).unary(probeCall("Check"), { name: "a", n: 11 }));
    expect(error).toMatchObject({ status: "INVALID_ARGUMENT", code: "GANTRY_ERR_VALIDATION", httpStatus: 400 });
    expect(error.violations.map((v) => v.field).sort()).toEqual(["n", "name"]);
  });

  test("a transport error keeps its own HTTP status (413 for a body over the server's limit)", async () => {
    const error = await failureOf(channel(url).unary(probeCall("Echo"), { text: "x".repeat(70 * 1024) }));
    expect(error).toMatchObject({
      status: "RESOURCE_EXHAUSTED",
      code: "GANTRY_ERR_BODY_TOO_LARGE",
      httpStatus: 413,
    });
  });

  test("a plain throw is INTERNAL, and nothing of its message leaks", async () => {
    const error = await failureOf(channel(url).unary(probeCall("Crash"), {}));
    expect(error).toMatchObject({ status: "INTERNAL", code: "GANTRY_ERR_INTERNAL", retryable: false });
    expect(JSON.stringify({ message: error.message, details: error.details })).not.toContain("hunter2");
  });

  test("an unknown method is UNIMPLEMENTED", async () => {
    const unknown = { ...probeMethod("Echo"), path: "/clienttest.v1.ProbeService/Nope" };
    const error = await failureOf(channel(url).unary({ ...probeCall("Echo"), method: unknown }, {}));
    expect(error).toMatchObject({ status: "UNIMPLEMENTED", code: "GANTRY_ERR_ROUTE_NOT_FOUND" });
  });

  test("the deadline goes on the wire: DEADLINE_EXCEEDED here, the method's signal aborted there", async () => {
    const key = "deadline";
    const begun = Date.now();
    const error = await failureOf(channel(url).unary(probeCall("Sleep", { timeoutMs: 300 }), { ms: 5000, key }));
    expect(error).toMatchObject({ status: "DEADLINE_EXCEEDED", code: "GANTRY_ERR_DEADLINE_EXCEEDED" });
    expect(Date.now() - begun).toBeLessThan(2000);
    await vi.waitFor(() => expect(channelProbe.seen.get(key)?.abortedWith).toBeDefined(), {
      timeout: 2000,
      interval: 10,
    });
    const budget = channelProbe.seen.get(key)?.budgetMs as number;
    expect(budget).toBeGreaterThan(100);
    expect(budget).toBeLessThanOrEqual(300);
  });

  test("a deadline already past fails at once", async () => {
    const call = { ...probeCall("Echo"), deadline: Date.now() - 1 };
    expect(await failureOf(channel(url).unary(call, {}))).toMatchObject({ status: "DEADLINE_EXCEEDED" });
  });

  test("aborting the signal cancels the call, on both sides", async () => {
    const key = "cancel";
    const controller = new AbortController();
    const running = new Promise<void>((resolve) => channelProbe.started.set(key, resolve));
    const call = failureOf(channel(url).unary(probeCall("Sleep", { signal: controller.signal }), { ms: 5000, key }));
    await running;
    controller.abort();
    expect(await call).toMatchObject({ status: "CANCELLED", code: "GANTRY_ERR_CANCELLED" });
    await vi.waitFor(() => expect(channelProbe.seen.get(key)?.abortedWith).toBe("CANCELLED"), {
      timeout: 2000,
      interval: 10,
    });
  });

  test("a signal aborted with a GantryError rejects with that error; an aborted signal sends nothing", async () => {
    const reason = new GantryError("UNAVAILABLE", "shutting down", { code: "CLIENT_CLOSING" });
    expect(await failureOf(channel(url).unary(probeCall("Echo", { signal: AbortSignal.abort(reason) }), {}))).toBe(
      reason,
    );
    const error = await failureOf(channel(url).unary(probeCall("Echo", { signal: AbortSignal.abort() }), {}));
    expect(error).toMatchObject({ status: "CANCELLED", code: "GANTRY_ERR_CANCELLED" });
  });

  test("metadata arrives at the server as headers; reserved and invalid ones are dropped", async () => {
    const reply = (await channel(url).unary(
      probeCall("Meta", {
        metadata: {
          "x-tenant": "acme",
          "X-Upper": "up",
          "x-request-id": "req-42",
          "content-type": "text/plain",
          accept: "text/html",
          "grpc-timeout": "1n",
          host: "evil.example",
          "x-bad value": "nope",
          "x-bad-char": "line\nbreak",
        },
      }),
      {},
    )) as MetaReply;
    expect(reply.entries).toEqual({
      "x-tenant": "acme",
      "x-upper": "up",
      "x-request-id": "req-42",
      "content-type": "application/json",
      accept: "application/json",
      host: new URL(url).host,
      connection: "keep-alive",
      "content-length": "2",
    });
  });

  test("an input that cannot be encoded fails with the encoder's error, before anything is opened", async () => {
    const proxy = await TcpProxy.start(portOf(url));
    try {
      const error = await failureOf(channel(proxy.url).unary(probeCall("Echo"), { i32: "many" }));
      expect(error.code).toBe("GANTRY_ERR_BAD_OUTPUT");
      expect(error.details).toMatchObject({ field: "i32" });
      expect(proxy.connections).toBe(0);
    } finally {
      await proxy.close();
    }
  });

  test("a channel opens its first connection on its first call and keeps it alive for the next", async () => {
    const proxy = await TcpProxy.start(portOf(url));
    try {
      const reused = channel(proxy.url);
      expect(proxy.connections).toBe(0);
      for (let i = 0; i < 20; i++) expect(await reused.unary(probeCall("Echo"), { i32: i })).toMatchObject({ i32: i });
      expect(proxy.connections).toBe(1);
      // HTTP/1.1 carries one call at a time per connection: concurrent calls open more, up to maxSockets.
      const outputs = await Promise.all(
        Array.from({ length: 10 }, (_, i) => reused.unary(probeCall("Echo"), { i32: i })),
      );
      expect(outputs.map((o) => (o as Kitchen).i32)).toEqual(Array.from({ length: 10 }, (_, i) => i));
      expect(proxy.connections).toBeLessThanOrEqual(10);
      const before = proxy.connections;
      for (let i = 0; i < 10; i++) await reused.unary(probeCall("Echo"), { i32: i });
      expect(proxy.connections).toBe(before);
    } finally {
      await proxy.close();
    }
  });

  test("maxSockets bounds the connections of a channel", async () => {
    const proxy = await TcpProxy.start(portOf(url));
    try {
      const narrow = channel(proxy.url, httpClientTransport({ maxSockets: 2 }));
      await Promise.all(Array.from({ length: 20 }, (_, i) => narrow.unary(probeCall("Echo"), { i32: i })));
      expect(proxy.connections).toBe(2);
    } finally {
      await proxy.close();
    }
  });

  test("a call waiting for a free connection can be cancelled, and the connection serves the next", async () => {
    const proxy = await TcpProxy.start(portOf(url));
    try {
      const single = channel(proxy.url, httpClientTransport({ maxSockets: 1 }));
      const key = "queue-holder";
      const running = new Promise<void>((resolve) => channelProbe.started.set(key, resolve));
      const release = channelProbe.gate(key);
      const holder = single.unary(probeCall("Sleep", { timeoutMs: 5000 }), { ms: 0, key });
      await running;
      const controller = new AbortController();
      const queued = failureOf(single.unary(probeCall("Echo", { signal: controller.signal }), { i32: 1 }));
      controller.abort();
      expect(await queued).toMatchObject({ status: "CANCELLED" });
      const waiting = single.unary(probeCall("Echo", { timeoutMs: 5000 }), { i32: 2 });
      release();
      expect(await holder).toEqual({ aborted: false });
      expect(await waiting).toMatchObject({ i32: 2 });
      expect(proxy.connections).toBe(1);
    } finally {
      await proxy.close();
    }
  });

  test("close() closes every connection, and later calls fail with GANTRY_ERR_CONNECT", async () => {
    const proxy = await TcpProxy.start(portOf(url));
    try {
      const closing = promised(transport.channel(proxy.url));
      await Promise.all(Array.from({ length: 3 }, () => closing.unary(probeCall("Echo"), {})));
      expect(proxy.open.size).toBeGreaterThan(0);
      closing.close();
      await vi.waitFor(() => expect(proxy.open.size).toBe(0), { timeout: 2000, interval: 10 });
      const error = await failureOf(closing.unary(probeCall("Echo"), {}));
      expect(error).toMatchObject({ status: "UNAVAILABLE", code: "GANTRY_ERR_CONNECT" });
    } finally {
      await proxy.close();
    }
  });

  test("close() lets the calls in flight finish, closing idle connections at once and the rest after", async () => {
    const proxy = await TcpProxy.start(portOf(url));
    try {
      const closing = promised(transport.channel(proxy.url));
      await closing.unary(probeCall("Echo"), {});
      const key = "close-in-flight";
      const running = new Promise<void>((resolve) => channelProbe.started.set(key, resolve));
      const release = channelProbe.gate(key);
      const slow = closing.unary(probeCall("Sleep", { timeoutMs: 5000 }), { ms: 0, key });
      await running;
      await closing.unary(probeCall("Echo"), {});
      expect(proxy.open.size).toBe(2);
      closing.close();
      await vi.waitFor(() => expect(proxy.open.size).toBe(1), { timeout: 2000, interval: 10 });
      release();
      expect(await slow).toEqual({ aborted: false });
      await vi.waitFor(() => expect(proxy.open.size).toBe(0), { timeout: 2000, interval: 10 });
      expect(proxy.connections).toBe(2);
    } finally {
      await proxy.close();
    }
  });

  test("a peer that dies mid-call is UNAVAILABLE, not GANTRY_ERR_CONNECT: the call may have run", async () => {
    const proxy = await TcpProxy.start(portOf(url));
    try {
      const key = "cut";
      const running = new Promise<void>((resolve) => channelProbe.started.set(key, resolve));
      const call = failureOf(channel(proxy.url).unary(probeCall("Sleep", { timeoutMs: 5000 }), { ms: 5000, key }));
      await running;
      proxy.cut();
      const error = await call;
      expect(error.status).toBe("UNAVAILABLE");
      expect(error.code).not.toBe("GANTRY_ERR_CONNECT");
    } finally {
      await proxy.close();
    }
  });
});

describe("HTTP client against servers that fail", () => {
  test("connection refused is GANTRY_ERR_CONNECT, naming the target", async () => {
    const url = `http://127.0.0.1:${await freePort()}`;
    const error = await failureOf(channel(url).unary(probeCall("Echo", { timeoutMs: 5000 }), {}));
    expect(error).toMatchObject({ status: "UNAVAILABLE", code: "GANTRY_ERR_CONNECT", retryable: true });
    expect(error.message).toContain(url);
    expect(error.message).toContain("ECONNREFUSED");
  });

  test.each([
    ["a grpc:// URL", "grpc://127.0.0.1:1"],
    ["an https:// URL", "https://127.0.0.1:1"],
    ["a string that is no URL", "127.0.0.1:8080"],
  ])("%s is GANTRY_ERR_CONNECT at the first call", async (_name, url) => {
    const error = await failureOf(channel(url).unary(probeCall("Echo"), {}));
    expect(error).toMatchObject({ code: "GANTRY_ERR_CONNECT" });
  });

  test("a Gantry server that shuts down mid-call is UNAVAILABLE, not GANTRY_ERR_CONNECT", async () => {
    const app = await startApp();
    try {
      const key = "shutdown";
      const running = new Promise<void>((resolve) => channelProbe.started.set(key, resolve));
      const call = failureOf(
        channel(app.endpoints[0].url).unary(probeCall("Sleep", { timeoutMs: 5000 }), { ms: 5000, key }),
      );
      await running;
      await app.close();
      const error = await call;
      expect(error.status).toBe("UNAVAILABLE");
      expect(error.code).not.toBe("GANTRY_ERR_CONNECT");
    } finally {
      await app.close();
    }
  });

  describe("a plain node:http server", () => {
    let handle: (req: IncomingMessage, res: ServerResponse, body: string) => void = () => {};
    const server = createHttpServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (chunk: Buffer) => chunks.push(chunk));
      req.on("end", () => handle(req, res, Buffer.concat(chunks).toString("utf8")));
    });
    let url: string;

    beforeAll(async () => {
      await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
      url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
    });

    afterEach(() => {
      handle = () => {};
    });

    afterAll(async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    });

    const reply =
      (status: number, body: string, type = "application/json") =>
      (_req: IncomingMessage, res: ServerResponse) => {
        res.writeHead(status, { "content-type": type, "content-length": Buffer.byteLength(body) });
        res.end(body);
      };

    test("sees the call as the HTTP transport serves it: POST to the method's path, JSON, grpc-timeout", async () => {
      let request: { method?: string; url?: string; headers: IncomingMessage["headers"]; body: string } | undefined;
      handle = (req, res, body) => {
        request = { method: req.method, url: req.url, headers: req.headers, body };
        reply(200, "{}")(req, res);
      };
      await channel(`${url}/gateway/`).unary(probeCall("Echo", { timeoutMs: 5000, metadata: { "x-tenant": "t1" } }), {
        i64: 2n ** 60n,
        data: new Uint8Array([255]),
        mood: Mood.HAPPY,
      });
      expect(request?.method).toBe("POST");
      expect(request?.url).toBe("/gateway/clienttest.v1.ProbeService/Echo");
      expect(request?.headers).toMatchObject({
        "content-type": "application/json",
        accept: "application/json",
        "x-tenant": "t1",
        connection: "keep-alive",
      });
      expect(request?.headers["grpc-timeout"]).toMatch(/^\d{1,8}[mu]$/);
      expect(Number(request?.headers["content-length"])).toBe(Buffer.byteLength(request?.body ?? ""));
      expect(JSON.parse(request?.body ?? "")).toMatchObject({ i64: String(2n ** 60n), data: "/w==", mood: "HAPPY" });
    });

    test("without a deadline no grpc-timeout is sent", async () => {
      let timeout: unknown = "unset";
      handle = (req, res) => {
        timeout = req.headers["grpc-timeout"];
        reply(200, "{}")(req, res);
      };
      await channel(url).unary(probeCall("Echo"), {});
      expect(timeout).toBeUndefined();
    });

    test.each([
      ["not JSON", "this is not json"],
      ["an empty body", ""],
      ["a JSON array", "[1, 2]"],
      ["a wrong type", '{"i64": "many"}'],
      ["an int32 out of range", '{"i32": 3000000000}'],
      ["an unknown enum name", '{"mood": "FURIOUS"}'],
    ])("a 200 with %s is GANTRY_ERR_BAD_RESPONSE", async (_name, body) => {
      handle = reply(200, body);
      const error = await failureOf(channel(url).unary(probeCall("Echo"), {}));
      expect(error).toMatchObject({ status: "INTERNAL", code: "GANTRY_ERR_BAD_RESPONSE" });
      expect(error.message).toContain(url);
      expect(error.message).toContain("/clienttest.v1.ProbeService/Echo");
    });

    test("unknown fields in a reply are ignored (rolling upgrades)", async () => {
      handle = reply(200, '{"text": "hi", "addedLater": 7}');
      expect(await channel(url).unary(probeCall("Echo"), {})).toMatchObject({ text: "hi" });
    });

    test("a reply over the size limit is GANTRY_ERR_BAD_RESPONSE, with or without Content-Length", async () => {
      const small = httpClientTransport({ maxResponseBytes: 1024 });
      const big = JSON.stringify({ text: "x".repeat(2048) });
      handle = reply(200, big);
      const declared = await failureOf(channel(url, small).unary(probeCall("Echo"), {}));
      expect(declared).toMatchObject({ code: "GANTRY_ERR_BAD_RESPONSE" });
      expect(declared.message).toContain("larger than 1024 bytes");
      handle = (_req, res) => {
        res.writeHead(200, { "content-type": "application/json" });
        res.write(big.slice(0, 1000));
        setTimeout(() => res.end(big.slice(1000)), 5);
      };
      const chunked = await failureOf(channel(url, small).unary(probeCall("Echo"), {}));
      expect(chunked).toMatchObject({ code: "GANTRY_ERR_BAD_RESPONSE" });
      expect(chunked.message).toContain("larger than 1024 bytes");
    });

    test.each([
      [400, "INVALID_ARGUMENT"],
      [401, "UNAUTHENTICATED"],
      [403, "PERMISSION_DENIED"],
      [404, "UNIMPLEMENTED"],
      [405, "UNIMPLEMENTED"],
      [409, "ABORTED"],
      [413, "RESOURCE_EXHAUSTED"],
      [418, "FAILED_PRECONDITION"],
      [429, "RESOURCE_EXHAUSTED"],
      [500, "INTERNAL"],
      [501, "UNIMPLEMENTED"],
      [502, "UNAVAILABLE"],
      [503, "UNAVAILABLE"],
      [504, "DEADLINE_EXCEEDED"],
    ])("a bare %i is %s", async (httpStatus, status) => {
      handle = reply(httpStatus, "<html>oops</html>", "text/html");
      const error = await failureOf(channel(url).unary(probeCall("Echo"), {}));
      expect(error).toMatchObject({ status, code: status, httpStatus });
      expect(error.message).toBe(`${url} answered HTTP ${httpStatus}`);
    });

    test("a problem+json without Gantry's members takes its status from HTTP and its message from detail", async () => {
      handle = reply(403, JSON.stringify({ title: "Forbidden", detail: "no entry" }), "application/problem+json");
      expect(await failureOf(channel(url).unary(probeCall("Echo"), {}))).toMatchObject({
        status: "PERMISSION_DENIED",
        code: "PERMISSION_DENIED",
        message: "no entry",
      });
    });

    test("a problem+json that cannot be read still fails with its HTTP status", async () => {
      handle = reply(503, "{not json", "application/problem+json");
      expect(await failureOf(channel(url).unary(probeCall("Echo"), {}))).toMatchObject({
        status: "UNAVAILABLE",
        httpStatus: 503,
      });
    });

    test("a server that drops the connection before answering is UNAVAILABLE, not GANTRY_ERR_CONNECT", async () => {
      handle = (req) => req.socket.destroy();
      const error = await failureOf(channel(url).unary(probeCall("Echo"), {}));
      expect(error.status).toBe("UNAVAILABLE");
      expect(error.code).not.toBe("GANTRY_ERR_CONNECT");
    });

    test("a server that dies halfway through its answer is UNAVAILABLE", async () => {
      handle = (req, res) => {
        res.writeHead(200, { "content-type": "application/json", "content-length": "100" });
        res.write('{"text": "cut sh');
        setTimeout(() => req.socket.destroy(), 5);
      };
      const error = await failureOf(channel(url).unary(probeCall("Echo"), {}));
      expect(error.status).toBe("UNAVAILABLE");
      expect(error.code).not.toBe("GANTRY_ERR_CONNECT");
    });

    test("a server closed while the call waits for its answer is UNAVAILABLE, not GANTRY_ERR_CONNECT", async () => {
      let begin: () => void = () => {};
      const waiting = new Promise<void>((resolve) => (begin = resolve));
      handle = () => begin();
      const call = failureOf(channel(url).unary(probeCall("Echo", { timeoutMs: 5000 }), {}));
      await waiting;
      server.closeAllConnections();
      const error = await call;
      expect(error.status).toBe("UNAVAILABLE");
      expect(error.code).not.toBe("GANTRY_ERR_CONNECT");
    });
  });
});

describe("errors a method lets through from its own calls", () => {
  @Message()
  class RelayRequest {
    @Field(1) code!: string;
  }

  /** Calls ProbeService through a typed client and lets its errors through. */
  @Service({ package: "relay", version: "v1" })
  class RelayService {
    readonly #probe: ServiceClient<ProbeService>;

    constructor(@InjectClient(ProbeService) probe: ServiceClient<ProbeService>) {
      this.#probe = probe;
    }

    @Method({ output: Empty })
    async relay(request: RelayRequest): Promise<Empty> {
      return this.#probe.fail({ status: "NOT_FOUND", code: request.code, message: "no such probe" });
    }
  }

  /** A front app served over HTTP whose clients find ProbeService at `probeUrl`. */
  async function startFront(probeUrl: string): Promise<GantryApp> {
    const front = createApp({
      name: "relay-front",
      services: [RelayService],
      clients: [{ service: ProbeService, policy: { retry: { maxAttempts: 1 } } }],
      clientTransports: [httpClientTransport()],
      transports: [httpTransport({ host: "127.0.0.1", port: 0 })],
      discovery: discoveryOf({ resolver: fixedResolver([{ http: probeUrl }]) }),
      shutdown: { propagationDelayMs: 0 },
    });
    await front.start({ env: {}, flags: { "log.level": "silent" } });
    return front;
  }

  async function problemOf(front: GantryApp): Promise<Record<string, unknown>> {
    const response = await fetch(`${front.endpoints[0].url}/relay.v1.RelayService/Relay`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ code: "PROBE_NOT_FOUND" }),
    });
    return (await response.json()) as Record<string, unknown>;
  }

  test("the callee's own error: its status, code, message and details, and no address", async () => {
    const back = await startApp();
    const front = await startFront(back.endpoints[0].url);
    try {
      const problem = await problemOf(front);
      expect(problem).toMatchObject({
        canonicalStatus: "NOT_FOUND",
        code: "PROBE_NOT_FOUND",
        detail: "no such probe",
        details: { hint: "look left", limit: 5 },
      });
      expect(JSON.stringify(problem)).not.toContain("127.0.0.1");
    } finally {
      await front.close();
      await back.close();
    }
  });

  test("a failure on the way: GANTRY_ERR_UPSTREAM saying what failed, not where", async () => {
    const port = await freePort();
    const front = await startFront(`http://127.0.0.1:${port}`);
    try {
      const problem = await problemOf(front);
      expect(problem).toMatchObject({
        canonicalStatus: "UNAVAILABLE",
        code: "GANTRY_ERR_UPSTREAM",
        detail:
          "a call this method made failed: the call to clienttest.v1.ProbeService/Fail failed (GANTRY_ERR_CONNECT)",
      });
      expect(JSON.stringify(problem)).not.toContain(String(port));
    } finally {
      await front.close();
    }
  });
});
