/**
 * The app whose start the telemetry section times: the Greeter (`bench.v1.Greeter/SayHello`, the
 * client section's contract) served over HTTP and gRPC, registered through discovery, as a typical
 * service is. Started the way users start one, in a registry of the run's own:
 *
 *   gantry start dist/servers/gantry-start.js --set http.port=0 --set grpc.port=0 \
 *     --set log.level=silent --set registry.url=local://<ns>?dir=<dir>
 */
import { createApp } from "@gantry/core";
import { discovery } from "@gantry/discovery";
import { grpcTransport } from "@gantry/transport-grpc";
import { httpTransport } from "@gantry/transport-http";
import { greet } from "./baseline.js";
import { GreeterApi, type HelloReply, type HelloRequest } from "./gantry-client-api.js";

class Greeter extends GreeterApi {
  override sayHello(req: HelloRequest): HelloReply {
    return greet(req.name);
  }
}

export default createApp({
  name: "bench-start",
  services: [Greeter],
  transports: [httpTransport(), grpcTransport()],
  discovery: discovery(),
});
