import express from "express";
import { afterEach, describe, expect, test } from "vitest";
import { json, type Served, serve } from "./fixtures.js";

/** Routes and middleware of the user's own, next to Gantry's, in the default (auto) mode. */
describe("express alongside Gantry routes", () => {
  let served: Served | undefined;

  afterEach(async () => {
    await served?.close();
    served = undefined;
  });

  test("serves user routes through express while Gantry routes stay on the fast path", async () => {
    served = await serve({}, {}, (http) => {
      http.express.get("/legacy/:id", (req, res) => {
        res.json({ legacy: req.params.id, query: req.query });
      });
    });
    const legacy = await fetch(`${served.url}/legacy/7?x=1`);
    expect(legacy.status).toBe(200);
    expect(await legacy.json()).toEqual({ legacy: "7", query: { x: "1" } });
    expect(legacy.headers.get("x-powered-by")).toBeNull();
    expect((await fetch(`${served.url}/items/a`)).status).toBe(200);
    expect(served.http.stats).toEqual({ fast: 1, express: 0 });
  });

  test("sends the Gantry routes under a use() prefix through express, and only those", async () => {
    served = await serve({}, {}, (http) => {
      http.use("/items", (_req, res, next) => {
        res.setHeader("x-middleware", "ran");
        next();
      });
    });
    const covered = await fetch(`${served.url}/items/a`);
    expect(covered.status).toBe(200);
    expect(covered.headers.get("x-middleware")).toBe("ran");
    const uncovered = await fetch(`${served.url}/test.v1.ItemService/GetItem`, {
      method: "POST",
      body: JSON.stringify({ id: "a" }),
      headers: { "content-type": "application/json" },
    });
    expect(uncovered.status).toBe(200);
    expect(uncovered.headers.get("x-middleware")).toBeNull();
    expect(served.http.stats).toEqual({ fast: 1, express: 1 });
  });

  test("uses a body that express middleware already parsed", async () => {
    served = await serve({}, {}, (http) => {
      http.use(express.json({ limit: "10kb" }));
    });
    const created = await fetch(`${served.url}/items`, {
      method: "POST",
      body: JSON.stringify({ id: "parsed", count: "5" }),
      headers: { "content-type": "application/json" },
    });
    expect(created.status).toBe(201);
    expect(await json(created)).toMatchObject({ id: "parsed", count: "5" });
    const tooBig = await fetch(`${served.url}/items`, {
      method: "POST",
      body: JSON.stringify({ id: "x".repeat(20_000) }),
      headers: { "content-type": "application/json" },
    });
    expect(tooBig.status).toBe(413);
    expect(await json(tooBig)).toMatchObject({ canonicalStatus: "RESOURCE_EXHAUSTED", status: 413 });
    expect(served.http.stats.fast).toBe(0);
  });

  test("maps middleware errors to problem+json: 4xx by their status, anything else as INTERNAL", async () => {
    served = await serve({}, {}, (http) => {
      http.use("/items", (req, _res, next) => {
        if (req.headers.authorization === undefined) {
          next(Object.assign(new Error("sign in first"), { status: 401, expose: true }));
        } else {
          next(new Error("token store is down: secret=abc"));
        }
      });
    });
    const unauthenticated = await fetch(`${served.url}/items/a`);
    expect(unauthenticated.status).toBe(401);
    expect(await json(unauthenticated)).toMatchObject({ canonicalStatus: "UNAUTHENTICATED", detail: "sign in first" });
    const broken = await fetch(`${served.url}/items/a`, { headers: { authorization: "x" } });
    expect(broken.status).toBe(500);
    const text = await broken.text();
    expect(text).not.toContain("secret");
    expect(JSON.parse(text)).toMatchObject({ code: "GANTRY_ERR_INTERNAL" });
    expect(served.logs.lines.some((line) => line.msg === "express middleware failed")).toBe(true);
  });

  test("refuses to start on the forced fast path when middleware would be skipped", async () => {
    await expect(
      serve({ path: "fast" }, {}, (http) => {
        http.use((_req, _res, next) => next());
      }),
    ).rejects.toMatchObject({ code: "GANTRY_ERR_FAST_PATH_MIDDLEWARE" });
  });

  test("answers 404 for a path neither Gantry nor the user's express app knows", async () => {
    served = await serve({}, {}, (http) => {
      http.express.get("/legacy", (_req, res) => {
        res.send("ok");
      });
    });
    const missing = await fetch(`${served.url}/legacy/extra`);
    expect(missing.status).toBe(404);
    expect(await json(missing)).toMatchObject({ code: "GANTRY_ERR_ROUTE_NOT_FOUND" });
  });
});
