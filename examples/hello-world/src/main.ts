import { createApp } from "@gantry/core";
import { discovery } from "@gantry/discovery";
import { grpcTransport } from "@gantry/transport-grpc";
import { httpTransport } from "@gantry/transport-http";
import { HelloConfig } from "./config.js";
import { HelloApi } from "./hello.api.js";
import { HelloService } from "./hello.service.js";
import { WorldService } from "./world.service.js";

/**
 * `gantry start dist/main.js` loads this module and starts its default export: both services on
 * HTTP (port 8080) and gRPC (port 50051) from one process, registered in the registry
 * `GANTRY_REGISTRY` names (`local://` when unset: `gantry ls` shows them).
 */
export default createApp({
  name: "hello-world",
  version: "0.1.0",
  services: [HelloService, WorldService],
  // World calls Hello through its typed client: here, in this process, through the pipeline.
  clients: [HelloApi],
  config: [HelloConfig],
  transports: [httpTransport({ port: 8080 }), grpcTransport({ port: 50051 })],
  discovery: discovery(),
});
