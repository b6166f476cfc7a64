/**
 * Baseline (a): raw node:http with hand-written routing, body reading and validation. The ceiling
 * Gantry's fast path is held to. Given the telemetry section's OpenTelemetry variables, it traces
 * its two routes with server spans made by hand (./hand-tracing.ts); without them, it does not.
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { BODY_LIMIT, decodeSegment, greet, readEcho, report, requestId, sendJson } from "./baseline.js";
import { type HttpRoute, handTracing } from "./hand-tracing.js";

const JSON_TYPE = /^application\/(?:[\w.+-]+\+)?json\s*(?:;|$)/i;

/** The routes as their spans name them: as the Gantry server's (src/servers/gantry.ts) are named. */
const HELLO: HttpRoute = { method: "GET", path: "/hello/:name", rpcMethod: "bench.v1.BenchService/Hello" };
const ECHO: HttpRoute = { method: "POST", path: "/echo", rpcMethod: "bench.v1.BenchService/Echo" };

const tracing = await handTracing("bench-raw-node");

let served = 0;

const server = createServer((req, res) => {
  served++;
  const id = requestId(req.headers);
  const url = req.url ?? "/";
  const q = url.indexOf("?");
  const path = q === -1 ? url : url.slice(0, q);
  if (path.length > 7 && path.startsWith("/hello/") && path.indexOf("/", 7) === -1) {
    if (req.method !== "GET" && req.method !== "HEAD") sendJson(res, 405, id, { error: "method not allowed" });
    else if (tracing === undefined) hello(res, id, path.slice(7));
    else tracing.http(req, res, HELLO, () => hello(res, id, path.slice(7)));
  } else if (path === "/echo") {
    if (req.method !== "POST") sendJson(res, 405, id, { error: "method not allowed" });
    else if (tracing === undefined) echo(req, res, id);
    else tracing.http(req, res, ECHO, () => echo(req, res, id));
  } else {
    sendJson(res, 404, id, { error: "not found" });
  }
});

function hello(res: ServerResponse, id: string, segment: string): void {
  const name = decodeSegment(segment);
  if (name === undefined) sendJson(res, 400, id, { error: "bad path" });
  else sendJson(res, 200, id, greet(name));
}

function echo(req: IncomingMessage, res: ServerResponse, id: string): void {
  const type = req.headers["content-type"];
  if (type === undefined || !JSON_TYPE.test(type)) {
    sendJson(res, 415, id, { error: "send application/json" });
    return;
  }
  if (Number(req.headers["content-length"]) > BODY_LIMIT) {
    sendJson(res, 413, id, { error: "body too large" });
    return;
  }
  const chunks: Buffer[] = [];
  let size = 0;
  const onData = (chunk: Buffer) => {
    size += chunk.length;
    if (size > BODY_LIMIT) {
      // Answer now and close: the rest of the body is not worth reading.
      req.off("data", onData);
      req.off("end", onEnd);
      res.setHeader("connection", "close");
      sendJson(res, 413, id, { error: "body too large" });
      req.destroy();
      return;
    }
    chunks.push(chunk);
  };
  const onEnd = () => {
    let body: unknown;
    try {
      body = JSON.parse(Buffer.concat(chunks, size).toString("utf8"));
    } catch {
      sendJson(res, 400, id, { error: "malformed JSON" });
      return;
    }
    const message = readEcho(body);
    if (typeof message === "string") sendJson(res, 400, id, { error: message });
    else sendJson(res, 200, id, message);
  };
  req.on("data", onData);
  req.on("end", onEnd);
}

server.listen({ port: 0, host: "127.0.0.1" }, () => {
  report({ port: (server.address() as AddressInfo).port });
});

process.once("SIGTERM", () => {
  // Traced, the spans still queued are exported before the stats are printed.
  server.close(async () => {
    await tracing?.shutdown();
    report({ served });
  });
  server.closeAllConnections();
});
