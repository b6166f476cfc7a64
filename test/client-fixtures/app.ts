import { createApp } from "@gantry/core";
import { discovery } from "@gantry/discovery";
import { grpcTransport } from "@gantry/transport-grpc";
import { httpTransport } from "@gantry/transport-http";
import { FixtureConfig } from "./config.js";
import { FaultService } from "./service.js";

/**
 * One instance of FaultService for test/client-faults.test.ts, started as users start one:
 * `gantry start test/client-fixtures/dist/app.js`, on gRPC and HTTP on free loopback ports, registered
 * in the registry GANTRY_REGISTRY names. On SIGTERM it deregisters, waits 300 ms for callers to see
 * it, then drains.
 */
export default createApp({
  name: "client-faults",
  version: "1.0.0",
  services: [FaultService],
  config: [FixtureConfig],
  transports: [grpcTransport({ port: 0, host: "127.0.0.1" }), httpTransport({ port: 0, host: "127.0.0.1" })],
  discovery: discovery(),
  shutdown: { propagationDelayMs: 300 },
});
