import { expect, test } from "vitest";
import { CallContext, Field, Get, Message, Method, Service } from "../src/index.js";
import { createTestApp } from "../src/testing/index.js";

@Message()
class HelloRequest {
  @Field(1, { minLength: 1 }) name!: string;
  @Field(2, { type: "int64" }) count!: bigint;
}
@Message()
class HelloReply {
  @Field(1) message!: string;
}
@Service({ package: "hello", version: "v1" })
class HelloService {
  @Get("/hello/:name")
  @Method({ output: HelloReply })
  async sayHello(req: HelloRequest, ctx: CallContext): Promise<HelloReply> {
    return { message: `hello ${req.name} ${req.count} ${ctx.transport}` };
  }
}

test("smoke", async () => {
  const t = await createTestApp({ services: [HelloService] });
  const reply = await t.client(HelloService).sayHello({ name: "ada", count: 3n });
  expect(reply).toEqual({ message: "hello ada 3 direct" });
  await expect(t.client(HelloService).sayHello({ name: "" })).rejects.toMatchObject({ status: "INVALID_ARGUMENT" });
  await t.close();
});
