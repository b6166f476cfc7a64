import { type CallContext, Method, Post, Service } from "@gantry/core";
import { HelloService } from "./hello.service.js";
import { GreetReply, GreetRequest, Tone } from "./messages.js";

/**
 * Greets everyone by asking HelloService. For now World reaches Hello in the same process, through
 * DI (the constructor parameter); across processes it will use a typed client found through discovery.
 */
@Service({ package: "world", version: "v1" })
export class WorldService {
  constructor(private readonly hello: HelloService) {}

  @Post("/world/greet")
  @Method({ output: GreetReply })
  async greet(req: GreetRequest, ctx: CallContext): Promise<GreetReply> {
    const replies = await Promise.all(req.names.map((name) => this.hello.sayHello({ name, tone: Tone.WARM }, ctx)));
    return { messages: replies.map((reply) => reply.message), count: replies.length };
  }
}
