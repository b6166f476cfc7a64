import { type CallContext, type ConfigOf, Inject } from "@gantry/core";
import { HelloConfig } from "./config.js";
import { HelloApi } from "./hello.api.js";
import { type HelloReply, type HelloRequest, Tone } from "./messages.js";

/** hello.v1.HelloService, as HelloApi declares it. */
export class HelloService extends HelloApi {
  constructor(@Inject(HelloConfig) private readonly config: ConfigOf<typeof HelloConfig>) {
    super();
  }

  override async sayHello(req: HelloRequest, ctx: CallContext): Promise<HelloReply> {
    ctx.log.debug({ name: req.name }, "greeting");
    const punctuation = req.tone === Tone.WARM ? "!" : ".";
    return { message: `${this.config.greeting}, ${req.name}${punctuation}`, greetedAt: new Date() };
  }
}
