/**
 * Baseline (b): a hand-written express 5 app, written the way the express docs show, doing the same
 * work as the Gantry service. What Gantry's express path is held to.
 */
import type { AddressInfo } from "node:net";
import express, { type ErrorRequestHandler, type Response } from "express";
import { greet, readEcho, report, requestId } from "./baseline.js";

let served = 0;

const app = express();
app.disable("x-powered-by");
app.set("etag", false);

app.get("/hello/:name", (req, res) => {
  served++;
  // express decodes the parameter itself (and answers 400 through onError when it cannot).
  res.set("x-request-id", requestId(req.headers)).json(greet(req.params.name));
});

app.post("/echo", express.json({ limit: "1mb" }), (req, res) => {
  served++;
  const id = requestId(req.headers);
  const message = readEcho(req.body);
  if (typeof message === "string") return sendError(res, 400, id, message);
  res.set("x-request-id", id).json(message);
});

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
  server.close(() => report({ served }));
  server.closeAllConnections();
});
