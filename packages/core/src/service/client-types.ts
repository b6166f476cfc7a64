import type { CallContext } from "../context/call-context.js";

type Scalar = string | number | bigint | boolean | Date | Uint8Array;

/** A message as a caller writes it: every field may be left out (it then takes its default). */
export type MessageInit<T> = T extends Scalar
  ? T
  : T extends readonly (infer E)[]
    ? MessageInit<E>[]
    : T extends object
      ? { [K in keyof T as T[K] extends (...args: never[]) => unknown ? never : K]?: MessageInit<T[K]> }
      : T;

export interface ClientCallOptions {
  /** Sent as call metadata (HTTP headers, gRPC metadata). */
  metadata?: Readonly<Record<string, string>>;
  /** The call's timeout; the remaining deadline of the current call, if sooner, wins. */
  timeoutMs?: number;
  /** Cancels the call (CANCELLED); the current call's cancellation cancels it too. */
  signal?: AbortSignal;
}

/** The input a method of a service takes, or void for one that takes none. */
type InputOf<F> = F extends (input: infer I, ...rest: never[]) => unknown
  ? I extends CallContext
    ? undefined
    : unknown extends I
      ? undefined
      : MessageInit<I>
  : never;

/**
 * The typed client of a service class: each method takes its input message and resolves to its
 * output message.
 *
 * @example
 * const hello: ServiceClient<HelloService> = testApp.client(HelloService);
 * const reply = await hello.sayHello({ name: "Ada" }); // reply: HelloReply
 */
export type ServiceClient<S> = {
  readonly [K in keyof S as S[K] extends (...args: never[]) => unknown ? K : never]: (
    input: InputOf<S[K]>,
    options?: ClientCallOptions,
  ) => Promise<S[K] extends (...args: never[]) => infer R ? Awaited<R> : never>;
};
