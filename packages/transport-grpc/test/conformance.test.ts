import { clientToken, createApp, type GantryApp } from "@gantry/core";
import {
  type ConformanceClient,
  ConformanceService,
  conformanceApp,
  conformanceCases,
  discoveryOf,
  fixedResolver,
  typedConformanceClient,
} from "@gantry/core/testing";
import { afterAll, beforeAll, describe, test } from "vitest";
import { grpcClientTransport, grpcTransport } from "../src/index.js";
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

describe("a typed client over grpc, through the client runtime", () => {
  let server: GantryApp;
  let caller: GantryApp;
  let typed: ConformanceClient;

  beforeAll(async () => {
    server = createApp(conformanceApp(grpcTransport({ port: 0, host: "127.0.0.1" })));
    await server.start({ env: {}, flags: { "log.level": "silent" } });
    caller = createApp({
      name: "caller",
      services: [],
      clients: [ConformanceService],
      clientTransports: [grpcClientTransport()],
      discovery: discoveryOf({ resolver: fixedResolver([{ grpc: server.endpoints[0].url }]) }),
    });
    await caller.start({ env: {}, flags: { "log.level": "silent" } });
    typed = typedConformanceClient(await caller.get(clientToken(ConformanceService)));
  });

  afterAll(async () => {
    await caller.close();
    await server.close();
  });

  for (const c of conformanceCases) {
    if (c.needs !== undefined) test.skip(`${c.name} (skipped: a typed client has no ${c.needs})`, () => undefined);
    else test(c.name, () => c.run(typed));
  }
});
