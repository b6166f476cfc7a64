import type { IncomingHttpHeaders } from "node:http";
import type { HttpConfig } from "./config.js";

type Cors = HttpConfig["cors"];

/** CORS headers for a response to this request's Origin, or undefined when CORS is off or the origin is not allowed. */
export function corsHeaders(cors: Cors, headers: IncomingHttpHeaders): Record<string, string> | undefined {
  const origin = headers.origin;
  if (cors.origins.length === 0 || origin === undefined) return undefined;
  const any = cors.origins.includes("*");
  if (!any && !cors.origins.includes(origin)) return undefined;
  const result: Record<string, string> = {};
  if (any && !cors.credentials) {
    result["access-control-allow-origin"] = "*";
  } else {
    result["access-control-allow-origin"] = origin;
    result.vary = "Origin";
  }
  if (cors.credentials) result["access-control-allow-credentials"] = "true";
  if (cors.exposeHeaders.length > 0) result["access-control-expose-headers"] = cors.exposeHeaders.join(", ");
  return result;
}

/** The answer to a preflight (OPTIONS with Access-Control-Request-Method) for a path allowing these methods. */
export function preflightHeaders(
  cors: Cors,
  headers: IncomingHttpHeaders,
  allowed: readonly string[],
): Record<string, string> {
  const base = corsHeaders(cors, headers);
  const result: Record<string, string> = { allow: allowed.join(", ") };
  if (base === undefined || headers["access-control-request-method"] === undefined) return result;
  Object.assign(result, base);
  result["access-control-allow-methods"] = allowed.join(", ");
  const requested = headers["access-control-request-headers"];
  if (requested !== undefined) result["access-control-allow-headers"] = requested;
  result["access-control-max-age"] = String(cors.maxAge);
  result.vary = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers";
  return result;
}
