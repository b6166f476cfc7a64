import { createApp } from "@gantry/core";
import { discovery } from "@gantry/discovery";
import { grpcTransport } from "@gantry/transport-grpc";
import { httpTransport } from "@gantry/transport-http";
import { HelloApi } from "./hello.api.js";
import { WorldService } from "./world.service.js";

/**
 * WorldService in its own process: `gantry start dist/world.main.js` (HTTP :8082, gRPC :50062). It
 * calls HelloService in another process, found through discovery, over gRPC (HTTP when an instance
 * offers only that).
 */
export default createApp({
  name: "world",
  version: "0.1.0",
  services: [WorldService],
  clients: [HelloApi],
  transports: [httpTransport({ port: 8082 }), grpcTransport({ port: 50062 })],
  discovery: discovery(),
});
