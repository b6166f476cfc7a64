import type { IncomingMessage } from "node:http";
import type { ServerSpanInfo } from "@gantry/core/transport";
import type { RouteEntry } from "./router.js";

/**
 * An HTTP call's span as OpenTelemetry's HTTP server conventions name it (`POST /hello/:name`) with
 * their attributes; made only when calls are traced.
 */
export function httpSpanInfo(req: IncomingMessage, entry: RouteEntry): ServerSpanInfo {
  const { route } = entry;
  // Express rewrites `url` under a mount point; `originalUrl` is what the caller sent.
  const url = (req as { originalUrl?: string }).originalUrl ?? req.url ?? "/";
  const q = url.indexOf("?");
  const attributes: Record<string, string | number> = {
    "http.request.method": route.method,
    "http.route": route.path,
    "url.path": q === -1 ? url : url.slice(0, q),
    "url.scheme": "http",
    "network.protocol.version": req.httpVersion,
  };
  const host = hostOf(req.headers.host);
  if (host !== undefined) {
    attributes["server.address"] = host.name;
    if (host.port !== undefined) attributes["server.port"] = host.port;
  }
  const peer = req.socket.remoteAddress;
  if (peer !== undefined) attributes["network.peer.address"] = peer;
  const agent = req.headers["user-agent"];
  if (agent !== undefined) attributes["user_agent.original"] = agent;
  const header = (name: string) => {
    const value = req.headers[name];
    return Array.isArray(value) ? value.join(",") : value;
  };
  return { name: `${route.method} ${route.path}`, protocol: "http", attributes, okStatus: route.status, header };
}

/** The Host header's name and port (`[::1]:8080`, `api.example.com`). */
function hostOf(header: string | undefined): { name: string; port: number | undefined } | undefined {
  if (header === undefined || header === "") return undefined;
  const bracketed = header.charCodeAt(0) === 0x5b; // [
  const close = bracketed ? header.indexOf("]") : -1;
  const colon = header.indexOf(":", close + 1);
  const name = bracketed
    ? header.slice(1, close === -1 ? undefined : close)
    : colon === -1
      ? header
      : header.slice(0, colon);
  if (colon === -1) return { name, port: undefined };
  const port = Number(header.slice(colon + 1));
  return { name, port: Number.isInteger(port) && port > 0 && port < 65536 ? port : undefined };
}
