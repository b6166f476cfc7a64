import type { ServerResponse } from "node:http";
import type { CallContext, GantryError } from "@gantry/core";

/** Headers a method cannot set through response metadata: the transport owns them. */
const RESERVED = new Set([
  "content-length",
  "content-type",
  "transfer-encoding",
  "connection",
  "x-request-id",
  "keep-alive",
]);

/** Where a response is going, with the headers every response of the request carries. */
export class Reply {
  constructor(
    readonly res: ServerResponse,
    /** A HEAD request: headers only. */
    readonly head: boolean,
    readonly requestId: string,
    readonly cors: Readonly<Record<string, string>> | undefined,
    /** Once the transport drains, the connection closes after this response. */
    readonly transport: { readonly draining: boolean },
  ) {}
}

/** Sends a JSON response with the call's response metadata. */
export function sendJson(reply: Reply, status: number, body: string, call: CallContext | undefined): void {
  const headers = baseHeaders(reply, "application/json; charset=utf-8", body);
  if (call?.hasResponseMetadata) {
    for (const [key, values] of call.responseMetadata.entries()) {
      if (!RESERVED.has(key)) headers[key] = values.length === 1 ? values[0] : values;
    }
  }
  write(reply, status, headers, body);
}

/**
 * Sends an error as application/problem+json (RFC 9457). Members beyond the standard ones: the
 * canonical status, the specific code, whether to retry, the request id and any field violations.
 * INTERNAL-class errors carry no details.
 */
export function sendProblem(reply: Reply, error: GantryError, extraHeaders?: Readonly<Record<string, string>>): void {
  const body = problemJson(error, reply.requestId);
  const headers = baseHeaders(reply, "application/problem+json; charset=utf-8", body);
  if (error.retryable) headers["retry-after"] = "1";
  if (extraHeaders !== undefined) Object.assign(headers, extraHeaders);
  write(reply, error.httpStatus, headers, body);
}

function baseHeaders(reply: Reply, type: string, body: string): Record<string, string | string[]> {
  const headers: Record<string, string | string[]> = {
    "content-type": type,
    "content-length": String(Buffer.byteLength(body)),
    "x-request-id": reply.requestId,
  };
  if (reply.cors !== undefined) Object.assign(headers, reply.cors);
  if (reply.transport.draining) headers.connection = "close";
  return headers;
}

function write(reply: Reply, status: number, headers: Record<string, string | string[]>, body: string): void {
  const { res } = reply;
  if (res.headersSent || res.destroyed) return;
  res.writeHead(status, headers);
  res.end(reply.head ? undefined : body);
}

/** The application/problem+json text of an error. */
export function problemJson(error: GantryError, requestId: string | undefined): string {
  const problem: Record<string, unknown> = {
    type: `urn:gantry:error:${error.code}`,
    title: error.status,
    status: error.httpStatus,
    detail: error.message,
    canonicalStatus: error.status,
    code: error.code,
    retryable: error.retryable,
  };
  if (requestId !== undefined) problem.requestId = requestId;
  if (error.violations.length > 0) problem.violations = error.violations;
  if (error.status !== "INTERNAL" && error.status !== "UNKNOWN" && Object.keys(error.details).length > 0) {
    problem.details = error.details;
  }
  return JSON.stringify(problem);
}

/** Cuts text taken from a request to a length fit for an error message. */
export function clip(text: string): string {
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}
