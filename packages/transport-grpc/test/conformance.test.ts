import { createApp, type GantryApp } from "@gantry/core";
import { type ConformanceClient, ConformanceService, conformanceApp, conformanceCases } from "@gantry/core/testing";
import { afterAll, beforeAll, describe, test } from "vitest";
import { grpcTransport } from "../src/index.js";
import { TestClient } from "./client.js";

describe("gRPC transport conformance", () => {
  let app: GantryApp;
  let grpc: TestClient;
  let client: ConformanceClient;

  beforeAll(async () => {
    app = createApp(conformanceApp(grpcTransport({ port: 0, host: "127.0.0.1" })));
    await app.start({ env: {}, flags: { "log.level": "silent" } });
    grpc = new TestClient(app.endpoints[0].url, ConformanceService);
    client = { call: (method, input, options) => grpc.unary(method, input, options) };
  });

  afterAll(async () => {
    grpc.close();
    await app.close();
  });

  for (const c of conformanceCases) test(c.name, () => c.run(client));
});
