import { createApp, type GantryApp } from "@gantry/core";
import { ConformanceService } from "@gantry/core/testing";
import { Client, credentials, Metadata, type ServiceError } from "@grpc/grpc-js";
import protobuf from "protobufjs";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { grpcTransport } from "../src/index.js";
import { failureOf, TestClient } from "./client.js";

/** The standard protos from Debian's grpc-proto: the test reads Gantry's answers with them, not with Gantry's codec. */
const GRPC_PROTO = "/usr/share/grpc-proto";
const root = new protobuf.Root();
root.resolvePath = (_origin, target) => `${GRPC_PROTO}/${target}`;
root.loadSync([
  "grpc/health/v1/health.proto",
  "grpc/reflection/v1/reflection.proto",
  "grpc/reflection/v1alpha/reflection.proto",
]);
const HealthCheckRequest = root.lookupType("grpc.health.v1.HealthCheckRequest");
const HealthCheckResponse = root.lookupType("grpc.health.v1.HealthCheckResponse");
const statusName = (bytes: Buffer) =>
  HealthCheckResponse.toObject(HealthCheckResponse.decode(bytes), { enums: String }).status as string;

let app: GantryApp;
let client: Client;

beforeEach(async () => {
  app = createApp({
    name: "health",
    services: [ConformanceService],
    transports: [grpcTransport({ port: 0, host: "127.0.0.1" })],
  });
  await app.start({
    env: {},
    flags: { "log.level": "silent", "shutdown.drainTimeout": "5s", "shutdown.propagationDelay": "300ms" },
  });
  client = new Client(app.endpoints[0].url.replace("grpc://", ""), credentials.createInsecure());
});

afterEach(async () => {
  client.close();
  await app.close();
});

function check(service: string): Promise<string> {
  return new Promise((resolve) => {
    client.makeUnaryRequest(
      "/grpc.health.v1.Health/Check",
      (value: Buffer) => value,
      (value: Buffer) => value,
      Buffer.from(HealthCheckRequest.encode({ service }).finish()),
      new Metadata(),
      {},
      (error: ServiceError | null, output?: Buffer) =>
        resolve(error === null ? statusName(output as Buffer) : failureOf(error).status),
    );
  });
}

describe("grpc.health.v1.Health", () => {
  test("Check answers SERVING for the server and for each service, NOT_FOUND for others", async () => {
    expect(await check("")).toBe("SERVING");
    expect(await check("conformance.v1.ConformanceService")).toBe("SERVING");
    expect(await check("nope.v1.Nope")).toBe("NOT_FOUND");
  });

  test("Check answers NOT_SERVING while the app drains, and in-flight calls still finish", async () => {
    // Readiness fails first; for the propagation delay the server still answers, NOT_SERVING.
    const calls = new TestClient(app.endpoints[0].url, ConformanceService);
    try {
      const slow = calls.unary("Slow", { ms: 600, key: "drain" });
      await new Promise((resolve) => setTimeout(resolve, 100));
      const closing = app.close();
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect(app.state).toBe("draining");
      expect(await check("")).toBe("NOT_SERVING");
      await expect(slow).resolves.toMatchObject({ output: {} });
      await closing;
    } finally {
      calls.close();
    }
  });

  test("Watch sends the status, then each change, and does not hold shutdown", async () => {
    const seen: string[] = [];
    const call = client.makeServerStreamRequest(
      "/grpc.health.v1.Health/Watch",
      (value: Buffer) => value,
      (value: Buffer) => value,
      Buffer.from(HealthCheckRequest.encode({ service: "" }).finish()),
      new Metadata(),
    );
    call.on("data", (bytes: Buffer) => seen.push(statusName(bytes)));
    const ended = new Promise((resolve) => {
      call.on("end", () => resolve("end"));
      call.on("error", (error: ServiceError) => resolve(failureOf(error).status));
    });
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(seen).toEqual(["SERVING"]);
    const started = Date.now();
    await app.close();
    expect(Date.now() - started).toBeLessThan(1500);
    expect(await ended).toBe("end");
    expect(seen).toEqual(["SERVING", "NOT_SERVING"]);
  });

  test("Watch of an unknown service answers SERVICE_UNKNOWN", async () => {
    const call = client.makeServerStreamRequest(
      "/grpc.health.v1.Health/Watch",
      (value: Buffer) => value,
      (value: Buffer) => value,
      Buffer.from(HealthCheckRequest.encode({ service: "nope.v1.Nope" }).finish()),
      new Metadata(),
    );
    call.on("error", () => undefined);
    const first = await new Promise<Buffer>((resolve) => call.once("data", resolve));
    expect(statusName(first)).toBe("SERVICE_UNKNOWN");
    call.cancel();
  });
});

describe("server reflection", () => {
  test.each(["v1", "v1alpha"])("%s lists the services and serves the file of a symbol", async (version) => {
    const Request = root.lookupType(`grpc.reflection.${version}.ServerReflectionRequest`);
    const Response = root.lookupType(`grpc.reflection.${version}.ServerReflectionResponse`);
    const call = client.makeBidiStreamRequest(
      `/grpc.reflection.${version}.ServerReflection/ServerReflectionInfo`,
      (value: Buffer) => value,
      (value: Buffer) => value,
      new Metadata(),
    );
    const answers: Record<string, unknown>[] = [];
    call.on("data", (bytes: Buffer) => answers.push(Response.toObject(Response.decode(bytes), { defaults: false })));
    const done = new Promise((resolve) => call.on("end", resolve));
    for (const request of [
      { listServices: "" },
      { fileContainingSymbol: "conformance.v1.ConformanceService" },
      { fileByFilename: "google/protobuf/empty.proto" },
      { fileContainingSymbol: "nope.v1.Nope" },
    ]) {
      call.write(Buffer.from(Request.encode(request).finish()));
    }
    call.end();
    await done;
    expect(answers).toHaveLength(4);
    const services = (answers[0].listServicesResponse as { service: { name: string }[] }).service.map((s) => s.name);
    expect(services).toEqual(
      expect.arrayContaining([
        "conformance.v1.ConformanceService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
      ]),
    );
    const FileDescriptorProto = protobuf
      .loadSync("/usr/include/google/protobuf/descriptor.proto")
      .lookupType("google.protobuf.FileDescriptorProto");
    const files = (answers[1].fileDescriptorResponse as { fileDescriptorProto: Uint8Array[] }).fileDescriptorProto.map(
      (bytes) =>
        FileDescriptorProto.toObject(FileDescriptorProto.decode(bytes)) as {
          name: string;
          service?: { name: string }[];
        },
    );
    expect(files[0].name).toBe("conformance/v1/conformance.proto");
    expect(files[0].service?.map((s) => s.name)).toEqual(["ConformanceService"]);
    expect(files.map((f) => f.name)).toContain("google/protobuf/empty.proto");
    expect(answers[2].fileDescriptorResponse).toBeDefined();
    expect(answers[3].errorResponse).toMatchObject({ errorCode: 5 });
  });
});
