import diagnostics from "node:diagnostics_channel";
import { getEventListeners } from "node:events";
import { INVALID_SPAN_CONTEXT, type Span, type Tracer, trace } from "@opentelemetry/api";
import { afterEach, describe, expect, test, vi } from "vitest";
import { DeadlineQueue, MAX_TIMER_MS } from "../src/client/deadline.js";
import {
  ClientRuntime,
  type ClientTransport,
  clientChannels,
  FIRST_SNAPSHOT_WAIT_MS,
  type InstanceStats,
  type OutboundCall,
  type UnaryCall,
} from "../src/client/index.js";
import { coreErrors, GantryError } from "../src/index.js";
import { until } from "../src/testing/index.js";
import {
  after,
  connectRefused,
  FakeResolver,
  FakeTransport,
  getHello,
  hang,
  instance,
  notFound,
  sayHello,
  service,
  setup,
  silentLog,
  unavailable,
  urlOf,
} from "./client-fakes.js";
import { rejected, signal } from "./helpers.js";

const open: ClientRuntime[] = [];
/** A runtime closed after the test. */
function runtimeOf(options: Parameters<typeof setup>[0] = {}) {
  const made = setup(options);
  open.push(made.runtime);
  return made;
}

afterEach(async () => {
  vi.useRealTimers();
  await Promise.all(open.splice(0).map((runtime) => runtime.close()));
});

describe("instances", () => {
  test("the first call starts one watch of the service; later calls share it", async () => {
    const { runtime, resolver } = runtimeOf({ instances: [instance(1)] });
    expect(resolver.watched).toEqual([]);
    await runtime.call(getHello, { name: "Ada" });
    await runtime.call(getHello, { name: "Ada" });
    expect(resolver.watched).toEqual(["hello.v1.HelloService"]);
  });

  test("a call made before the first snapshot waits for it", async () => {
    const { runtime, resolver, transport } = runtimeOf();
    let settled = false;
    const pending = runtime.call(getHello, { name: "Ada" }).finally(() => {
      settled = true;
    });
    await new Promise((resolve) => setImmediate(resolve));
    expect(settled).toBe(false);
    resolver.snapshot([instance(1)]);
    await expect(pending).resolves.toEqual({ message: `hi from ${urlOf(1)}` });
    expect(transport.calls).toEqual([urlOf(1)]);
  });

  test("the wait for the first snapshot ends at the deadline with DEADLINE_EXCEEDED, naming the registry's error", async () => {
    const { runtime, resolver } = runtimeOf();
    const started = Date.now();
    const pending = runtime.call(getHello, { name: "Ada" }, { deadline: started + 40 });
    resolver.error(new Error("etcd is down"));
    const error = await rejected(pending);
    expect(Date.now() - started).toBeGreaterThanOrEqual(35);
    expect(error.code).toBe("GANTRY_ERR_DEADLINE_EXCEEDED");
    expect(error.status).toBe("DEADLINE_EXCEEDED");
    expect(error.message).toMatch(
      /^deadline exceeded after (39|40) ms \(hello\.v1\.HelloService\/GetHello; the registry has not answered: etcd is down\)$/,
    );
  });

  test("without a deadline, the wait for the first snapshot ends after FIRST_SNAPSHOT_WAIT_MS with NO_INSTANCES", async () => {
    vi.useFakeTimers();
    const { runtime } = runtimeOf();
    const pending = rejected(runtime.call(getHello, { name: "Ada" }));
    await vi.advanceTimersByTimeAsync(FIRST_SNAPSHOT_WAIT_MS);
    const error = await pending;
    expect(error.code).toBe("GANTRY_ERR_NO_INSTANCES");
    expect(error.message).toBe(
      "no instance of hello.v1.HelloService is available (the registry has not answered) (hello.v1.HelloService/GetHello)",
    );
  });

  test("the wait for the first snapshot ends when the caller's signal aborts", async () => {
    const { runtime } = runtimeOf();
    const controller = new AbortController();
    const pending = runtime.call(getHello, { name: "Ada" }, { signal: controller.signal });
    controller.abort();
    expect((await rejected(pending)).code).toBe("GANTRY_ERR_CANCELLED");
  });

  test("an empty set fails fast with NO_INSTANCES", async () => {
    const { runtime } = runtimeOf({ instances: [] });
    const error = await rejected(runtime.call(getHello, { name: "Ada" }));
    expect(error.code).toBe("GANTRY_ERR_NO_INSTANCES");
    expect(error.message).toBe("no instance of hello.v1.HelloService is available (hello.v1.HelloService/GetHello)");
  });

  test("a resolver that throws on watch fails the call; the next call watches again", async () => {
    const { runtime, resolver } = runtimeOf({ instances: [instance(1)] });
    const watch = resolver.watch.bind(resolver);
    let fail = true;
    resolver.watch = (service, listener) => {
      if (fail) throw new Error("bad target");
      return watch(service, listener);
    };
    const error = await rejected(runtime.call(getHello, {}));
    expect(error.code).toBe("GANTRY_ERR_NO_INSTANCES");
    expect(error.message).toContain("(the registry failed: bad target)");
    fail = false;
    await expect(runtime.call(getHello, {})).resolves.toBeDefined();
  });

  test("add and remove change the set; an error event keeps the last one", async () => {
    const { runtime, resolver, transport } = runtimeOf({
      instances: [instance(1)],
      policy: { balancer: "round-robin" },
    });
    await runtime.call(getHello, {});
    resolver.add(instance(2));
    for (let i = 0; i < 4; i++) await runtime.call(getHello, {});
    expect(new Set(transport.calls)).toEqual(new Set([urlOf(1), urlOf(2)]));
    resolver.remove(instance(1));
    resolver.error(new Error("connection lost"));
    transport.calls.length = 0;
    for (let i = 0; i < 4; i++) await runtime.call(getHello, {});
    expect(transport.calls).toEqual([urlOf(2), urlOf(2), urlOf(2), urlOf(2)]);
  });

  test("a snapshot after a reconnect replaces the set and closes the channels of instances gone from it", async () => {
    const { runtime, resolver, transport } = runtimeOf({
      instances: [instance(1), instance(2)],
      policy: { balancer: "round-robin" },
    });
    await runtime.call(getHello, {});
    await runtime.call(getHello, {});
    resolver.snapshot([instance(2), instance(3)]);
    expect(transport.opened(urlOf(1))[0].closed).toBe(true);
    expect(transport.opened(urlOf(2))[0].closed).toBe(false);
    transport.calls.length = 0;
    for (let i = 0; i < 4; i++) await runtime.call(getHello, {});
    expect(new Set(transport.calls)).toEqual(new Set([urlOf(2), urlOf(3)]));
    // Instance 2 kept its channel.
    expect(transport.opened(urlOf(2))).toHaveLength(1);
  });

  test("an instance that comes back with a new endpoint gets a new channel; one with new metadata keeps it", async () => {
    const { runtime, resolver, transport } = runtimeOf({ instances: [instance(1)] });
    await runtime.call(getHello, {});
    resolver.add(instance(1, { metadata: { weight: "3" } }));
    await runtime.call(getHello, {});
    expect(transport.channels).toHaveLength(1);
    resolver.add(instance(1, { endpoints: { grpc: "grpc://10.0.1.1:50051" } }));
    expect(transport.channels[0].closed).toBe(true);
    await runtime.call(getHello, {});
    expect(transport.calls.at(-1)).toBe("grpc://10.0.1.1:50051");
  });
});

describe("balancing in the runtime", () => {
  test("weighted follows the weight in each instance's metadata", async () => {
    const { runtime, transport } = runtimeOf({
      instances: [instance(1, { metadata: { weight: "3" } }), instance(2)],
      policy: { balancer: "weighted" },
    });
    for (let i = 0; i < 800; i++) await runtime.call(getHello, {});
    const share = (transport.counts().get(urlOf(1)) ?? 0) / 800;
    expect(share).toBeGreaterThan(0.68);
    expect(share).toBeLessThan(0.82);
  });

  test("least-outstanding sees the calls in flight to each instance", async () => {
    const { runtime, transport } = runtimeOf({
      instances: [instance(1), instance(2)],
      policy: { balancer: "least-outstanding" },
    });
    const held: ((value: unknown) => void)[] = [];
    transport.script = (url) =>
      url === urlOf(1) ? new Promise((resolve) => held.push(resolve)) : Promise.resolve({ message: url });
    // Calls one at a time until one is held by instance 1; from then on, every call goes to 2.
    const pending: Promise<unknown>[] = [];
    for (let i = 0; i < 50 && held.length === 0; i++) {
      pending.push(runtime.call(getHello, {}));
      await until(() => transport.calls.length === i + 1);
    }
    expect(held).toHaveLength(1);
    transport.calls.length = 0;
    for (let i = 0; i < 10; i++) await runtime.call(getHello, {});
    expect(transport.calls).toEqual(Array(10).fill(urlOf(2)));
    held[0]({ message: "late" });
    await Promise.all(pending);
  });

  test("a custom Balancer picks; what it returns is mapped back to the runtime's instance", async () => {
    const seen: number[] = [];
    const { runtime, transport } = runtimeOf({
      instances: [instance(1), instance(2), instance(3)],
      policy: {
        balancer: {
          pick(candidates) {
            seen.push(candidates.length);
            const last = candidates[candidates.length - 1];
            return { ...last };
          },
        },
      },
    });
    for (let i = 0; i < 3; i++) await runtime.call(getHello, {});
    expect(seen).toEqual([3, 3, 3]);
    expect(new Set(transport.calls).size).toBe(1);
  });
});

describe("channels", () => {
  test("are opened lazily, one per instance, and closed when it leaves the registry and on close()", async () => {
    const { runtime, resolver, transport } = runtimeOf({
      instances: [instance(1), instance(2), instance(3)],
      policy: { balancer: "round-robin" },
    });
    await runtime.call(getHello, {});
    expect(transport.channels).toHaveLength(1);
    for (let i = 0; i < 5; i++) await runtime.call(getHello, {});
    expect(transport.channels.map((c) => c.url).sort()).toEqual([urlOf(1), urlOf(2), urlOf(3)]);
    resolver.remove(instance(2));
    expect(transport.opened(urlOf(2))[0].closed).toBe(true);
    expect(transport.opened(urlOf(1))[0].closed).toBe(false);
    await runtime.close();
    expect(transport.channels.every((c) => c.closed)).toBe(true);
    expect(resolver.closedWatches).toBe(1);
    expect(resolver.listeners.size).toBe(0);
  });

  test("use the first transport of the policy's order that the instance offers and the client has", async () => {
    const grpc = new FakeTransport("grpc");
    const http = new FakeTransport("http");
    const both = instance(1, { endpoints: { http: "http://10.0.0.1:8080", grpc: urlOf(1) } });
    const httpOnly = instance(2, { endpoints: { http: "http://10.0.0.2:8080" } });
    const first = runtimeOf({ instances: [both], transports: [http, grpc] });
    await first.runtime.call(getHello, {});
    expect(grpc.calls).toEqual([urlOf(1)]);
    const preferHttp = runtimeOf({
      instances: [both],
      transports: [grpc, http],
      policy: { transports: ["http", "grpc"] },
    });
    await preferHttp.runtime.call(getHello, {});
    expect(http.calls).toEqual(["http://10.0.0.1:8080"]);
    const grpcOnly = runtimeOf({ instances: [httpOnly], transports: [grpc] });
    const error = await rejected(grpcOnly.runtime.call(getHello, {}));
    expect(error.code).toBe("GANTRY_ERR_NO_INSTANCES");
    expect(error.message).toContain("(none of the 1 offers grpc or http with a client transport for it)");
  });
});

describe("selection", () => {
  test("version and metadata filter strictly", async () => {
    const instances = [
      instance(1, { version: "1.0.0", metadata: { track: "stable" } }),
      instance(2, { version: "2.0.0", metadata: { track: "canary" } }),
      instance(3, { version: "2.0.0", metadata: { track: "stable" } }),
    ];
    const { runtime, transport } = runtimeOf({ instances, policy: { select: { version: "2.0.0" } } });
    for (let i = 0; i < 20; i++) await runtime.call(getHello, {});
    expect(new Set(transport.calls)).toEqual(new Set([urlOf(2), urlOf(3)]));
    const both = runtimeOf({ instances, policy: { select: { version: "2.0.0", metadata: { track: "stable" } } } });
    for (let i = 0; i < 5; i++) await both.runtime.call(getHello, {});
    expect(new Set(both.transport.calls)).toEqual(new Set([urlOf(3)]));
    const none = runtimeOf({ instances, policy: { select: { version: "3.0.0" } } });
    const error = await rejected(none.runtime.call(getHello, {}));
    expect(error.code).toBe("GANTRY_ERR_NO_INSTANCES");
    expect(error.message).toContain('(none of the 3 matches the selection {"version":"3.0.0"})');
  });

  test("the zone is preferred, and all zones serve when it has no instance", async () => {
    const instances = [instance(1, { zone: "a" }), instance(2, { zone: "b" }), instance(3, { zone: "b" })];
    const { runtime, resolver, transport } = runtimeOf({ instances, policy: { select: { zone: "b" } } });
    for (let i = 0; i < 20; i++) await runtime.call(getHello, {});
    expect(new Set(transport.calls)).toEqual(new Set([urlOf(2), urlOf(3)]));
    resolver.snapshot([instance(1, { zone: "a" }), instance(4, { zone: "c" })]);
    transport.calls.length = 0;
    for (let i = 0; i < 20; i++) await runtime.call(getHello, {});
    expect(new Set(transport.calls)).toEqual(new Set([urlOf(1), urlOf(4)]));
  });

  test("when the zone's instances are ejected, calls go to other zones", async () => {
    const instances = [instance(1, { zone: "a" }), instance(2, { zone: "b" }), instance(3, { zone: "b" })];
    const { runtime, transport } = runtimeOf({ instances, policy: { select: { zone: "a" } } });
    transport.script = async (url) => {
      if (url === urlOf(1)) throw unavailable();
      return { message: url };
    };
    // Instance 1 fails five times in a row (the default) and is ejected; the sixth call goes elsewhere.
    for (let i = 0; i < 5; i++) await rejected(runtime.call(sayHello, {}));
    await expect(runtime.call(sayHello, {})).resolves.toEqual({ message: expect.not.stringContaining("10.0.0.1") });
  });

  test("a subset is deterministic per client and changes minimally as instances come and go", async () => {
    const instances = Array.from({ length: 10 }, (_, i) => instance(i + 1));
    const { runtime, resolver, transport } = runtimeOf({
      instances,
      policy: { subsetSize: 3, balancer: "round-robin" },
    });
    const contacted = async () => {
      transport.calls.length = 0;
      for (let i = 0; i < 9; i++) await runtime.call(getHello, {});
      return new Set(transport.calls);
    };
    const subset = await contacted();
    expect(subset.size).toBe(3);
    expect(await contacted()).toEqual(subset);
    // An instance outside the subset leaves: nothing changes.
    const outside = instances.find((i) => !subset.has(i.endpoints.grpc)) as (typeof instances)[number];
    resolver.remove(outside);
    expect(await contacted()).toEqual(subset);
    // One inside leaves: one other takes its place, the two others stay.
    const inside = instances.find((i) => subset.has(i.endpoints.grpc)) as (typeof instances)[number];
    resolver.remove(inside);
    const next = await contacted();
    expect(next.size).toBe(3);
    expect([...next].filter((url) => subset.has(url))).toHaveLength(2);
    // Ten more instances come: at most three of the subset change, and those that stay are from it.
    for (let n = 11; n <= 20; n++) resolver.add(instance(n));
    const grown = await contacted();
    expect(grown.size).toBe(3);
    // Coming back, the instance that left takes its place again.
    resolver.snapshot(instances);
    expect(await contacted()).toEqual(subset);
    // Another client draws another subset (almost surely, from C(10,3) = 120).
    const other = runtimeOf({ instances, policy: { subsetSize: 3, balancer: "round-robin" } });
    for (let i = 0; i < 9; i++) await other.runtime.call(getHello, {});
    expect(new Set(other.transport.calls).size).toBe(3);
  });
});

describe("streaming calls", () => {
  test("need an instance reached over a transport with streams: else GANTRY_ERR_NO_INSTANCES, saying why", async () => {
    const { runtime, transport } = runtimeOf({ instances: [instance(1)] });
    const error = await rejected(runtime.stream(getHello, {}));
    expect(error.code).toBe("GANTRY_ERR_NO_INSTANCES");
    expect(error.message).toContain("a transport with streams");
    expect(transport.calls).toEqual([]);
  });
});

describe("deadlines", () => {
  test("the policy's timeout bounds the call; the channel is told to cancel; DEADLINE_EXCEEDED names it", async () => {
    const { runtime, transport } = runtimeOf({ instances: [instance(1)], policy: { timeoutMs: 30 } });
    const seen: OutboundCall[] = [];
    transport.script = (_, call) => {
      seen.push(call);
      return hang(call);
    };
    const before = Date.now();
    const error = await rejected(runtime.call(getHello, {}));
    expect(error.status).toBe("DEADLINE_EXCEEDED");
    expect(error.code).toBe("GANTRY_ERR_DEADLINE_EXCEEDED");
    expect(error.message).toBe(
      "deadline exceeded after 30 ms (hello.v1.HelloService/GetHello on instance i1, attempt 1 of 3)",
    );
    expect(error.details).toEqual({});
    expect(seen).toHaveLength(1);
    expect(seen[0].stopped?.code).toBe("GANTRY_ERR_DEADLINE_EXCEEDED");
    expect(seen[0].deadline).toBeGreaterThanOrEqual(before + 30);
    expect(seen[0].deadline).toBeLessThanOrEqual(Date.now());
  });

  test("the call's own timeout wins over the method's, which wins over the policy's; the caller's deadline wins when sooner", async () => {
    const { runtime, transport } = runtimeOf({
      instances: [instance(1)],
      policy: { timeoutMs: 10_000, methodTimeoutsMs: { GetHello: 5000 } },
    });
    const deadlines: (number | undefined)[] = [];
    transport.script = async (_, call) => {
      deadlines.push(call.deadline);
      return {};
    };
    const now = Date.now();
    await runtime.call(getHello, {});
    await runtime.call(sayHello, {});
    await runtime.call(getHello, {}, { deadline: now + 100 });
    await runtime.call(getHello, {}, { deadline: now + 60_000 });
    await runtime.call(getHello, {}, { timeoutMs: 200 });
    await runtime.call(getHello, {}, { timeoutMs: 200, deadline: now + 100 });
    expect((deadlines[0] as number) - now).toBeGreaterThanOrEqual(5000);
    expect((deadlines[0] as number) - now).toBeLessThan(5100);
    expect((deadlines[1] as number) - now).toBeGreaterThanOrEqual(10_000);
    expect(deadlines[2]).toBe(now + 100);
    expect((deadlines[3] as number) - now).toBeLessThan(5100);
    expect((deadlines[4] as number) - now).toBeGreaterThanOrEqual(200);
    expect((deadlines[4] as number) - now).toBeLessThan(300);
    expect(deadlines[5]).toBe(now + 100);
  });

  test("a deadline already past fails without an attempt", async () => {
    const { runtime, transport } = runtimeOf({ instances: [instance(1)] });
    const error = await rejected(runtime.call(getHello, {}, { deadline: Date.now() - 1 }));
    expect(error.code).toBe("GANTRY_ERR_DEADLINE_EXCEEDED");
    expect(transport.calls).toEqual([]);
  });

  test("the caller's signal cancels the attempt with CANCELLED", async () => {
    const { runtime, transport } = runtimeOf({ instances: [instance(1)] });
    const seen: OutboundCall[] = [];
    transport.script = (_, call) => {
      seen.push(call);
      return hang(call);
    };
    const controller = new AbortController();
    const pending = runtime.call(getHello, {}, { signal: controller.signal });
    await until(() => seen.length === 1);
    controller.abort();
    const error = await rejected(pending);
    expect(error.code).toBe("GANTRY_ERR_CANCELLED");
    expect(error.status).toBe("CANCELLED");
    expect(seen[0].stopped?.code).toBe("GANTRY_ERR_CANCELLED");
    // An aborted signal fails at once.
    expect((await rejected(runtime.call(getHello, {}, { signal: controller.signal }))).code).toBe(
      "GANTRY_ERR_CANCELLED",
    );
  });

  test("a call without a deadline sets no timer; calls with deadlines share one", async () => {
    vi.useFakeTimers();
    const { runtime, transport } = runtimeOf({ instances: [instance(1)] });
    const answer = signal<unknown>();
    transport.script = () => answer.promise;
    const plain = runtime.call(getHello, {});
    await vi.advanceTimersByTimeAsync(0);
    expect(vi.getTimerCount()).toBe(0);
    const timed = [1000, 2000, 500].map((ms) => runtime.call(getHello, {}, { deadline: Date.now() + ms }));
    await vi.advanceTimersByTimeAsync(0);
    expect(vi.getTimerCount()).toBe(1);
    answer.resolve({ message: "done" });
    await expect(Promise.all([plain, ...timed])).resolves.toHaveLength(4);
    expect(vi.getTimerCount()).toBeLessThanOrEqual(1);
    // Its deadline still fires on time for a call that outlives it.
    transport.script = (_, call) => hang(call);
    const late = runtime.call(getHello, {}, { deadline: Date.now() + 3000 });
    await vi.advanceTimersByTimeAsync(2999);
    let settled = false;
    late
      .catch(() => {})
      .finally(() => {
        settled = true;
      });
    await vi.advanceTimersByTimeAsync(0);
    expect(settled).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    expect((await rejected(late)).message).toContain("deadline exceeded after 3000 ms");
  });
});

describe("deadlines farther than a timer can hold (2^31 − 1 ms, 24.8 days)", () => {
  const DAY = 86_400_000;

  test("a call with a 30-day or an infinite deadline sets no timer that fires early, and no overflow warning", async () => {
    const warnings: Error[] = [];
    const onWarning = (warning: Error) => void warnings.push(warning);
    process.on("warning", onWarning);
    const fire = vi.spyOn(DeadlineQueue.prototype, "fire");
    try {
      const { runtime, transport } = runtimeOf({ instances: [instance(1)] });
      transport.script = (url, call) => after(30, { message: url }, call);
      await expect(runtime.call(getHello, {}, { deadline: Date.now() + 30 * DAY })).resolves.toBeDefined();
      await expect(runtime.call(getHello, {}, { deadline: Number.POSITIVE_INFINITY })).resolves.toBeDefined();
      await new Promise((resolve) => setImmediate(resolve));
      // Set for more than 2^31 − 1 ms, Node's timer fired after 1 ms, over and over.
      expect(fire).not.toHaveBeenCalled();
      expect(warnings.filter((w) => w.name === "TimeoutOverflowWarning")).toEqual([]);
    } finally {
      fire.mockRestore();
      process.off("warning", onWarning);
    }
  });

  test("such a deadline still ends the call when it comes", async () => {
    vi.useFakeTimers();
    const setTimeoutSpy = vi.spyOn(globalThis, "setTimeout");
    const { runtime, transport } = runtimeOf({ instances: [instance(1)] });
    transport.script = (_, call) => hang(call);
    let settled = false;
    const pending = rejected(runtime.call(getHello, {}, { deadline: Date.now() + MAX_TIMER_MS + 1000 })).finally(() => {
      settled = true;
    });
    await vi.advanceTimersByTimeAsync(MAX_TIMER_MS);
    expect(settled).toBe(false);
    await vi.advanceTimersByTimeAsync(1000);
    expect((await pending).code).toBe("GANTRY_ERR_DEADLINE_EXCEEDED");
    for (const [, delay] of setTimeoutSpy.mock.calls) expect(delay).toBeLessThanOrEqual(MAX_TIMER_MS);
    setTimeoutSpy.mockRestore();
  });

  test("before the first snapshot, a call with a 30-day deadline waits for it", async () => {
    const { runtime, resolver } = runtimeOf();
    let settled = false;
    const pending = runtime.call(getHello, {}, { deadline: Date.now() + 30 * DAY }).finally(() => {
      settled = true;
    });
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(settled).toBe(false);
    resolver.snapshot([instance(1)]);
    await expect(pending).resolves.toEqual({ message: `hi from ${urlOf(1)}` });
  });
});

describe("errors", () => {
  test("keep the callee's status, code and details, and say where they happened", async () => {
    const { runtime, transport } = runtimeOf({ instances: [instance(1)] });
    const original = notFound();
    transport.script = async () => {
      throw original;
    };
    const error = await rejected(runtime.call(getHello, { name: "Ada" }));
    expect(error).toBeInstanceOf(GantryError);
    expect(error.status).toBe("NOT_FOUND");
    expect(error.code).toBe("GREETING_NOT_FOUND");
    expect(error.httpStatus).toBe(404);
    expect(error.retryable).toBe(false);
    // Where it happened is in the message by instance id; the endpoint is nowhere in the error.
    expect(error.details).toEqual({ name: "Ada" });
    expect(error.message).toBe("no such greeting (hello.v1.HelloService/GetHello on instance i1, attempt 1 of 3)");
    expect(error.message).not.toContain("10.0.0.1");
    expect(error.cause).toBe(original);
    expect(transport.calls).toHaveLength(1);
  });

  test("keep violations, and say which attempt failed for good", async () => {
    const { runtime, transport } = runtimeOf({
      instances: [instance(1), instance(2)],
      policy: { retry: { baseDelayMs: 0 } },
    });
    const invalid = new GantryError("INVALID_ARGUMENT", "invalid HelloRequest", {
      violations: [{ field: "name", description: "is required" }],
    });
    let calls = 0;
    transport.script = async () => {
      calls += 1;
      throw calls === 1 ? unavailable() : invalid;
    };
    const error = await rejected(runtime.call(getHello, {}));
    expect(error.violations).toEqual([{ field: "name", description: "is required" }]);
    expect(error.message).toMatch(
      /^invalid HelloRequest \(hello\.v1\.HelloService\/GetHello on instance i[12], attempt 2 of 3\)$/,
    );
    expect(error.details).toEqual({});
  });

  test("anything else a channel throws becomes INTERNAL", async () => {
    const { runtime, transport } = runtimeOf({ instances: [instance(1)] });
    const bug = new TypeError("oops");
    transport.script = async () => {
      throw bug;
    };
    const error = await rejected(runtime.call(getHello, {}));
    expect(error.status).toBe("INTERNAL");
    expect((error.cause as GantryError).cause).toBe(bug);
  });
});

describe("bulkhead, fallback, interceptors", () => {
  test("the bulkhead fails calls beyond its limit at once", async () => {
    const { runtime, transport } = runtimeOf({ instances: [instance(1)], policy: { bulkhead: 2 } });
    const answers: ((value: unknown) => void)[] = [];
    transport.script = () => new Promise((resolve) => answers.push(resolve));
    const first = runtime.call(getHello, {});
    const second = runtime.call(getHello, {});
    const error = await rejected(runtime.call(getHello, {}));
    expect(error.code).toBe("GANTRY_ERR_BULKHEAD_FULL");
    expect(error.status).toBe("RESOURCE_EXHAUSTED");
    expect(error.message).toBe(
      "hello.v1.HelloService already has 2 calls in flight from this client (hello.v1.HelloService/GetHello)",
    );
    await until(() => answers.length === 2);
    // One place frees up: one more call goes, the next is refused again.
    answers[0]({ n: 1 });
    await Promise.race([first, second]);
    const third = runtime.call(getHello, {});
    expect((await rejected(runtime.call(getHello, {}))).code).toBe("GANTRY_ERR_BULKHEAD_FULL");
    await until(() => answers.length === 3);
    answers[1]({ n: 2 });
    answers[2]({ n: 3 });
    const results = await Promise.all([first, second, third]);
    expect(results).toHaveLength(3);
  });

  test("the fallback's value or throw is the result of a call that failed for good", async () => {
    const seen: unknown[][] = [];
    const { runtime, transport } = runtimeOf({
      instances: [instance(1)],
      policy: {
        retry: { maxAttempts: 1 },
        fallback: (method, input, error) => {
          seen.push([method, input, error]);
          if ((input as { name: string }).name === "throw") throw new GantryError("NOT_FOUND", "no fallback");
          return { message: "from the fallback" };
        },
      },
    });
    transport.script = async () => {
      throw unavailable();
    };
    await expect(runtime.call(getHello, { name: "Ada" })).resolves.toEqual({ message: "from the fallback" });
    expect(seen[0][0]).toBe(getHello);
    expect(seen[0][1]).toEqual({ name: "Ada" });
    expect((seen[0][2] as GantryError).code).toBe("UNAVAILABLE");
    expect((seen[0][2] as GantryError).message).toContain("attempt 1 of 1");
    const error = await rejected(runtime.call(getHello, { name: "throw" }));
    expect(error.message).toBe("no fallback");
    transport.script = async () => ({ message: "ok" });
    await expect(runtime.call(getHello, { name: "Ada" })).resolves.toEqual({ message: "ok" });
    expect(seen).toHaveLength(2);
  });

  test("interceptors wrap the whole call in order and may edit its metadata", async () => {
    const order: string[] = [];
    const { runtime, transport } = runtimeOf({
      instances: [instance(1), instance(2)],
      policy: {
        retry: { baseDelayMs: 0 },
        interceptors: [
          async (call, next) => {
            order.push(`a:${call.method.name}:${JSON.stringify(call.metadata)}`);
            call.metadata.authorization = "Bearer t";
            const result = await next();
            order.push("a:after");
            return result;
          },
          async (call, next) => {
            order.push(`b:${call.metadata.authorization}`);
            call.metadata["x-trace"] = "1";
            try {
              return await next();
            } finally {
              order.push("b:after");
            }
          },
        ],
      },
    });
    const metadata: Readonly<Record<string, string>>[] = [];
    let calls = 0;
    transport.script = async (_, call) => {
      metadata.push(call.metadata);
      order.push("attempt");
      calls += 1;
      if (calls === 1) throw unavailable();
      return { message: "ok" };
    };
    const callerMetadata = { "x-tenant": "acme" };
    await expect(runtime.call(getHello, {}, { metadata: callerMetadata })).resolves.toEqual({ message: "ok" });
    expect(order).toEqual(['a:GetHello:{"x-tenant":"acme"}', "b:Bearer t", "attempt", "attempt", "b:after", "a:after"]);
    expect(metadata[1]).toEqual({ "x-tenant": "acme", authorization: "Bearer t", "x-trace": "1" });
    // The caller's object is not edited.
    expect(callerMetadata).toEqual({ "x-tenant": "acme" });
  });
});

describe("signals", () => {
  test("many calls in flight raise no listener warning", async () => {
    const warnings: Error[] = [];
    const onWarning = (warning: Error) => void warnings.push(warning);
    process.on("warning", onWarning);
    try {
      const { runtime, transport } = runtimeOf({ instances: [instance(1)] });
      transport.script = (url, call) => after(5, { message: url }, call);
      await Promise.all(Array.from({ length: 50 }, () => runtime.call(getHello, {})));
      await new Promise((resolve) => setImmediate(resolve));
      expect(warnings.filter((w) => w.name === "MaxListenersExceededWarning")).toEqual([]);
    } finally {
      process.off("warning", onWarning);
    }
  });

  test("a channel that sets its cancel hook after the deadline has it called at once, with the reason", async () => {
    const { runtime, transport } = runtimeOf({ instances: [instance(1)], policy: { timeoutMs: 5 } });
    let late: OutboundCall | undefined;
    transport.script = (_, call) => {
      late = call;
      return new Promise(() => {});
    };
    expect((await rejected(runtime.call(getHello, {}))).code).toBe("GANTRY_ERR_DEADLINE_EXCEEDED");
    const call = late as OutboundCall;
    expect(call.stopped?.code).toBe("GANTRY_ERR_DEADLINE_EXCEEDED");
    const reasons: string[] = [];
    call.onStop((reason) => reasons.push(reason.code));
    expect(reasons).toEqual(["GANTRY_ERR_DEADLINE_EXCEEDED"]);
  });

  test("a cancel hook that throws does not stop the deadline timer or close()", async () => {
    const { runtime, transport } = runtimeOf({ instances: [instance(1)], policy: { timeoutMs: 5 } });
    transport.script = (_, call) => {
      call.onStop(() => {
        throw new Error("the channel is broken");
      });
      return new Promise(() => {});
    };
    const calls = [runtime.call(getHello, {}), runtime.call(getHello, {})];
    for (const call of calls) expect((await rejected(call)).code).toBe("GANTRY_ERR_DEADLINE_EXCEEDED");
    const pending = runtime.call(getHello, {}, { timeoutMs: 60_000 });
    await until(() => transport.calls.length === 3);
    await runtime.close();
    expect((await rejected(pending)).code).toBe("GANTRY_ERR_SHUTTING_DOWN");
  });

  test("reports after the first are ignored: a second answer, a failure after the answer", async () => {
    let sent: UnaryCall | undefined;
    const reporting: ClientTransport = {
      kind: "grpc",
      channel: () => ({
        unary(call) {
          sent = call;
          call.answered({ message: "first" });
          call.failed(unavailable());
          call.answered({ message: "second" });
        },
        close() {},
      }),
    };
    const resolver = new FakeResolver([instance(1)]);
    const runtime = new ClientRuntime({ service, resolver, transports: [reporting], log: silentLog });
    expect(await runtime.call(getHello, {})).toEqual({ message: "first" });
    expect(sent?.stopped).toBeUndefined();
    await runtime.close();
  });
});

describe("the caller's signal", () => {
  const inboundDeadline = () => coreErrors.create("GANTRY_ERR_DEADLINE_EXCEEDED", { timeoutMs: 50 });

  test("an inbound call past its deadline fails its outbound calls with DEADLINE_EXCEEDED, not CANCELLED", async () => {
    const { runtime, transport } = runtimeOf({ instances: [instance(1)] });
    transport.script = (_, call) => hang(call);
    // During an attempt.
    const parent = new AbortController();
    const pending = runtime.call(getHello, {}, { signal: parent.signal });
    await until(() => transport.calls.length === 1);
    parent.abort(inboundDeadline());
    const error = await rejected(pending);
    expect(error.code).toBe("GANTRY_ERR_DEADLINE_EXCEEDED");
    expect(error.status).toBe("DEADLINE_EXCEEDED");
    expect(error.message).toBe(
      "deadline exceeded after 50 ms (hello.v1.HelloService/GetHello on instance i1, attempt 1 of 3)",
    );
    // Already past: no attempt.
    const late = await rejected(runtime.call(getHello, {}, { signal: parent.signal }));
    expect(late.code).toBe("GANTRY_ERR_DEADLINE_EXCEEDED");
    expect(transport.calls).toHaveLength(1);
    // While waiting for the registry.
    const early = runtimeOf();
    const waiting = new AbortController();
    const before = early.runtime.call(getHello, {}, { signal: waiting.signal });
    waiting.abort(inboundDeadline());
    expect((await rejected(before)).code).toBe("GANTRY_ERR_DEADLINE_EXCEEDED");
    // During a backoff.
    const retrying = runtimeOf({
      instances: [instance(1), instance(2)],
      policy: { retry: { baseDelayMs: 100_000, maxDelayMs: 100_000 } },
    });
    retrying.transport.script = async () => {
      throw unavailable();
    };
    const backingOff = new AbortController();
    const retried = retrying.runtime.call(getHello, {}, { signal: backingOff.signal });
    await until(() => retrying.transport.calls.length === 1);
    backingOff.abort(inboundDeadline());
    expect((await rejected(retried)).code).toBe("GANTRY_ERR_DEADLINE_EXCEEDED");
    // Any other reason is a cancellation, with the reason as its cause.
    const other = new AbortController();
    const cancelled = runtime.call(getHello, {}, { signal: other.signal });
    await until(() => transport.calls.length === 2);
    const reason = new Error("the user went away");
    other.abort(reason);
    const error2 = await rejected(cancelled);
    expect(error2.code).toBe("GANTRY_ERR_CANCELLED");
    expect(error2.cause).toBe(reason);
  });

  test("a signal that aborts between two attempts stops the call before the second", async () => {
    const { runtime, transport } = runtimeOf({
      instances: [instance(1), instance(2)],
      policy: { retry: { baseDelayMs: 0 } },
    });
    transport.script = async () => {
      throw unavailable();
    };
    const controller = new AbortController();
    // After the first attempt failed and before the second: when the retry is announced.
    const onRetry = () => controller.abort();
    diagnostics.subscribe(clientChannels.retry, onRetry);
    try {
      const error = await rejected(runtime.call(getHello, {}, { signal: controller.signal }));
      expect(error.code).toBe("GANTRY_ERR_CANCELLED");
      expect(transport.calls).toHaveLength(1);
    } finally {
      diagnostics.unsubscribe(clientChannels.retry, onRetry);
    }
  });

  test("close() tells the channel of every attempt in flight to cancel it, with SHUTTING_DOWN", async () => {
    const { runtime, transport } = runtimeOf({ instances: [instance(1)] });
    const seen: OutboundCall[] = [];
    const cancelled: string[] = [];
    transport.script = (_, call) => {
      seen.push(call);
      return new Promise((_resolve, reject) =>
        call.onStop((reason) => {
          cancelled.push(reason.code);
          reject(reason);
        }),
      );
    };
    const caller = new AbortController();
    const pending = [
      runtime.call(getHello, {}),
      runtime.call(getHello, {}),
      runtime.call(getHello, {}, { deadline: Date.now() + 60_000 }),
      runtime.call(getHello, {}, { signal: caller.signal }),
    ];
    await until(() => seen.length === 4);
    await runtime.close();
    expect(cancelled).toEqual(Array(4).fill("GANTRY_ERR_SHUTTING_DOWN"));
    for (const call of seen) expect(call.stopped?.code).toBe("GANTRY_ERR_SHUTTING_DOWN");
    for (const call of pending) expect((await rejected(call)).code).toBe("GANTRY_ERR_SHUTTING_DOWN");
  });

  test("calls in flight that share one caller's signal share one listener on it, and all end when it aborts", async () => {
    const { runtime, transport } = runtimeOf({ instances: [instance(1), instance(2)] });
    transport.script = (_, call) => hang(call);
    // An inbound call making 200 calls at once: each one's listener would cost in proportion to the others.
    const parent = new AbortController();
    const pending = Array.from({ length: 200 }, (_, i) =>
      runtime.call(getHello, {}, { signal: parent.signal, ...(i % 2 === 0 ? { deadline: Date.now() + 60_000 } : {}) }),
    );
    await until(() => transport.calls.length === 200);
    expect(getEventListeners(parent.signal, "abort").length).toBeLessThanOrEqual(2);
    parent.abort(coreErrors.create("GANTRY_ERR_DEADLINE_EXCEEDED", { timeoutMs: 50 }));
    for (const call of pending) expect((await rejected(call)).code).toBe("GANTRY_ERR_DEADLINE_EXCEEDED");
    // A signal of each call's own is listened to directly, and let go when the call ends.
    transport.script = async () => ({ message: "ok" });
    const own = new AbortController();
    await runtime.call(getHello, {}, { signal: own.signal });
    expect(getEventListeners(own.signal, "abort")).toEqual([]);
  });

  test("close() fails a call in flight even when its channel sets no cancel hook", async () => {
    const { runtime, transport } = runtimeOf({ instances: [instance(1)] });
    transport.script = () => new Promise(() => {});
    const pending = runtime.call(getHello, {});
    await until(() => transport.calls.length === 1);
    await runtime.close();
    expect((await rejected(pending)).code).toBe("GANTRY_ERR_SHUTTING_DOWN");
  });
});

describe("close", () => {
  test("fails calls in flight and calls to come with SHUTTING_DOWN, and calls still waiting for the registry", async () => {
    const resolver = new FakeResolver();
    const transport = new FakeTransport();
    const runtime = new ClientRuntime({ service, resolver, transports: [transport], log: silentLog });
    const waiting = runtime.call(getHello, {});
    resolver.snapshot([instance(1)]);
    await expect(waiting).resolves.toBeDefined();
    transport.script = (_, call) => hang(call);
    const plain = runtime.call(getHello, {});
    const withDeadline = runtime.call(getHello, {}, { deadline: Date.now() + 60_000 });
    await until(() => transport.calls.length === 3);
    await runtime.close();
    for (const pending of [plain, withDeadline]) {
      const error = await rejected(pending);
      expect(error.code).toBe("GANTRY_ERR_SHUTTING_DOWN");
      expect(error.message).toContain("on instance i1, attempt 1 of 3");
    }
    const after = await rejected(runtime.call(getHello, {}));
    expect(after.code).toBe("GANTRY_ERR_SHUTTING_DOWN");
    expect(after.message).toBe("server is shutting down (hello.v1.HelloService/GetHello)");
    expect(transport.calls).toHaveLength(3);
    expect(transport.channels.every((c) => c.closed)).toBe(true);
    await runtime.close();

    const early = new ClientRuntime({ service, resolver: new FakeResolver(), transports: [transport], log: silentLog });
    const stuck = early.call(getHello, {});
    await early.close();
    expect((await rejected(stuck)).code).toBe("GANTRY_ERR_SHUTTING_DOWN");
  });

  test("a slow answer after close does not reopen anything", async () => {
    const { runtime, transport } = runtimeOf({ instances: [instance(1)] });
    transport.script = (_, call) => after(20, { message: "late" }, call);
    const pending = runtime.call(getHello, {});
    await until(() => transport.calls.length === 1);
    await runtime.close();
    expect((await rejected(pending)).code).toBe("GANTRY_ERR_SHUTTING_DOWN");
    expect(transport.channels).toHaveLength(1);
  });
});

describe("channels that report at once or throw, and tracers that fail", () => {
  /** A transport whose channels run `unary` as given, for every instance. */
  function reporting(unary: (call: UnaryCall, url: string) => void): ClientTransport {
    return { kind: "grpc", channel: (url) => ({ unary: (call) => unary(call, url), close() {} }) };
  }

  /** A balancer that picks the first candidate and records the calls in flight it saw. */
  function recording(seen: number[][]): { pick(candidates: readonly InstanceStats[]): InstanceStats } {
    return {
      pick(candidates) {
        seen.push(candidates.map((candidate) => candidate.inFlight));
        return candidates[0];
      },
    };
  }

  test("a failure reported inside unary() is retried on a later turn; every count is given back", async () => {
    let attempts = 0;
    const transport = reporting((call, url) => {
      attempts += 1;
      if (attempts === 1) call.failed(connectRefused(url));
      else call.answered({ message: url });
    });
    const seen: number[][] = [];
    const { runtime } = runtimeOf({
      instances: [instance(1), instance(2)],
      transports: [transport],
      policy: { retry: { baseDelayMs: 0 }, bulkhead: 1, balancer: recording(seen) },
    });
    expect(await runtime.call(sayHello, {})).toEqual({ message: urlOf(2) });
    expect(attempts).toBe(2);
    // The bulkhead of one was left once, and no call is counted in flight any more.
    expect(await runtime.call(sayHello, {})).toMatchObject({ message: expect.any(String) });
    expect(seen.at(-1)?.every((inFlight) => inFlight === 0)).toBe(true);
  });

  test("a channel that throws after reporting: the report stands", async () => {
    const transport = reporting((call) => {
      call.failed(notFound());
      throw new Error("and then the channel broke");
    });
    const { runtime } = runtimeOf({ instances: [instance(1)], transports: [transport], policy: { bulkhead: 1 } });
    for (let i = 0; i < 2; i++) expect((await rejected(runtime.call(getHello, {}))).code).toBe("GREETING_NOT_FOUND");
  });

  test("a transport that cannot make a channel fails the call with a GantryError naming the instance", async () => {
    const broken: ClientTransport = {
      kind: "grpc",
      channel: () => {
        throw new Error("cannot take this endpoint");
      },
    };
    const { runtime } = runtimeOf({ instances: [instance(1)], transports: [broken], policy: { bulkhead: 1 } });
    for (let i = 0; i < 2; i++) {
      const error = await rejected(runtime.call(getHello, {}));
      expect(error).toBeInstanceOf(GantryError);
      expect(error.status).toBe("INTERNAL");
      expect(error.message).toContain("(hello.v1.HelloService/GetHello on instance i1, attempt 1 of 3)");
    }
  });

  test("a late answer after the deadline is ignored and counts nothing in flight", async () => {
    const late: UnaryCall[] = [];
    const transport = reporting((call) => void late.push(call));
    const seen: number[][] = [];
    const { runtime } = runtimeOf({
      instances: [instance(1), instance(2)],
      transports: [transport],
      policy: { timeoutMs: 5, balancer: recording(seen) },
    });
    expect((await rejected(runtime.call(getHello, {}))).code).toBe("GANTRY_ERR_DEADLINE_EXCEEDED");
    late[0].answered({ message: "too late" });
    late[0].failed(unavailable());
    expect((await rejected(runtime.call(getHello, {}))).code).toBe("GANTRY_ERR_DEADLINE_EXCEEDED");
    expect(seen).toEqual([
      [0, 0],
      [0, 0],
    ]);
  });

  describe("with a tracer registered", () => {
    afterEach(() => trace.disable());

    /** Registers a tracer whose spans are made by `startSpan`. */
    function tracer(startSpan: () => Span): void {
      const provider = { getTracer: () => ({ startSpan, startActiveSpan: () => undefined }) as unknown as Tracer };
      trace.setGlobalTracerProvider(provider);
    }

    test("one that throws when a span starts leaves the call untraced, not failed", async () => {
      tracer(() => {
        throw new Error("the tracer is broken");
      });
      const { runtime } = runtimeOf({ instances: [instance(1)] });
      expect(await runtime.call(getHello, {})).toEqual({ message: `hi from ${urlOf(1)}` });
    });

    test("one that throws when a span ends does not stop the deadline timer from expiring the others", async () => {
      const broken = trace.wrapSpanContext(INVALID_SPAN_CONTEXT);
      broken.end = () => {
        throw new Error("the span processor is broken");
      };
      tracer(() => broken);
      const { runtime, transport } = runtimeOf({ instances: [instance(1)], policy: { timeoutMs: 5 } });
      transport.script = (_, call) => hang(call);
      const calls = Array.from({ length: 3 }, () => runtime.call(getHello, {}));
      for (const call of calls) expect((await rejected(call)).code).toBe("GANTRY_ERR_DEADLINE_EXCEEDED");
      transport.script = async () => ({ message: "ok" });
      expect(await runtime.call(getHello, {})).toEqual({ message: "ok" });
    });
  });
});
