import {
  type Constructor,
  describeMessage,
  describeService,
  type MessageDescriptor,
  readMessage,
  writeMessage,
} from "@gantry/core";
import { decodeMessage, encodeMessage, HealthCheckRequest, HealthCheckResponse } from "@gantry/transport-grpc";
import { type Client, Metadata } from "@grpc/grpc-js";

/** What a unary gRPC call needs: the method's path and its two message types. */
export interface UnaryMethod {
  readonly path: string;
  readonly input: MessageDescriptor;
  readonly output: MessageDescriptor;
}

/** A method of a Gantry service by its gRPC name (`SayHello`). */
export function methodOf(service: Constructor, name: string): UnaryMethod {
  const method = describeService(service).methods.find((m) => m.name === name);
  if (method === undefined) throw new Error(`${service.name} has no method ${name}`);
  return method;
}

/**
 * A unary call with a plain grpc-js client, in proto3 JSON both ways, so that an answer reads as it
 * does over HTTP. The input is sent as protobuf, unchecked: the server checks it.
 */
export function unary(client: Client, method: UnaryMethod, input: unknown): Promise<unknown> {
  return new Promise((resolve, reject) => {
    client.makeUnaryRequest(
      method.path,
      (value: unknown) => Buffer.from(encodeMessage(method.input, readMessage(method.input, value, { rules: false }))),
      (bytes: Buffer) =>
        writeMessage(method.output, readMessage(method.output, decodeMessage(method.output, bytes), { rules: false })),
      input,
      new Metadata(),
      { deadline: Date.now() + 5000 },
      (error, output) => (error === null ? resolve(output) : reject(error)),
    );
  });
}

// grpc.health.v1.Health/Check, with the messages the transport serves it with.

export const HEALTH_CHECK: UnaryMethod = {
  path: "/grpc.health.v1.Health/Check",
  input: describeMessage(HealthCheckRequest),
  output: describeMessage(HealthCheckResponse),
};
