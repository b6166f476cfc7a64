/**
 * Baseline for the gRPC section: a hand-written @grpc/grpc-js server, written the way the grpc-js
 * examples show (the .proto loaded with @grpc/proto-loader, protobufjs encoding and decoding), doing
 * the same work as the Gantry method: SayHello checks the name (1 to 64 characters, else
 * INVALID_ARGUMENT) and answers the same greeting. Like the Gantry server, it logs nothing for a call
 * that succeeds or fails validation. What Gantry's GrpcTransport is held to.
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

const server = new Server();
server.addService(Greeter.service, { SayHello: sayHello });
server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (error, port) => {
  if (error !== null) throw error;
  report({ port });
});

process.once("SIGTERM", () => {
  // Before the shutdown: grpc-js drops the server's channelz counts with it.
  const calls: GrpcCalls = grpcCalls();
  server.tryShutdown(() => report({ served: calls.succeeded, ok, calls }));
});
