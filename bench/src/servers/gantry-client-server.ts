/**
 * The server of the client section: the gRPC section's Gantry Greeter (src/servers/gantry-grpc.ts, the
 * same work: decode, check the name, greet, encode) with discovery, so that the Gantry client finds
 * it. Started the way users start one, in a registry of the run's own:
 *
 *   gantry start dist/servers/gantry-client-server.js --set grpc.port=0 --set grpc.host=127.0.0.1 \
 *     --set log.level=silent --set registry.url=local://<ns>?dir=<dir>
 *
 * Both contenders call this same server: the raw grpc-js client at the address it prints, the Gantry
 * client wherever the registry says it is.
 */
import { subscribe } from "node:diagnostics_channel";
import { type AppState, channels, createApp } from "@gantry/core";
import { discovery } from "@gantry/discovery";
import { grpcTransport } from "@gantry/transport-grpc";
import { greet, report } from "./baseline.js";
import { GreeterApi, type HelloReply, type HelloRequest } from "./gantry-client-api.js";
import { type GrpcCalls, grpcCalls } from "./grpc-calls.js";

/** Calls that reached the method (their input was valid). */
let ok = 0;

class Greeter extends GreeterApi {
  override sayHello(req: HelloRequest): HelloReply {
    ok++;
    return greet(req.name);
  }
}

const transport = grpcTransport();
const app = createApp({
  name: "bench-client-server",
  services: [Greeter],
  transports: [transport],
  discovery: discovery(),
});

// grpc-js's count of OK statuses, taken when shutdown begins, as the gRPC section's server does.
let calls: GrpcCalls | undefined;
subscribe(channels.appState, (message) => {
  if ((message as { state: AppState }).state === "draining") calls = grpcCalls();
});
app.onShutdown("telemetry", () => report({ served: calls?.succeeded, ok, calls, stats: transport.stats }));

export default app;
