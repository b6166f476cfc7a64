import { randomUUID } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { type AddressInfo, Server as NetServer } from "node:net";
import type { Duplex } from "node:stream";
import {
  type CallContext,
  type ConfigSchema,
  coreErrors,
  GantryError,
  type HttpMethod,
  Metadata,
  type MetricsSource,
  metricsSource,
  parseTimeout,
  statusFromHttp,
  TIMEOUT_HEADER,
  toGantryError,
  writeMessage,
} from "@gantry/core";
import type { ClientTransport } from "@gantry/core/client";
import { type Endpoint, endpointUrl, type Transport, type TransportHost } from "@gantry/core/transport";
import express, { type ErrorRequestHandler, type Express, type RequestHandler } from "express";
import { type HttpClientOptions, httpClientTransport } from "./client.js";
import { type HttpConfig, type HttpTransportOptions, httpConfigSchema } from "./config.js";
import { corsHeaders, preflightHeaders } from "./cors.js";
import { httpErrors } from "./errors.js";
import { bindInput, readJsonBody } from "./request.js";
import { clip, problemJson, Reply, sendJson, sendProblem } from "./response.js";
import { type PathMatch, type RouteEntry, Router } from "./router.js";
import { httpSpanInfo } from "./span.js";

const REQUEST_ID = /^[\w\-.:]{1,128}$/;

/** How many Gantry requests each path served, for benchmarks and tests. */
export interface ServingStats {
  fast: number;
  express: number;
}

interface Middleware {
  readonly prefix: string;
  readonly handlers: readonly RequestHandler[];
}

/**
 * Serves an app's services over HTTP/JSON on express 5.
 *
 * A request for a Gantry route that no middleware added with `use()` applies to runs on the fast
 * path: Gantry's own router and handler on node:http, without express. Everything else (routes and
 * middleware of your own on `transport.express`, Gantry routes under `use()` middleware) goes through
 * express. Both paths answer the same way: the same router, body handling, headers and errors.
 *
 * @example
 * const http = httpTransport({ port: 8080 });
 * http.use("/admin", basicAuth);                 // runs before Gantry routes under /admin
 * http.express.get("/legacy", (req, res) => res.send("ok")); // a route of your own
 */
export class HttpTransport implements Transport {
  readonly kind = "http";
  readonly config: ConfigSchema<unknown>;
  /** An express app for routes and middleware of your own; it sees requests no Gantry route took. */
  readonly express: Express;
  readonly stats: ServingStats = { fast: 0, express: 0 };
  readonly #schema: ReturnType<typeof httpConfigSchema>;
  readonly #middleware: Middleware[] = [];
  readonly #router = new Router();
  #host: TransportHost | undefined;
  #config: HttpConfig | undefined;
  #root: Express | undefined;
  #server: Server | undefined;
  #closed: Promise<void> | undefined;
  #draining = false;

  readonly #clientOptions: HttpClientOptions | undefined;

  constructor(options: HttpTransportOptions = {}) {
    this.#schema = httpConfigSchema(options);
    this.config = this.#schema as ConfigSchema<unknown>;
    this.express = express();
    this.express.disable("x-powered-by");
    this.#clientOptions = options.client;
  }

  /** The client side, for the app's typed clients: `httpClientTransport(options.client)`. */
  client(): ClientTransport {
    return httpClientTransport(this.#clientOptions);
  }

  /**
   * Adds express middleware that runs before Gantry routes (all of them, or those under `prefix`).
   * The routes it covers are served through express.
   *
   * @example
   * http.use(helmet());
   * http.use("/admin", requireAdmin);
   */
  use(...args: [string, ...RequestHandler[]] | RequestHandler[]): this {
    const prefix = typeof args[0] === "string" ? (args.shift() as string) : "/";
    if (!prefix.startsWith("/")) throw new TypeError(`use(): the prefix must start with /, not ${prefix}`);
    const handlers = args as RequestHandler[];
    if (handlers.length === 0) throw new TypeError("use(): give at least one middleware");
    this.#middleware.push({
      prefix: prefix.length > 1 && prefix.endsWith("/") ? prefix.slice(0, -1) : prefix,
      handlers,
    });
    return this;
  }

  async listen(host: TransportHost): Promise<readonly Endpoint[]> {
    this.#host = host;
    const config = host.config(this.#schema).http;
    this.#config = config;
    if (config.path === "fast" && this.#middleware.length > 0) {
      throw httpErrors.create("GANTRY_ERR_FAST_PATH_MIDDLEWARE", { prefix: this.#middleware[0].prefix });
    }
    for (const service of host.services) {
      for (const method of service.methods)
        for (const route of method.routes) this.#router.add({ route, method, headers: Object.entries(route.headers) });
    }
    this.#root = this.#buildExpress();
    const server = createServer({ keepAliveTimeout: config.keepAliveTimeout }, (req, res) => this.#onRequest(req, res));
    server.on("clientError", (error, socket) => onClientError(error as NodeJS.ErrnoException, socket));
    this.#server = server;
    await new Promise<void>((resolve, reject) => {
      const onError = (error: NodeJS.ErrnoException) => {
        const params = { host: config.host, port: config.port };
        reject(
          error.code === "EADDRINUSE"
            ? httpErrors.create("GANTRY_ERR_PORT_IN_USE", params, { cause: error })
            : httpErrors.create(
                "GANTRY_ERR_LISTEN",
                { ...params, reason: error.code ?? error.message },
                { cause: error },
              ),
        );
      };
      server.once("error", onError);
      server.listen({ port: config.port, host: config.host }, () => {
        server.off("error", onError);
        resolve();
      });
    });
    this.#closed = new Promise((resolve) => server.once("close", resolve));
    const port = (server.address() as AddressInfo).port;
    const advertised = host.advertise(config.host);
    return [{ transport: "http", url: endpointUrl("http", advertised, port), host: advertised, port }];
  }

  /** Stops accepting connections; responses to calls in flight close their connections. */
  drain(): void {
    this.#draining = true;
    // Stop listening, but leave idle keep-alive connections open (http.Server#close would close them):
    // a caller that has just sent a call on one would see a reset and could not know the call never
    // ran. Calls on them now get an answer (SHUTTING_DOWN, which a client may retry elsewhere) with
    // `Connection: close`; close() ends whatever connections remain.
    if (this.#server?.listening) NetServer.prototype.close.call(this.#server);
  }

  async close(): Promise<void> {
    const server = this.#server;
    if (server === undefined) return;
    this.#draining = true;
    if (server.listening) server.close();
    server.closeAllConnections();
    await this.#closed;
  }

  #onRequest(req: IncomingMessage, res: ServerResponse): void {
    const url = req.url ?? "/";
    const q = url.indexOf("?");
    const path = q === -1 ? url : url.slice(0, q);
    if (path === "/healthz" || path === "/readyz") {
      this.#health(req, res, path);
      return;
    }
    if (path === "/metrics") {
      const metrics = metricsSource();
      if (metrics !== undefined) {
        this.#metrics(req, res, metrics);
        return;
      }
    }
    const match = this.#router.find(path);
    const entry = match === undefined ? undefined : entryFor(match, req.method);
    if (entry === undefined || this.#needsExpress(path)) {
      (this.#root as Express)(req, res);
      return;
    }
    this.stats.fast++;
    this.#serve(req, res, entry, (match as PathMatch).params, q === -1 ? undefined : url.slice(q + 1));
  }

  #needsExpress(path: string): boolean {
    const mode = (this.#config as HttpConfig).path;
    if (mode !== "auto") return mode === "express";
    if (this.#middleware.length === 0) return false;
    const lower = path.toLowerCase();
    return this.#middleware.some(({ prefix }) => {
      const p = prefix.toLowerCase();
      return p === "/" || lower === p || lower.startsWith(`${p}/`);
    });
  }

  #buildExpress(): Express {
    const root = express();
    root.disable("x-powered-by");
    root.set("etag", false);
    for (const { prefix, handlers } of this.#middleware) root.use(prefix, ...handlers);
    const dispatch: RequestHandler = (req, res, next) => {
      const url = req.url;
      const q = url.indexOf("?");
      const path = q === -1 ? url : url.slice(0, q);
      const match = this.#router.find(path);
      const entry = match === undefined ? undefined : entryFor(match, req.method);
      if (entry === undefined) return next();
      this.stats.express++;
      this.#serve(req, res, entry, (match as PathMatch).params, q === -1 ? undefined : url.slice(q + 1));
    };
    const fallback: RequestHandler = (req, res) => {
      const path = req.path;
      const match = this.#router.find(path);
      const reply = this.#reply(req, res);
      if (match === undefined) {
        sendProblem(reply, httpErrors.create("GANTRY_ERR_ROUTE_NOT_FOUND", { method: req.method, path: clip(path) }));
        return;
      }
      const allowed = allowedMethods(match);
      if (req.method === "OPTIONS") {
        res.writeHead(204, {
          ...preflightHeaders((this.#config as HttpConfig).cors, req.headers, allowed),
          "content-length": "0",
        });
        res.end();
        return;
      }
      sendProblem(
        reply,
        httpErrors.create("GANTRY_ERR_METHOD_NOT_ALLOWED", {
          method: req.method,
          path: clip(path),
          allowed: allowed.join(", "),
        }),
        { allow: allowed.join(", ") },
      );
    };
    const onError: ErrorRequestHandler = (error, req, res, _next) => {
      sendProblem(this.#reply(req, res), fromMiddleware(error, this.#host as TransportHost));
    };
    root.use(dispatch, this.express, fallback, onError);
    return root;
  }

  /** True from the start of shutdown: every response then closes its connection. */
  get draining(): boolean {
    return this.#draining;
  }

  #reply(req: IncomingMessage, res: ServerResponse): Reply {
    const header = req.headers["x-request-id"];
    const requestId = typeof header === "string" && REQUEST_ID.test(header) ? header : randomUUID();
    return new Reply(
      res,
      req.method === "HEAD",
      requestId,
      corsHeaders((this.#config as HttpConfig).cors, req.headers),
      this,
    );
  }

  /**
   * Serves one Gantry route: decode, run the call, encode. Written with explicit continuations rather
   * than as an async function: a request without a body then costs no extra turns of the event loop.
   */
  #serve(
    req: IncomingMessage,
    res: ServerResponse,
    entry: RouteEntry,
    params: readonly string[],
    query: string | undefined,
  ): void {
    const host = this.#host as TransportHost;
    const config = this.#config as HttpConfig;
    const reply = this.#reply(req, res);
    const { method, route } = entry;
    if (config.accessLog) logAccess(host, req, res, reply.requestId);
    let call: CallContext | undefined;
    try {
      if (method.stream !== "unary") throw httpErrors.create("GANTRY_ERR_STREAMING_OVER_HTTP", { method: method.path });
      const timeout = req.headers[TIMEOUT_HEADER];
      let deadline: number | undefined;
      if (timeout !== undefined) {
        const ms = parseTimeout(timeout as string);
        if (ms === undefined) throw httpErrors.create("GANTRY_ERR_BAD_TIMEOUT", { value: clip(String(timeout)) });
        deadline = Date.now() + ms;
      }
      const running = host.createCall({
        method,
        transport: "http",
        metadata: new Metadata(req.headers),
        deadline,
        requestId: reply.requestId,
        peer: () => req.socket.remoteAddress,
        watch: (watched) => watchCaller(res, watched),
        span: () => httpSpanInfo(req, entry),
      });
      call = running;
      if (route.body === undefined) {
        this.#invoke(reply, entry, running, bindInput(entry, params, query, req.headers, undefined));
      } else {
        readJsonBody(req, config.bodyLimit, (error, body) => {
          if (error !== undefined) {
            fail(reply, running, error);
            return;
          }
          try {
            this.#invoke(reply, entry, running, bindInput(entry, params, query, req.headers, body));
          } catch (bindError) {
            fail(reply, running, bindError);
          }
        });
      }
    } catch (error) {
      fail(reply, call, error);
    }
  }

  #invoke(reply: Reply, entry: RouteEntry, call: CallContext, input: unknown): void {
    const { method, route } = entry;
    (this.#host as TransportHost).dispatch(method, input, call, (error, output) => {
      if (error !== undefined) {
        fail(reply, call, error);
        return;
      }
      try {
        sendJson(reply, route.status, JSON.stringify(writeMessage(method.output, output, method.path)), call);
      } catch (writeError) {
        fail(reply, call, writeError);
      }
    });
  }

  #health(req: IncomingMessage, res: ServerResponse, path: string): void {
    const reply = this.#reply(req, res);
    if (req.method !== "GET" && req.method !== "HEAD") {
      sendProblem(
        reply,
        httpErrors.create("GANTRY_ERR_METHOD_NOT_ALLOWED", { method: String(req.method), path, allowed: "GET, HEAD" }),
        {
          allow: "GET, HEAD",
        },
      );
      return;
    }
    const state = (this.#host as TransportHost).state;
    const ok = path === "/healthz" ? state !== "closed" : state === "ready";
    const body = JSON.stringify({ status: ok ? "ok" : state });
    res.writeHead(ok ? 200 : 503, {
      "content-type": "application/json; charset=utf-8",
      "content-length": String(body.length),
      "cache-control": "no-store",
      ...(this.#draining ? { connection: "close" } : {}),
    });
    res.end(reply.head ? undefined : body);
  }

  /** `GET /metrics`: the process's metrics as the telemetry package renders them (Prometheus text). */
  #metrics(req: IncomingMessage, res: ServerResponse, metrics: MetricsSource): void {
    const reply = this.#reply(req, res);
    if (req.method !== "GET" && req.method !== "HEAD") {
      const error = httpErrors.create("GANTRY_ERR_METHOD_NOT_ALLOWED", {
        method: String(req.method),
        path: "/metrics",
        allowed: "GET, HEAD",
      });
      sendProblem(reply, error, { allow: "GET, HEAD" });
      return;
    }
    metrics.collect().then(
      (text) => {
        if (res.headersSent || res.destroyed) return;
        res.writeHead(200, {
          "content-type": metrics.contentType,
          "content-length": String(Buffer.byteLength(text)),
          "cache-control": "no-store",
        });
        res.end(reply.head ? undefined : text);
      },
      (error: unknown) => {
        (this.#host as TransportHost).log.error({ err: error }, "/metrics: the metrics could not be collected");
        sendProblem(reply, coreErrors.create("GANTRY_ERR_INTERNAL"));
      },
    );
  }
}

/** Answers a request that failed, as problem+json; a method's malformed output is logged with its field. */
function fail(reply: Reply, call: CallContext | undefined, error: unknown): void {
  const fault = toGantryError(error);
  if (fault.code === "GANTRY_ERR_BAD_OUTPUT") call?.log.error({ err: fault, details: fault.details }, "invalid output");
  sendProblem(reply, fault, fault.code === "GANTRY_ERR_BODY_TOO_LARGE" ? { connection: "close" } : undefined);
}

/** Aborts a call when its caller goes away before the response is sent. */
function watchCaller(res: ServerResponse, call: CallContext): void {
  if (res.writableFinished) return;
  if (res.destroyed) {
    call.abort(coreErrors.create("GANTRY_ERR_CANCELLED"));
    return;
  }
  res.once("close", () => {
    if (!res.writableFinished) call.abort(coreErrors.create("GANTRY_ERR_CANCELLED"));
  });
}

/** The route for a request's method; HEAD is served by the GET route. */
function entryFor(match: PathMatch, method: string | undefined): RouteEntry | undefined {
  const entry = match.entries.get(method as HttpMethod);
  if (entry !== undefined || method !== "HEAD") return entry;
  return match.entries.get("GET");
}

function allowedMethods(match: PathMatch): string[] {
  const methods: string[] = [...match.entries.keys()];
  if (methods.includes("GET")) methods.push("HEAD");
  methods.push("OPTIONS");
  return methods;
}

/** An error from express middleware: its HTTP status becomes the canonical one; its message only if it is meant to be shown. */
function fromMiddleware(error: unknown, host: TransportHost): GantryError {
  if (error instanceof GantryError) return error;
  const status =
    (error as { status?: unknown; statusCode?: unknown })?.status ?? (error as { statusCode?: unknown })?.statusCode;
  if (typeof status === "number" && status >= 400 && status < 500) {
    const expose = (error as { expose?: unknown }).expose === true;
    const canonical = statusFromHttp(status);
    return new GantryError(canonical, expose ? String((error as Error).message) : canonical, { httpStatus: status });
  }
  host.log.error({ err: error }, "express middleware failed");
  return toGantryError(error);
}

function onClientError(error: NodeJS.ErrnoException, socket: Duplex): void {
  if (error.code === "ECONNRESET" || !socket.writable) {
    socket.destroy();
    return;
  }
  const fault =
    error.code === "HPE_HEADER_OVERFLOW"
      ? httpErrors.create("GANTRY_ERR_HEADERS_TOO_LARGE")
      : httpErrors.create("GANTRY_ERR_BAD_REQUEST", { reason: error.code ?? "unreadable" });
  const body = problemJson(fault, undefined);
  socket.end(
    `HTTP/1.1 ${fault.httpStatus} ${fault.httpStatus === 431 ? "Request Header Fields Too Large" : "Bad Request"}\r\n` +
      `content-type: application/problem+json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
  );
}

function logAccess(host: TransportHost, req: IncomingMessage, res: ServerResponse, requestId: string): void {
  const started = performance.now();
  res.once("finish", () => {
    host.log.info(
      {
        method: req.method,
        path: req.url,
        status: res.statusCode,
        ms: Math.round((performance.now() - started) * 10) / 10,
        requestId,
      },
      "request",
    );
  });
}
