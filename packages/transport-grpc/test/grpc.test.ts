import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createApp, type GantryApp, isGantryError } from "@gantry/core";
import { ConformanceService } from "@gantry/core/testing";
import { Client, credentials, Metadata, type ServiceError } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { grpcTransport } from "../src/index.js";
import { failureOf, TestClient } from "./client.js";
import { StreamService } from "./fixtures.js";

async function start(options: Parameters<typeof grpcTransport>[0] = {}): Promise<GantryApp> {
  const app = createApp({
    name: "grpc-test",
    services: [ConformanceService, StreamService],
    transports: [grpcTransport({ port: 0, host: "127.0.0.1", ...options })],
  });
  await app.start({ env: {}, flags: { "log.level": "silent" } });
  return app;
}

/** A unary call of raw bytes to any path: for malformed messages and unknown methods. */
function rawCall(client: Client, path: string, bytes: Buffer): Promise<ReturnType<typeof failureOf> | Buffer> {
  return new Promise((resolve) => {
    client.makeUnaryRequest(
      path,
      (value: Buffer) => value,
      (value: Buffer) => value,
      bytes,
      new Metadata(),
      {},
      (error: ServiceError | null, output?: Buffer) => resolve(error === null ? (output as Buffer) : failureOf(error)),
    );
  });
}

describe("bad input", () => {
  let app: GantryApp;
  let client: TestClient;

  beforeAll(async () => {
    app = await start({ maxReceiveMessageSize: 1024, maxSendMessageSize: 2048 });
    client = new TestClient(app.endpoints[0].url, StreamService);
  });

  afterAll(async () => {
    client.close();
    await app.close();
  });

  test.each([
    ["a truncated varint", [0x08, 0xff]],
    ["a length past the end", [0x0a, 0x05, 0x61]],
    ["a wrong wire type for a known field", [0x0d, 0, 0, 0, 0]],
    ["invalid UTF-8 in a string field", [0x0a, 0x02, 0xc3, 0x28]],
  ])("malformed protobuf (%s) gets INVALID_ARGUMENT", async (_name, bytes) => {
    const path = "/conformance.v1.ConformanceService/Echo";
    const result = await rawCall(client.client, path, Buffer.from(bytes));
    expect(result).toMatchObject({ status: "INVALID_ARGUMENT", code: "GANTRY_ERR_MALFORMED_PROTOBUF" });
  });

  test.each([
    ["an unknown method", "/conformance.v1.ConformanceService/Nope"],
    ["an unknown service", "/nope.v1.Nope/Echo"],
  ])("%s gets UNIMPLEMENTED", async (_name, path) => {
    expect(await rawCall(client.client, path, Buffer.alloc(0))).toMatchObject({ status: "UNIMPLEMENTED" });
  });

  test("a message over the receive limit gets RESOURCE_EXHAUSTED", async () => {
    const error = await rawCall(client.client, "/streams.v1.StreamService/Big", Buffer.alloc(4096, 0x00));
    expect(error).toMatchObject({ status: "RESOURCE_EXHAUSTED" });
    expect((error as { message: string }).message).toMatch(/larger than/);
  });

  test("a reply over the send limit gets RESOURCE_EXHAUSTED", async () => {
    await expect(client.unary("Big", { size: 4096 })).rejects.toMatchObject({ status: "RESOURCE_EXHAUSTED" });
    expect((await client.unary("Big", { size: 100 })).output).toEqual({ data: Buffer.alloc(100).toString("base64") });
  });

  test("after all of it the server still serves", async () => {
    expect((await client.unary("Big", { size: 1 })).output).toEqual({ data: "AA==" });
    expect(app.state).toBe("ready");
  });
});

describe("listening", () => {
  test("a port in use is a coded error", async () => {
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, "127.0.0.1", resolve));
    const port = (blocker.address() as { port: number }).port;
    const app = createApp({
      name: "busy",
      services: [ConformanceService],
      transports: [grpcTransport({ port, host: "127.0.0.1" })],
    });
    try {
      const error = await app.start({ env: {}, flags: { "log.level": "silent" } }).catch((caught: unknown) => caught);
      expect(isGantryError(error) && error.code).toBe("GANTRY_ERR_GRPC_PORT_IN_USE");
    } finally {
      await app.close();
      blocker.close();
    }
  });

  test("grpc.* keys come from the environment", async () => {
    const app = createApp({
      name: "env",
      services: [ConformanceService],
      transports: [grpcTransport()],
    });
    await app.start({
      env: { GANTRY_GRPC_PORT: "0", GANTRY_GRPC_HOST: "127.0.0.1" },
      flags: { "log.level": "silent" },
    });
    try {
      expect(app.endpoints[0].url).toMatch(/^grpc:\/\/127\.0\.0\.1:\d+$/);
    } finally {
      await app.close();
    }
  });
});

describe("TLS", () => {
  let dir: string;

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "gantry-tls-"));
    const openssl = (...args: string[]) => execFileSync("openssl", args, { cwd: dir, stdio: "ignore" });
    openssl(
      "req",
      "-x509",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-keyout",
      "ca.key",
      "-out",
      "ca.pem",
      "-days",
      "1",
      "-subj",
      "/CN=test-ca",
    );
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
      const ext = join(dir, `${name}.ext`);
      execFileSync("sh", ["-c", `printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > ${ext}`]);
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
        ext,
      );
    }
  });

  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const file = (name: string) => join(dir, name);
  const read = (name: string) => execFileSync("cat", [file(name)]);

  function call(url: string, creds: ReturnType<typeof credentials.createSsl>): Promise<string> {
    const client = new Client(url.replace(/^grpcs:\/\//, ""), creds);
    const path = "/conformance.v1.ConformanceService/Meta";
    return new Promise((resolve) => {
      client.makeUnaryRequest(
        path,
        (value: Buffer) => value,
        (value: Buffer) => value,
        Buffer.alloc(0),
        new Metadata(),
        { deadline: Date.now() + 3000 },
        (error) => {
          client.close();
          resolve(error === null ? "OK" : failureOf(error).status);
        },
      );
    });
  }

  test("serves over TLS from files", async () => {
    const app = await start({ tls: { cert: file("server.pem"), key: file("server.key") } });
    try {
      expect(app.endpoints[0].url).toMatch(/^grpcs:/);
      expect(await call(app.endpoints[0].url, credentials.createSsl(read("ca.pem")))).toBe("OK");
    } finally {
      await app.close();
    }
  });

  test("with a CA set, requires client certificates (mutual TLS)", async () => {
    const app = await start({ tls: { cert: file("server.pem"), key: file("server.key"), ca: file("ca.pem") } });
    try {
      const url = app.endpoints[0].url;
      expect(await call(url, credentials.createSsl(read("ca.pem"), read("client.key"), read("client.pem")))).toBe("OK");
      expect(await call(url, credentials.createSsl(read("ca.pem")))).toBe("UNAVAILABLE");
    } finally {
      await app.close();
    }
  });

  test("a missing key file is a coded error naming it", async () => {
    const app = createApp({
      name: "tls",
      services: [ConformanceService],
      transports: [
        grpcTransport({ port: 0, host: "127.0.0.1", tls: { cert: file("server.pem"), key: file("nope.key") } }),
      ],
    });
    const error = await app.start({ env: {}, flags: { "log.level": "silent" } }).catch((caught: unknown) => caught);
    await app.close();
    expect(isGantryError(error) && error.code).toBe("GANTRY_ERR_GRPC_TLS");
    expect((error as Error).message).toContain("nope.key");
  });
});
