import { createApp } from "@gantry/core";
import { discovery } from "@gantry/discovery";
import { grpcTransport } from "@gantry/transport-grpc";
import { httpTransport } from "@gantry/transport-http";
import { HelloConfig } from "./config.js";
import { HelloService } from "./hello.service.js";

/** HelloService alone, in its own process: `gantry start dist/hello.main.js` (HTTP :8081, gRPC :50061). */
export default createApp({
  name: "hello",
  version: "0.1.0",
  services: [HelloService],
  config: [HelloConfig],
  transports: [httpTransport({ port: 8081 }), grpcTransport({ port: 50061 })],
  discovery: discovery(),
});
