import { type CallContext, runInCall } from "../context/call-context.js";
import type { GantryError } from "../errors/gantry-error.js";
import type { MessageDescriptor } from "../message/descriptor.js";
import { readMessage } from "../message/json.js";

/**
 * The input of a client or bidi streaming method: each message the transport decoded, read and
 * validated as it is pulled. A bad message fails the method's loop with INVALID_ARGUMENT.
 */
export async function* readStream<T>(descriptor: MessageDescriptor, source: AsyncIterable<unknown>): AsyncGenerator<T> {
  for await (const item of source) yield readMessage<T>(descriptor, item);
}

export function isAsyncIterable(value: unknown): value is AsyncIterable<unknown> {
  return (
    typeof value === "object" &&
    value !== null &&
    typeof (value as { [Symbol.asyncIterator]?: unknown })[Symbol.asyncIterator] === "function"
  );
}

/**
 * The output of a server or bidi streaming method as the transport reads it. Each pull runs in the
 * call's context; the call stays in flight until the stream ends, fails or is closed; an aborted
 * call (cancel, deadline, shutdown) closes the method's iterator, so its `finally` runs, and fails
 * the next pull with the abort reason. Whatever the method throws comes out as a GantryError.
 */
export class CallStream<T = unknown> implements AsyncIterableIterator<T> {
  readonly #call: CallContext;
  readonly #iterator: AsyncIterator<unknown>;
  readonly #fault: (error: unknown) => GantryError;
  #onEnd: (() => void) | undefined;

  /** @internal */
  constructor(
    call: CallContext,
    source: AsyncIterable<unknown>,
    fault: (error: unknown) => GantryError,
    onEnd: () => void,
  ) {
    this.#call = call;
    this.#iterator = source[Symbol.asyncIterator]();
    this.#fault = fault;
    this.#onEnd = onEnd;
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  async next(): Promise<IteratorResult<T>> {
    if (this.#call.abortReason !== undefined) {
      this.#end();
      throw this.#call.abortReason;
    }
    try {
      const result = await runInCall(this.#call, () => this.#iterator.next());
      if (this.#call.abortReason !== undefined) throw this.#call.abortReason;
      if (result.done === true) this.#end();
      return result as IteratorResult<T>;
    } catch (error) {
      this.#end();
      throw this.#call.abortReason ?? this.#fault(error);
    }
  }

  /** Stops the stream early: the method's iterator is closed (its `finally` runs). */
  async return(): Promise<IteratorResult<T>> {
    await this.#close();
    return { done: true, value: undefined };
  }

  /** @internal The call was aborted: close the method's iterator now. */
  abort(): void {
    void this.#close().catch(() => undefined);
  }

  async #close(): Promise<void> {
    if (this.#onEnd === undefined) return;
    try {
      await runInCall(this.#call, () => this.#iterator.return?.());
    } finally {
      this.#end();
    }
  }

  #end(): void {
    const onEnd = this.#onEnd;
    this.#onEnd = undefined;
    onEnd?.();
  }
}
