/**
 * Contenders (c) and (d): the same work as the baselines, as a Gantry service, started the way users
 * start one; the config key http.path picks the serving path:
 *
 *   gantry start dist/servers/gantry.js --set http.path=fast --set http.port=0
 */
import { createApp, Field, Get, Message, Method, Post, Service } from "@gantry/core";
import { httpTransport } from "@gantry/transport-http";
import { report } from "./baseline.js";

@Message()
class HelloRequest {
  @Field(1) name!: string;
}

@Message()
class HelloReply {
  @Field(1) message!: string;
}

@Message()
class Echo {
  @Field(1, { minLength: 1, maxLength: 64 }) name!: string;
  @Field(2, { type: "int32", min: 0, max: 1000 }) count!: number;
  @Field(3, { type: "string", repeated: true, maxItems: 10 }) tags!: string[];
}

// Plain (not async) methods, like the baseline handlers: the comparison is of the framework.
@Service({ package: "bench", version: "v1" })
class BenchService {
  @Get("/hello/:name")
  @Method({ input: HelloRequest, output: HelloReply })
  hello(req: HelloRequest): HelloReply {
    return { message: `Hello, ${req.name}.` };
  }

  @Post("/echo")
  @Method({ input: Echo, output: Echo })
  echo(req: Echo): Echo {
    return req;
  }
}

const transport = httpTransport();
const app = createApp({ name: "bench", services: [BenchService], transports: [transport] });
// After the transports closed: which path served Gantry's routes (a run on the wrong path would
// compare the wrong thing), as the last line the server prints.
app.onShutdown("telemetry", () =>
  report({ served: transport.stats.fast + transport.stats.express, stats: transport.stats }),
);

export default app;
