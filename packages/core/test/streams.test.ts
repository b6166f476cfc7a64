import { setTimeout as sleep } from "node:timers/promises";
import { describe, expect, test } from "vitest";
import {
  type CallContext,
  createApp,
  currentCall,
  Field,
  type GantryApp,
  Message,
  Method,
  Service,
} from "../src/index.js";
import { rejected, signal } from "./helpers.js";

@Message()
class Num {
  @Field(1, { type: "int32", min: 0 }) value!: number;
}

const seen = {
  finished: [] as string[],
  requestIds: [] as (string | undefined)[],
  abortedWith: [] as string[],
  lateClosed: false,
};
const release = signal();
const unstick = signal();

@Service({ package: "streams", version: "v1" })
class Streams {
  @Method({ output: Num, stream: "server" })
  async *count(request: Num, call: CallContext): AsyncGenerator<Num> {
    call.signal.addEventListener("abort", () =>
      seen.abortedWith.push((call.signal.reason as { status: string }).status),
    );
    try {
      for (let i = 0; i < request.value; i++) {
        seen.requestIds.push(currentCall()?.requestId);
        yield { value: i };
      }
    } finally {
      seen.finished.push(call.requestId);
    }
  }

  @Method({ input: Num, output: Num, stream: "client" })
  async sum(values: AsyncIterable<Num>): Promise<Num> {
    let value = 0;
    for await (const n of values) value += n.value;
    return { value };
  }

  @Method({ output: Num, stream: "server" })
  async *broken(): AsyncGenerator<Num> {
    yield { value: 1 };
    throw new Error("secret");
  }

  @Method({ output: Num, stream: "server" })
  notAStream(): unknown {
    return { value: 1 };
  }

  /** Waits for `unstick`, ignoring its signal: a pull on it can only be failed from outside. */
  @Method({ output: Num, stream: "server" })
  async *stuck(): AsyncGenerator<Num> {
    await unstick.promise;
    yield { value: 1 };
  }

  /** Takes 60 ms to set up before it returns its stream. */
  @Method({ output: Num, stream: "server" })
  async late(): Promise<AsyncIterable<Num>> {
    await sleep(60);
    return {
      [Symbol.asyncIterator]: () => ({
        next: async () => ({ done: false, value: { value: 1 } }),
        return: async () => {
          seen.lateClosed = true;
          return { done: true, value: undefined };
        },
      }),
    };
  }

  @Method({ output: Num, stream: "server" })
  async *held(): AsyncGenerator<Num> {
    yield { value: 1 };
    await release.promise;
    yield { value: 2 };
  }
}

async function started(): Promise<GantryApp> {
  const app = createApp({ name: "streams", services: [Streams] });
  await app.start({ env: {}, flags: { "log.level": "silent" } });
  return app;
}

async function collect(stream: unknown): Promise<unknown[]> {
  const items: unknown[] = [];
  for await (const item of stream as AsyncIterable<unknown>) items.push(item);
  return items;
}

describe("streaming methods in the pipeline", () => {
  test("a server stream comes out as a CallStream whose pulls run in the call's context", async () => {
    const app = await started();
    try {
      const stream = await app.call(app.method(Streams, "count"), { value: 3 });
      expect(typeof (stream as AsyncIterable<unknown>)[Symbol.asyncIterator]).toBe("function");
      expect(await collect(stream)).toEqual([{ value: 0 }, { value: 1 }, { value: 2 }]);
      expect(seen.requestIds).toHaveLength(3);
      expect(new Set(seen.requestIds).size).toBe(1);
      expect(seen.requestIds[0]).toBeDefined();
    } finally {
      await app.close();
    }
  });

  test("closing the stream early runs the method's finally", async () => {
    const app = await started();
    try {
      const stream = (await app.call(app.method(Streams, "count"), { value: 1000 })) as AsyncGenerator<unknown>;
      await stream.next();
      const before = seen.finished.length;
      await stream.return(undefined);
      expect(seen.finished.length).toBe(before + 1);
    } finally {
      await app.close();
    }
  });

  test("closing the stream before the first pull ends the call", async () => {
    const app = await started();
    try {
      const stream = (await app.call(app.method(Streams, "count"), { value: 10 })) as AsyncGenerator<unknown>;
      expect(app.inFlight).toBe(1);
      await stream.return(undefined);
      expect(app.inFlight).toBe(0);
    } finally {
      await app.close();
    }
  });

  test("a pull waiting on the method fails at once when the deadline passes", async () => {
    const app = await started();
    try {
      const stream = (await app.call(app.method(Streams, "stuck"), {}, { timeoutMs: 50 })) as AsyncGenerator<unknown>;
      const started = Date.now();
      const error = await rejected(stream.next());
      expect(error.status).toBe("DEADLINE_EXCEEDED");
      expect(Date.now() - started).toBeLessThan(1000);
    } finally {
      unstick.resolve();
      await app.close();
    }
  });

  test("a stream returned after its call was aborted is closed", async () => {
    const app = await started();
    try {
      await rejected(app.call(app.method(Streams, "late"), {}, { timeoutMs: 20 }));
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect(seen.lateClosed).toBe(true);
    } finally {
      await app.close();
    }
  });

  test("a deadline that passes mid-stream aborts the method and fails the next pull", async () => {
    const app = await started();
    try {
      const stream = (await app.call(
        app.method(Streams, "count"),
        { value: 1000 },
        { timeoutMs: 50 },
      )) as AsyncGenerator<unknown>;
      await stream.next();
      await sleep(100);
      const error = await rejected(stream.next());
      expect(error.status).toBe("DEADLINE_EXCEEDED");
      expect(seen.abortedWith).toContain("DEADLINE_EXCEEDED");
    } finally {
      await app.close();
    }
  });

  test("an error thrown mid-stream comes out as INTERNAL, without its message", async () => {
    const app = await started();
    try {
      const stream = (await app.call(app.method(Streams, "broken"), {})) as AsyncGenerator<unknown>;
      expect(await stream.next()).toEqual({ done: false, value: { value: 1 } });
      const error = await rejected(stream.next());
      expect(error.status).toBe("INTERNAL");
      expect(error.message).not.toContain("secret");
    } finally {
      await app.close();
    }
  });

  test("a streaming method that returns no AsyncIterable fails with INTERNAL", async () => {
    const app = await started();
    try {
      const error = await rejected(app.call(app.method(Streams, "notAStream"), {}));
      expect(error.status).toBe("INTERNAL");
    } finally {
      await app.close();
    }
  });

  test("a client stream is validated message by message", async () => {
    const app = await started();
    try {
      async function* values(...items: unknown[]) {
        yield* items;
      }
      expect(await app.call(app.method(Streams, "sum"), values({ value: 1 }, { value: 2 }))).toEqual({ value: 3 });
      const error = await rejected(app.call(app.method(Streams, "sum"), values({ value: 1 }, { value: -1 })));
      expect(error.status).toBe("INVALID_ARGUMENT");
      expect(error.violations).toEqual([{ field: "value", description: expect.any(String) }]);
    } finally {
      await app.close();
    }
  });

  test("a stream in progress holds shutdown until it ends", async () => {
    const app = await started();
    const stream = (await app.call(app.method(Streams, "held"), {})) as AsyncGenerator<unknown>;
    await stream.next();
    let closed = false;
    const closing = app.close().then(() => {
      closed = true;
    });
    await sleep(50);
    expect(closed).toBe(false);
    release.resolve();
    expect(await collect(stream)).toEqual([{ value: 2 }]);
    await closing;
    expect(closed).toBe(true);
  });
});
