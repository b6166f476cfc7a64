import { type CallContext, Get, implementedElsewhere, Method, Service } from "@gantry/core";
import { HelloReply, HelloRequest } from "./messages.js";

/**
 * HelloService's contract: its methods, routes and messages, without its implementation or what it
 * depends on. Callers (WorldService) depend on this; `HelloService` extends it.
 */
@Service({ package: "hello", version: "v1", name: "HelloService", description: "Greets one person." })
export class HelloApi {
  /** GET /hello/:name, and POST /hello.v1.HelloService/SayHello with a JSON body. */
  @Get("/hello/:name")
  @Method({ input: HelloRequest, output: HelloReply, idempotent: true, timeoutMs: 2000 })
  sayHello(_req: HelloRequest, _ctx: CallContext): Promise<HelloReply> {
    return implementedElsewhere();
  }
}
