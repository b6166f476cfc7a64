/**
 * Baseline for the gRPC section: a hand-written @grpc/grpc-js server, written the way the grpc-js
 * examples show (the .proto loaded with @grpc/proto-loader, protobufjs encoding and decoding), doing
 * the same work as the Gantry method: SayHello checks the name (1 to 64 characters, else
 * INVALID_ARGUMENT) and answers the same greeting. Like the Gantry server, it logs nothing for a call
 * that succeeds or fails validation. What Gantry's GrpcTransport is held to. Given the telemetry
 * section's OpenTelemetry variables, each call runs in a server span made by hand (./hand-tracing.ts);
 * without them, nothing is traced.
 */
import { fileURLToPath } from "node:url";
import {
  type GrpcObject,
  loadPackageDefinition,
  Server,
  ServerCredentials,
  type ServerUnaryCall,
  type ServiceClientConstructor,
  type sendUnaryData,
  status,
} from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import { greet, nameProblem, report } from "./baseline.js";
import { type GrpcCalls, grpcCalls } from "./grpc-calls.js";
import { type GrpcMethodSpan, handTracing } from "./hand-tracing.js";

const PROTO = fileURLToPath(new URL("../../proto/greeter.proto", import.meta.url));

// The options the grpc-js examples use.
const definition = loadSync(PROTO, { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true });
const bench = (loadPackageDefinition(definition).bench as GrpcObject).v1 as GrpcObject;
const Greeter = bench.Greeter as ServiceClientConstructor;

interface HelloRequest {
  name: string;
}

interface HelloReply {
  message: string;
}

/** OK replies handed to grpc-js. */
let ok = 0;

function sayHello(call: ServerUnaryCall<HelloRequest, HelloReply>, callback: sendUnaryData<HelloReply>): void {
  const problem = nameProblem(call.request.name);
  if (problem !== undefined) {
    callback({ code: status.INVALID_ARGUMENT, details: problem });
    return;
  }
  ok++;
  callback(null, greet(call.request.name));
}

const HOST = "127.0.0.1";
const tracing = await handTracing("bench-grpc-js");
/** Set once the server listens: its span's name and where it is reached. */
let span: GrpcMethodSpan | undefined;

/** Traced: SayHello in its span, which ends with the status grpc-js is given. */
function tracedSayHello(call: ServerUnaryCall<HelloRequest, HelloReply>, callback: sendUnaryData<HelloReply>): void {
  tracing?.grpc(call.metadata, call.getPeer(), span as GrpcMethodSpan, (end) =>
    sayHello(call, (error, reply) => {
      callback(error, reply);
      end(status[error?.code ?? status.OK]);
    }),
  );
}

const server = new Server();
server.addService(Greeter.service, { SayHello: tracing === undefined ? sayHello : tracedSayHello });
server.bindAsync(`${HOST}:0`, ServerCredentials.createInsecure(), (error, port) => {
  if (error !== null) throw error;
  span = { path: "bench.v1.Greeter/SayHello", address: HOST, port };
  report({ port });
});

process.once("SIGTERM", () => {
  // Before the shutdown: grpc-js drops the server's channelz counts with it.
  const calls: GrpcCalls = grpcCalls();
  // Traced, the spans still queued are exported before the stats are printed.
  server.tryShutdown(async () => {
    await tracing?.shutdown();
    report({ served: calls.succeeded, ok, calls });
  });
});
