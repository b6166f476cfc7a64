/**
 * The transport conformance suite: one service and the cases every transport must pass, so that
 * HTTP, gRPC and any transport added later cannot drift apart on validation, error codes,
 * deadlines, metadata, cancellation, guards and interceptors. It depends on no test runner: each
 * case is a function that throws (node:assert) when the transport under test gets it wrong.
 *
 * @example
 * const app = createApp(conformanceApp(myTransport()));
 * await app.start();
 * for (const c of conformanceCases) test(c.name, () => c.run(myClient(app)));
 */
import { strict as assert } from "node:assert";
import { setTimeout as sleep } from "node:timers/promises";
import type { AppOptions } from "../app/app.js";
import type { CallContext } from "../context/call-context.js";
import { GantryError } from "../errors/gantry-error.js";
import { Status, type StatusName } from "../errors/status.js";
import { Field, Message } from "../message/decorators.js";
import { readMessage, writeMessage } from "../message/json.js";
import { Empty } from "../message/well-known.js";
import type { ExecutionContext, Guard, Interceptor } from "../pipeline/types.js";
import type { ClientCallOptions, ServiceClient } from "../service/client-types.js";
import { Method, Service, UseGuards, UseInterceptors } from "../service/decorators.js";
import { describeService } from "../service/descriptor.js";
import type { Transport } from "../transport/index.js";

@Message()
export class EchoRequest {
  @Field(1, { minLength: 1, maxLength: 10 }) text!: string;
  @Field(2, { type: "int32", min: 0, max: 5 }) count!: number;
  @Field(3, { type: "int64" }) id!: bigint;
  @Field(4, { type: "string", repeated: true, maxItems: 3 }) tags!: string[];
}

@Message()
export class EchoReply {
  @Field(1) text!: string;
  @Field(2, { type: "int32" }) count!: number;
  @Field(3, { type: "int64" }) id!: bigint;
  @Field(4, { type: "string", repeated: true }) tags!: string[];
}

@Message()
export class FailRequest {
  /** A canonical status name, or "" for a plain Error (which must reach the caller as INTERNAL). */
  @Field(1) status!: string;
  @Field(2) code!: string;
  @Field(3) message!: string;
}

@Message()
export class SlowRequest {
  @Field(1, { type: "int32" }) ms!: number;
  /** A key under which the method reports to `conformanceProbe`. */
  @Field(2) key!: string;
}

@Message()
export class MetaReply {
  @Field(1) value!: string;
  @Field(2) hasDeadline!: boolean;
}

/** What the service saw, for cases that check the server side (aborts, finally blocks). */
export const conformanceProbe = {
  /** Key → the status the method's signal was aborted with. */
  aborted: new Map<string, StatusName>(),
  /** Keys whose method reached its `finally`. */
  finished: new Set<string>(),
};

const ROLE_HEADER = "x-conformance-role";

class AdminGuard implements Guard {
  canActivate(context: ExecutionContext): boolean {
    return context.call.metadata.get(ROLE_HEADER) === "admin";
  }
}

class SuffixInterceptor implements Interceptor {
  async intercept(_context: ExecutionContext, next: () => Promise<unknown>): Promise<unknown> {
    const output = (await next()) as EchoReply;
    return { ...output, text: `${output.text}+intercepted` };
  }
}

@Service({ package: "conformance", version: "v1" })
export class ConformanceService {
  @Method()
  echo(request: EchoRequest): EchoReply {
    return { text: request.text, count: request.count, id: request.id, tags: request.tags };
  }

  @Method({ output: Empty })
  fail(request: FailRequest): Empty {
    if (request.status === "") throw new Error(`secret: ${request.message}`);
    throw new GantryError(request.status as StatusName, request.message, { code: request.code || undefined });
  }

  @Method({ output: Empty })
  async slow(request: SlowRequest, call: CallContext): Promise<Empty> {
    try {
      await sleep(request.ms, undefined, { signal: call.signal });
      return {};
    } catch (error) {
      const reason = call.signal.reason as GantryError | undefined;
      if (reason !== undefined) conformanceProbe.aborted.set(request.key, reason.status);
      throw error;
    } finally {
      conformanceProbe.finished.add(request.key);
    }
  }

  @Method({ input: Empty })
  meta(_request: Empty, call: CallContext): MetaReply {
    const value = call.metadata.get("x-conformance") ?? "";
    call.responseMetadata.set("x-conformance-reply", `${value}!`);
    return { value, hasDeadline: call.deadline !== undefined };
  }

  @UseGuards(AdminGuard)
  @Method()
  guarded(request: EchoRequest): EchoReply {
    return this.echo(request);
  }

  @UseInterceptors(SuffixInterceptor)
  @Method()
  intercepted(request: EchoRequest): EchoReply {
    return this.echo(request);
  }
}

/** The options of an app that serves the conformance service on one transport, on port 0. */
export function conformanceApp(transport: Transport): AppOptions {
  return { name: "conformance", version: "1.0.0", services: [ConformanceService], transports: [transport] };
}

export interface ConformanceCallOptions {
  metadata?: Readonly<Record<string, string>>;
  timeoutMs?: number;
  signal?: AbortSignal;
}

export interface ConformanceReply {
  /** The output in proto3 JSON form (int64 as a string, every field present). */
  readonly output: Record<string, unknown>;
  /** Response metadata (HTTP headers, gRPC initial metadata), keys in lower case. */
  readonly metadata: Readonly<Record<string, string>>;
}

/** How a failed call looks to the suite, whatever the transport. */
export interface ConformanceFailure {
  readonly status: StatusName;
  /** The specific code (`GANTRY_ERR_VALIDATION`), as the transport carries it. */
  readonly code: string;
  readonly message: string;
  readonly violations: readonly { readonly field: string; readonly description: string }[];
}

/**
 * A client of the conformance service over the transport under test. `call` resolves with the
 * reply or rejects with a ConformanceFailure.
 */
export interface ConformanceClient {
  call(method: string, input: Record<string, unknown>, options?: ConformanceCallOptions): Promise<ConformanceReply>;
}

export interface ConformanceCase {
  readonly name: string;
  /** What the client must be able to do for the case to apply (typed clients see no response metadata). */
  readonly needs?: "response metadata";
  run(client: ConformanceClient): Promise<void>;
}

async function failure(promise: Promise<unknown>): Promise<ConformanceFailure> {
  try {
    await promise;
  } catch (error) {
    return error as ConformanceFailure;
  }
  assert.fail("the call succeeded but should have failed");
}

/** Polls a server-side condition for at most two seconds. */
async function eventually(what: string, condition: () => boolean): Promise<void> {
  for (let i = 0; i < 100 && !condition(); i++) await sleep(20);
  assert.ok(condition(), what);
}

const STATUSES = Object.keys(Status) as StatusName[];

export const conformanceCases: readonly ConformanceCase[] = [
  {
    name: "echoes a valid message in proto3 JSON (int64 as a string, lists)",
    async run(client) {
      const { output } = await client.call("Echo", { text: "hi", count: 2, id: "9007199254740993", tags: ["a"] });
      assert.deepEqual(output, { text: "hi", count: 2, id: "9007199254740993", tags: ["a"] });
    },
  },
  {
    name: "fills defaults for fields left out",
    async run(client) {
      const { output } = await client.call("Echo", { text: "x" });
      assert.deepEqual(output, { text: "x", count: 0, id: "0", tags: [] });
    },
  },
  {
    name: "rejects invalid input with INVALID_ARGUMENT listing every bad field",
    async run(client) {
      const error = await failure(client.call("Echo", { text: "", count: 9, tags: ["a", "b", "c", "d"] }));
      assert.equal(error.status, "INVALID_ARGUMENT");
      assert.equal(error.code, "GANTRY_ERR_VALIDATION");
      assert.deepEqual(error.violations.map((v) => v.field).sort(), ["count", "tags", "text"]);
      assert.ok(error.violations.every((v) => v.description.length > 0));
    },
  },
  {
    name: "sends a method's own status, code and message unchanged",
    async run(client) {
      const error = await failure(
        client.call("Fail", { status: "NOT_FOUND", code: "USER_NOT_FOUND", message: "no user 7" }),
      );
      assert.deepEqual(
        { status: error.status, code: error.code, message: error.message },
        { status: "NOT_FOUND", code: "USER_NOT_FOUND", message: "no user 7" },
      );
    },
  },
  {
    name: "carries every canonical status",
    async run(client) {
      for (const status of STATUSES) {
        const error = await failure(client.call("Fail", { status, code: "", message: `as ${status}` }));
        assert.equal(error.status, status);
        assert.equal(error.code, status);
      }
    },
  },
  {
    name: "turns an unknown error into INTERNAL without its message",
    async run(client) {
      const error = await failure(client.call("Fail", { status: "", code: "", message: "db password" }));
      assert.equal(error.status, "INTERNAL");
      assert.equal(error.code, "GANTRY_ERR_INTERNAL");
      assert.ok(!error.message.includes("db password"), `the message leaked: ${error.message}`);
    },
  },
  {
    name: "ends a call whose deadline passes with DEADLINE_EXCEEDED and aborts the method",
    async run(client) {
      const key = `deadline-${Math.random()}`;
      const error = await failure(client.call("Slow", { ms: 10_000, key }, { timeoutMs: 100 }));
      assert.equal(error.status, "DEADLINE_EXCEEDED");
      await eventually("the method's finally ran", () => conformanceProbe.finished.has(key));
      assert.equal(conformanceProbe.aborted.get(key), "DEADLINE_EXCEEDED");
    },
  },
  {
    name: "gives the method the caller's deadline",
    async run(client) {
      const { output } = await client.call("Meta", {}, { timeoutMs: 5000 });
      assert.equal(output.hasDeadline, true);
      const without = await client.call("Meta", {});
      assert.equal(without.output.hasDeadline, false);
    },
  },
  {
    name: "passes metadata in",
    async run(client) {
      const reply = await client.call("Meta", {}, { metadata: { "x-conformance": "tea" } });
      assert.equal(reply.output.value, "tea");
    },
  },
  {
    name: "passes response metadata out",
    needs: "response metadata",
    async run(client) {
      const reply = await client.call("Meta", {}, { metadata: { "x-conformance": "tea" } });
      assert.equal(reply.metadata["x-conformance-reply"], "tea!");
    },
  },
  {
    name: "aborts the method's signal when the caller cancels, and runs its finally",
    async run(client) {
      const key = `cancel-${Math.random()}`;
      const controller = new AbortController();
      const pending = client.call("Slow", { ms: 10_000, key }, { signal: controller.signal });
      const settled = pending.then(
        () => "resolved",
        () => "rejected",
      );
      await sleep(100);
      controller.abort();
      assert.equal(await settled, "rejected");
      await eventually("the method's finally ran", () => conformanceProbe.finished.has(key));
      assert.equal(conformanceProbe.aborted.get(key), "CANCELLED");
    },
  },
  {
    name: "runs guards before validation: a caller not allowed learns nothing about its input",
    async run(client) {
      const denied = await failure(client.call("Guarded", { text: "" }));
      assert.equal(denied.status, "PERMISSION_DENIED");
      assert.deepEqual(denied.violations, []);
      const invalid = await failure(client.call("Guarded", { text: "" }, { metadata: { [ROLE_HEADER]: "admin" } }));
      assert.equal(invalid.status, "INVALID_ARGUMENT");
      const { output } = await client.call("Guarded", { text: "ok" }, { metadata: { [ROLE_HEADER]: "admin" } });
      assert.equal(output.text, "ok");
    },
  },
  {
    name: "runs interceptors around the method",
    async run(client) {
      const { output } = await client.call("Intercepted", { text: "x" });
      assert.equal(output.text, "x+intercepted");
    },
  },
];

/**
 * The conformance client over a typed client of ConformanceService (in-process or through
 * discovery and a transport's client side). A typed client gives no response metadata: run only the
 * cases without `needs`. A failure's message is the callee's own (a remote client adds where and
 * which attempt; that context is its `cause`'s wrapper).
 */
export function typedConformanceClient(client: ServiceClient<ConformanceService>): ConformanceClient {
  const service = describeService(ConformanceService);
  const calls = client as unknown as Record<string, (input: unknown, options?: ClientCallOptions) => Promise<unknown>>;
  return {
    async call(name, input, options = {}) {
      const method = service.methods.find((m) => m.name === name);
      if (method === undefined) throw new TypeError(`ConformanceService has no method ${name}`);
      try {
        // The suite writes inputs in proto3 JSON; a typed client takes native values.
        const output = await calls[method.key](readMessage(method.input, input, { rules: false }), options);
        return { output: writeMessage(method.output, output) as Record<string, unknown>, metadata: {} };
      } catch (error) {
        if (!(error instanceof GantryError)) throw error;
        const own = error.cause instanceof GantryError && error.cause.code === error.code ? error.cause : error;
        throw { status: error.status, code: error.code, message: own.message, violations: error.violations };
      }
    },
  };
}
