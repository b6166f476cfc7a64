import { readFileSync } from "node:fs";
import {
  coreErrors,
  type FieldViolation,
  GantryError,
  isGantryError,
  type MethodDescriptor,
  readMessage,
  statusFromCode,
} from "@gantry/core";
import {
  type Channel,
  type ClientTransport,
  calleeAnswer,
  deadlineError,
  notSendable,
  type OutboundCall,
  stopSignal,
  type UnaryCall,
} from "@gantry/core/client";
import {
  type ChannelCredentials,
  type ChannelOptions,
  Client,
  type ClientReadableStream,
  type ClientWritableStream,
  credentials,
  Metadata,
  type ServiceError,
} from "@grpc/grpc-js";
import { decodeMessage, encodeMessage } from "./codec.js";
import { grpcErrors } from "./errors.js";
import { STATUS_DETAILS_KEY, statusMessages } from "./wire/status.js";
import { writable } from "./wire/streams.js";

/** TLS for `grpcs://` endpoints. Each value is a PEM file path or the PEM contents themselves. */
export interface GrpcClientTlsOptions {
  /** The CA that signed the servers' certificates; the system's roots when unset. */
  ca?: string | Buffer;
  /** The client certificate chain, for servers that require one (mutual TLS); set with `key`. */
  cert?: string | Buffer;
  key?: string | Buffer;
  /** The name to check the server's certificate against, when the URL holds an address. */
  serverName?: string;
}

export interface GrpcClientOptions {
  tls?: GrpcClientTlsOptions;
  /**
   * How long a connection with calls in flight may go without a sign of life before it is pinged;
   * 30 s by default. A connection that sat idle for longer pings as soon as its next call starts.
   */
  keepaliveTimeMs?: number;
  /** How long a ping waits for its answer before the connection is given up as dead; 10 s by default. */
  keepaliveTimeoutMs?: number;
  /** The largest reply taken, in bytes; 4 MiB by default (the server's default send limit). */
  maxReceiveMessageSize?: number;
  /** The largest request sent, in bytes; 4 MiB by default (the server's default receive limit). */
  maxSendMessageSize?: number;
  /** Further grpc-js channel options; they override the ones above. */
  channelOptions?: ChannelOptions;
}

const MiB = 1024 * 1024;

/** Replies are read for their types only: the callee's rules are its own to apply. */
const TYPES_ONLY = Object.freeze({ rules: false });

/**
 * The client side of the gRPC transport: channels to `grpc://` and `grpcs://` endpoints that send
 * unary calls in protobuf, the exact mirror of what GrpcTransport serves. Each channel owns one
 * grpc-js client (one HTTP/2 connection), opened on its first call and closed by `close()`.
 *
 * A Gantry error from the server arrives as it was thrown: status, specific code, message,
 * retryability and field violations (from the `grpc-status-details-bin` trailer). A call that could
 * not be delivered at all fails with GANTRY_ERR_CONNECT; a connection lost while the call was out
 * fails with UNAVAILABLE, as the call may have run.
 *
 * @example
 * const transport = grpcClientTransport({ tls: { ca: "/etc/gantry/ca.pem" } });
 * const channel = transport.channel("grpcs://10.0.0.5:50051");
 * const reply = await sendUnary(channel, { method, deadline: Date.now() + 1000, metadata: {} }, request);
 * channel.close();
 */
export function grpcClientTransport(options: GrpcClientOptions = {}): ClientTransport {
  const channelOptions: ChannelOptions = {
    // Dead peers: without pings a call on a connection to a host that vanished (no RST: power loss, a
    // partition) hangs until its deadline or TCP gives up, minutes later. Pings go out only while calls
    // are in flight, or at the start of the first call after an idle spell: idle connections cost nothing,
    // and servers that police pings (C-core and Go refuse pings without calls) are not provoked. If a
    // server still finds them too frequent (GOAWAY too_many_pings), grpc-js doubles the interval.
    "grpc.keepalive_time_ms": options.keepaliveTimeMs ?? 30_000,
    "grpc.keepalive_timeout_ms": options.keepaliveTimeoutMs ?? 10_000,
    "grpc.keepalive_permit_without_calls": 0,
    "grpc.max_receive_message_length": options.maxReceiveMessageSize ?? 4 * MiB,
    "grpc.max_send_message_length": options.maxSendMessageSize ?? 4 * MiB,
    // A restarted instance at the same address is found again within 10 s, not grpc-js's 2 minutes.
    "grpc.max_reconnect_backoff_ms": 10_000,
    // Each channel owns its connection, so that close() really closes it (the shared pool keeps it).
    "grpc.use_local_subchannel_pool": 1,
    // Gantry sends no service config in DNS: do not look for one.
    "grpc.service_config_disable_resolution": 1,
  };
  const serverName = options.tls?.serverName;
  if (serverName !== undefined) {
    channelOptions["grpc.ssl_target_name_override"] = serverName;
    channelOptions["grpc.default_authority"] = serverName;
  }
  Object.assign(channelOptions, options.channelOptions);
  const settings: Settings = {
    options: channelOptions,
    insecure: credentials.createInsecure(),
    secure: secureCredentials(options.tls),
  };
  return { kind: "grpc", streaming: true, channel: (url) => new GrpcChannel(url, settings) };
}

interface Settings {
  readonly options: ChannelOptions;
  readonly insecure: ChannelCredentials;
  readonly secure: ChannelCredentials;
}

/** Keys the gRPC protocol or HTTP/2 owns: a call's metadata cannot set them. */
const RESERVED =
  /^(?:grpc-|:)|^(?:content-type|te|user-agent|host|connection|keep-alive|proxy-connection|transfer-encoding|upgrade)$/;

/**
 * The texts grpc-js gives a call that never left: no connection could be made (refused, unreachable,
 * a failed TLS handshake, a name that does not resolve), the channel was closed before the call
 * started, or the server refused the stream (HTTP/2 REFUSED_STREAM: not processed). Matched only on
 * statuses without Gantry's rich details, which every status from a Gantry server carries.
 */
const NEVER_SENT =
  /No connection established|^(?:Failed to connect|Name resolution failed|Channel closed before call started|Stream refused by server)|\bconnect E[A-Z]+\b/;

/** The texts grpc-js gives a reply it cannot take: too large, not decompressible, missing or doubled. */
const BAD_REPLY =
  /^(?:Received message (?:that decompresses to a size )?larger than|Failed to decompress|No message received|Too many responses received)/;

class GrpcChannel implements Channel {
  readonly #url: string;
  readonly #settings: Settings;
  /** `host:port` and whether TLS is used, or why the URL cannot be called. */
  readonly #target: { readonly address: string; readonly secure: boolean } | GantryError;
  #client: Client | undefined;
  #closed = false;

  constructor(url: string, settings: Settings) {
    this.#url = url;
    this.#settings = settings;
    this.#target = parseTarget(url);
  }

  unary(call: UnaryCall, input: unknown): void {
    const method = call.method;
    const deadline = call.deadline;
    const started = Date.now();
    const refused = notSendable(call, started);
    if (refused !== undefined) {
      call.failed(refused);
      return;
    }
    let bytes: Buffer;
    let client: Client;
    try {
      // Encoded here rather than in grpc-js's serializer: a bad input fails with its own error, and
      // before anything is opened.
      bytes = encodeMessage(method.input, input, method.path);
      client = this.#open();
    } catch (error) {
      call.failed(error);
      return;
    }
    const pending = client.makeUnaryRequest(
      method.path,
      identity,
      // Decoded in the callback rather than in grpc-js's deserializer, for the same reason.
      identity,
      bytes,
      outboundMetadata(call.metadata),
      { deadline },
      (error: ServiceError | null, reply?: Buffer) => {
        if (error !== null) {
          call.failed(call.stopped ?? this.#failure(error, method.path, started, deadline));
          return;
        }
        let output: unknown;
        try {
          output = this.#reply(method, reply ?? EMPTY);
        } catch (badReply) {
          call.failed(badReply);
          return;
        }
        call.answered(output);
      },
    );
    call.onStop(() => pending.cancel());
  }

  stream(call: OutboundCall, input: unknown): Promise<unknown> {
    const { method, deadline } = call;
    const started = Date.now();
    const refused = notSendable(call, started);
    if (refused !== undefined) return Promise.reject(refused);
    const signal = stopSignal(call);
    let client: Client;
    try {
      client = this.#open();
    } catch (error) {
      return Promise.reject(error);
    }
    const metadata = outboundMetadata(call.metadata);
    // What the input side failed with (a message that cannot be encoded, an iterable that throws): the
    // call is cancelled, and that error, not CANCELLED, is what the caller sees.
    let inputError: unknown;
    const fail = (error: ServiceError): unknown =>
      inputError ?? call.stopped ?? this.#failure(error, method.path, started, deadline);
    const pump = (stream: ClientWritableStream<Buffer>) =>
      sendAll(stream, method, input, signal).catch((error: unknown) => {
        inputError = error;
        stream.cancel();
      });
    if (method.stream === "client") {
      return new Promise((resolve, reject) => {
        const onAbort = () => stream.cancel();
        const stream = client.makeClientStreamRequest<Buffer, Buffer>(
          method.path,
          identity,
          identity,
          metadata,
          { deadline },
          (error: ServiceError | null, reply?: Buffer) => {
            signal.removeEventListener("abort", onAbort);
            if (error !== null) reject(fail(error));
            else resolve(this.#reply(method, reply ?? EMPTY));
          },
        );
        signal.addEventListener("abort", onAbort, { once: true });
        void pump(stream);
      });
    }
    if (method.stream === "bidi") {
      const stream = client.makeBidiStreamRequest<Buffer, Buffer>(method.path, identity, identity, metadata, {
        deadline,
      });
      void pump(stream);
      return Promise.resolve(this.#replies(stream, method, signal, fail));
    }
    let bytes: Buffer;
    try {
      bytes = encodeMessage(method.input, input, method.path);
    } catch (error) {
      return Promise.reject(error);
    }
    const stream = client.makeServerStreamRequest<Buffer, Buffer>(method.path, identity, identity, bytes, metadata, {
      deadline,
    });
    return Promise.resolve(this.#replies(stream, method, signal, fail));
  }

  close(): void {
    this.#closed = true;
    this.#client?.close();
    this.#client = undefined;
  }

  /**
   * The output messages of a server or bidi streaming call, as they arrive. The caller giving up
   * cancels the call on the wire at once, whether its messages are being read yet or not; leaving
   * them early cancels it too.
   */
  #replies(
    stream: ClientReadableStream<Buffer>,
    method: MethodDescriptor,
    signal: AbortSignal,
    fail: (error: ServiceError) => unknown,
  ): AsyncGenerator<unknown> {
    const onAbort = () => stream.cancel();
    signal.addEventListener("abort", onAbort, { once: true });
    // A stream that fails before it is read (cancelled, past its deadline) emits its error to no one,
    // and a reader that comes later sees it end: the error is kept for that reader.
    let failure: ServiceError | undefined;
    stream.on("error", (error: ServiceError) => {
      failure ??= error;
    });
    return this.#read(stream, method, fail, () => {
      signal.removeEventListener("abort", onAbort);
      return failure;
    });
  }

  /** Reads the messages; `done` says, once the stream has ended, the error it failed with, if any. */
  async *#read(
    stream: ClientReadableStream<Buffer>,
    method: MethodDescriptor,
    fail: (error: ServiceError) => unknown,
    done: () => ServiceError | undefined,
  ): AsyncGenerator<unknown> {
    let ended = false;
    try {
      try {
        for await (const chunk of stream as AsyncIterable<Buffer>) yield this.#reply(method, chunk);
      } catch (error) {
        throw isServiceError(error) ? fail(error) : error;
      }
      const failure = done();
      if (failure !== undefined) throw fail(failure);
      ended = true;
    } finally {
      done();
      if (!ended) stream.cancel();
    }
  }

  /** One output message off the wire, or GANTRY_ERR_BAD_RESPONSE. */
  #reply(method: MethodDescriptor, bytes: Buffer): unknown {
    try {
      return readMessage(method.output, decodeMessage(method.output, bytes), TYPES_ONLY);
    } catch (error) {
      throw this.#badResponse(method.path, reasonOf(error), error);
    }
  }

  #open(): Client {
    if (this.#closed) {
      throw coreErrors.create("GANTRY_ERR_CONNECT", { target: this.#url, reason: "the channel is closed" });
    }
    const target = this.#target;
    if (target instanceof GantryError) throw target;
    this.#client ??= new Client(
      target.address,
      target.secure ? this.#settings.secure : this.#settings.insecure,
      this.#settings.options,
    );
    return this.#client;
  }

  /**
   * A failed call as a GantryError: from Gantry's rich status when the server sent one, else from the
   * gRPC status, with the statuses grpc-js makes up itself (a call that never left, its own deadline)
   * turned into core's coded errors.
   */
  #failure(error: ServiceError, method: string, started: number, deadline: number | undefined): GantryError {
    const status = statusFromCode(error.code);
    const rich = richStatus(error.metadata);
    if (rich !== undefined) {
      return calleeAnswer(
        new GantryError(status, error.details || rich.message || status, {
          code: rich.code ?? status,
          retryable: rich.retryable,
          violations: rich.violations,
          details: rich.details,
        }),
      );
    }
    if (status === "UNAVAILABLE" && NEVER_SENT.test(error.details)) {
      return coreErrors.create("GANTRY_ERR_CONNECT", { target: this.#url, reason: error.details }, { cause: error });
    }
    if (BAD_REPLY.test(error.details)) return this.#badResponse(method, error.details, error);
    if (status === "DEADLINE_EXCEEDED") return deadlineError(started, deadline ?? Date.now(), error);
    if (status === "CANCELLED") {
      // Not by this caller (it did not give up): the server reset the stream, as grpc-js does to
      // every call when it shuts down. For the caller that is the server going away mid-call.
      return new GantryError("UNAVAILABLE", `${this.#url} cancelled the call: ${error.details}`, { cause: error });
    }
    return new GantryError(status, error.details || status, { code: status, cause: error });
  }

  #badResponse(method: string, reason: string, cause: unknown): GantryError {
    return coreErrors.create("GANTRY_ERR_BAD_RESPONSE", { target: this.#url, method, reason }, { cause });
  }
}

const EMPTY = Buffer.alloc(0);

function identity<T>(value: T): T {
  return value;
}

/** `grpc://host:port` → the address grpc-js dials and whether TLS is used, or GANTRY_ERR_CONNECT saying why not. */
export function parseTarget(url: string): { address: string; secure: boolean } | GantryError {
  const fail = (reason: string) => coreErrors.create("GANTRY_ERR_CONNECT", { target: url, reason });
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return fail("not a valid URL");
  }
  if (parsed.protocol !== "grpc:" && parsed.protocol !== "grpcs:") {
    return fail(`not a grpc:// or grpcs:// URL`);
  }
  if (parsed.hostname === "") return fail("the URL names no host");
  const secure = parsed.protocol === "grpcs:";
  // `hostname` keeps the brackets of an IPv6 address, which grpc-js expects.
  return { address: `${parsed.hostname}:${parsed.port || (secure ? 443 : 50051)}`, secure };
}

/** A call's metadata as gRPC metadata: `-bin` values are base64, as the server shows them. */
function outboundMetadata(values: Readonly<Record<string, string>>): Metadata {
  const metadata = new Metadata();
  for (const key of Object.keys(values)) {
    const lower = key.toLowerCase();
    if (RESERVED.test(lower)) continue;
    const value = values[key];
    try {
      metadata.add(lower, lower.endsWith("-bin") ? Buffer.from(value, "base64") : value);
    } catch {
      // grpc-js refuses keys outside [0-9a-z_.-] and values that are not printable ASCII; the server
      // side drops them the same way.
    }
  }
  return metadata;
}

interface RichStatus {
  readonly message: string;
  readonly code: string | undefined;
  readonly retryable: boolean | undefined;
  readonly violations: FieldViolation[];
  readonly details: Record<string, string>;
}

interface AnyDetail {
  typeUrl?: string;
  value?: Uint8Array;
}

/**
 * The google.rpc.Status of the `grpc-status-details-bin` trailer: ErrorInfo gives the specific code
 * (`reason`) and retryability (and any other metadata, as details), BadRequest the field violations.
 * Undefined when there is none, or it cannot be read.
 */
function richStatus(metadata: Metadata | undefined): RichStatus | undefined {
  const bytes = metadata?.get(STATUS_DETAILS_KEY)[0];
  if (!(bytes instanceof Buffer)) return undefined;
  try {
    const status = decodeMessage(statusMessages.status, bytes) as { message?: string; details?: AnyDetail[] };
    let code: string | undefined;
    let retryable: boolean | undefined;
    const violations: FieldViolation[] = [];
    const details: Record<string, string> = {};
    for (const any of status.details ?? []) {
      const value = any.value ?? EMPTY;
      if (any.typeUrl?.endsWith("/google.rpc.ErrorInfo")) {
        const info = decodeMessage(statusMessages.errorInfo, value) as {
          reason?: string;
          metadata?: Record<string, string>;
        };
        if (info.reason !== undefined && info.reason !== "") code = info.reason;
        for (const [key, entry] of Object.entries(info.metadata ?? {})) {
          if (key === "retryable") retryable = entry === "true" ? true : entry === "false" ? false : undefined;
          else details[key] = entry;
        }
      } else if (any.typeUrl?.endsWith("/google.rpc.BadRequest")) {
        const bad = decodeMessage(statusMessages.badRequest, value) as {
          fieldViolations?: { field?: string; description?: string }[];
        };
        for (const v of bad.fieldViolations ?? []) {
          violations.push({ field: v.field ?? "", description: v.description ?? "" });
        }
      }
    }
    return { message: status.message ?? "", code, retryable, violations, details };
  } catch {
    return undefined;
  }
}

/** Why a reply could not be read, without the codec's wording for requests. */
function reasonOf(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message.replace(/^the request message is /, "");
}

function secureCredentials(tls: GrpcClientTlsOptions = {}): ChannelCredentials {
  if ((tls.cert === undefined) !== (tls.key === undefined)) {
    throw grpcErrors.create("GANTRY_ERR_GRPC_TLS", { reason: "tls.cert and tls.key must be set together" });
  }
  try {
    return credentials.createSsl(pem("tls.ca", tls.ca), pem("tls.key", tls.key), pem("tls.cert", tls.cert));
  } catch (error) {
    if (isGantryError(error)) throw error;
    throw grpcErrors.create("GANTRY_ERR_GRPC_TLS", { reason: (error as Error).message }, { cause: error });
  }
}

function pem(what: string, value: string | Buffer | undefined): Buffer | null {
  if (value === undefined) return null;
  if (Buffer.isBuffer(value)) return value;
  try {
    return readFileSync(value);
  } catch (error) {
    throw grpcErrors.create(
      "GANTRY_ERR_GRPC_TLS",
      { reason: `cannot read ${what} ${value}: ${(error as NodeJS.ErrnoException).code ?? String(error)}` },
      { cause: error },
    );
  }
}

/**
 * Writes every message of `input` (an AsyncIterable of input messages) to a client or bidi streaming
 * call, waiting while the stream is full, then ends it. Stops when the call is given up.
 */
async function sendAll(
  stream: ClientWritableStream<Buffer>,
  method: MethodDescriptor,
  input: unknown,
  signal: AbortSignal,
): Promise<void> {
  if (typeof (input as AsyncIterable<unknown> | undefined)?.[Symbol.asyncIterator] !== "function") {
    throw new TypeError(`${method.path} takes a stream of input messages: give an AsyncIterable`);
  }
  for await (const message of input as AsyncIterable<unknown>) {
    if (signal.aborted) return;
    if (!stream.write(encodeMessage(method.input, message, method.path))) await writable(stream, signal);
  }
  stream.end();
}

function isServiceError(error: unknown): error is ServiceError {
  return error instanceof Error && typeof (error as { code?: unknown }).code === "number" && "metadata" in error;
}
