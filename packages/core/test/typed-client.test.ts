import { afterAll, beforeAll, describe, expect, test } from "vitest";
import {
  type CallContext,
  clientToken,
  coreErrors,
  createApp,
  Empty,
  Field,
  type GantryApp,
  InjectClient,
  Message,
  Method,
  Service,
  type ServiceClient,
} from "../src/index.js";
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

describe("direct calls", () => {
  @Message()
  class Said {
    @Field(1) requestId!: string;
  }

  @Service({ package: "inner", version: "v1" })
  class InnerService {
    @Method({ output: Said })
    say(_req: Empty, ctx: CallContext): Said {
      return { requestId: ctx.requestId };
    }
  }

  @Service({ package: "outer", version: "v1" })
  class OuterService {
    static started = Promise.withResolvers<void>();
    static release = Promise.withResolvers<void>();
    constructor(@InjectClient(InnerService) private readonly inner: ServiceClient<InnerService>) {}

    @Method({ output: Said })
    async relay(_req: Empty, ctx: CallContext): Promise<Said> {
      OuterService.started.resolve();
      await OuterService.release.promise;
      const said = await this.inner.say({});
      return { requestId: `${ctx.requestId}=${said.requestId}` };
    }
  }

  test("keep the request id, and run during a drain when made by a call already running", async () => {
    const app = createApp({ name: "nested", services: [InnerService, OuterService], clients: [InnerService] });
    await app.start({ env: {}, flags: { "log.level": "silent" } });
    const outer = app.call(app.method(OuterService, "relay"), {}, { metadata: { "x-request-id": "r-1" } });
    await OuterService.started.promise;
    const closing = app.close();
    OuterService.release.resolve();
    expect(await outer).toEqual({ requestId: "r-1=r-1" });
    await closing;
  });
});
