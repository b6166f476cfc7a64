/**
 * The kit for testing a transport's client side (its `Channel`): one service to serve on the
 * transport and call, with a message of every field kind, methods that fail, crash, validate, sleep
 * and report their metadata, and the probes a test watches the server side through. HTTP and gRPC
 * test their channels against it, so any transport added later is tested against the same server.
 *
 * @example
 * const app = createApp({ name: "t", services: [ProbeService], transports: [myTransport()] });
 * await app.start();
 * const channel = promised(myClientTransport().channel(app.endpoints[0].url));
 * const error = await failureOf(channel.unary(probeCall("Crash"), {}));
 */
import { sendUnary } from "../client/outbound.js";
import type { Channel, OutboundRequest } from "../client/types.js";
import type { CallContext } from "../context/call-context.js";
import { GantryError, isGantryError } from "../errors/gantry-error.js";
import type { StatusName } from "../errors/status.js";
import { Field, Message, registerEnum } from "../message/decorators.js";
import { Empty } from "../message/well-known.js";
import { Method, Service } from "../service/decorators.js";
import { describeService, type MethodDescriptor } from "../service/descriptor.js";

export enum Mood {
  MOOD_UNSPECIFIED = 0,
  HAPPY = 1,
  SAD = 2,
}
registerEnum(Mood, "Mood");

@Message()
class Inner {
  @Field(1) name!: string;
  @Field(2, { type: "int32" }) n!: number;
}

/** One field of every kind. */
@Message()
export class Kitchen {
  @Field(1) text!: string;
  @Field(2, { type: "int32" }) i32!: number;
  @Field(3, { type: "int64" }) i64!: bigint;
  @Field(4, { type: "uint32" }) u32!: number;
  @Field(5, { type: "uint64" }) u64!: bigint;
  @Field(6, { type: "sint32" }) s32!: number;
  @Field(7, { type: "sint64" }) s64!: bigint;
  @Field(8, { type: "fixed32" }) fx32!: number;
  @Field(9, { type: "fixed64" }) fx64!: bigint;
  @Field(10, { type: "sfixed32" }) sfx32!: number;
  @Field(11, { type: "sfixed64" }) sfx64!: bigint;
  @Field(12, { type: "double" }) dbl!: number;
  @Field(13, { type: "float" }) flt!: number;
  @Field(14) flag!: boolean;
  @Field(15) data!: Uint8Array;
  @Field(16, { enum: Mood }) mood!: Mood;
  @Field(17, { type: "timestamp" }) at!: Date;
  @Field(18) inner!: Inner;
  @Field(19, { type: "string", repeated: true }) tags!: string[];
  @Field(20, { type: "int64", repeated: true }) ids!: bigint[];
  @Field(21, { type: Inner, repeated: true }) items!: Inner[];
  @Field(22, { map: { key: "string", value: "int64" } }) counts!: Record<string, bigint>;
  @Field(23, { map: { key: "int32", value: Inner } }) byId!: Record<string, Inner>;
  @Field(24, { optional: true }) maybe?: string;
}

@Message()
class FailRequest {
  @Field(1) status!: string;
  @Field(2) code!: string;
  @Field(3) message!: string;
  @Field(4) retryable!: boolean;
}

@Message()
class Checked {
  @Field(1, { minLength: 2 }) name!: string;
  @Field(2, { type: "int32", min: 0, max: 10 }) n!: number;
}

@Message()
class SleepRequest {
  @Field(1, { type: "int32" }) ms!: number;
  @Field(2) key!: string;
}

@Message()
class SleepReply {
  @Field(1) aborted!: boolean;
}

/** A Kitchen with a value of its own in every field, the extremes of each number type included. */
export const kitchenSample = {
  text: "héllo ✓",
  i32: -123,
  i64: -(2n ** 63n),
  u32: 4_294_967_295,
  u64: 2n ** 64n - 1n,
  s32: -2_147_483_648,
  s64: 2n ** 63n - 1n,
  fx32: 7,
  fx64: 9_007_199_254_740_993n,
  sfx32: -7,
  sfx64: -9_007_199_254_740_993n,
  dbl: Math.PI,
  flt: 1.5,
  flag: true,
  data: new Uint8Array([0, 1, 254, 255]),
  mood: Mood.SAD,
  at: new Date("2024-02-29T12:34:56.789Z"),
  inner: { name: "in", n: 5 },
  tags: ["a", "b"],
  ids: [1n, -2n, 2n ** 62n],
  items: [
    { name: "x", n: 1 },
    { name: "y", n: 2 },
  ],
  counts: { a: 1n, b: -(2n ** 40n) },
  byId: { "7": { name: "seven", n: 7 } },
  maybe: "",
};

/** What an empty Kitchen reads as: every field's default. */
export const kitchenDefaults = {
  text: "",
  i32: 0,
  i64: 0n,
  u32: 0,
  u64: 0n,
  s32: 0,
  s64: 0n,
  fx32: 0,
  fx64: 0n,
  sfx32: 0,
  sfx64: 0n,
  dbl: 0,
  flt: 0,
  flag: false,
  data: new Uint8Array(0),
  mood: Mood.MOOD_UNSPECIFIED,
  tags: [],
  ids: [],
  items: [],
  counts: {},
  byId: {},
};

/** Every metadata entry the server saw (HTTP headers included), values joined with commas. */
@Message()
export class MetaReply {
  @Field(1, { map: { key: "string", value: "string" } }) entries!: Record<string, string>;
}

/** What a sleeping method saw. */
interface Seen {
  /** ms from the call's start to its deadline, as the server computed it from the wire. */
  budgetMs: number | undefined;
  abortedWith?: string;
}

/** A sleeping method with a key in here waits for it instead of its `ms`. */
const gates = new Map<string, Promise<void>>();

/** What ProbeService's sleeping method saw and is waiting for, by the `key` of its request. */
export const channelProbe = {
  /** What the sleeping method with this key saw. */
  seen: new Map<string, Seen>(),
  /** Called when a sleeping method with this key starts. */
  started: new Map<string, () => void>(),
  /** Makes the sleeping method with this key wait until the returned function is called. */
  gate(key: string): () => void {
    let open: () => void = () => {};
    gates.set(key, new Promise<void>((resolve) => (open = resolve)));
    return () => open();
  },
};

/** The service a channel under test calls. */
@Service({ package: "clienttest", version: "v1" })
export class ProbeService {
  @Method({ output: Kitchen })
  async echo(request: Kitchen): Promise<Kitchen> {
    return request;
  }

  /**
   * Throws the error the request describes, with field violations for INVALID_ARGUMENT and the
   * details `{ hint: "look left", limit: 5 }`, which reach callers whose transport carries details.
   */
  @Method({ output: Empty })
  async fail(request: FailRequest): Promise<Empty> {
    const violations =
      request.status === "INVALID_ARGUMENT" ? [{ field: "items[2].name", description: "is too short" }] : undefined;
    throw new GantryError(request.status as StatusName, request.message, {
      code: request.code,
      retryable: request.retryable,
      violations,
      details: { hint: "look left", limit: 5 },
    });
  }

  @Method({ input: Empty, output: Empty })
  async crash(): Promise<Empty> {
    throw new Error("database password is hunter2");
  }

  @Method({ output: Checked })
  async check(request: Checked): Promise<Checked> {
    return request;
  }

  @Method({ output: SleepReply })
  async sleep(request: SleepRequest, call: CallContext): Promise<SleepReply> {
    const record: Seen = { budgetMs: call.deadline === undefined ? undefined : call.deadline - call.startedAt };
    channelProbe.seen.set(request.key, record);
    channelProbe.started.get(request.key)?.();
    await new Promise<void>((resolve) => {
      const gated = gates.get(request.key);
      const timer = gated === undefined ? setTimeout(resolve, request.ms) : undefined;
      gated?.then(resolve);
      call.signal.addEventListener("abort", () => {
        clearTimeout(timer);
        record.abortedWith = (call.signal.reason as GantryError).status;
        resolve();
      });
    });
    return { aborted: call.signal.aborted };
  }

  @Method({ input: Empty, output: MetaReply })
  async meta(_request: Empty, call: CallContext): Promise<MetaReply> {
    const entries: Record<string, string> = {};
    for (const [key, values] of call.metadata.entries()) entries[key] = values.join(",");
    return { entries };
  }
}

const methods = new Map(describeService(ProbeService).methods.map((m) => [m.name, m]));

/** The descriptor of a ProbeService method, by its wire name (`Echo`). */
export function probeMethod(name: string): MethodDescriptor {
  return methods.get(name) as MethodDescriptor;
}

interface ProbeCallOptions {
  timeoutMs?: number;
  metadata?: Record<string, string>;
  signal?: AbortSignal;
}

/** A call of a ProbeService method, for {@link PromisedChannel.unary}. */
export function probeCall(name: string, options: ProbeCallOptions = {}): OutboundRequest {
  return {
    method: probeMethod(name),
    deadline: options.timeoutMs === undefined ? undefined : Date.now() + options.timeoutMs,
    metadata: options.metadata ?? {},
    signal: options.signal,
  };
}

/** A channel under test whose unary calls give promises. */
export interface PromisedChannel {
  readonly channel: Channel;
  /** Sends one unary call through {@link sendUnary}. */
  unary(request: OutboundRequest, input: unknown): Promise<unknown>;
  close(): void;
}

/** `channel`, its unary calls made through {@link sendUnary}. */
export function promised(channel: Channel): PromisedChannel {
  return {
    channel,
    unary: (request, input) => sendUnary(channel, request, input),
    close: () => channel.close(),
  };
}

/** The rejection of a call, which must be a GantryError. */
export async function failureOf(promise: Promise<unknown>): Promise<GantryError> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  if (!isGantryError(error)) throw new Error(`expected a GantryError, got ${String(error)}`);
  return error;
}
