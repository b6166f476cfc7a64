/**
 * Baseline (b): a hand-written express 5 app, written the way the express docs show, doing the same
 * work as the Gantry service. What Gantry's express path is held to. Given the telemetry section's
 * OpenTelemetry variables, each route's handler runs in a server span made by hand
 * (./hand-tracing.ts); without them, nothing is traced.
 */
import type { AddressInfo } from "node:net";
import express, { type ErrorRequestHandler, type RequestHandler, type Response } from "express";
import { greet, readEcho, report, requestId } from "./baseline.js";
import { type HttpRoute, handTracing } from "./hand-tracing.js";

/** The routes as their spans name them: as the Gantry server's (src/servers/gantry.ts) are named. */
const HELLO: HttpRoute = { method: "GET", path: "/hello/:name", rpcMethod: "bench.v1.BenchService/Hello" };
const ECHO: HttpRoute = { method: "POST", path: "/echo", rpcMethod: "bench.v1.BenchService/Echo" };

const tracing = await handTracing("bench-express");

/** The handler as it is, or, traced, run in its route's span. */
function traced(route: HttpRoute, handler: RequestHandler): RequestHandler {
  if (tracing === undefined) return handler;
  return (req, res, next) => tracing.http(req, res, route, () => handler(req, res, next));
}

let served = 0;

const app = express();
app.disable("x-powered-by");
app.set("etag", false);

app.get(
  "/hello/:name",
  traced(HELLO, (req, res) => {
    served++;
    // express decodes the parameter itself (and answers 400 through onError when it cannot).
    res.set("x-request-id", requestId(req.headers)).json(greet(req.params.name as string));
  }),
);

app.post(
  "/echo",
  express.json({ limit: "1mb" }),
  traced(ECHO, (req, res) => {
    served++;
    const id = requestId(req.headers);
    const message = readEcho(req.body);
    if (typeof message === "string") return sendError(res, 400, id, message);
    res.set("x-request-id", id).json(message);
  }),
);

// A JSON error instead of express's HTML page (and its stderr log) for bad JSON or a body too large.
const onError: ErrorRequestHandler = (error, req, res, _next) => {
  const status = typeof error.status === "number" && error.status < 500 ? error.status : 500;
  sendError(res, status, requestId(req.headers), status === 500 ? "internal error" : String(error.message));
};
app.use(onError);

function sendError(res: Response, status: number, id: string, error: string): void {
  res.status(status).set("x-request-id", id).json({ error });
}

const server = app.listen(0, "127.0.0.1", () => {
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
