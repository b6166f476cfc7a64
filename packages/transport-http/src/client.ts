import {
  Agent,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type OutgoingHttpHeaders,
  request,
  validateHeaderName,
  validateHeaderValue,
} from "node:http";
import type { Socket } from "node:net";
import {
  coreErrors,
  type FieldViolation,
  formatTimeout,
  GantryError,
  isStatusName,
  readMessage,
  type StatusName,
  statusFromHttp,
  TIMEOUT_HEADER,
  writeMessage,
} from "@gantry/core";
import {
  type Channel,
  type ClientTransport,
  calleeAnswer,
  deadlineError,
  notSendable,
  type UnaryCall,
} from "@gantry/core/client";

export interface HttpClientOptions {
  /** The largest reply body taken, in bytes; 4 MiB by default. A larger one fails the call. */
  maxResponseBytes?: number;
  /**
   * Connections open at once per channel (one endpoint of one instance); 256 by default. HTTP/1.1
   * carries one call per connection, so this is also the most calls in flight to the endpoint; more
   * wait for a free connection.
   */
  maxSockets?: number;
  /**
   * How long an idle connection is kept for the next call, in ms; 30 s by default, and never longer
   * than the server's own `Keep-Alive: timeout` less a second (4 s against a Gantry server's default).
   */
  idleTimeoutMs?: number;
  /**
   * Send the input as it is given (any JSON value) and give back the reply's JSON as it came, without
   * the method's message types: for tools that know only a method's name, such as `gantry call`.
   */
  rawJson?: boolean;
}

const MiB = 1024 * 1024;
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * The client side of the HTTP transport: channels to `http://` endpoints that send unary calls as
 * `POST <url>/<package>.<Service>/<Method>` with a proto3 JSON body, the uniform route every Gantry
 * method is served at. Each channel keeps its own pool of keep-alive connections, opened on its first
 * call and closed by `close()`.
 *
 * The deadline travels as `grpc-timeout`; the call's metadata as request headers. An
 * application/problem+json answer arrives as the GantryError the server threw: status, specific code,
 * message, retryability, field violations and details. A call that could not be delivered at all
 * fails with GANTRY_ERR_CONNECT; a connection lost once the call was sent fails with UNAVAILABLE, as
 * the call may have run.
 *
 * @example
 * const channel = httpClientTransport().channel("http://10.0.0.5:8080");
 * const reply = await sendUnary(channel, { method, deadline: Date.now() + 1000, metadata: {} }, request);
 * channel.close();
 */
export function httpClientTransport(options: HttpClientOptions = {}): ClientTransport {
  const settings: Settings = {
    maxResponseBytes: options.maxResponseBytes ?? 4 * MiB,
    maxSockets: options.maxSockets ?? 256,
    idleTimeoutMs: options.idleTimeoutMs ?? 30_000,
    rawJson: options.rawJson === true,
  };
  return { kind: "http", channel: (url) => new HttpChannel(url, settings) };
}

interface Settings {
  readonly maxResponseBytes: number;
  readonly maxSockets: number;
  readonly idleTimeoutMs: number;
  readonly rawJson: boolean;
}

interface Target {
  readonly hostname: string;
  readonly port: number;
  /** The URL's path, without a trailing slash: methods are called below it. */
  readonly prefix: string;
}

/** Request headers the transport owns (or that only a hop may set): a call's metadata cannot set them. */
const RESERVED = new Set([
  "accept",
  "connection",
  "content-length",
  "content-type",
  "expect",
  "host",
  "keep-alive",
  "proxy-connection",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  TIMEOUT_HEADER,
]);

/** Replies are read for their types only: the callee's rules are its own to apply. */
const TYPES_ONLY = Object.freeze({ rules: false });

const PROBLEM_JSON = /^application\/problem\+json\s*(?:;|$)/i;

class HttpChannel implements Channel {
  readonly #url: string;
  readonly #settings: Settings;
  readonly #target: Target | GantryError;
  #agent: Agent | undefined;
  #closed = false;
  /** Calls sent and not yet settled, those waiting for a connection included. */
  #inFlight = 0;

  constructor(url: string, settings: Settings) {
    this.#url = url;
    this.#settings = settings;
    this.#target = parseTarget(url);
  }

  unary(call: UnaryCall, input: unknown): void {
    const { method, deadline } = call;
    const started = Date.now();
    const refused = notSendable(call, started);
    if (refused !== undefined) {
      call.failed(refused);
      return;
    }
    let body: string;
    let agent: Agent;
    let target: Target;
    try {
      body = JSON.stringify(this.#settings.rawJson ? input : writeMessage(method.input, input, method.path));
      [agent, target] = this.#open();
    } catch (error) {
      call.failed(error);
      return;
    }
    const headers = outboundHeaders(call.metadata);
    headers["content-type"] = "application/json";
    headers.accept = "application/json";
    headers["content-length"] = Buffer.byteLength(body);
    if (deadline !== undefined) headers[TIMEOUT_HEADER] = formatTimeout(deadline - started);
    let settled = false;
    /** Whether the request may have reached the server: its connection was open when it was written. */
    let connected = false;
    let timer: NodeJS.Timeout | undefined;
    const req = request({
      agent,
      hostname: target.hostname,
      port: target.port,
      path: target.prefix + method.path,
      method: "POST",
      headers,
    });
    this.#inFlight++;
    const settle = (error: GantryError | undefined, output?: unknown) => {
      if (settled) return;
      settled = true;
      if (timer !== undefined) clearTimeout(timer);
      // The connection cannot carry another call after an unfinished one: destroy it, not pool it.
      // Past the deadline, not at once: the server has the deadline too and ends the method itself
      // with DEADLINE_EXCEEDED; a connection closed at that same instant would race it (CANCELLED).
      if (error?.status === "DEADLINE_EXCEEDED") {
        const grace = setTimeout(() => req.destroy(), DEADLINE_GRACE_MS);
        grace.unref();
        req.once("close", () => clearTimeout(grace));
      } else if (error !== undefined) req.destroy();
      if (--this.#inFlight === 0 && this.#closed) this.#release();
      if (error === undefined) call.answered(output);
      else call.failed(error);
    };
    call.onStop((reason) => settle(reason));
    // One timer, and only for a deadline that a timer can hold (setTimeout fires at once past ~24.8 days).
    if (deadline !== undefined && deadline - started <= MAX_TIMER_MS) {
      timer = setTimeout(() => settle(deadlineError(started, deadline)), deadline - started);
    }
    req.on("socket", (socket: Socket) => {
      if (!socket.connecting) connected = true;
      else socket.once("connect", () => (connected = true));
    });
    req.on("error", (error: NodeJS.ErrnoException) => {
      settle(connected ? this.#lost(error) : this.#unreachable(error));
    });
    req.on("response", (res: IncomingMessage) => {
      const limit = this.#settings.maxResponseBytes;
      const tooLarge = () => this.#badResponse(method.path, `the reply is larger than ${limit} bytes`);
      if (Number(res.headers["content-length"]) > limit) {
        settle(tooLarge());
        return;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      res.on("data", (chunk: Buffer) => {
        size += chunk.length;
        if (size > limit) settle(tooLarge());
        else chunks.push(chunk);
      });
      res.on("end", () => {
        const text = Buffer.concat(chunks, size).toString("utf8");
        const status = res.statusCode ?? 0;
        if (status < 200 || status > 299) {
          settle(responseError(this.#url, status, res.headers, text));
          return;
        }
        let output: unknown;
        try {
          const json: unknown = JSON.parse(text);
          output = this.#settings.rawJson ? json : readMessage(method.output, json, TYPES_ONLY);
        } catch (error) {
          settle(this.#badResponse(method.path, clip((error as Error).message), error));
          return;
        }
        settle(undefined, output);
      });
      res.on("error", (error: NodeJS.ErrnoException) => settle(this.#lost(error)));
      res.on("close", () => {
        if (!res.complete)
          settle(this.#lost(Object.assign(new Error("the connection closed"), { code: "ECONNRESET" })));
      });
    });
    req.end(body);
  }

  /**
   * Takes no more calls and closes idle connections now; calls in flight finish (an instance leaving
   * the registry is usually draining them), and their connections close as the last one ends.
   */
  close(): void {
    this.#closed = true;
    if (this.#inFlight === 0) {
      this.#release();
      return;
    }
    for (const sockets of Object.values(this.#agent?.freeSockets ?? {})) {
      for (const socket of sockets ?? []) socket.destroy();
    }
  }

  #release(): void {
    this.#agent?.destroy();
    this.#agent = undefined;
  }

  #open(): [Agent, Target] {
    if (this.#closed) {
      throw coreErrors.create("GANTRY_ERR_CONNECT", { target: this.#url, reason: "the channel is closed" });
    }
    const target = this.#target;
    if (target instanceof GantryError) throw target;
    const settings = this.#settings;
    this.#agent ??= new Agent({
      keepAlive: true,
      // The most recently used connection first: under light load the others go idle and close.
      scheduling: "lifo",
      maxSockets: settings.maxSockets,
      maxFreeSockets: settings.maxSockets,
      // Idle connections close after this (or the server's Keep-Alive hint less a second), so that a
      // call is not sent on a connection the server is closing.
      timeout: settings.idleTimeoutMs,
      noDelay: true,
    });
    return [this.#agent, target];
  }

  /** The request never reached the server: the connection could not be made. */
  #unreachable(error: NodeJS.ErrnoException): GantryError {
    return coreErrors.create(
      "GANTRY_ERR_CONNECT",
      { target: this.#url, reason: error.code ?? error.message },
      { cause: error },
    );
  }

  /** The connection failed once the request was sent: the call may have run. */
  #lost(error: NodeJS.ErrnoException): GantryError {
    const reason = error.code === undefined ? error.message : `${error.code} (${error.message})`;
    return new GantryError("UNAVAILABLE", `lost the connection to ${this.#url} during the call: ${reason}`, {
      cause: error,
    });
  }

  #badResponse(method: string, reason: string, cause?: unknown): GantryError {
    return coreErrors.create(
      "GANTRY_ERR_BAD_RESPONSE",
      { target: this.#url, method, reason },
      cause === undefined ? undefined : { cause },
    );
  }
}

function parseTarget(url: string): Target | GantryError {
  const fail = (reason: string) => coreErrors.create("GANTRY_ERR_CONNECT", { target: url, reason });
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return fail("not a valid URL");
  }
  if (parsed.protocol !== "http:") return fail("not an http:// URL");
  if (parsed.hostname === "") return fail("the URL names no host");
  return {
    // node:http wants an IPv6 address without its brackets.
    hostname: parsed.hostname.replace(/^\[(.*)\]$/, "$1"),
    port: parsed.port === "" ? 80 : Number(parsed.port),
    prefix: parsed.pathname.replace(/\/+$/, ""),
  };
}

/** A call's metadata as request headers; keys or values HTTP cannot carry are dropped, as gRPC drops them. */
function outboundHeaders(metadata: Readonly<Record<string, string>>): OutgoingHttpHeaders {
  const headers: OutgoingHttpHeaders = {};
  for (const key of Object.keys(metadata)) {
    const lower = key.toLowerCase();
    if (RESERVED.has(lower)) continue;
    const value = metadata[key];
    try {
      validateHeaderName(lower);
      validateHeaderValue(lower, value);
    } catch {
      continue;
    }
    headers[lower] = value;
  }
  return headers;
}

/**
 * An error response as a GantryError: from its application/problem+json body when it has one (the
 * canonical status, specific code, message, retryability, violations and details, as the server
 * threw them), else from the HTTP status alone.
 */
function responseError(target: string, httpStatus: number, headers: IncomingHttpHeaders, text: string): GantryError {
  const fallback = statusOfHttp(httpStatus);
  const bare = `${target} answered HTTP ${httpStatus}`;
  const problem = PROBLEM_JSON.test(headers["content-type"] ?? "") ? parseObject(text) : undefined;
  const httpOverride = httpStatus >= 400 && httpStatus <= 599 ? httpStatus : undefined;
  if (problem === undefined) return new GantryError(fallback, bare, { httpStatus: httpOverride });
  const status = isStatusName(problem.canonicalStatus) ? problem.canonicalStatus : fallback;
  const message =
    typeof problem.detail === "string" ? problem.detail : typeof problem.title === "string" ? problem.title : bare;
  return calleeAnswer(
    new GantryError(status, message, {
      code: typeof problem.code === "string" && problem.code !== "" ? problem.code : status,
      httpStatus: httpOverride,
      retryable: typeof problem.retryable === "boolean" ? problem.retryable : undefined,
      violations: violationsOf(problem.violations),
      details: isObject(problem.details) ? problem.details : undefined,
    }),
  );
}

/**
 * The canonical status of an error response without a problem body (from a proxy, say): core's table,
 * except that a bare 404 or 405 on a method's route means the endpoint does not serve the method.
 */
function statusOfHttp(httpStatus: number): StatusName {
  if (httpStatus === 404 || httpStatus === 405) return "UNIMPLEMENTED";
  return statusFromHttp(httpStatus);
}

function parseObject(text: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(text);
    return isObject(value) ? value : undefined;
  } catch {
    return undefined;
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function violationsOf(value: unknown): FieldViolation[] | undefined {
  if (!Array.isArray(value)) return undefined;
  const violations: FieldViolation[] = [];
  for (const item of value) {
    if (isObject(item) && typeof item.field === "string" && typeof item.description === "string") {
      violations.push({ field: item.field, description: item.description });
    }
  }
  return violations;
}

function clip(text: string): string {
  return text.length > 200 ? `${text.slice(0, 197)}...` : text;
}

/** How long a call past its deadline keeps its connection, for the server's own answer. */
const DEADLINE_GRACE_MS = 200;
