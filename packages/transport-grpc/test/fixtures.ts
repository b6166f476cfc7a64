import { setTimeout as sleep } from "node:timers/promises";
import { type CallContext, Field, Message, Method, Service } from "@gantry/core";

@Message()
export class Num {
  @Field(1, { type: "int32", min: 0 }) value!: number;
}

@Message()
export class Blob {
  @Field(1) data!: Uint8Array;
}

@Message()
export class CountRequest {
  @Field(1, { type: "int32", min: 0, max: 100_000 }) count!: number;
  /** A key under which the method reports to `streamProbe`. */
  @Field(2) key!: string;
  @Field(3, { type: "int32" }) size!: number;
}

/** What the streaming methods saw: how far each generator got, whether its finally ran and why it stopped. */
export const streamProbe = {
  produced: new Map<string, number>(),
  finished: new Set<string>(),
  aborted: new Map<string, string>(),
};

@Service({ package: "streams", version: "v1" })
export class StreamService {
  /** Server streaming: `count` messages of `size` bytes, as fast as the reader takes them. */
  @Method({ output: Blob, stream: "server" })
  async *produce(request: CountRequest, call: CallContext): AsyncGenerator<Blob> {
    streamProbe.produced.set(request.key, 0);
    call.signal.addEventListener("abort", () =>
      streamProbe.aborted.set(request.key, (call.signal.reason as { status: string }).status),
    );
    try {
      for (let i = 0; i < request.count; i++) {
        streamProbe.produced.set(request.key, i + 1);
        yield { data: new Uint8Array(request.size) };
      }
    } finally {
      streamProbe.finished.add(request.key);
    }
  }

  /** Client streaming: the sum of the values sent. */
  @Method({ input: Num, output: Num, stream: "client" })
  async sum(values: AsyncIterable<Num>): Promise<Num> {
    let total = 0;
    for await (const n of values) total += n.value;
    return { value: total };
  }

  /** Bidi: each value doubled, as it arrives. */
  @Method({ input: Num, output: Num, stream: "bidi" })
  async *double(values: AsyncIterable<Num>): AsyncGenerator<Num> {
    for await (const n of values) yield { value: n.value * 2 };
  }

  /** Server streaming that fails after `count` messages. */
  @Method({ output: Num, stream: "server" })
  async *failAfter(request: CountRequest): AsyncGenerator<Num> {
    for (let i = 0; i < request.count; i++) yield { value: i };
    throw new Error("stream broke");
  }

  /** Server streaming whose second message cannot be encoded (a string in an int32 field). */
  @Method({ output: Num, stream: "server" })
  async *badSecond(request: CountRequest): AsyncGenerator<Num> {
    try {
      yield { value: 1 };
      yield { value: "two" as unknown as number };
    } finally {
      streamProbe.finished.add(request.key);
    }
  }

  /** Server streaming that waits, following its signal, and never yields: for deadlines and cancels. */
  @Method({ output: Num, stream: "server", timeoutMs: 300 })
  async *waitForever(request: CountRequest, call: CallContext): AsyncGenerator<Num> {
    streamProbe.produced.set(request.key, 0);
    try {
      await new Promise((_resolve, reject) => call.signal.addEventListener("abort", () => reject(call.signal.reason)));
      yield { value: 0 };
    } finally {
      streamProbe.finished.add(request.key);
    }
  }

  /** Bidi that waits for messages the client never sends, under a 300 ms timeout. */
  @Method({ input: Num, output: Num, stream: "bidi", timeoutMs: 300 })
  async *echoSlowly(values: AsyncIterable<Num>, call: CallContext): AsyncGenerator<Num> {
    try {
      for await (const n of values) yield n;
    } finally {
      streamProbe.finished.add(call.metadata.get("x-key") ?? "");
    }
  }

  /** Server streaming that sets response metadata before its first message and after its last. */
  @Method({ output: Num, stream: "server" })
  async *withMetadata(_request: CountRequest, call: CallContext): AsyncGenerator<Num> {
    call.responseMetadata.set("x-before", "1");
    yield { value: 1 };
    call.responseMetadata.set("x-after", "2");
  }

  /** Unary, for size limits: echoes the blob, or sends `size` bytes when the blob is empty. */
  @Method({ input: CountRequest, output: Blob })
  async big(request: CountRequest): Promise<Blob> {
    await sleep(0);
    return { data: new Uint8Array(request.size) };
  }
}
