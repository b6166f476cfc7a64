import { type CallContext, type ConfigOf, Get, Inject, Method, Service } from "@gantry/core";
import { HelloConfig } from "./config.js";
import { HelloReply, HelloRequest, Tone } from "./messages.js";

@Service({ package: "hello", version: "v1", description: "Greets one person." })
export class HelloService {
  constructor(@Inject(HelloConfig) private readonly config: ConfigOf<typeof HelloConfig>) {}

  /** GET /hello/:name, and POST /hello.v1.HelloService/SayHello with a JSON body. */
  @Get("/hello/:name")
  @Method({ output: HelloReply, idempotent: true, timeoutMs: 2000 })
  async sayHello(req: HelloRequest, ctx: CallContext): Promise<HelloReply> {
    ctx.log.debug({ name: req.name }, "greeting");
    const punctuation = req.tone === Tone.WARM ? "!" : ".";
    return { message: `${this.config.greeting}, ${req.name}${punctuation}`, greetedAt: new Date() };
  }
}
