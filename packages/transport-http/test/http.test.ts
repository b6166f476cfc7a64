import { request as httpRequest } from "node:http";
import { connect } from "node:net";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { aborts, json, type Served, serve } from "./fixtures.js";

/**
 * The HTTP transport's behaviour, run twice: forced onto the fast path and onto the express path.
 * The two must answer every request the same way.
 */
describe.each(["fast", "express"] as const)("HTTP transport on the %s path", (path) => {
  let served: Served;

  beforeEach(async () => {
    served = await serve({ path, cors: { origins: ["https://app.example"] } });
  });

  afterEach(async () => {
    await served.close();
  });

  const url = (rest: string) => served.url + rest;
  const post = (rest: string, body: string, headers: Record<string, string> = {}) =>
    fetch(url(rest), { method: "POST", body, headers: { "content-type": "application/json", ...headers } });

  test("binds path, query and header values into the input message", async () => {
    const response = await fetch(
      url(
        "/items/a%2Fb?count=9007199254740993&tags=x&tags=y&color=RED&address.city=Oslo&address.zip=150&percent=5&unknown=1",
      ),
      { headers: { "x-tenant": "acme" } },
    );
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toBe("application/json; charset=utf-8");
    expect(response.headers.get("x-request-id")).toMatch(/^[0-9a-f-]{36}$/);
    expect(response.headers.get("x-item")).toBe("a/b");
    expect(response.headers.get("x-powered-by")).toBeNull();
    expect(response.headers.get("etag")).toBeNull();
    expect(await json(response)).toEqual({
      id: "a/b",
      count: "9007199254740993",
      tags: ["x", "y"],
      color: "RED",
      address: { city: "Oslo", zip: 150 },
      tenant: "acme",
      scores: {},
      percent: 5,
    });
    expect(served.http.stats[path]).toBe(1);
    expect(served.http.stats[path === "fast" ? "express" : "fast"]).toBe(0);
  });

  test("answers HEAD for a GET route with the headers and no body", async () => {
    const response = await fetch(url("/items/abc"), { method: "HEAD" });
    expect(response.status).toBe(200);
    expect(Number(response.headers.get("content-length"))).toBeGreaterThan(0);
    expect(await response.text()).toBe("");
  });

  test("serves every method at its uniform route with a JSON body, and a declared POST route with its status", async () => {
    const body = JSON.stringify({ id: "u1", count: 3, scores: { a: 1 }, color: 2 });
    const uniform = await post("/test.v1.ItemService/CreateItem", body);
    expect(uniform.status).toBe(200);
    expect(await json(uniform)).toMatchObject({ id: "u1", count: "3", scores: { a: 1 }, color: "GREEN" });
    const declared = await post("/items", body);
    expect(declared.status).toBe(201);
  });

  test("binds the body into one field when the route says so", async () => {
    const response = await fetch(url("/items/i9/address?tags=q"), {
      method: "PUT",
      body: JSON.stringify({ city: "Rome", zip: 1 }),
      headers: { "content-type": "application/json" },
    });
    expect(response.status).toBe(200);
    expect(await json(response)).toEqual({ id: "i9", address: { city: "Rome", zip: 1 }, tags: ["q"] });
  });

  test("reports every invalid field as INVALID_ARGUMENT in problem+json", async () => {
    const response = await post("/items", JSON.stringify({ id: "", count: "x", percent: 101, address: { zip: 1.5 } }));
    expect(response.status).toBe(400);
    expect(response.headers.get("content-type")).toBe("application/problem+json; charset=utf-8");
    const problem = await json(response);
    expect(problem).toMatchObject({
      type: "urn:gantry:error:GANTRY_ERR_VALIDATION",
      title: "INVALID_ARGUMENT",
      status: 400,
      canonicalStatus: "INVALID_ARGUMENT",
      code: "GANTRY_ERR_VALIDATION",
      retryable: false,
      requestId: response.headers.get("x-request-id"),
    });
    expect((problem.violations as { field: string }[]).map((v) => v.field).sort()).toEqual(
      ["address.zip", "count", "id", "percent"].sort(),
    );
  });

  test.each([
    ["malformed JSON", "{", 400, "GANTRY_ERR_MALFORMED_JSON"],
    ["a JSON array where a message goes", "[1]", 400, "GANTRY_ERR_VALIDATION"],
    ["a __proto__ key", '{"id":"a","__proto__":{"admin":true}}', 400, "GANTRY_ERR_PROTO_POISONING"],
    ["a nested __proto__ key", '{"address":{"__proto__":{"x":1}}}', 400, "GANTRY_ERR_PROTO_POISONING"],
    ["a constructor.prototype key", '{"constructor":{"prototype":{"admin":true}}}', 400, "GANTRY_ERR_PROTO_POISONING"],
    [
      "a __proto__ key spelled with escapes",
      '{"id":"a","\\u005f_proto__":{"admin":true}}',
      400,
      "GANTRY_ERR_PROTO_POISONING",
    ],
    [
      "a constructor key spelled with escapes",
      '{"\\u0063onstructor":{"prototype":{"admin":true}}}',
      400,
      "GANTRY_ERR_PROTO_POISONING",
    ],
  ])("refuses %s", async (_name, body, status, code) => {
    const response = await post("/items", body);
    expect(response.status).toBe(status);
    expect(await json(response)).toMatchObject({ code, canonicalStatus: "INVALID_ARGUMENT" });
    expect(({} as Record<string, unknown>).admin).toBeUndefined();
  });

  test("takes constructor and toString as plain map keys", async () => {
    const response = await post("/items", JSON.stringify({ id: "a", scores: { constructor: 1, toString: 2 } }));
    expect(response.status).toBe(201);
    expect((await json(response)).scores).toEqual({ constructor: 1, toString: 2 });
    expect(Object.hasOwn(Object.prototype, "toString")).toBe(true);
  });

  test("refuses a body that is not UTF-8", async () => {
    const response = await fetch(url("/items"), {
      method: "POST",
      body: Buffer.from([0x7b, 0x22, 0x69, 0x64, 0x22, 0x3a, 0x22, 0xff, 0x22, 0x7d]),
      headers: { "content-type": "application/json" },
    });
    expect(response.status).toBe(400);
    expect(await json(response)).toMatchObject({ code: "GANTRY_ERR_BODY_NOT_UTF8" });
  });

  test.each([
    ["text/plain", {}, "GANTRY_ERR_UNSUPPORTED_MEDIA_TYPE"],
    ["application/json; charset=latin1", {}, "GANTRY_ERR_UNSUPPORTED_MEDIA_TYPE"],
    ["application/json", { "content-encoding": "gzip" }, "GANTRY_ERR_UNSUPPORTED_ENCODING"],
  ])("answers 415 for content type %s %o", async (type, headers, code) => {
    const response = await fetch(url("/items"), {
      method: "POST",
      body: "{}",
      headers: { "content-type": type, ...headers },
    });
    expect(response.status).toBe(415);
    expect(await json(response)).toMatchObject({ code, canonicalStatus: "INVALID_ARGUMENT" });
  });

  test("takes an empty POST body as an empty message, without a content type", async () => {
    const response = await fetch(url("/test.v1.ItemService/Sleep"), { method: "POST" });
    expect(response.status).toBe(200);
    expect(await json(response)).toEqual({ aborted: false });
  });

  test("answers 413 over the body limit, by Content-Length and while reading a chunked body, and closes the connection", async () => {
    const big = JSON.stringify({ id: "x".repeat(2 * 1024 * 1024) });
    const declared = await post("/items", big);
    expect(declared.status).toBe(413);
    expect(declared.headers.get("connection")).toBe("close");
    expect(await json(declared)).toMatchObject({
      code: "GANTRY_ERR_BODY_TOO_LARGE",
      canonicalStatus: "RESOURCE_EXHAUSTED",
    });

    const chunked = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = httpRequest(
        url("/items"),
        { method: "POST", headers: { "content-type": "application/json" } },
        (res) => {
          let body = "";
          res.on("data", (chunk: Buffer) => {
            body += chunk.toString();
          });
          res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
        },
      );
      req.on("error", reject);
      for (let i = 0; i < 40; i++) req.write("x".repeat(64 * 1024));
      req.end();
    });
    expect(chunked.status).toBe(413);
    expect(JSON.parse(chunked.body)).toMatchObject({ code: "GANTRY_ERR_BODY_TOO_LARGE" });
  });

  test("answers 404 for an unknown route and 405 with Allow for a wrong method", async () => {
    const missing = await fetch(url("/nowhere"));
    expect(missing.status).toBe(404);
    expect(await json(missing)).toMatchObject({ code: "GANTRY_ERR_ROUTE_NOT_FOUND", canonicalStatus: "UNIMPLEMENTED" });
    const unknownMethod = await post("/test.v1.ItemService/Nope", "{}");
    expect(unknownMethod.status).toBe(404);

    const wrong = await fetch(url("/items/a"), { method: "PATCH" });
    expect(wrong.status).toBe(405);
    expect(wrong.headers.get("allow")).toBe("GET, DELETE, HEAD, OPTIONS");
    expect(await json(wrong)).toMatchObject({ code: "GANTRY_ERR_METHOD_NOT_ALLOWED" });
  });

  test("answers OPTIONS with Allow, and CORS preflights and responses for allowed origins only", async () => {
    const plain = await fetch(url("/items/a"), { method: "OPTIONS" });
    expect(plain.status).toBe(204);
    expect(plain.headers.get("allow")).toBe("GET, DELETE, HEAD, OPTIONS");

    const preflight = await fetch(url("/items"), {
      method: "OPTIONS",
      headers: {
        origin: "https://app.example",
        "access-control-request-method": "POST",
        "access-control-request-headers": "content-type, x-tenant",
      },
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get("access-control-allow-origin")).toBe("https://app.example");
    expect(preflight.headers.get("access-control-allow-methods")).toBe("POST, OPTIONS");
    expect(preflight.headers.get("access-control-allow-headers")).toBe("content-type, x-tenant");
    expect(preflight.headers.get("access-control-max-age")).toBe("600");

    const allowed = await fetch(url("/items/a"), { headers: { origin: "https://app.example" } });
    expect(allowed.headers.get("access-control-allow-origin")).toBe("https://app.example");
    expect(allowed.headers.get("access-control-expose-headers")).toBe("x-request-id");
    const denied = await fetch(url("/items/a"), { headers: { origin: "https://evil.example" } });
    expect(denied.status).toBe(200);
    expect(denied.headers.get("access-control-allow-origin")).toBeNull();
  });

  test("keeps a well-formed x-request-id and replaces a malformed one", async () => {
    const kept = await fetch(url("/items/a"), { headers: { "x-request-id": "req-123" } });
    expect(kept.headers.get("x-request-id")).toBe("req-123");
    const replaced = await fetch(url("/items/a"), { headers: { "x-request-id": "bad id with spaces" } });
    expect(replaced.headers.get("x-request-id")).toMatch(/^[0-9a-f-]{36}$/);
  });

  test("takes the deadline from grpc-timeout and answers 504 when it passes", async () => {
    const started = Date.now();
    const response = await post("/sleep", JSON.stringify({ ms: 5000 }), { "grpc-timeout": "100m" });
    expect(response.status).toBe(504);
    expect(Date.now() - started).toBeLessThan(4000);
    expect(await json(response)).toMatchObject({
      code: "GANTRY_ERR_DEADLINE_EXCEEDED",
      canonicalStatus: "DEADLINE_EXCEEDED",
    });
  });

  test.each(["100", "123456789m", "5x", "-1S"])("answers 400 for the malformed grpc-timeout %s", async (value) => {
    const response = await post("/sleep", JSON.stringify({ ms: 1 }), { "grpc-timeout": value });
    expect(response.status).toBe(400);
    expect(await json(response)).toMatchObject({ code: "GANTRY_ERR_BAD_TIMEOUT" });
  });

  test("sends a method's own GantryError with its code, and hides anything else as INTERNAL", async () => {
    const notFound = await post("/fail", JSON.stringify({ kind: "not-found" }));
    expect(notFound.status).toBe(404);
    expect(await json(notFound)).toMatchObject({
      code: "THING_NOT_FOUND",
      canonicalStatus: "NOT_FOUND",
      detail: "no such thing",
    });

    const internal = await post("/fail", JSON.stringify({ kind: "crash" }));
    expect(internal.status).toBe(500);
    const text = await internal.text();
    expect(text).not.toContain("hunter2");
    expect(text).not.toMatch(/at .*\.(js|ts):\d+/);
    expect(JSON.parse(text)).toMatchObject({ code: "GANTRY_ERR_INTERNAL", detail: "internal error" });
    const logged = served.logs.lines.find((line) => line.code === "GANTRY_ERR_INTERNAL") as {
      err: { stack: string };
      requestId: string;
    };
    expect(logged.err.stack).toContain("hunter2");
    expect(logged.requestId).toBe(internal.headers.get("x-request-id"));
  });

  test("answers INTERNAL when a method returns a malformed output, and logs which field", async () => {
    for (const kind of ["bad-output", "bad-output-field"]) {
      const response = await post("/fail", JSON.stringify({ kind }));
      expect(response.status).toBe(500);
      expect(await json(response)).toMatchObject({ code: "GANTRY_ERR_BAD_OUTPUT", canonicalStatus: "INTERNAL" });
    }
    expect(served.logs.lines.some((line) => line.msg === "invalid output")).toBe(true);
  });

  test("runs guards before validation", async () => {
    const denied = await fetch(url("/guarded?percent=500"));
    expect(denied.status).toBe(403);
    expect(await json(denied)).toMatchObject({ code: "GANTRY_ERR_PERMISSION_DENIED" });
    const invalid = await fetch(url("/guarded?percent=500"), { headers: { "x-allow": "yes" } });
    expect(invalid.status).toBe(400);
  });

  test("refuses streaming methods over HTTP with UNIMPLEMENTED", async () => {
    const response = await post("/test.v1.ItemService/Ticks", "{}");
    expect(response.status).toBe(501);
    expect(await json(response)).toMatchObject({ code: "GANTRY_ERR_STREAMING_OVER_HTTP" });
  });

  test("answers 400 for a path value that is not validly percent-encoded", async () => {
    const response = await fetch(url("/items/%E0%A4%A"));
    expect(response.status).toBe(400);
    expect(await json(response)).toMatchObject({ code: "GANTRY_ERR_BAD_PATH" });
  });

  test("aborts the method's signal when the client goes away", async () => {
    const requestId = `gone-${path}`;
    await new Promise<void>((resolve) => {
      const req = httpRequest(url("/sleep"), {
        method: "POST",
        headers: { "content-type": "application/json", "x-request-id": requestId },
      });
      req.on("error", () => resolve());
      req.end(JSON.stringify({ ms: 10_000 }));
      setTimeout(() => {
        req.destroy();
        resolve();
      }, 100);
    });
    await expect.poll(() => aborts.includes(requestId), { timeout: 3000 }).toBe(true);
    await expect.poll(() => served.app.inFlight, { timeout: 3000 }).toBe(0);
  });

  test("answers a malformed HTTP request with 400 problem+json and stays up", async () => {
    const socket = connect(Number(new URL(served.url).port), "127.0.0.1");
    socket.write("GET /items/a HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n");
    const reply = await new Promise<string>((resolve) => {
      let text = "";
      socket.on("data", (chunk: Buffer) => {
        text += chunk.toString();
      });
      socket.on("close", () => resolve(text));
    });
    expect(reply).toMatch(/^HTTP\/1\.1 400 /);
    expect(reply).toContain('"code":"GANTRY_ERR_BAD_REQUEST"');
    expect((await fetch(url("/items/a"))).status).toBe(200);
  });

  test("reports liveness and readiness", async () => {
    const live = await fetch(url("/healthz"));
    expect(live.status).toBe(200);
    expect(await json(live)).toEqual({ status: "ok" });
    const ready = await fetch(url("/readyz"));
    expect(ready.status).toBe(200);
    expect(ready.headers.get("cache-control")).toBe("no-store");
    const wrong = await fetch(url("/readyz"), { method: "POST" });
    expect(wrong.status).toBe(405);
  });
});
