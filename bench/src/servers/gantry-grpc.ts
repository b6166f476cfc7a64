/**
 * Contender for the gRPC section: the same work as the hand-written grpc-js server (src/servers/grpc-js.ts),
 * as a Gantry `@Method` served by GrpcTransport, started the way users start one:
 *
 *   gantry start dist/servers/gantry-grpc.js --set grpc.port=0 --set grpc.host=127.0.0.1 --set log.level=silent
 *
 * A module of its own rather than a second transport in gantry.ts, so that the HTTP section's Gantry
 * server stays as it was. Health and reflection stay on, as users get them.
 */
import { subscribe } from "node:diagnostics_channel";
import { type AppState, channels, createApp, Field, Message, Method, Service } from "@gantry/core";
import { grpcTransport } from "@gantry/transport-grpc";
import { greet, report } from "./baseline.js";
import { type GrpcCalls, grpcCalls } from "./grpc-calls.js";

@Message()
class HelloRequest {
  @Field(1, { minLength: 1, maxLength: 64 }) name!: string;
}

@Message()
class HelloReply {
  @Field(1) message!: string;
}

/** Calls that reached the method (their input was valid), as the baseline counts the OK replies it hands to grpc-js. */
let ok = 0;

// `bench.v1.Greeter/SayHello`, as in proto/greeter.proto. A plain (not async) method, like the baseline handler.
@Service({ package: "bench", version: "v1" })
class Greeter {
  @Method({ input: HelloRequest, output: HelloReply })
  sayHello(req: HelloRequest): HelloReply {
    ok++;
    return greet(req.name);
  }
}

const transport = grpcTransport();
const app = createApp({ name: "bench-grpc", services: [Greeter], transports: [transport] });

// grpc-js's count of OK statuses, taken when shutdown begins (the load has ended; the server is still
// open) through core's app-state channel, which costs calls nothing.
let calls: GrpcCalls | undefined;
subscribe(channels.appState, (message) => {
  if ((message as { state: AppState }).state === "draining") calls = grpcCalls();
});
app.onShutdown("telemetry", () => report({ served: calls?.succeeded, ok, calls, stats: transport.stats }));

export default app;
