import diagnostics from "node:diagnostics_channel";
import { clientToken, createApp, type GantryApp, type ServiceClient } from "@gantry/core";
import { type AttemptMessage, clientChannels } from "@gantry/core/client";
import { discoveryOf, failureOf, fixedResolver, until } from "@gantry/core/testing";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { grpcClientTransport, grpcTransport } from "../src/index.js";
import { type Blob, type Num, StreamService, streamProbe } from "./fixtures.js";

/** A typed client's streaming calls to another process: through the client runtime, over gRPC. */

async function* numbers(...values: number[]): AsyncGenerator<Num> {
  for (const value of values) yield { value };
}

/** Reads `replies` to the end: for streams that never yield, to see how they fail. */
async function readAll(replies: AsyncIterable<unknown>): Promise<void> {
  for await (const _ of replies) {
    // never yields
  }
}

describe("a typed client's streaming calls over gRPC", () => {
  let server: GantryApp;
  let caller: GantryApp;
  let streams: ServiceClient<StreamService>;

  beforeAll(async () => {
    server = createApp({
      name: "streams",
      services: [StreamService],
      transports: [grpcTransport({ host: "127.0.0.1", port: 0 })],
      logger: { level: "silent" },
    });
    await server.start({ env: {} });
    caller = createApp({
      name: "caller",
      services: [],
      clients: [StreamService],
      clientTransports: [grpcClientTransport()],
      discovery: discoveryOf({ resolver: fixedResolver([{ grpc: server.endpoints[0].url }]) }),
      shutdown: { propagationDelayMs: 0 },
      logger: { level: "silent" },
    });
    await caller.start({ env: {} });
    streams = await caller.get(clientToken(StreamService));
  });

  afterAll(async () => {
    await caller?.close();
    await server?.close();
  });

  test("server streaming: every message, in order", async () => {
    const received: Blob[] = [];
    for await (const blob of await streams.produce({ count: 5, size: 3, key: "five" })) received.push(blob);
    expect(received).toHaveLength(5);
    expect(received.every((blob) => blob.data.length === 3)).toBe(true);
    expect(streamProbe.finished.has("five")).toBe(true);
  });

  test("a stream is an attempt on gantry:client:attempt, as a unary call is, when it ends", async () => {
    const seen: AttemptMessage[] = [];
    const listener = (message: unknown) => seen.push(message as AttemptMessage);
    diagnostics.subscribe(clientChannels.attempt, listener);
    try {
      for await (const _ of await streams.produce({ count: 2, size: 1, key: "attempt" })) {
        // read them all
      }
    } finally {
      diagnostics.unsubscribe(clientChannels.attempt, listener);
    }
    expect(seen).toEqual([
      expect.objectContaining({
        service: "streams.v1.StreamService",
        method: "Produce",
        transport: "grpc",
        attempt: 1,
        status: "OK",
        code: undefined,
      }),
    ]);
  });

  test("client streaming: the input stream is sent as the callee reads it", async () => {
    expect(await streams.sum(numbers(1, 2, 3, 4))).toEqual({ value: 10 });
  });

  test("bidi: each reply as its input arrives", async () => {
    const replies: number[] = [];
    for await (const reply of await streams.double(numbers(1, 2, 3))) replies.push(reply.value);
    expect(replies).toEqual([2, 4, 6]);
  });

  test("a stream that fails midway: the messages before, then the callee's error", async () => {
    const received: number[] = [];
    const reading = (async () => {
      for await (const n of await streams.failAfter({ count: 2, key: "fail" })) received.push(n.value);
    })();
    const error = await failureOf(reading);
    expect(received).toEqual([0, 1]);
    expect(error.status).toBe("INTERNAL");
    expect(error.message).toMatch(/streams\.v1\.StreamService\/FailAfter on instance .*attempt 1 of 3/);
  });

  test("a reader that leaves early cancels the call: the callee's generator is closed", async () => {
    let read = 0;
    for await (const _ of await streams.produce({ count: 100_000, size: 1, key: "leave" })) {
      read += 1;
      if (read === 3) break;
    }
    await until(() => streamProbe.finished.has("leave"));
    expect(streamProbe.aborted.get("leave")).toBe("CANCELLED");
    expect(streamProbe.produced.get("leave")).toBeLessThan(100_000);
  });

  test("the method's deadline ends the stream with DEADLINE_EXCEEDED on both sides", async () => {
    const started = Date.now();
    const reading = readAll(await streams.waitForever({ key: "deadline" }));
    const error = await failureOf(reading);
    expect(error.status).toBe("DEADLINE_EXCEEDED");
    expect(Date.now() - started).toBeLessThan(2000);
    await until(() => streamProbe.finished.has("deadline"));
  });

  test("the caller's signal cancels a stream it is reading", async () => {
    const controller = new AbortController();
    const reading = readAll(
      await streams.waitForever({ key: "signal" }, { signal: controller.signal, timeoutMs: 5000 }),
    );
    setTimeout(() => controller.abort(), 50);
    const error = await failureOf(reading);
    expect(error.code).toBe("GANTRY_ERR_CANCELLED");
    await until(() => streamProbe.finished.has("signal"));
  });

  test("a stream given up before its reader starts is cancelled on the wire, and reading it fails at once", async () => {
    const controller = new AbortController();
    const replies = await streams.waitForever({ key: "unread" }, { signal: controller.signal, timeoutMs: 60_000 });
    await until(() => streamProbe.produced.has("unread"));
    controller.abort();
    await until(() => streamProbe.finished.has("unread"));
    const reading = readAll(replies);
    expect((await failureOf(reading)).code).toBe("GANTRY_ERR_CANCELLED");
  });

  test("a stream whose deadline passes before its reader starts fails the reader with DEADLINE_EXCEEDED", async () => {
    const replies = await streams.waitForever({ key: "late-reader" }, { timeoutMs: 100 });
    await until(() => streamProbe.finished.has("late-reader"));
    await new Promise((resolve) => setTimeout(resolve, 50));
    const reading = readAll(replies);
    expect((await failureOf(reading)).status).toBe("DEADLINE_EXCEEDED");
  });

  test("an input stream that throws fails the call with its error, and the callee sees it cancelled", async () => {
    async function* broken(): AsyncGenerator<Num> {
      yield { value: 1 };
      throw new Error("input broke");
    }
    const error = await failureOf(streams.sum(broken()));
    expect(error.status).toBe("INTERNAL");
  });

  test("closing the caller's app ends a stream it is reading, and the callee's generator", async () => {
    const closing = createApp({
      name: "closing",
      services: [],
      clients: [StreamService],
      clientTransports: [grpcClientTransport()],
      discovery: discoveryOf({ resolver: fixedResolver([{ grpc: server.endpoints[0].url }]) }),
      shutdown: { propagationDelayMs: 0 },
      logger: { level: "silent" },
    });
    await closing.start({ env: {} });
    const client = await closing.get(clientToken(StreamService));
    const replies = await client.produce({ count: 100_000, size: 1, key: "close" }, { timeoutMs: 5000 });
    const iterator = replies[Symbol.asyncIterator]();
    await iterator.next();
    const reading = (async () => {
      for (let next = await iterator.next(); !next.done; next = await iterator.next()) {
        // what had arrived before the close
      }
    })();
    await closing.close();
    const error = await failureOf(reading);
    expect(error.code).toBe("GANTRY_ERR_SHUTTING_DOWN");
    await until(() => streamProbe.finished.has("close"));
  });
});
