import type { Constructor } from "@gantry/core";
import {
  describeService,
  isStatusName,
  type MessageDescriptor,
  type MethodDescriptor,
  readMessage,
  statusFromCode,
  writeMessage,
} from "@gantry/core";
import type { ConformanceFailure } from "@gantry/core/testing";
import { Client, credentials, Metadata, type ServiceError } from "@grpc/grpc-js";
import { decodeMessage, encodeMessage } from "../src/codec.js";
import { STATUS_DETAILS_KEY, statusMessages } from "../src/wire/status.js";

/** Encodes a proto3 JSON value as a message (types converted, rules not applied: the server checks them). */
export function encodeJson(descriptor: MessageDescriptor, value: unknown): Buffer {
  return Buffer.from(encodeMessage(descriptor, readMessage(descriptor, value, { rules: false })));
}

/** Decodes a message into its proto3 JSON form. */
export function decodeJson(descriptor: MessageDescriptor, bytes: Buffer): Record<string, unknown> {
  return writeMessage(
    descriptor,
    readMessage(descriptor, decodeMessage(descriptor, bytes), { rules: false }),
  ) as Record<string, unknown>;
}

/** A gRPC error as the conformance suite sees it: status name, the specific code and violations from the rich status. */
export function failureOf(error: ServiceError): ConformanceFailure {
  const status = statusFromCode(error.code);
  let code: string = status;
  let violations: ConformanceFailure["violations"] = [];
  const details = error.metadata?.get(STATUS_DETAILS_KEY)[0];
  if (details instanceof Buffer) {
    const rich = readMessage<{ details: { typeUrl: string; value: Uint8Array }[] }>(
      statusMessages.status,
      decodeMessage(statusMessages.status, details),
      { rules: false },
    );
    for (const any of rich.details) {
      const bytes = Buffer.from(any.value);
      if (any.typeUrl.endsWith("/google.rpc.ErrorInfo")) {
        code = String(decodeMessage(statusMessages.errorInfo, bytes).reason);
      } else if (any.typeUrl.endsWith("/google.rpc.BadRequest")) {
        const bad = readMessage<{ fieldViolations: { field: string; description: string }[] }>(
          statusMessages.badRequest,
          decodeMessage(statusMessages.badRequest, bytes),
          { rules: false },
        );
        violations = bad.fieldViolations.map(({ field, description }) => ({ field, description }));
      }
    }
  }
  return { status: isStatusName(status) ? status : "UNKNOWN", code, message: error.details, violations };
}

export interface UnaryOptions {
  metadata?: Readonly<Record<string, string>>;
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** A raw grpc-js client for one Gantry service class, speaking proto3 JSON to the test. */
export class TestClient {
  readonly client: Client;
  readonly #methods: Map<string, MethodDescriptor>;

  constructor(url: string, service: Constructor) {
    this.client = new Client(url.replace(/^grpcs?:\/\//, ""), credentials.createInsecure());
    this.#methods = new Map(describeService(service).methods.map((m) => [m.name, m]));
  }

  method(name: string): MethodDescriptor {
    const method = this.#methods.get(name);
    if (method === undefined) throw new Error(`no method ${name}`);
    return method;
  }

  unary(
    name: string,
    input: unknown,
    options: UnaryOptions = {},
  ): Promise<{ output: Record<string, unknown>; metadata: Record<string, string> }> {
    const method = this.method(name);
    const metadata = new Metadata();
    for (const [key, value] of Object.entries(options.metadata ?? {})) metadata.set(key, value);
    const deadline = options.timeoutMs === undefined ? undefined : Date.now() + options.timeoutMs;
    return new Promise((resolve, reject) => {
      let headers: Record<string, string> = {};
      const call = this.client.makeUnaryRequest(
        method.path,
        (value: unknown) => encodeJson(method.input, value),
        (bytes: Buffer) => decodeJson(method.output, bytes),
        input,
        metadata,
        { deadline },
        (error, output) => {
          if (error !== null) reject(failureOf(error));
          else resolve({ output: output as Record<string, unknown>, metadata: headers });
        },
      );
      call.on("metadata", (received: Metadata) => {
        headers = Object.fromEntries(Object.entries(received.getMap()).map(([key, value]) => [key, String(value)]));
      });
      options.signal?.addEventListener("abort", () => call.cancel(), { once: true });
    });
  }

  close(): void {
    this.client.close();
  }
}
