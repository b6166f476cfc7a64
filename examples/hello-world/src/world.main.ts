import { createApp } from "@gantry/core";
import { discovery } from "@gantry/discovery";
import { grpcTransport } from "@gantry/transport-grpc";
import { httpTransport } from "@gantry/transport-http";
import { HelloConfig } from "./config.js";
import { HelloService } from "./hello.service.js";
import { WorldService } from "./world.service.js";

/**
 * WorldService in its own process: `gantry start dist/world.main.js` (HTTP :8082, gRPC :50062). It
 * serves and registers only WorldService; HelloService is a plain provider here, which World asks
 * in-process until it has a typed client that finds Hello through discovery.
 */
export default createApp({
  name: "world",
  version: "0.1.0",
  services: [WorldService],
  providers: [HelloService],
  config: [HelloConfig],
  transports: [httpTransport({ port: 8082 }), grpcTransport({ port: 50062 })],
  discovery: discovery(),
});
