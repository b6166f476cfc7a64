/**
 * Contenders (c) and (d): the same work as the baselines, as a Gantry service. The first argument
 * picks the serving path: `fast` (node:http, no express) or `express`.
 *
 *   node dist/servers/gantry.js fast
 */
import { createApp, Field, Get, Message, Method, Post, Service } from "@gantry/core";
import { httpTransport, type ServingPath } from "@gantry/transport-http";
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

const path = process.argv[2] as ServingPath;
if (path !== "fast" && path !== "express") throw new TypeError(`give the serving path: fast or express, not ${path}`);

const transport = httpTransport({ path });
const app = createApp({ name: "bench", services: [BenchService], transports: [transport] });
await app.start({ env: {}, flags: { "http.port": "0", "http.host": "127.0.0.1", "log.level": "silent" } });
const endpoint = app.endpoints.find((e) => e.transport === "http");
if (endpoint === undefined) throw new Error("the app has no http endpoint");
report({ port: endpoint.port });

process.once("SIGTERM", async () => {
  await app.close();
  // Which path served Gantry's routes: a run on the wrong path would compare the wrong thing.
  report({ served: transport.stats.fast + transport.stats.express, stats: transport.stats });
});
