import type { EventEmitter } from "node:events";
import { readFileSync } from "node:fs";
import type { Readable } from "node:stream";
import {
  type CallContext,
  type CallStream,
  type ConfigSchema,
  coreErrors,
  type GantryError,
  type MessageDescriptor,
  type MethodDescriptor,
  toGantryError,
} from "@gantry/core";
import type { ClientTransport } from "@gantry/core/client";
import {
  type Endpoint,
  endpointUrl,
  type ServerSpanInfo,
  type Transport,
  type TransportHost,
} from "@gantry/core/transport";
import {
  type ChannelOptions,
  type Deadline,
  type Metadata as GrpcMetadata,
  type MethodDefinition,
  Server,
  ServerCredentials,
  type ServerDuplexStream,
  type ServerReadableStream,
  type ServerUnaryCall,
  type ServerWritableStream,
  type ServiceDefinition,
  type StatusObject,
  type sendUnaryData,
  type UntypedServiceImplementation,
} from "@grpc/grpc-js";
import { type GrpcClientOptions, grpcClientTransport } from "./client.js";
import { decodeMessage, encodeMessage } from "./codec.js";
import { type GrpcConfig, type GrpcTransportOptions, grpcConfigSchema } from "./config.js";
import { grpcErrors } from "./errors.js";
import { HealthService } from "./health.js";
import { addReflection } from "./reflection.js";
import { fromGrpcMetadata, toGrpcMetadata } from "./wire/metadata.js";
import { toStatusObject } from "./wire/status.js";
import { writable } from "./wire/streams.js";

type AnyCall =
  | ServerUnaryCall<Buffer, Buffer>
  | ServerReadableStream<Buffer, Buffer>
  | ServerWritableStream<Buffer, Buffer>
  | ServerDuplexStream<Buffer, Buffer>;

/** What a gRPC server counts: calls served per kind, for benchmarks and tests. */
export interface GrpcStats {
  calls: number;
}

/**
 * Serves every method of the app's services over gRPC on @grpc/grpc-js, from the same decorated
 * classes the HTTP transport serves. It only decodes and encodes: validation, guards, interceptors,
 * deadlines and errors are core's pipeline. Also serves grpc.health.v1.Health and server reflection.
 *
 * @example
 * const app = createApp({ services: [HelloService], transports: [httpTransport(), grpcTransport()] });
 */
export class GrpcTransport implements Transport {
  readonly kind = "grpc";
  readonly config: ConfigSchema<unknown>;
  readonly stats: GrpcStats = { calls: 0 };
  readonly #schema: ReturnType<typeof grpcConfigSchema>;
  #host: TransportHost | undefined;
  /** Attributes of every call's span: where this server is reached. */
  #spanAttributes: Readonly<Record<string, string | number>> = {};
  #server: Server | undefined;
  #health: HealthService | undefined;
  #address: string | undefined;

  readonly #clientOptions: GrpcClientOptions | undefined;

  constructor(options: GrpcTransportOptions = {}) {
    this.#schema = grpcConfigSchema(options);
    this.config = this.#schema as ConfigSchema<unknown>;
    this.#clientOptions = options.client;
  }

  /** The client side, for the app's typed clients: `grpcClientTransport(options.client)`. */
  client(): ClientTransport {
    return grpcClientTransport(this.#clientOptions);
  }

  async listen(host: TransportHost): Promise<readonly Endpoint[]> {
    this.#host = host;
    const config = host.config(this.#schema).grpc;
    const credentials = serverCredentials(config);
    const server = new Server(channelOptions(config));
    for (const service of host.services) {
      const definition: Record<string, MethodDefinition<Buffer, Buffer>> = {};
      const implementation: UntypedServiceImplementation = {};
      for (const method of service.methods) {
        definition[method.name] = {
          path: method.path,
          requestStream: method.stream === "client" || method.stream === "bidi",
          responseStream: method.stream === "server" || method.stream === "bidi",
          requestSerialize: identity,
          requestDeserialize: identity,
          responseSerialize: identity,
          responseDeserialize: identity,
          originalName: method.key,
        };
        implementation[method.name] = this.#handler(method);
      }
      server.addService(definition as ServiceDefinition, implementation);
    }
    if (config.health) {
      this.#health = new HealthService(host);
      this.#health.addTo(server);
    }
    if (config.reflection) addReflection(server, host.services, { health: config.health });
    const address = `${config.host.includes(":") ? `[${config.host}]` : config.host}:${config.port}`;
    const port = await new Promise<number>((resolve, reject) => {
      server.bindAsync(address, credentials, (error, bound) => {
        if (error === null) {
          resolve(bound);
          return;
        }
        const params = { host: config.host, port: config.port };
        // Nothing listens: release what was set up for the server, which close() will not see.
        server.forceShutdown();
        this.#health?.close();
        this.#health = undefined;
        reject(
          /EADDRINUSE|address already in use/i.test(error.message)
            ? grpcErrors.create("GANTRY_ERR_GRPC_PORT_IN_USE", params, { cause: error })
            : grpcErrors.create("GANTRY_ERR_GRPC_LISTEN", { ...params, reason: error.message }, { cause: error }),
        );
      });
    });
    this.#server = server;
    this.#address = `${config.host.includes(":") ? `[${config.host}]` : config.host}:${port}`;
    const advertised = host.advertise(config.host);
    this.#spanAttributes = { "server.address": advertised, "server.port": port };
    const scheme = credentials._isSecure() ? "grpcs" : "grpc";
    return [{ transport: "grpc", url: endpointUrl(scheme, advertised, port), host: advertised, port }];
  }

  /**
   * Stops accepting connections. Calls on open connections go on; new calls on them are refused
   * with UNAVAILABLE by the pipeline, so clients move to another instance.
   */
  drain(): void {
    if (this.#server !== undefined && this.#address !== undefined) this.#server.unbind(this.#address);
  }

  /** Ends health watches, then closes every connection (gracefully, at most a second). */
  async close(): Promise<void> {
    const server = this.#server;
    if (server === undefined) return;
    this.#server = undefined;
    this.#health?.close();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      new Promise<void>((resolve) => server.tryShutdown(() => resolve())),
      new Promise<void>((resolve) => {
        timer = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, 1000);
      }),
    ]);
    clearTimeout(timer);
  }

  /**
   * The grpc-js handler of a method. Its four kinds differ in two ways only: whether the input is one
   * message or the client's stream, and whether the answer is one message (the unary callback) or a
   * stream written to the call.
   */
  #handler(method: MethodDescriptor) {
    const inputStream = method.stream === "client" || method.stream === "bidi";
    const input = inputStream
      ? (call: AnyCall, context: CallContext) => decodeStream(method.input, call as Readable, context.signal)
      : (call: AnyCall) => decodeMessage(method.input, (call as ServerUnaryCall<Buffer, Buffer>).request);
    if (method.stream === "server" || method.stream === "bidi") {
      return (call: ServerWritableStream<Buffer, Buffer> | ServerDuplexStream<Buffer, Buffer>) =>
        this.#serve(
          method,
          call,
          true,
          input,
          (context, error, output) => stream(method, call, context, error, output as CallStream | undefined),
          (status) => call.emit("error", status),
        );
    }
    return (
      call: ServerUnaryCall<Buffer, Buffer> | ServerReadableStream<Buffer, Buffer>,
      callback: sendUnaryData<Buffer>,
    ) =>
      this.#serve(
        method,
        call,
        inputStream,
        input,
        (context, error, output) => reply(method, call, context, callback, error, output),
        callback,
      );
  }

  /**
   * One call: its context (watched for cancels at once when it streams, else only if the method looks
   * at its signal), its decoded input, the pipeline, then `answer`. A call that cannot even start
   * (malformed bytes, say) fails with `fail`.
   */
  #serve(
    method: MethodDescriptor,
    call: AnyCall,
    watchNow: boolean,
    input: (call: AnyCall, context: CallContext) => unknown,
    answer: (context: CallContext, error: GantryError | undefined, output: unknown) => void,
    fail: (status: StatusObject) => void,
  ): void {
    let context: CallContext | undefined;
    try {
      context = this.#createCall(method, call, watchNow);
      const running = context;
      (this.#host as TransportHost).dispatch(method, input(call, running), running, (error, output) =>
        answer(running, error, output),
      );
    } catch (error) {
      fail(statusOf(error, context, false));
    }
  }

  #createCall(method: MethodDescriptor, call: AnyCall, watchNow: boolean): CallContext {
    const incoming = call.metadata;
    const context = (this.#host as TransportHost).createCall({
      method,
      transport: "grpc",
      // Converted only if the method reads it: most calls never do.
      metadata: () => fromGrpcMetadata(incoming),
      deadline: deadlineOf(call.getDeadline()),
      requestId: requestIdOf(incoming.get("x-request-id")[0]),
      peer: () => call.getPeer(),
      watch: watchNow ? undefined : (watched) => watchCancel(call, watched),
      span: () => grpcSpanInfo(call.getPeer(), this.#spanAttributes, incoming),
    });
    if (watchNow) watchCancel(call, context);
    this.stats.calls++;
    return context;
  }
}

/** A gRPC transport with these code defaults for its `grpc.*` config keys. */
export function grpcTransport(options: GrpcTransportOptions = {}): GrpcTransport {
  return new GrpcTransport(options);
}

function identity<T>(value: T): T {
  return value;
}

function channelOptions(config: GrpcConfig): ChannelOptions {
  const options: ChannelOptions = {
    "grpc.max_receive_message_length": config.maxReceiveMessageSize,
    "grpc.max_send_message_length": config.maxSendMessageSize,
    "grpc.keepalive_time_ms": config.keepalive.time,
    "grpc.keepalive_timeout_ms": config.keepalive.timeout,
  };
  if (config.maxConnectionIdle > 0) options["grpc.max_connection_idle_ms"] = config.maxConnectionIdle;
  if (config.maxConnectionAge > 0) options["grpc.max_connection_age_ms"] = config.maxConnectionAge;
  return options;
}

function serverCredentials(config: GrpcConfig): ServerCredentials {
  const { cert, key, ca } = config.tls;
  if (cert === "" && key === "" && ca === "") return ServerCredentials.createInsecure();
  if (cert === "" || key === "") {
    throw grpcErrors.create("GANTRY_ERR_GRPC_TLS", { reason: "grpc.tls.cert and grpc.tls.key must be set together" });
  }
  const read = (what: string, path: string) => {
    try {
      return readFileSync(path);
    } catch (error) {
      throw grpcErrors.create(
        "GANTRY_ERR_GRPC_TLS",
        { reason: `cannot read ${what} ${path}: ${(error as NodeJS.ErrnoException).code ?? String(error)}` },
        { cause: error },
      );
    }
  };
  const pair = { cert_chain: read("grpc.tls.cert", cert), private_key: read("grpc.tls.key", key) };
  const rootCerts = ca === "" ? null : read("grpc.tls.ca", ca);
  try {
    return ServerCredentials.createSsl(rootCerts, [pair], rootCerts !== null);
  } catch (error) {
    throw grpcErrors.create("GANTRY_ERR_GRPC_TLS", { reason: (error as Error).message }, { cause: error });
  }
}

function deadlineOf(deadline: Deadline): number | undefined {
  if (deadline instanceof Date) return deadline.getTime();
  return Number.isFinite(deadline) ? deadline : undefined;
}

const REQUEST_ID = /^[\w.:@/+=-]{1,128}$/;

function requestIdOf(value: unknown): string | undefined {
  return typeof value === "string" && REQUEST_ID.test(value) ? value : undefined;
}

/** Aborts the call when grpc-js reports it cancelled: by the client, or by its own deadline timer. */
function watchCancel(call: AnyCall, context: CallContext): void {
  const cancel = () => {
    const deadline = context.deadline;
    context.abort(
      deadline !== undefined && deadline <= Date.now()
        ? coreErrors.create("GANTRY_ERR_DEADLINE_EXCEEDED", { timeoutMs: Math.max(0, deadline - context.startedAt) })
        : coreErrors.create("GANTRY_ERR_CANCELLED"),
    );
  };
  if (call.cancelled) cancel();
  else (call as EventEmitter).once("cancelled", cancel);
}

/**
 * The messages of a client or bidi stream, decoded as the method pulls them. It ends when the
 * client's half ends or the call is aborted (a deadline does not wait for a client that sends
 * nothing). It does not destroy the call: on a bidi call the server's half goes on.
 */
async function* decodeStream(
  descriptor: MessageDescriptor,
  source: Readable,
  signal: AbortSignal,
): AsyncGenerator<unknown> {
  const iterator = source.iterator({ destroyOnReturn: false });
  for (;;) {
    if (signal.aborted) return;
    const next = await new Promise<IteratorResult<unknown>>((resolve, reject) => {
      const onAbort = () => resolve({ done: true, value: undefined });
      signal.addEventListener("abort", onAbort, { once: true });
      iterator.next().then(
        (result) => {
          signal.removeEventListener("abort", onAbort);
          resolve(result);
        },
        (error: unknown) => {
          signal.removeEventListener("abort", onAbort);
          reject(error);
        },
      );
    });
    if (next.done === true) return;
    yield decodeMessage(descriptor, next.value as Buffer);
  }
}

/**
 * The status of a failed call. Errors from the pipeline were logged there; any other server fault
 * (an output that cannot be encoded, say) is logged here.
 */
function statusOf(
  error: unknown,
  context: CallContext | undefined,
  logged = true,
  trailers = context?.hasResponseMetadata ? toGrpcMetadata(context.responseMetadata) : undefined,
) {
  const fault = toGantryError(error);
  if (!logged && context !== undefined && (fault.status === "INTERNAL" || fault.status === "UNKNOWN")) {
    context.log.error(
      { err: fault.cause ?? error, code: fault.code, details: fault.details },
      `${context.method.path} failed`,
    );
  }
  return toStatusObject(fault, trailers);
}

function reply(
  method: MethodDescriptor,
  call: AnyCall,
  context: CallContext,
  callback: sendUnaryData<Buffer>,
  error: GantryError | undefined,
  output: unknown,
): void {
  if (error !== undefined) {
    callback(statusOf(error, context));
    return;
  }
  let bytes: Buffer;
  try {
    bytes = encodeMessage(method.output, output);
  } catch (encodeError) {
    callback(statusOf(encodeError, context, false));
    return;
  }
  if (context.hasResponseMetadata) call.sendMetadata(toGrpcMetadata(context.responseMetadata));
  callback(null, bytes);
}

/**
 * Writes a method's output stream to the call, pulling the next message only once the last one was
 * taken (`write` returned true, or `drain`): a slow reader holds the method back. Ends with OK, or
 * with the stream's error (or the call's abort reason: a deadline, shutdown) as the status. Response
 * metadata set before the first message goes out as headers; any set later, as trailers.
 */
async function stream(
  method: MethodDescriptor,
  call: ServerWritableStream<Buffer, Buffer> | ServerDuplexStream<Buffer, Buffer>,
  context: CallContext,
  error: GantryError | undefined,
  output: CallStream | undefined,
): Promise<void> {
  if (error !== undefined || output === undefined) {
    call.emit("error", statusOf(error, context));
    return;
  }
  let sent: ReadonlySet<string> | undefined;
  const sendHeaders = () => {
    if (sent !== undefined) return;
    sent = sentKeys(context);
    if (sent.size > 0) call.sendMetadata(toGrpcMetadata(context.responseMetadata));
  };
  const trailers = () =>
    context.hasResponseMetadata ? toGrpcMetadata(context.responseMetadata, undefined, sent) : undefined;
  try {
    for await (const item of output) {
      sendHeaders();
      if (call.cancelled || call.destroyed) break;
      let bytes: Buffer;
      try {
        bytes = encodeMessage(method.output, item);
      } catch (encodeError) {
        call.emit("error", statusOf(encodeError, context, false, trailers()));
        return;
      }
      if (!call.write(bytes)) await writable(call, context.signal);
    }
    sendHeaders();
    if (!call.cancelled) call.end(trailers());
  } catch (streamError) {
    // The stream's own errors were logged by the pipeline.
    if (!call.cancelled) call.emit("error", statusOf(streamError, context, true, trailers()));
  } finally {
    await output.return();
  }
}

/** The response metadata entries that went out as headers, to keep them out of the trailers. */
function sentKeys(context: CallContext): ReadonlySet<string> {
  const sent = new Set<string>();
  if (!context.hasResponseMetadata) return sent;
  for (const [key, values] of context.responseMetadata.entries())
    for (const value of values) sent.add(`${key}\n${value}`);
  return sent;
}

/** A gRPC call's span: OpenTelemetry's RPC server conventions, named after the method. */
function grpcSpanInfo(
  peer: string,
  server: Readonly<Record<string, string | number>>,
  incoming: GrpcMetadata,
): ServerSpanInfo {
  const attributes: Record<string, string | number> = { ...server };
  // grpc-js gives the peer as `127.0.0.1:53122` or `[::1]:53122`.
  const colon = peer.lastIndexOf(":");
  if (colon > 0) {
    attributes["network.peer.address"] = peer.slice(0, colon).replace(/^\[|\]$/g, "");
    const port = Number(peer.slice(colon + 1));
    if (Number.isInteger(port)) attributes["network.peer.port"] = port;
  }
  // The trace context read from grpc-js's own metadata: no Gantry Metadata is built for it.
  const header = (name: string) => {
    const value = incoming.get(name)[0];
    return typeof value === "string" ? value : undefined;
  };
  return { protocol: "rpc", attributes, header };
}
