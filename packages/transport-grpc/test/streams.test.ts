import { connect } from "node:http2";
import { setTimeout as sleep } from "node:timers/promises";
import { createApp, type GantryApp } from "@gantry/core";
import { type ClientDuplexStream, type ClientReadableStream, Metadata, type ServiceError } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { grpcTransport } from "../src/index.js";
import { decodeJson, encodeJson, failureOf, TestClient } from "./client.js";
import { StreamService, streamProbe } from "./fixtures.js";

let app: GantryApp;
let client: TestClient;

beforeAll(async () => {
  app = createApp({
    name: "streams",
    services: [StreamService],
    transports: [grpcTransport({ port: 0, host: "127.0.0.1" })],
  });
  await app.start({ env: {}, flags: { "log.level": "silent" } });
  client = new TestClient(app.endpoints[0].url, StreamService);
});

afterAll(async () => {
  client.close();
  await app.close();
});

function serverStream(name: string, input: unknown): ClientReadableStream<Record<string, unknown>> {
  const method = client.method(name);
  return client.client.makeServerStreamRequest(
    method.path,
    (value: unknown) => encodeJson(method.input, value),
    (bytes: Buffer) => decodeJson(method.output, bytes),
    input,
    new Metadata(),
  );
}

async function eventually(condition: () => boolean): Promise<void> {
  for (let i = 0; i < 100 && !condition(); i++) await sleep(20);
  expect(condition()).toBe(true);
}

describe("server streaming", () => {
  test("sends every message, then OK", async () => {
    const items: unknown[] = [];
    for await (const item of serverStream("Produce", { count: 5, key: "all", size: 3 })) items.push(item);
    expect(items).toEqual(Array.from({ length: 5 }, () => ({ data: "AAAA" })));
    expect(streamProbe.finished.has("all")).toBe(true);
  });

  test("a slow reader holds the generator a bounded number of messages ahead", async () => {
    // A raw HTTP/2 client that stops reading: grpc-js's own client buffers whatever arrives, so
    // only a reader that really stops shows the server's backpressure.
    const method = client.method("Produce");
    const session = connect(app.endpoints[0].url.replace("grpc://", "http://"));
    try {
      const request = session.request({
        ":method": "POST",
        ":path": method.path,
        "content-type": "application/grpc",
        te: "trailers",
      });
      const message = encodeJson(method.input, { count: 5000, key: "slow", size: 1024 });
      const frame = Buffer.alloc(5 + message.length);
      frame.writeUInt32BE(message.length, 1);
      message.copy(frame, 5);
      request.end(frame);
      request.pause();
      await sleep(500);
      const ahead = streamProbe.produced.get("slow") ?? 0;
      // HTTP/2 flow control (a 64 KiB window) and a few stream buffers: about a hundred 1 KiB messages, not 5000.
      expect(ahead).toBeGreaterThan(0);
      expect(ahead).toBeLessThan(400);
      let bytes = 0;
      request.on("data", (chunk: Buffer) => {
        bytes += chunk.length;
      });
      request.resume();
      await new Promise((resolve) => request.on("end", resolve));
      expect(bytes).toBe(5000 * (5 + 3 + 1024));
      expect(streamProbe.produced.get("slow")).toBe(5000);
    } finally {
      session.close();
    }
  });

  test("a client cancel aborts the method's signal and runs its finally", async () => {
    const call = serverStream("Produce", { count: 100_000, key: "cancel", size: 16 });
    call.on("error", () => undefined);
    let received = 0;
    await new Promise<void>((resolve) =>
      call.on("data", () => {
        if (++received === 5) resolve();
      }),
    );
    call.cancel();
    await eventually(() => streamProbe.finished.has("cancel"));
    expect(streamProbe.aborted.get("cancel")).toBe("CANCELLED");
    expect(streamProbe.produced.get("cancel")).toBeLessThan(100_000);
  });

  test("an error after some messages ends the stream with its status", async () => {
    const items: unknown[] = [];
    const error = await (async () => {
      try {
        for await (const item of serverStream("FailAfter", { count: 2 })) items.push(item);
      } catch (caught) {
        return failureOf(caught as ServiceError);
      }
    })();
    expect(items).toHaveLength(2);
    expect(error).toMatchObject({ status: "INTERNAL", code: "GANTRY_ERR_INTERNAL", message: "internal error" });
  });

  test("a message that cannot be encoded ends the stream with INTERNAL, and closes the method", async () => {
    const items: unknown[] = [];
    const error = await (async () => {
      try {
        for await (const item of serverStream("BadSecond", { key: "bad-output" })) items.push(item);
      } catch (caught) {
        return failureOf(caught as ServiceError);
      }
    })();
    expect(items).toEqual([{ value: 1 }]);
    expect(error).toMatchObject({ status: "INTERNAL", code: "GANTRY_ERR_BAD_OUTPUT" });
    await eventually(() => streamProbe.finished.has("bad-output"));
  });

  test("invalid input fails before the first message with INVALID_ARGUMENT", async () => {
    const error = await (async () => {
      try {
        for await (const _ of serverStream("Produce", { count: -1 })) expect.unreachable();
      } catch (caught) {
        return failureOf(caught as ServiceError);
      }
    })();
    expect(error).toMatchObject({ status: "INVALID_ARGUMENT", violations: [{ field: "count" }] });
  });
});

describe("deadlines and metadata on streams", () => {
  async function statusOf(call: ClientReadableStream<unknown> | ClientDuplexStream<unknown, unknown>): Promise<string> {
    return new Promise((resolve) => {
      call.on("data", () => undefined);
      call.on("error", (error: ServiceError) => resolve(failureOf(error).status));
      call.on("end", () => resolve("OK"));
    });
  }

  test("a server stream waiting on nothing ends with DEADLINE_EXCEEDED at its timeout, and runs its finally", async () => {
    const started = Date.now();
    expect(await statusOf(serverStream("WaitForever", { key: "wait" }))).toBe("DEADLINE_EXCEEDED");
    expect(Date.now() - started).toBeLessThan(2000);
    await eventually(() => streamProbe.finished.has("wait"));
    await eventually(() => app.inFlight === 0);
  });

  test("a bidi call whose client sends nothing ends with DEADLINE_EXCEEDED, and its input ends", async () => {
    const method = client.method("EchoSlowly");
    const metadata = new Metadata();
    metadata.set("x-key", "bidi-wait");
    const call = client.client.makeBidiStreamRequest(
      method.path,
      (value: unknown) => encodeJson(method.input, value),
      (bytes: Buffer) => decodeJson(method.output, bytes),
      metadata,
    );
    const started = Date.now();
    expect(await statusOf(call)).toBe("DEADLINE_EXCEEDED");
    expect(Date.now() - started).toBeLessThan(2000);
    await eventually(() => streamProbe.finished.has("bidi-wait"));
    await eventually(() => app.inFlight === 0);
  });

  test("response metadata set before the first message goes out as headers; after, as trailers", async () => {
    const call = serverStream("WithMetadata", {});
    const headers = new Promise<Metadata>((resolve) => call.on("metadata", resolve));
    const status = new Promise<{ metadata: Metadata }>((resolve) => call.on("status", resolve));
    call.on("data", () => undefined);
    expect((await headers).get("x-before")).toEqual(["1"]);
    expect((await headers).get("x-after")).toEqual([]);
    const trailers = (await status).metadata;
    expect(trailers.get("x-after")).toEqual(["2"]);
    expect(trailers.get("x-before")).toEqual([]);
  });
});

describe("client streaming", () => {
  function sum(values: unknown[]): Promise<unknown> {
    const method = client.method("Sum");
    return new Promise((resolve, reject) => {
      const call = client.client.makeClientStreamRequest(
        method.path,
        (value: unknown) => encodeJson(method.input, value),
        (bytes: Buffer) => decodeJson(method.output, bytes),
        new Metadata(),
        {},
        (error, output) => (error === null ? resolve(output) : reject(failureOf(error))),
      );
      for (const value of values) call.write(value);
      call.end();
    });
  }

  test("reads every message the client sends", async () => {
    expect(await sum([{ value: 1 }, { value: 2 }, { value: 39 }])).toEqual({ value: 42 });
    expect(await sum([])).toEqual({ value: 0 });
  });

  test("an invalid message fails the call with INVALID_ARGUMENT", async () => {
    await expect(sum([{ value: 1 }, { value: -5 }])).rejects.toMatchObject({
      status: "INVALID_ARGUMENT",
      violations: [{ field: "value" }],
    });
  });

  test("malformed bytes in the stream fail the call with INVALID_ARGUMENT", async () => {
    const method = client.method("Sum");
    const error = await new Promise((resolve) => {
      const call = client.client.makeClientStreamRequest(
        method.path,
        (value: Buffer) => value,
        (bytes: Buffer) => bytes,
        new Metadata(),
        {},
        (caught) => resolve(caught === null ? undefined : failureOf(caught)),
      );
      call.write(Buffer.from([0x08]));
      call.end();
    });
    expect(error).toMatchObject({ status: "INVALID_ARGUMENT", code: "GANTRY_ERR_MALFORMED_PROTOBUF" });
  });
});

describe("bidi streaming", () => {
  test("answers each message as it arrives", async () => {
    const method = client.method("Double");
    const call = client.client.makeBidiStreamRequest(
      method.path,
      (value: unknown) => encodeJson(method.input, value),
      (bytes: Buffer) => decodeJson(method.output, bytes),
      new Metadata(),
    );
    const replies: unknown[] = [];
    const next = () => new Promise((resolve) => call.once("data", resolve));
    call.write({ value: 1 });
    replies.push(await next());
    call.write({ value: 20 });
    replies.push(await next());
    call.end();
    await new Promise((resolve) => call.on("end", resolve).resume());
    expect(replies).toEqual([{ value: 2 }, { value: 40 }]);
  });
});

describe("the server stays healthy", () => {
  test("after clients disconnect mid-stream", async () => {
    for (let i = 0; i < 5; i++) {
      const call = serverStream("Produce", { count: 100_000, key: `drop-${i}`, size: 64 });
      call.on("error", () => undefined);
      await new Promise((resolve) => call.once("data", resolve));
      call.cancel();
    }
    for (let i = 0; i < 5; i++) await eventually(() => streamProbe.finished.has(`drop-${i}`));
    const items: unknown[] = [];
    for await (const item of serverStream("Produce", { count: 2, key: "after", size: 1 })) items.push(item);
    expect(items).toHaveLength(2);
    expect(app.state).toBe("ready");
  });
});
