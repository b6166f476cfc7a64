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
 * call's context; the call stays in flight until the method's iterator has finished (its end, an
 * error, or closing it). When the call is aborted (cancel, deadline, shutdown) a pull fails at once
 * with the abort reason, even one waiting on the method, and the method's iterator is closed: its
 * `finally` runs as soon as it next yields (a method waiting on something should follow
 * `ctx.signal`). Whatever the method throws comes out as a GantryError.
 */
export class CallStream<T = unknown> implements AsyncIterableIterator<T> {
  readonly #call: CallContext;
  readonly #iterator: AsyncIterator<unknown>;
  readonly #fault: (error: unknown) => GantryError;
  /** Fails the pull waiting on the method, if one is. */
  #wake: ((reason: GantryError) => void) | undefined;
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
    const reason = this.#call.abortReason;
    if (reason !== undefined) {
      this.#release();
      throw reason;
    }
    try {
      const pull = runInCall(this.#call, () => this.#iterator.next());
      const result = await new Promise<IteratorResult<unknown>>((resolve, reject) => {
        this.#wake = reject;
        pull.then(resolve, reject);
      });
      this.#wake = undefined;
      if (result.done === true) this.#end();
      return result as IteratorResult<T>;
    } catch (error) {
      this.#wake = undefined;
      const aborted = this.#call.abortReason;
      if (aborted !== undefined) {
        this.#release();
        throw aborted;
      }
      this.#end();
      throw this.#fault(error);
    }
  }

  /** Stops the stream early: the method's iterator is closed (its `finally` runs). */
  async return(): Promise<IteratorResult<T>> {
    if (this.#onEnd !== undefined) {
      try {
        await runInCall(this.#call, () => this.#iterator.return?.());
      } finally {
        this.#end();
      }
    }
    return { done: true, value: undefined };
  }

  /** @internal The call was aborted: fail the waiting pull and close the method's iterator. */
  abort(reason: GantryError): void {
    this.#wake?.(reason);
    this.#release();
  }

  /** Closes the method's iterator without waiting; the call leaves the in-flight set once it has. */
  #release(): void {
    if (this.#onEnd === undefined) return;
    const end = () => this.#end();
    try {
      Promise.resolve(runInCall(this.#call, () => this.#iterator.return?.())).then(end, end);
    } catch {
      end();
    }
  }

  #end(): void {
    const onEnd = this.#onEnd;
    this.#onEnd = undefined;
    onEnd?.();
  }
}
