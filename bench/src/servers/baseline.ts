import { randomUUID } from "node:crypto";
import type { IncomingHttpHeaders, ServerResponse } from "node:http";

/**
 * What the hand-written baselines (raw node:http, express, grpc-js) share: the request id, the
 * greeting and the name and /echo validation. They do the same work as the Gantry service, so that the
 * comparison measures the framework and not a difference in the job.
 */

/** The largest request body taken, as Gantry's default `http.bodyLimit`. */
export const BODY_LIMIT = 1024 * 1024;

/** Gantry takes a caller's x-request-id only when it looks like one; the baselines check it the same way. */
const REQUEST_ID = /^[\w\-.:]{1,128}$/;

export function requestId(headers: IncomingHttpHeaders): string {
  const header = headers["x-request-id"];
  return typeof header === "string" && REQUEST_ID.test(header) ? header : randomUUID();
}

/** The body of GET /hello/:name, and the reply of the gRPC SayHello. */
export function greet(name: string): { message: string } {
  return { message: `Hello, ${name}.` };
}

/** A path segment, percent-decoded; undefined when it is not valid percent-encoding. */
export function decodeSegment(segment: string): string | undefined {
  if (!segment.includes("%")) return segment;
  try {
    return decodeURIComponent(segment);
  } catch {
    return undefined;
  }
}

export interface Echo {
  name: string;
  count: number;
  tags: string[];
}

/**
 * Checks a parsed /echo body by the rules of the Gantry message: name a string of 1 to 64 characters,
 * count an integer from 0 to 1000, tags at most 10 strings. As in proto3 JSON, a missing (or null)
 * count or tags takes its default and unknown fields are dropped. Returns the message, or what is wrong.
 */
export function readEcho(body: unknown): Echo | string {
  if (typeof body !== "object" || body === null || Array.isArray(body)) return "the body must be a JSON object";
  const { name = "", count = 0, tags = [] } = body as Record<string, unknown>;
  const wrongName = nameProblem(name);
  if (wrongName !== undefined) return wrongName;
  if (typeof count !== "number" || !Number.isInteger(count)) return "count must be an integer";
  if (count < 0 || count > 1000) return "count must be between 0 and 1000";
  if (!Array.isArray(tags)) return "tags must be a list";
  if (tags.length > 10) return "tags must have at most 10 items";
  for (const tag of tags) if (typeof tag !== "string" || !tag.isWellFormed()) return "tags must hold strings";
  return { name: name as string, count, tags };
}

/**
 * What is wrong with a name by the rule of the Gantry field `@Field(n, { minLength: 1, maxLength: 64 })`
 * (a string of 1 to 64 characters); undefined when nothing is. The /echo body and the gRPC SayHello
 * request check their name with it.
 */
export function nameProblem(name: unknown): string | undefined {
  if (typeof name !== "string" || !name.isWellFormed()) return "name must be a string";
  const length = countCharacters(name);
  if (length < 1 || length > 64) return "name must be 1 to 64 characters";
  return undefined;
}

/** Characters as code points, like Gantry's minLength/maxLength; only counted when UTF-16 length leaves it open. */
function countCharacters(text: string): number {
  return text.length === 0 || text.length > 64 ? [...text].length : text.length;
}

/** Every contender answers with exactly these headers (node adds date, connection and keep-alive). */
export function sendJson(res: ServerResponse, status: number, id: string, value: unknown): void {
  const body = JSON.stringify(value);
  res.writeHead(status, {
    "content-type": "application/json; charset=utf-8",
    "content-length": Buffer.byteLength(body),
    "x-request-id": id,
  });
  res.end(body);
}

/** Prints a JSON line for the benchmark driver, which reads the server's stdout. */
export function report(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value)}\n`);
}
