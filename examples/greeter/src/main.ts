import { createApp } from "@gantry/core";
import { grpcTransport } from "@gantry/transport-grpc";
import { httpTransport } from "@gantry/transport-http";
import { Greeter } from "./greeter.service.js";

/** `gantry start dist/main.js` loads this module and starts its default export: HTTP on 8080, gRPC on 50051. */
export default createApp({
  name: "greeter",
  version: "0.1.0",
  services: [Greeter],
  transports: [httpTransport({ port: 8080 }), grpcTransport({ port: 50051 })],
});
