/**
 * The spans Gantry makes itself, through @opentelemetry/api: a server span for every call a server
 * runs and a client span for every attempt a client makes. Without an OpenTelemetry SDK registered
 * (by @gantry/telemetry, or by the app itself) nothing is made and nothing is read: each call pays one
 * property read.
 */
import {
  type Attributes,
  type Context,
  context,
  isSpanContextValid,
  ProxyTracerProvider,
  propagation,
  type Span,
  SpanKind,
  SpanStatusCode,
  type TextMapGetter,
  type Tracer,
  type TracerProvider,
  trace,
} from "@opentelemetry/api";
import type { CallContext } from "../context/call-context.js";
import type { GantryError } from "../errors/gantry-error.js";
import type { StatusName } from "../errors/status.js";
import type { MethodDescriptor } from "../service/descriptor.js";

const TRACER_NAME = "@gantry/core";

/** What a transport tells of an inbound call, for its span. */
export interface ServerSpanInfo {
  /** The span's name; the method's full name (`hello.v1.HelloService/SayHello`) by default. */
  readonly name?: string;
  /** `http`: an HTTP server span (http.response.status_code); else an RPC one (rpc.status_code). */
  readonly protocol: "http" | "rpc";
  /**
   * Attributes by the OpenTelemetry conventions: `server.address`, `http.route`,
   * `network.peer.address`... A new object for each call: core adds its own attributes to it.
   */
  readonly attributes: Record<string, string | number | boolean>;
  /** The HTTP status of a successful answer; 200 by default. */
  readonly okStatus?: number;
  /**
   * Reads one request header (gRPC metadata entry) by its lower-case name, for the caller's trace
   * context, straight from what the transport received; without it core reads `ctx.metadata`, which
   * a transport may have to build for the purpose.
   */
  readonly header?: (name: string) => string | undefined;
}

/**
 * Statuses that make a server span an error: the server failed, not the caller (OpenTelemetry's RPC
 * and HTTP conventions leave the caller's own mistakes, INVALID_ARGUMENT or NOT_FOUND, unset there).
 */
const SERVER_ERRORS: ReadonlySet<StatusName> = new Set([
  "UNKNOWN",
  "DEADLINE_EXCEEDED",
  "UNIMPLEMENTED",
  "INTERNAL",
  "UNAVAILABLE",
  "DATA_LOSS",
]);

/** What the propagator reads the caller's trace context from. */
interface Carrier {
  readonly call: CallContext;
  readonly header: (name: string) => string | undefined;
}

const carrierGetter: TextMapGetter<Carrier> = {
  // Asked only by propagators that look for prefixed names (Jaeger's baggage); W3C's never do.
  keys: (carrier) => Array.from(carrier.call.metadata.entries(), ([key]) => key),
  get: (carrier, key) => carrier.header(key),
};

let delegate: TracerProvider | undefined;
let tracer: Tracer | undefined;

/**
 * The tracer of the registered SDK, or undefined while there is none. The global provider is a
 * ProxyTracerProvider that hands out no-op tracers until an SDK sets its delegate (a new one after
 * `trace.disable()`); the tracer is looked up again only when the delegate changes.
 */
export function activeTracer(): Tracer | undefined {
  const provider = trace.getTracerProvider();
  const current = provider instanceof ProxyTracerProvider ? provider.getDelegate() : provider;
  if (current !== delegate) {
    delegate = current;
    tracer =
      provider instanceof ProxyTracerProvider
        ? provider.getDelegateTracer(TRACER_NAME)
        : provider.getTracer(TRACER_NAME);
  }
  return tracer;
}

/** The server span of one call; `context` is the one its method runs in. */
export class ServerSpan {
  readonly context: Context;
  readonly #span: Span;
  readonly #info: ServerSpanInfo | undefined;
  #ended = false;

  constructor(span: Span, parent: Context, info: ServerSpanInfo | undefined) {
    this.#span = span;
    this.#info = info;
    this.context = trace.setSpan(parent, span);
  }

  /** Ends the span with the call's outcome; later calls do nothing. */
  end(error: GantryError | undefined): void {
    if (this.#ended) return;
    this.#ended = true;
    const span = this.#span;
    const http = this.#info?.protocol === "http";
    if (error === undefined) {
      if (http) span.setAttribute("http.response.status_code", this.#info?.okStatus ?? 200);
      else span.setAttribute("rpc.status_code", "OK");
    } else {
      if (http) span.setAttribute("http.response.status_code", error.httpStatus);
      else span.setAttribute("rpc.status_code", error.status);
      span.setAttribute("error.type", error.code);
      if (http ? error.httpStatus >= 500 : SERVER_ERRORS.has(error.status)) {
        span.setStatus({ code: SpanStatusCode.ERROR, message: `${error.status}: ${error.message}` });
      }
    }
    span.end();
  }
}

/**
 * Starts the server span of `call`, under the trace context its caller sent (`traceparent`,
 * `tracestate`, `baggage` in its metadata); for a direct call (made in this process), an internal
 * span under the span active where it was made. Undefined when no SDK is registered.
 */
export function startServerSpan(call: CallContext): ServerSpan | undefined {
  const tracer = activeTracer();
  if (tracer === undefined) return undefined;
  // Asked only now: the transport builds it for traced calls alone.
  const info = call.spanInfo();
  const transport = call.transport;
  const direct = transport === "direct";
  const parent = direct ? context.active() : inbound(call, info?.header);
  const name = fullMethodName(call.method);
  const attributes: Attributes = info?.attributes ?? {};
  attributes["rpc.system.name"] = transport === "grpc" ? "grpc" : "gantry";
  attributes["rpc.method"] = name;
  const kind = direct ? SpanKind.INTERNAL : SpanKind.SERVER;
  const span = tracer.startSpan(info?.name ?? name, { kind, attributes }, parent);
  return new ServerSpan(span, parent, info);
}

/**
 * The context a call from another process runs under: the caller's trace context when its metadata
 * carries any of the propagator's fields (`traceparent`, `tracestate`, `baggage` for W3C), else the
 * active one, without asking the propagator to look.
 */
function inbound(call: CallContext, read: ((name: string) => string | undefined) | undefined): Context {
  const active = context.active();
  const header = read ?? ((name: string) => call.metadata.get(name));
  for (const field of propagation.fields()) {
    if (header(field) !== undefined) return propagation.extract(active, { call, header }, carrierGetter);
  }
  return active;
}

/** One attempt of an outbound call, as a client span; `metadata` carries its trace context. */
export interface ClientAttemptSpan {
  readonly span: Span;
  readonly metadata: Readonly<Record<string, string>>;
}

/**
 * Starts the client span of one attempt of an outbound call, a child of the span active in `parent`,
 * the caller's context (the server span of the call being served, or one of the method's own), and
 * puts the trace context into a copy of the attempt's metadata. Undefined when no SDK is registered.
 */
export function startClientSpan(
  method: MethodDescriptor,
  metadata: Readonly<Record<string, string>>,
  attempt: number,
  target: { readonly transport: string; readonly instance: string; readonly url: string },
  parent: Context = context.active(),
): ClientAttemptSpan | undefined {
  const tracer = activeTracer();
  if (tracer === undefined) return undefined;
  const attributes: Attributes = {
    "rpc.system.name": target.transport === "grpc" ? "grpc" : "gantry",
    "rpc.method": fullMethodName(method),
    "gantry.instance.id": target.instance,
    "gantry.attempt": attempt,
  };
  const address = serverAddress(target.url);
  if (address !== undefined) {
    attributes["server.address"] = address.host;
    attributes["server.port"] = address.port;
  }
  const span = tracer.startSpan(fullMethodName(method), { kind: SpanKind.CLIENT, attributes }, parent);
  if (!isSpanContextValid(span.spanContext())) return { span, metadata };
  const carrier: Record<string, string> = { ...metadata };
  propagation.inject(trace.setSpan(parent, span), carrier);
  return { span, metadata: carrier };
}

/** The context active now when an SDK is registered (for spans started later from elsewhere); else undefined. */
export function tracingContext(): Context | undefined {
  return activeTracer() === undefined ? undefined : context.active();
}

/** Ends a client attempt's span: any error of an attempt is an error of the client span. */
export function endClientSpan(span: Span, error: GantryError | undefined): void {
  if (error === undefined) {
    span.setAttribute("rpc.status_code", "OK");
  } else {
    span.setAttribute("rpc.status_code", error.status);
    span.setAttribute("error.type", error.code);
    span.setStatus({ code: SpanStatusCode.ERROR, message: `${error.status}: ${error.message}` });
  }
  span.end();
}

/**
 * trace_id, span_id and trace_flags of the span active now, for log lines; an empty object outside
 * any span. A new object each time: pino merges the line's own fields into it.
 */
export function traceFields(): Record<string, string> {
  const span = trace.getSpan(context.active());
  if (span === undefined) return {};
  const spanContext = span.spanContext();
  if (!isSpanContextValid(spanContext)) return {};
  return {
    trace_id: spanContext.traceId,
    span_id: spanContext.spanId,
    trace_flags: `0${spanContext.traceFlags.toString(16)}`,
  };
}

const fullNames = new WeakMap<MethodDescriptor, string>();

/** `hello.v1.HelloService/SayHello`, made once per method. */
function fullMethodName(method: MethodDescriptor): string {
  let name = fullNames.get(method);
  if (name === undefined) {
    name = `${method.service.fullName}/${method.name}`;
    fullNames.set(method, name);
  }
  return name;
}

/** `grpc://10.0.0.5:50051` → host and port; undefined for what is not such a URL. */
function serverAddress(url: string): { host: string; port: number } | undefined {
  const scheme = url.indexOf("://");
  if (scheme === -1) return undefined;
  const rest = url.slice(scheme + 3);
  const end = rest.indexOf("/");
  const hostPort = end === -1 ? rest : rest.slice(0, end);
  const colon = hostPort.lastIndexOf(":");
  if (colon === -1) return undefined;
  const port = Number(hostPort.slice(colon + 1));
  if (!Number.isInteger(port)) return undefined;
  return { host: hostPort.slice(0, colon).replace(/^\[|\]$/g, ""), port };
}
