import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { clientToken, coreErrors, createApp, Empty, type GantryApp, Method, Service } from "../src/index.js";
import {
  type ConformanceClient,
  ConformanceService,
  conformanceCases,
  typedConformanceClient,
} from "../src/testing/index.js";

describe("a typed client of a service in the same process: direct, through the pipeline", () => {
  let app: GantryApp;
  let client: ConformanceClient;

  beforeAll(async () => {
    app = createApp({ name: "direct", services: [ConformanceService], clients: [ConformanceService] });
    await app.start({ env: {}, flags: { "log.level": "silent" } });
    client = typedConformanceClient(await app.get(clientToken(ConformanceService)));
  });

  afterAll(() => app.close());

  for (const c of conformanceCases) {
    if (c.needs !== undefined) test.skip(`${c.name} (skipped: a typed client has no ${c.needs})`, () => undefined);
    else test(c.name, () => c.run(client));
  }
});

describe("codes that say a call never ran", () => {
  test("thrown by a method (from a call it made) reach its caller as GANTRY_ERR_UPSTREAM, not as never-ran", async () => {
    @Service({ package: "relay", version: "v1" })
    class RelayService {
      @Method({ output: Empty })
      relay(): Empty {
        throw coreErrors.create("GANTRY_ERR_CONNECT", { target: "grpc://10.0.0.9:50051", reason: "ECONNREFUSED" });
      }
    }
    const app = createApp({ name: "relay", services: [RelayService], clients: [RelayService] });
    await app.start({ env: {}, flags: { "log.level": "silent" } });
    try {
      const client = await app.get(clientToken(RelayService));
      await expect(client.relay(undefined)).rejects.toMatchObject({
        status: "UNAVAILABLE",
        code: "GANTRY_ERR_UPSTREAM",
        message: "a call this method made failed: could not reach grpc://10.0.0.9:50051: ECONNREFUSED",
      });
    } finally {
      await app.close();
    }
  });
});
