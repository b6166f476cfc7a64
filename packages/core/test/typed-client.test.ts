import { afterAll, beforeAll, describe, expect, test } from "vitest";
import {
  type CallContext,
  clientToken,
  coreErrors,
  createApp,
  Empty,
  Field,
  type GantryApp,
  type GantryError,
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

  test("go through the client's policy like calls that go out: interceptors, timeouts, fallback", async () => {
    @Message()
    class Slow {
      @Field(1, { type: "int32" }) ms!: number;
    }

    @Service({ package: "slow", version: "v1" })
    class SlowService {
      @Method({ output: Said })
      async wait(req: Slow, ctx: CallContext): Promise<Said> {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, req.ms);
          ctx.signal.addEventListener("abort", () => {
            clearTimeout(timer);
            resolve();
          });
        });
        return { requestId: ctx.metadata.get("x-tag") ?? "" };
      }
    }

    const seen: string[] = [];
    const app = createApp({
      name: "direct-policy",
      services: [SlowService],
      clients: [
        {
          service: SlowService,
          policy: {
            timeoutMs: 50,
            interceptors: [
              async (call, next) => {
                seen.push(call.method.name);
                call.metadata["x-tag"] = "tagged";
                return next();
              },
            ],
            fallback: (_method, _input, error) => ({ requestId: `fallback after ${(error as GantryError).code}` }),
          },
        },
      ],
    });
    await app.start({ env: {}, flags: { "log.level": "silent" } });
    try {
      const slow = await app.get(clientToken(SlowService));
      expect(await slow.wait({ ms: 0 })).toEqual({ requestId: "tagged" });
      const started = Date.now();
      expect(await slow.wait({ ms: 5000 })).toEqual({ requestId: "fallback after GANTRY_ERR_DEADLINE_EXCEEDED" });
      expect(Date.now() - started).toBeLessThan(1000);
      expect(seen).toEqual(["Wait", "Wait"]);
    } finally {
      await app.close();
    }
  });
});
