import { isUtf8 } from "node:buffer";
import type { IncomingMessage } from "node:http";
import type { MessageDescriptor } from "@gantry/core";
import { httpErrors } from "./errors.js";
import { clip } from "./response.js";
import type { RouteEntry } from "./router.js";

const JSON_TYPE = /^application\/(?:[\w.+-]+\+)?json\s*(?:;|$)/i;
const CHARSET = /;\s*charset\s*=\s*"?([\w-]+)"?/i;

/**
 * Reads a JSON request body within the limit, then calls `done` once, with the error or the body:
 * checks the content type and encoding, the size (before reading, from Content-Length, and while
 * reading), UTF-8, JSON syntax and prototype-poisoning keys. An empty body is an empty message.
 * A callback rather than a promise: this runs for every request with a body.
 */
export function readJsonBody(
  req: IncomingMessage,
  limit: number,
  done: (error: unknown, body?: unknown) => void,
): void {
  if (req.readableEnded) {
    // Express middleware (express.json, say) read the body already and left what it parsed in req.body.
    const body = (req as IncomingMessage & { body?: unknown }).body ?? {};
    try {
      checkPoisoning(body);
    } catch (error) {
      done(error);
      return;
    }
    done(undefined, body);
    return;
  }
  const encoding = req.headers["content-encoding"];
  if (encoding !== undefined && encoding.toLowerCase() !== "identity") {
    done(httpErrors.create("GANTRY_ERR_UNSUPPORTED_ENCODING", { encoding: clip(encoding) }));
    return;
  }
  const length = req.headers["content-length"];
  if (length !== undefined && Number(length) > limit) {
    done(httpErrors.create("GANTRY_ERR_BODY_TOO_LARGE", { limit }));
    return;
  }
  if (length === "0" || (length === undefined && req.headers["transfer-encoding"] === undefined)) {
    done(undefined, {});
    return;
  }
  const type = req.headers["content-type"];
  if (type === undefined || !isJsonType(type)) {
    done(httpErrors.create("GANTRY_ERR_UNSUPPORTED_MEDIA_TYPE", { type: clip(type ?? "no content type") }));
    return;
  }
  const chunks: Buffer[] = [];
  let size = 0;
  let finished = false;
  const finish = (error: unknown, body?: unknown) => {
    if (finished) return;
    finished = true;
    done(error, body);
  };
  const onData = (chunk: Buffer) => {
    size += chunk.length;
    if (size <= limit) {
      chunks.push(chunk);
    } else if (!finished) {
      req.off("data", onData);
      finish(httpErrors.create("GANTRY_ERR_BODY_TOO_LARGE", { limit }));
    }
  };
  req.on("data", onData);
  req.on("end", () => {
    let body: unknown;
    try {
      body = parseJson(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size));
    } catch (error) {
      finish(error);
      return;
    }
    finish(undefined, body);
  });
  req.on("error", finish);
}

/** The last content type seen and whether it is JSON: clients send the same header on every request. */
let lastType = "";
let lastTypeIsJson = false;

function isJsonType(type: string): boolean {
  if (type !== lastType) {
    lastTypeIsJson = JSON_TYPE.test(type) && isUtf8Charset(type);
    lastType = type;
  }
  return lastTypeIsJson;
}

function isUtf8Charset(type: string): boolean {
  const charset = CHARSET.exec(type)?.[1]?.toLowerCase();
  return charset === undefined || charset === "utf-8" || charset === "utf8";
}

/** Parses a JSON body, refusing invalid UTF-8 and `__proto__` / `constructor.prototype` keys. */
export function parseJson(buffer: Buffer): unknown {
  if (buffer.length === 0) return {};
  const text = buffer.toString("utf8");
  // Decoding turns invalid UTF-8 into U+FFFD; only a body that shows one needs the exact check.
  if (text.includes("\uFFFD") && !isUtf8(buffer)) throw httpErrors.create("GANTRY_ERR_BODY_NOT_UTF8");
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw httpErrors.create("GANTRY_ERR_MALFORMED_JSON", { reason: clip((error as Error).message) });
  }
  // A key can be spelled with escapes ("\u005f_proto__"), so any escape sends the body through the full check.
  if (text.includes("__proto__") || text.includes("constructor") || text.includes("\\u")) checkPoisoning(value);
  return value;
}

function checkPoisoning(root: unknown): void {
  const stack = [root];
  while (stack.length > 0) {
    const node = stack.pop();
    if (typeof node !== "object" || node === null) continue;
    if (Object.hasOwn(node, "__proto__")) throw httpErrors.create("GANTRY_ERR_PROTO_POISONING", { key: "__proto__" });
    const ctor = (node as Record<string, unknown>).constructor;
    if (
      Object.hasOwn(node, "constructor") &&
      typeof ctor === "object" &&
      ctor !== null &&
      Object.hasOwn(ctor, "prototype")
    ) {
      throw httpErrors.create("GANTRY_ERR_PROTO_POISONING", { key: "constructor.prototype" });
    }
    for (const value of Object.values(node)) if (typeof value === "object" && value !== null) stack.push(value);
  }
}

/**
 * The input of a call from the parts of a request, as google.api.http binds them: the body (whole
 * message or one field), then query parameters for the fields the body does not carry (dotted names
 * reach into nested messages; repeated fields take every value), then headers, then path values.
 * Values stay strings here; the message reader converts and checks them.
 */
export function bindInput(
  entry: RouteEntry,
  params: readonly string[],
  query: string | undefined,
  headers: IncomingMessage["headers"],
  body: unknown,
): unknown {
  const { route, method } = entry;
  let input: Record<string, unknown>;
  if (route.body === "*") {
    if (typeof body !== "object" || body === null || Array.isArray(body)) return body;
    if (route.params.length === 0 && entry.headers.length === 0) return body;
    input = { ...(body as Record<string, unknown>) };
  } else {
    input = {};
    if (route.body !== undefined) input[route.body] = body;
    if (query !== undefined && query !== "") bindQuery(input, method.input, query);
  }
  for (const [field, header] of entry.headers) {
    const value = headers[header];
    if (value !== undefined) input[field] = value;
  }
  for (let i = 0; i < route.params.length; i++) input[route.params[i]] = decodeParam(params[i]);
  return input;
}

function decodeParam(value: string): string {
  if (!value.includes("%")) return value;
  try {
    return decodeURIComponent(value);
  } catch {
    throw httpErrors.create("GANTRY_ERR_BAD_PATH");
  }
}

function bindQuery(input: Record<string, unknown>, descriptor: MessageDescriptor, query: string): void {
  for (const [name, value] of new URLSearchParams(query)) {
    let target = input;
    let message: MessageDescriptor | undefined = descriptor;
    const parts = name.split(".");
    for (let i = 0; i < parts.length && message !== undefined; i++) {
      const field = message.fieldByName.get(parts[i]);
      if (field === undefined || field.cardinality === "map") break;
      if (i < parts.length - 1) {
        if (field.value.kind !== "message" || field.cardinality === "repeated") break;
        const existing = target[field.key];
        const nested = typeof existing === "object" && existing !== null ? (existing as Record<string, unknown>) : {};
        target[field.key] = nested;
        target = nested;
        message = field.value.message;
      } else if (field.value.kind !== "message") {
        if (field.cardinality === "repeated") {
          const list = Array.isArray(target[field.key]) ? (target[field.key] as unknown[]) : [];
          list.push(value);
          target[field.key] = list;
        } else {
          target[field.key] = value;
        }
      }
    }
  }
}
