import { InjectClient, Method, Post, Service, type ServiceClient } from "@gantry/core";
import { HelloApi } from "./hello.api.js";
import { GreetReply, GreetRequest, Tone } from "./messages.js";

/**
 * Greets everyone by asking HelloService, through its typed client: in this process when Hello is
 * served here (main.ts), else found through discovery (world.main.ts). World depends on Hello's
 * contract only; its remaining deadline and request id go with every call.
 */
@Service({ package: "world", version: "v1" })
export class WorldService {
  constructor(@InjectClient(HelloApi) private readonly hello: ServiceClient<HelloApi>) {}

  @Post("/world/greet")
  @Method({ output: GreetReply })
  async greet(req: GreetRequest): Promise<GreetReply> {
    const replies = await Promise.all(req.names.map((name) => this.hello.sayHello({ name, tone: Tone.WARM })));
    return { messages: replies.map((reply) => reply.message), count: replies.length };
  }
}
