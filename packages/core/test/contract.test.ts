import { describe, expect, test } from "vitest";
import {
  type CallContext,
  describeService,
  Field,
  Get,
  implementedElsewhere,
  Message,
  Method,
  Service,
} from "../src/index.js";
import { createTestApp } from "../src/testing/index.js";

@Message()
class NameRequest {
  @Field(1, { minLength: 1 }) name!: string;
}

@Message()
class NameReply {
  @Field(1) message!: string;
}

/** A contract: what callers depend on. */
@Service({ package: "contract", version: "v1", name: "NameService" })
class NameApi {
  @Get("/names/:name")
  @Method({ input: NameRequest, output: NameReply, idempotent: true, timeoutMs: 500 })
  shout(_req: NameRequest, _ctx: CallContext): Promise<NameReply> {
    return implementedElsewhere();
  }

  @Method({ input: NameRequest, output: NameReply })
  whisper(_req: NameRequest): Promise<NameReply> {
    return implementedElsewhere();
  }
}

/** Its implementation: inherits the service, its methods, routes and messages. */
class NameService extends NameApi {
  override async shout(req: NameRequest): Promise<NameReply> {
    return { message: req.name.toUpperCase() };
  }
}

describe("contracts", () => {
  test("a class that extends a contract is the contract's service, with the same methods", () => {
    const api = describeService(NameApi);
    const impl = describeService(NameService);
    expect(impl.fullName).toBe("contract.v1.NameService");
    expect(impl.fullName).toBe(api.fullName);
    const shape = (s: typeof api) =>
      s.methods.map((m) => [m.key, m.path, m.input.name, m.output.name, m.idempotent, m.timeoutMs, m.routes.length]);
    expect(shape(impl)).toEqual(shape(api));
    expect(impl.type).toBe(NameService);
  });

  test("the implementation serves; a method it does not implement answers UNIMPLEMENTED", async () => {
    await using t = await createTestApp({ services: [NameService] });
    expect(await t.client(NameService).shout({ name: "ada" })).toEqual({ message: "ADA" });
    await expect(t.client(NameService).whisper({ name: "ada" })).rejects.toMatchObject({
      status: "UNIMPLEMENTED",
      message: "this method is declared by a contract and implemented by a service class",
    });
  });
});
