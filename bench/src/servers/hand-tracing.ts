/**
 * Server spans made by hand, for the hand-written baselines (raw node:http, express 5, grpc-js): what
 * the OpenTelemetry SDK costs an equivalent server for the spans Gantry makes, so that the telemetry
 * section can tell the framework's share of tracing from the SDK's.
 *
 * Off unless the process is given a variable that makes `gantry start` set up telemetry (the
 * telemetry section's `node --env-file`); off, nothing more is imported and the HTTP and gRPC sections
 * run the baselines as before. On, `startTelemetry` from @gantry/telemetry sets up the same tracer
 * provider, sampler, batch processor and exporter as `gantry start` does, and each call gets one
 * server span the way an instrumented server makes it: the caller's W3C trace context read from the
 * request's headers (or the call's metadata) with `propagation.extract`, the span started under it
 * with its attributes, the handler run in the span's context, and the span ended once the answer is
 * handed to node or grpc-js, with its status. The name, kind and attributes are those Gantry gives
 * the same call (`packages/transport-http/src/span.ts`, `packages/transport-grpc/src/transport.ts`,
 * `packages/core/src/telemetry/tracing.ts`); the telemetry section checks that the spans match.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Metadata } from "@grpc/grpc-js";
import type { Attributes, TextMapGetter } from "@opentelemetry/api";

/** The variables that make `gantry start` set up telemetry (packages/cli/src/telemetry.ts). */
const OTEL_SIGNALS = [
  "OTEL_TRACES_EXPORTER",
  "OTEL_METRICS_EXPORTER",
  "OTEL_EXPORTER_OTLP_ENDPOINT",
  "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
  "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
] as const;

/** Gantry's tracer: the same instrumentation scope in the export. */
const TRACER_NAME = "@gantry/core";

/** An HTTP route as its span names it. */
export interface HttpRoute {
  /** `GET`: the route's method (the span's name is `GET /hello/:name`). */
  readonly method: string;
  /** `/hello/:name`: the route's template, `http.route`. */
  readonly path: string;
  /** The method's full name, `rpc.method`, as Gantry names the same method. */
  readonly rpcMethod: string;
}

/** A gRPC method as its span names it, and where the server listens. */
export interface GrpcMethodSpan {
  /** `bench.v1.Greeter/SayHello`: the span's name and `rpc.method`. */
  readonly path: string;
  readonly address: string;
  readonly port: number;
}

export interface HandTracing {
  /**
   * Serves an HTTP request in its server span: `serve` answers it, and the span ends with the
   * response's status once the response is ended (at once when `serve` ended it).
   */
  http(req: IncomingMessage, res: ServerResponse, route: HttpRoute, serve: () => void): void;
  /**
   * Serves a gRPC call in its server span: `serve` answers it and then calls `end` with the status it
   * answered with (its name, `OK` or `INVALID_ARGUMENT`).
   */
  grpc(metadata: Metadata, peer: string, method: GrpcMethodSpan, serve: (end: (status: string) => void) => void): void;
  /** Exports the spans still queued and stops the SDK. */
  shutdown(): Promise<void>;
}

/** gRPC statuses that make a server span an error (the server failed, not the caller), as in core. */
const SERVER_ERRORS: ReadonlySet<string> = new Set([
  "UNKNOWN",
  "DEADLINE_EXCEEDED",
  "UNIMPLEMENTED",
  "INTERNAL",
  "UNAVAILABLE",
  "DATA_LOSS",
]);

/** Reads a W3C field from grpc-js metadata: its values, or undefined when the caller sent none. */
const metadataGetter: TextMapGetter<Metadata> = {
  keys: (carrier) => Object.keys(carrier.getMap()),
  get: (carrier, key) => {
    const values = carrier.get(key);
    if (values.length === 0) return undefined;
    return values.length === 1 ? String(values[0]) : values.map(String);
  },
};

/**
 * Starts telemetry and returns the span maker when the environment asks for telemetry; undefined
 * (and nothing imported) when it does not.
 */
export async function handTracing(serviceName: string): Promise<HandTracing | undefined> {
  if (!OTEL_SIGNALS.some((name) => (process.env[name] ?? "").trim() !== "")) return undefined;
  const [{ startTelemetry }, api] = await Promise.all([import("@gantry/telemetry"), import("@opentelemetry/api")]);
  const { context, defaultTextMapGetter, propagation, SpanKind, SpanStatusCode, trace } = api;
  const telemetry = await startTelemetry({ serviceName });
  // Asked after the SDK is registered: the SDK's tracer itself, not a proxy in front of it.
  const tracer = trace.getTracer(TRACER_NAME);
  return {
    http(req, res, route, serve) {
      const parent = propagation.extract(context.active(), req.headers, defaultTextMapGetter);
      const span = tracer.startSpan(
        `${route.method} ${route.path}`,
        { kind: SpanKind.SERVER, attributes: httpAttributes(req, route) },
        parent,
      );
      const end = () => {
        const status = res.statusCode;
        span.setAttribute("http.response.status_code", status);
        if (status >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
        span.end();
      };
      context.with(trace.setSpan(parent, span), serve);
      // A body still being read (POST /echo) is answered later.
      if (res.writableEnded) end();
      else res.once("close", end);
    },
    grpc(metadata, peer, method, serve) {
      const parent = propagation.extract(context.active(), metadata, metadataGetter);
      const span = tracer.startSpan(
        method.path,
        { kind: SpanKind.SERVER, attributes: grpcAttributes(peer, method) },
        parent,
      );
      context.with(trace.setSpan(parent, span), serve, undefined, (status: string) => {
        span.setAttribute("rpc.status_code", status);
        if (SERVER_ERRORS.has(status)) span.setStatus({ code: SpanStatusCode.ERROR });
        span.end();
      });
    },
    shutdown: () => telemetry.shutdown(),
  };
}

/** OpenTelemetry's HTTP server attributes, in the order Gantry sets them, and Gantry's `rpc.*` two. */
function httpAttributes(req: IncomingMessage, route: HttpRoute): Attributes {
  // Under express, `url` is relative to the mount point; `originalUrl` is what the caller sent.
  const url = (req as { originalUrl?: string }).originalUrl ?? req.url ?? "/";
  const q = url.indexOf("?");
  const attributes: Attributes = {
    "http.request.method": route.method,
    "http.route": route.path,
    "url.path": q === -1 ? url : url.slice(0, q),
    "url.scheme": "http",
    "network.protocol.version": req.httpVersion,
  };
  const host = req.headers.host;
  if (host !== undefined && host !== "") {
    // `127.0.0.1:8080`, `[::1]:8080`, `example.com`.
    const bracketed = host.startsWith("[");
    const close = bracketed ? host.indexOf("]") : -1;
    const colon = host.indexOf(":", close + 1);
    const end = bracketed ? (close === -1 ? host.length : close) : colon === -1 ? host.length : colon;
    attributes["server.address"] = host.slice(bracketed ? 1 : 0, end);
    const port = colon === -1 ? Number.NaN : Number(host.slice(colon + 1));
    if (Number.isInteger(port) && port > 0 && port < 65536) attributes["server.port"] = port;
  }
  const peer = req.socket.remoteAddress;
  if (peer !== undefined) attributes["network.peer.address"] = peer;
  const agent = req.headers["user-agent"];
  if (agent !== undefined) attributes["user_agent.original"] = agent;
  attributes["rpc.system.name"] = "gantry";
  attributes["rpc.method"] = route.rpcMethod;
  return attributes;
}

/** OpenTelemetry's RPC server attributes, with the peer from grpc-js's (`127.0.0.1:53122`), as Gantry sets them. */
function grpcAttributes(peer: string, method: GrpcMethodSpan): Attributes {
  const attributes: Attributes = { "server.address": method.address, "server.port": method.port };
  const colon = peer.lastIndexOf(":");
  if (colon > 0) {
    attributes["network.peer.address"] = peer.slice(0, colon).replace(/^\[|\]$/g, "");
    const port = Number(peer.slice(colon + 1));
    if (Number.isInteger(port)) attributes["network.peer.port"] = port;
  }
  attributes["rpc.system.name"] = "grpc";
  attributes["rpc.method"] = method.path;
  return attributes;
}
