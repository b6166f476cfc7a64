import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer, type Server as NetServer, type Socket, connect as tcpConnect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { createApp, type GantryApp, GantryError, Status, type StatusName } from "@gantry/core";
import {
  channelProbe,
  failureOf,
  Kitchen,
  kitchenDefaults,
  kitchenSample,
  type MetaReply,
  ProbeService,
  probeCall,
  probeMethod,
  promised,
} from "@gantry/core/testing";
import {
  Server,
  ServerCredentials,
  type ServerUnaryCall,
  type ServiceDefinition,
  type sendUnaryData,
} from "@grpc/grpc-js";
import { afterAll, afterEach, beforeAll, describe, expect, test, vi } from "vitest";
import { encodeMessage, grpcClientTransport, grpcTransport } from "../src/index.js";

// ------------------------------------------------------------------------------------------------
// Real servers, and a TCP proxy that counts and can cut connections

async function startApp(transport = grpcTransport({ host: "127.0.0.1", port: 0 })): Promise<GantryApp> {
  const app = createApp({
    name: "grpc-client-test",
    services: [ProbeService],
    transports: [transport],
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
    return `grpc://127.0.0.1:${(this.#server.address() as { port: number }).port}`;
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

const transport = grpcClientTransport();
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

describe("gRPC client against a Gantry server", () => {
  let app: GantryApp;
  let url: string;

  beforeAll(async () => {
    app = await startApp();
    url = app.endpoints[0].url;
  });

  afterAll(async () => {
    await app.close();
  });

  test("is the grpc kind", () => {
    expect(transport.kind).toBe("grpc");
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
    "%s arrives with its code, message and retryability",
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
    },
  );

  test("an UNAVAILABLE from the server that reads like a connect failure keeps its own code", async () => {
    const error = await failureOf(
      channel(url).unary(probeCall("Fail"), {
        status: "UNAVAILABLE",
        code: "DB_DOWN",
        message: "No connection established to the database (connect ECONNREFUSED)",
        retryable: false,
      }),
    );
    expect(error).toMatchObject({ status: "UNAVAILABLE", code: "DB_DOWN", retryable: false });
  });

  test("the server's validation arrives as INVALID_ARGUMENT with every violation", async () => {
    const error = await failureOf(channel(url).unary(probeCall("Check"), { name: "a", n: 11 }));
    expect(error).toMatchObject({ status: "INVALID_ARGUMENT", code: "GANTRY_ERR_VALIDATION" });
    expect(error.violations.map((v) => v.field).sort()).toEqual(["n", "name"]);
  });

  test("a plain throw is INTERNAL, and nothing of its message leaks", async () => {
    const error = await failureOf(channel(url).unary(probeCall("Crash"), {}));
    expect(error).toMatchObject({ status: "INTERNAL", code: "GANTRY_ERR_INTERNAL", retryable: false });
    expect(JSON.stringify({ message: error.message, details: error.details })).not.toContain("hunter2");
  });

  test("an unknown method is UNIMPLEMENTED", async () => {
    const unknown = { ...probeMethod("Echo"), path: "/clienttest.v1.ProbeService/Nope" };
    const error = await failureOf(channel(url).unary({ ...probeCall("Echo"), method: unknown }, {}));
    expect(error.status).toBe("UNIMPLEMENTED");
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

  test("metadata arrives at the server; reserved and invalid keys are dropped", async () => {
    const trace = Buffer.from([1, 2, 3, 250]).toString("base64");
    const reply = (await channel(url).unary(
      probeCall("Meta", {
        metadata: {
          "x-tenant": "acme",
          "X-Upper": "up",
          "x-request-id": "req-42",
          "x-trace-bin": trace,
          "grpc-timeout": "1n",
          te: "gzip",
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
      "x-trace-bin": trace,
      "user-agent": expect.stringMatching(/^grpc-node-js\//),
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

  test("a channel opens one connection, on its first call, and carries every call on it", async () => {
    const proxy = await TcpProxy.start(portOf(url));
    try {
      const reused = channel(proxy.url);
      await sleep(20);
      expect(proxy.connections).toBe(0);
      for (let i = 0; i < 20; i++) await reused.unary(probeCall("Echo"), { i32: i });
      const outputs = await Promise.all(
        Array.from({ length: 50 }, (_, i) => reused.unary(probeCall("Echo"), { i32: i })),
      );
      expect(outputs.map((o) => (o as Kitchen).i32)).toEqual(Array.from({ length: 50 }, (_, i) => i));
      expect(proxy.connections).toBe(1);
    } finally {
      await proxy.close();
    }
  });

  test("close() closes the connection, and later calls fail with GANTRY_ERR_CONNECT", async () => {
    const proxy = await TcpProxy.start(portOf(url));
    try {
      const closing = promised(transport.channel(proxy.url));
      await closing.unary(probeCall("Echo"), {});
      expect(proxy.open.size).toBe(1);
      closing.close();
      await vi.waitFor(() => expect(proxy.open.size).toBe(0), { timeout: 2000, interval: 10 });
      const error = await failureOf(closing.unary(probeCall("Echo"), {}));
      expect(error).toMatchObject({ status: "UNAVAILABLE", code: "GANTRY_ERR_CONNECT" });
      expect(proxy.connections).toBe(1);
    } finally {
      await proxy.close();
    }
  });

  test("close() lets the calls in flight finish, then closes the connection", async () => {
    const proxy = await TcpProxy.start(portOf(url));
    try {
      const closing = promised(transport.channel(proxy.url));
      const key = "close-in-flight";
      const running = new Promise<void>((resolve) => channelProbe.started.set(key, resolve));
      const release = channelProbe.gate(key);
      const slow = closing.unary(probeCall("Sleep", { timeoutMs: 5000 }), { ms: 0, key });
      await running;
      closing.close();
      expect(await failureOf(closing.unary(probeCall("Echo"), {}))).toMatchObject({ code: "GANTRY_ERR_CONNECT" });
      expect(proxy.open.size).toBe(1);
      release();
      expect(await slow).toEqual({ aborted: false });
      await vi.waitFor(() => expect(proxy.open.size).toBe(0), { timeout: 2000, interval: 10 });
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
      // The call ran: neither code may say it never did (a client would run it again elsewhere).
      expect(error.code).not.toBe("GANTRY_ERR_CONNECT");
      expect(error.code).not.toBe("GANTRY_ERR_SHUTTING_DOWN");
    } finally {
      await proxy.close();
    }
  });
});

describe("gRPC client against servers that fail", () => {
  test("connection refused is GANTRY_ERR_CONNECT, naming the target", async () => {
    const url = `grpc://127.0.0.1:${await freePort()}`;
    const error = await failureOf(channel(url).unary(probeCall("Echo", { timeoutMs: 5000 }), {}));
    expect(error).toMatchObject({ status: "UNAVAILABLE", code: "GANTRY_ERR_CONNECT", retryable: true });
    expect(error.message).toContain(url);
    expect(error.message).toContain("ECONNREFUSED");
  });

  test.each([
    ["an http:// URL", "http://127.0.0.1:1"],
    ["a string that is no URL", "127.0.0.1:50051"],
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
      // The call ran: neither code may say it never did (a client would run it again elsewhere).
      expect(error.code).not.toBe("GANTRY_ERR_CONNECT");
      expect(error.code).not.toBe("GANTRY_ERR_SHUTTING_DOWN");
    } finally {
      await app.close();
    }
  });

  describe("raw grpc-js servers", () => {
    let server: Server | undefined;

    afterEach(() => {
      server?.forceShutdown();
      server = undefined;
    });

    /** A grpc-js server answering Echo with whatever `handle` does. */
    async function raw(
      handle: (call: ServerUnaryCall<Buffer, Buffer>, callback: sendUnaryData<Buffer>) => void,
    ): Promise<string> {
      const id = (value: Buffer) => value;
      server = new Server();
      const definition = {
        Echo: {
          path: probeMethod("Echo").path,
          requestStream: false,
          responseStream: false,
          requestSerialize: id,
          requestDeserialize: id,
          responseSerialize: id,
          responseDeserialize: id,
        },
      };
      server.addService(definition as ServiceDefinition, { Echo: handle });
      const port = await new Promise<number>((resolve, reject) =>
        server?.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (error, bound) =>
          error === null ? resolve(bound) : reject(error),
        ),
      );
      return `grpc://127.0.0.1:${port}`;
    }

    test.each([
      ["a truncated varint", [0x10, 0xff]],
      ["a wrong wire type", [0x15, 0, 0, 0, 0]],
      ["invalid UTF-8", [0x0a, 0x02, 0xc3, 0x28]],
      ["a length past the end", [0x0a, 0x09, 0x61]],
    ])("a reply that is not the message (%s) is GANTRY_ERR_BAD_RESPONSE", async (_name, bytes) => {
      const url = await raw((_call, callback) => callback(null, Buffer.from(bytes)));
      const error = await failureOf(channel(url).unary(probeCall("Echo"), {}));
      expect(error).toMatchObject({ status: "INTERNAL", code: "GANTRY_ERR_BAD_RESPONSE" });
      expect(error.message).toContain(url);
      expect(error.message).toContain("/clienttest.v1.ProbeService/Echo");
    });

    test("a reply over the receive limit is GANTRY_ERR_BAD_RESPONSE", async () => {
      const big = encodeMessage(probeMethod("Echo").output, { text: "x".repeat(4096) });
      const url = await raw((_call, callback) => callback(null, big));
      const small = grpcClientTransport({ maxReceiveMessageSize: 1024 });
      const error = await failureOf(channel(url, small).unary(probeCall("Echo"), {}));
      expect(error).toMatchObject({ code: "GANTRY_ERR_BAD_RESPONSE" });
      expect(error.message).toMatch(/larger than/);
    });

    test("a status without Gantry's details keeps the status, with its name as the code", async () => {
      const url = await raw((_call, callback) => callback({ code: Status.NOT_FOUND, details: "no such thing" }));
      const error = await failureOf(channel(url).unary(probeCall("Echo"), {}));
      expect(error).toMatchObject({
        status: "NOT_FOUND",
        code: "NOT_FOUND",
        message: "no such thing",
        retryable: false,
      });
    });

    test("a server closed mid-call (it cancels the stream) is UNAVAILABLE, not CANCELLED or CONNECT", async () => {
      let begin: () => void = () => {};
      const running = new Promise<void>((resolve) => (begin = resolve));
      const url = await raw(() => begin());
      const call = failureOf(channel(url).unary(probeCall("Echo", { timeoutMs: 5000 }), {}));
      await running;
      server?.forceShutdown();
      const error = await call;
      expect(error.status).toBe("UNAVAILABLE");
      // The call ran: neither code may say it never did (a client would run it again elsewhere).
      expect(error.code).not.toBe("GANTRY_ERR_CONNECT");
      expect(error.code).not.toBe("GANTRY_ERR_SHUTTING_DOWN");
    });
  });
});

describe("gRPC client over TLS", () => {
  let dir: string;
  const file = (name: string) => join(dir, name);

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "gantry-client-tls-"));
    const openssl = (...args: string[]) => execFileSync("openssl", args, { cwd: dir, stdio: "ignore" });
    const selfSigned = (name: string) =>
      openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        `${name}.key`,
        "-out",
        `${name}.pem`,
        "-days",
        "1",
        "-subj",
        `/CN=${name}`,
      );
    selfSigned("ca");
    selfSigned("other");
    for (const name of ["server", "client"]) {
      openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        `${name}.key`,
        "-out",
        `${name}.csr`,
        "-subj",
        "/CN=localhost",
      );
      execFileSync("sh", ["-c", `printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > ${name}.ext`], { cwd: dir });
      openssl(
        "x509",
        "-req",
        "-in",
        `${name}.csr`,
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        `${name}.pem`,
        "-days",
        "1",
        "-extfile",
        `${name}.ext`,
      );
    }
  });

  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test("calls a grpcs:// endpoint with the CA from a file or a buffer, and mutual TLS", async () => {
    const app = await startApp(
      grpcTransport({
        host: "127.0.0.1",
        port: 0,
        tls: { cert: file("server.pem"), key: file("server.key"), ca: file("ca.pem") },
      }),
    );
    try {
      const url = app.endpoints[0].url;
      expect(url).toMatch(/^grpcs:/);
      const withFiles = grpcClientTransport({
        tls: { ca: file("ca.pem"), cert: file("client.pem"), key: file("client.key") },
      });
      expect(await channel(url, withFiles).unary(probeCall("Echo"), { text: "secure" })).toMatchObject({
        text: "secure",
      });
      const withBuffers = grpcClientTransport({
        tls: {
          ca: readFileSync(file("ca.pem")),
          cert: readFileSync(file("client.pem")),
          key: readFileSync(file("client.key")),
        },
      });
      expect(await channel(url, withBuffers).unary(probeCall("Echo"), { i32: 3 })).toMatchObject({ i32: 3 });
      // A certificate the server does not trust: the handshake fails, the call never left.
      const stranger = grpcClientTransport({
        tls: { ca: file("ca.pem"), cert: file("other.pem"), key: file("other.key") },
      });
      const error = await failureOf(channel(url, stranger).unary(probeCall("Echo", { timeoutMs: 5000 }), {}));
      expect(error).toMatchObject({ code: "GANTRY_ERR_CONNECT" });
    } finally {
      await app.close();
    }
  });

  test("TLS files that cannot be read, or a certificate without its key, are coded errors at once", () => {
    expect(() => grpcClientTransport({ tls: { ca: file("nope.pem") } })).toThrow(/nope\.pem/);
    expect(() => grpcClientTransport({ tls: { cert: file("client.pem") } })).toThrow(
      expect.objectContaining({ code: "GANTRY_ERR_GRPC_TLS" }),
    );
  });
});
