import diagnostics from "node:diagnostics_channel";
import { afterEach, describe, expect, test, vi } from "vitest";
import {
  type ClientRuntime,
  clientChannels,
  type EjectionMessage,
  type RetryMessage,
  type ThrottleMessage,
} from "../src/client/index.js";
import { coreErrors, GantryError } from "../src/index.js";
import {
  connectRefused,
  getHello,
  hang,
  instance,
  notFound,
  overloaded,
  sayHello,
  setup,
  unavailable,
  urlOf,
} from "./client-fakes.js";
import { rejected } from "./helpers.js";

const open: ClientRuntime[] = [];
const subscriptions: [string, (message: unknown) => void][] = [];

function runtimeOf(options: Parameters<typeof setup>[0] = {}) {
  const made = setup(options);
  open.push(made.runtime);
  return made;
}

/** Collects what a diagnostics channel publishes during the test. */
function collect<T>(name: string): T[] {
  const messages: T[] = [];
  const listener = (message: unknown) => void messages.push(message as T);
  diagnostics.subscribe(name, listener);
  subscriptions.push([name, listener]);
  return messages;
}

async function settle(promise: Promise<unknown>): Promise<GantryError | undefined> {
  try {
    await promise;
    return undefined;
  } catch (error) {
    return error as GantryError;
  }
}

afterEach(async () => {
  vi.useRealTimers();
  for (const [name, listener] of subscriptions.splice(0)) diagnostics.unsubscribe(name, listener);
  await Promise.all(open.splice(0).map((runtime) => runtime.close()));
});

const fast = { retry: { baseDelayMs: 0 } } as const;

describe("retries", () => {
  test("an idempotent call is retried on UNAVAILABLE, on another instance, and the retry is published", async () => {
    const retries = collect<RetryMessage>(clientChannels.retry);
    const { runtime, transport } = runtimeOf({ instances: [instance(1), instance(2), instance(3)], policy: fast });
    let first: string | undefined;
    transport.script = async (url) => {
      first ??= url;
      if (url === first) throw unavailable();
      return { message: url };
    };
    const reply = await runtime.call(getHello, {});
    expect(reply).toEqual({ message: transport.calls[1] });
    expect(transport.calls).toHaveLength(2);
    expect(transport.calls[1]).not.toBe(transport.calls[0]);
    expect(retries).toHaveLength(1);
    expect(retries[0]).toMatchObject({ service: "hello.v1.HelloService", method: "GetHello", attempt: 2 });
    expect(retries[0].error.status).toBe("UNAVAILABLE");
  });

  test("a call that is not idempotent is not retried on UNAVAILABLE, but is when the error proves it never ran", async () => {
    const { runtime, transport } = runtimeOf({ instances: [instance(1), instance(2)], policy: fast });
    const neverRan: GantryError[] = [
      connectRefused(urlOf(1)),
      coreErrors.create("GANTRY_ERR_SHUTTING_DOWN"),
      overloaded(),
      coreErrors.create("GANTRY_ERR_NOT_STARTED", { state: "starting" }),
    ];
    for (const failure of [unavailable(), ...neverRan]) {
      transport.calls.length = 0;
      let attempts = 0;
      transport.script = async () => {
        attempts += 1;
        if (attempts === 1) throw failure;
        return { message: "ok" };
      };
      const error = await settle(runtime.call(sayHello, {}));
      if (failure.code === "UNAVAILABLE") {
        expect(error?.status).toBe("UNAVAILABLE");
        expect(attempts).toBe(1);
      } else {
        expect(error, failure.code).toBeUndefined();
        expect(attempts).toBe(2);
      }
    }
  });

  test("errors of the callee's own and RESOURCE_EXHAUSTED that is not load shedding are not retried", async () => {
    const { runtime, transport } = runtimeOf({ instances: [instance(1), instance(2)], policy: fast });
    for (const failure of [
      notFound(),
      new GantryError("RESOURCE_EXHAUSTED", "quota"),
      new GantryError("INTERNAL", "x"),
    ]) {
      transport.calls.length = 0;
      transport.script = async () => {
        throw failure;
      };
      expect((await rejected(runtime.call(getHello, {}))).code).toBe(failure.code);
      expect(transport.calls).toHaveLength(1);
    }
  });

  test("at most maxAttempts, each on an instance that has not failed this call while there is one", async () => {
    const { runtime, transport } = runtimeOf({
      instances: [instance(1), instance(2), instance(3), instance(4)],
      policy: fast,
    });
    transport.script = async () => {
      throw unavailable();
    };
    for (let i = 0; i < 5; i++) {
      transport.calls.length = 0;
      const error = await rejected(runtime.call(getHello, {}));
      expect(error.message).toMatch(/attempt 3 of 3\)$/);
      expect(transport.calls).toHaveLength(3);
      expect(new Set(transport.calls).size).toBe(3);
    }
    // With fewer instances than attempts, the last attempts go back to ones that failed.
    const two = runtimeOf({
      instances: [instance(1), instance(2)],
      policy: { retry: { maxAttempts: 4, baseDelayMs: 0 } },
    });
    two.transport.script = async () => {
      throw unavailable();
    };
    await rejected(two.runtime.call(getHello, {}));
    expect(two.transport.calls).toHaveLength(4);
    expect(new Set(two.transport.calls.slice(0, 2)).size).toBe(2);
  });

  test("no retry whose backoff would end past the deadline: the call fails with the last error", async () => {
    const { runtime, transport } = runtimeOf({
      instances: [instance(1), instance(2)],
      policy: { retry: { baseDelayMs: 1_000_000, maxDelayMs: 1_000_000 } },
    });
    transport.script = async () => {
      throw unavailable();
    };
    const started = Date.now();
    const error = await rejected(runtime.call(getHello, {}, { deadline: started + 50 }));
    expect(error.status).toBe("UNAVAILABLE");
    expect(transport.calls).toHaveLength(1);
    expect(Date.now() - started).toBeLessThan(50);
  });

  test("the caller's signal cuts a backoff short", async () => {
    const { runtime, transport } = runtimeOf({
      instances: [instance(1), instance(2)],
      policy: { retry: { baseDelayMs: 100_000, maxDelayMs: 100_000 } },
    });
    transport.script = async () => {
      throw unavailable();
    };
    const controller = new AbortController();
    const pending = runtime.call(getHello, {}, { signal: controller.signal });
    for (let i = 0; i < 100 && transport.calls.length === 0; i++) await new Promise((r) => setTimeout(r, 1));
    controller.abort();
    const error = await rejected(pending);
    expect(error.code).toBe("GANTRY_ERR_CANCELLED");
    expect(transport.calls).toHaveLength(1);
  });

  test("close() during a backoff ends the call with SHUTTING_DOWN", async () => {
    const { runtime, transport } = runtimeOf({
      instances: [instance(1), instance(2)],
      policy: { retry: { baseDelayMs: 100_000, maxDelayMs: 100_000 } },
    });
    transport.script = async () => {
      throw unavailable();
    };
    const pending = runtime.call(getHello, {});
    for (let i = 0; i < 100 && transport.calls.length === 0; i++) await new Promise((r) => setTimeout(r, 1));
    await runtime.close();
    const error = await rejected(pending);
    expect(error.code).toBe("GANTRY_ERR_SHUTTING_DOWN");
    expect(transport.calls).toHaveLength(1);
  });

  test("the retry budget caps retries at the ratio of the calls of the last 10 s plus the floor, and says so", async () => {
    vi.useFakeTimers({ toFake: ["Date", "performance"] });
    const { runtime, transport } = runtimeOf({
      instances: [instance(1)],
      policy: { retry: { baseDelayMs: 0, budgetRatio: 0.1, minRetriesPerSecond: 10 } },
    });
    transport.script = async () => {
      throw unavailable();
    };
    const errors: GantryError[] = [];
    for (let i = 0; i < 200; i++) errors.push(await rejected(runtime.call(getHello, {})));
    // 10% of 200 calls, plus the floor of 10 (the clock stands still: it does not refill).
    expect(transport.calls.length - 200).toBe(30);
    // Without the budget, every call would have made 3 attempts; a call refused a retry says why.
    const refused = errors.filter((e) => e.message.endsWith("; retry budget spent)"));
    expect(refused.length).toBeGreaterThan(150);
    expect(refused[0].message).toBe(
      "backend is down (hello.v1.HelloService/GetHello on instance i1, attempt 1 of 3; retry budget spent)",
    );
    expect(errors.at(-1)?.status).toBe("UNAVAILABLE");
    // Ten seconds on, those calls and retries have left the window, and the floor has refilled.
    vi.advanceTimersByTime(10_500);
    transport.calls.length = 0;
    await rejected(runtime.call(getHello, {}));
    expect(transport.calls).toHaveLength(3);
  });

  test("a busy client that loses one of three instances retries every call the dead one dropped", async () => {
    // 300 calls in flight; instance 1 dies: its calls in flight fail with UNAVAILABLE, and it refuses
    // connections after that. (A budget of 10 tokens and 10 a second lost some 80 of these calls.)
    const { runtime, transport } = runtimeOf({ instances: [instance(1), instance(2), instance(3)] });
    let dead = false;
    transport.script = (url) =>
      new Promise((resolve, reject) => {
        if (dead && url === urlOf(1)) return reject(connectRefused(url));
        setImmediate(() => {
          if (dead && url === urlOf(1)) reject(unavailable("connection dropped"));
          else resolve({ message: url });
        });
      });
    let made = 0;
    let failed = 0;
    const worker = async () => {
      while (made < 6000) {
        made += 1;
        if (made === 3000) dead = true;
        await runtime.call(getHello, {}).catch(() => (failed += 1));
      }
    };
    await Promise.all(Array.from({ length: 300 }, worker));
    expect(transport.counts().get(urlOf(1))).toBeGreaterThan(500);
    expect(failed).toBe(0);
  });

  test("a refused connection ejects the instance at once and asks the resolver to look again", async () => {
    const ejections = collect<EjectionMessage>(clientChannels.ejection);
    const { runtime, transport, resolver } = runtimeOf({
      instances: [instance(1), instance(2), instance(3)],
      policy: { ...fast, balancer: "round-robin" },
    });
    transport.script = async (url) => {
      if (url === urlOf(1)) throw connectRefused(url);
      return { message: url };
    };
    for (let i = 0; i < 12; i++) await runtime.call(sayHello, {});
    expect(transport.counts().get(urlOf(1))).toBe(1);
    expect(resolver.refreshed).toEqual(["hello.v1.HelloService"]);
    expect(ejections).toEqual([
      {
        service: "hello.v1.HelloService",
        instance: "i1",
        url: urlOf(1),
        state: "ejected",
        untilMs: expect.any(Number),
      },
    ]);
  });
});

describe("outlier ejection", () => {
  test("failures in a row eject an instance; then one probe decides, and a failed probe ejects it for longer", async () => {
    vi.useFakeTimers({ toFake: ["Date", "performance"] });
    const ejections = collect<EjectionMessage>(clientChannels.ejection);
    const { runtime, transport } = runtimeOf({
      instances: [instance(1), instance(2), instance(3)],
      policy: { balancer: "round-robin", ejection: { consecutiveFailures: 3, baseEjectionMs: 1000 } },
    });
    let broken = true;
    let probe: ((error?: GantryError) => void) | undefined;
    transport.script = async (url, call) => {
      if (url !== urlOf(1)) return { message: url };
      if (probe === undefined && broken) throw unavailable();
      return new Promise((resolve, reject) => {
        probe = (error) => (error === undefined ? resolve({ message: url }) : reject(error));
        hang(call).catch(reject);
      });
    };
    for (let i = 0; i < 9; i++) await settle(runtime.call(sayHello, {}));
    expect(transport.counts().get(urlOf(1))).toBe(3);
    expect(ejections.map((e) => e.state)).toEqual(["ejected"]);
    expect(ejections[0].untilMs).toBe(Date.now() + 1000);
    transport.calls.length = 0;
    for (let i = 0; i < 10; i++) await runtime.call(sayHello, {});
    expect(transport.counts().get(urlOf(1))).toBeUndefined();

    // A second later: half-open; one call probes it, and no other call goes there meanwhile.
    vi.advanceTimersByTime(1000);
    probe = undefined;
    broken = false;
    const probes: Promise<unknown>[] = [];
    let settled = 0;
    transport.calls.length = 0;
    for (let i = 0; i < 10; i++) {
      probes.push(
        runtime.call(sayHello, {}).finally(() => {
          settled += 1;
        }),
      );
    }
    for (let i = 0; i < 200 && settled < 9; i++) await new Promise((r) => setTimeout(r, 1));
    expect(settled).toBe(9);
    expect(probe).toBeDefined();
    expect(ejections.map((e) => e.state)).toEqual(["ejected", "half-open"]);
    expect(transport.counts().get(urlOf(1))).toBe(1);
    // The probe fails: ejected again, for 2 s this time.
    (probe as unknown as (error?: GantryError) => void)(unavailable());
    await Promise.allSettled(probes);
    expect(ejections.map((e) => e.state)).toEqual(["ejected", "half-open", "ejected"]);
    expect(ejections[2].untilMs).toBe(Date.now() + 2000);

    // Two seconds later the probe succeeds: restored, and it takes its share again.
    vi.advanceTimersByTime(2000);
    probe = undefined;
    transport.script = async (url) => ({ message: url });
    transport.calls.length = 0;
    for (let i = 0; i < 9; i++) await runtime.call(sayHello, {});
    expect(ejections.map((e) => e.state)).toEqual(["ejected", "half-open", "ejected", "half-open", "restored"]);
    expect(transport.counts().get(urlOf(1))).toBeGreaterThanOrEqual(2);
  });

  test("the callee's own errors do not count, and an answer resets the count", async () => {
    const ejections = collect<EjectionMessage>(clientChannels.ejection);
    const { runtime, transport } = runtimeOf({
      instances: [instance(1), instance(2)],
      policy: { ejection: { consecutiveFailures: 2 } },
    });
    let calls = 0;
    transport.script = async () => {
      calls += 1;
      // NOT_FOUND, then alternately UNAVAILABLE and an answer: never two failures in a row.
      if (calls <= 10) throw notFound();
      if (calls % 2 === 0) throw unavailable();
      return {};
    };
    for (let i = 0; i < 30; i++) await settle(runtime.call(sayHello, {}));
    expect(ejections).toEqual([]);
  });

  test("only what shows the instance unwell counts: not an outage it relays, nor load shedding", async () => {
    const ejections = collect<EjectionMessage>(clientChannels.ejection);
    const { runtime, transport } = runtimeOf({
      instances: [instance(1), instance(2)],
      policy: { ...fast, balancer: "round-robin", ejection: { consecutiveFailures: 2 } },
    });
    // A healthy middle tier whose own callee is down answers UNAVAILABLE with a code of its own.
    const relayed = [
      coreErrors.create("GANTRY_ERR_UPSTREAM", { reason: "backend is down" }),
      coreErrors.create("GANTRY_ERR_NO_INSTANCES", { service: "db.v1.Store", why: "" }),
      coreErrors.create("GANTRY_ERR_THROTTLED", { service: "db.v1.Store" }),
      overloaded(),
    ];
    let n = 0;
    transport.script = async (url) => {
      if (url !== urlOf(1)) return { message: url };
      n += 1;
      throw relayed[n % relayed.length];
    };
    for (let i = 0; i < 40; i++) await settle(runtime.call(sayHello, {}));
    expect(n).toBeGreaterThanOrEqual(20);
    expect(ejections).toEqual([]);
    // A server going away is out at once; so is one that says its drain cut the call off.
    transport.script = async (url) => {
      if (url === urlOf(1)) throw coreErrors.create("GANTRY_ERR_DRAIN_TIMEOUT", { timeoutMs: 100 });
      return { message: url };
    };
    for (let i = 0; i < 4; i++) await settle(runtime.call(sayHello, {}));
    expect(ejections.map((e) => [e.instance, e.state])).toEqual([["i1", "ejected"]]);
  });

  test("half of at least 20 calls failing in 10 s ejects an instance that never fails 5 in a row", async () => {
    const ejections = collect<EjectionMessage>(clientChannels.ejection);
    const { runtime, transport } = runtimeOf({
      instances: [instance(1), instance(2), instance(3)],
      policy: { balancer: "round-robin" },
    });
    let n = 0;
    transport.script = async (url) => {
      if (url !== urlOf(1)) return { message: url };
      n += 1;
      // An answer, then a failure, and so on.
      if (n % 2 === 0) throw unavailable();
      return { message: url };
    };
    for (let i = 0; i < 57; i++) await settle(runtime.call(sayHello, {}));
    // 9 failures of 19 calls.
    expect(n).toBe(19);
    expect(ejections).toEqual([]);
    for (let i = 0; i < 3; i++) await settle(runtime.call(sayHello, {}));
    expect(n).toBe(20);
    expect(ejections.map((e) => [e.instance, e.state])).toEqual([["i1", "ejected"]]);
    transport.calls.length = 0;
    for (let i = 0; i < 10; i++) await runtime.call(sayHello, {});
    expect(transport.counts().get(urlOf(1))).toBeUndefined();
  });

  test("DEADLINE_EXCEEDED counts only when the attempt had at least half the call's own timeout", async () => {
    const ejections = collect<EjectionMessage>(clientChannels.ejection);
    const policy = { balancer: "round-robin", ejection: { consecutiveFailures: 2 } } as const;
    const hangOne = (made: ReturnType<typeof runtimeOf>) => {
      made.transport.script = async (url, call) => (url === urlOf(1) ? hang(call) : { message: url });
    };
    // The caller's deadline (5 ms) is far inside the call's own timeout (1 s): misses say nothing.
    const inherited = runtimeOf({ instances: [instance(1), instance(2)], policy: { ...policy, timeoutMs: 1000 } });
    hangOne(inherited);
    for (let i = 0; i < 6; i++) await settle(inherited.runtime.call(sayHello, {}, { deadline: Date.now() + 5 }));
    expect(inherited.transport.counts().get(urlOf(1))).toBe(3);
    // Without a timeout of its own the deadline is the caller's: the same.
    const untimed = runtimeOf({ instances: [instance(1), instance(2)], policy });
    hangOne(untimed);
    for (let i = 0; i < 6; i++) await settle(untimed.runtime.call(sayHello, {}, { deadline: Date.now() + 5 }));
    expect(untimed.transport.counts().get(urlOf(1))).toBe(3);
    expect(ejections).toEqual([]);
    // Given its whole timeout, an instance that does not answer in time is failing.
    const timed = runtimeOf({ instances: [instance(1), instance(2)], policy: { ...policy, timeoutMs: 5 } });
    hangOne(timed);
    for (let i = 0; i < 6; i++) await settle(timed.runtime.call(sayHello, {}));
    expect(ejections.map((e) => [e.instance, e.state])).toEqual([["i1", "ejected"]]);
  });

  test("no more than maxEjectedShare are ejected; when all are, calls still go to one of them", async () => {
    const ejections = collect<EjectionMessage>(clientChannels.ejection);
    const { runtime, transport } = runtimeOf({ instances: [instance(1), instance(2)], policy: fast });
    transport.script = async (url) => {
      throw connectRefused(url);
    };
    for (let i = 0; i < 5; i++) expect((await rejected(runtime.call(sayHello, {}))).code).toBe("GANTRY_ERR_CONNECT");
    expect(ejections.filter((e) => e.state === "ejected")).toHaveLength(1);

    const all = runtimeOf({
      instances: [instance(1), instance(2)],
      policy: { ...fast, ejection: { maxEjectedShare: 1 } },
    });
    all.transport.script = async (url) => {
      throw connectRefused(url);
    };
    await rejected(all.runtime.call(sayHello, {}));
    expect(ejections.filter((e) => e.state === "ejected")).toHaveLength(3);
    all.transport.calls.length = 0;
    const error = await rejected(all.runtime.call(sayHello, {}));
    expect(error.code).toBe("GANTRY_ERR_CONNECT");
    expect(all.transport.calls.length).toBeGreaterThan(0);
  });

  test("a slow instance that misses the deadline counts as failing", async () => {
    const ejections = collect<EjectionMessage>(clientChannels.ejection);
    const { runtime, transport } = runtimeOf({
      instances: [instance(1), instance(2)],
      policy: { balancer: "round-robin", timeoutMs: 5, ejection: { consecutiveFailures: 2 } },
    });
    transport.script = async (url, call) => (url === urlOf(1) ? hang(call) : { message: url });
    for (let i = 0; i < 6; i++) await settle(runtime.call(sayHello, {}));
    expect(ejections.map((e) => [e.instance, e.state])).toEqual([["i1", "ejected"]]);
  });

  test("so does one that misses the call's own timeout", async () => {
    const ejections = collect<EjectionMessage>(clientChannels.ejection);
    const { runtime, transport } = runtimeOf({
      instances: [instance(1), instance(2)],
      policy: { balancer: "round-robin", ejection: { consecutiveFailures: 2 } },
    });
    transport.script = async (url, call) => (url === urlOf(1) ? hang(call) : { message: url });
    for (let i = 0; i < 6; i++) await settle(runtime.call(sayHello, {}, { timeoutMs: 5 }));
    expect(ejections.map((e) => [e.instance, e.state])).toEqual([["i1", "ejected"]]);
  });

  test("but not one cut short by the caller's nearly spent deadline", async () => {
    const ejections = collect<EjectionMessage>(clientChannels.ejection);
    const { runtime, transport } = runtimeOf({
      instances: [instance(1), instance(2)],
      policy: { balancer: "round-robin", ejection: { consecutiveFailures: 2 } },
    });
    transport.script = async (url, call) => (url === urlOf(1) ? hang(call) : { message: url });
    for (let i = 0; i < 6; i++) {
      await settle(runtime.call(sayHello, {}, { deadline: Date.now() + 5, timeoutMs: 1000 }));
    }
    expect(ejections).toEqual([]);
  });
});

describe("adaptive throttle", () => {
  test("kicks in when every call fails, and lets calls through again once its window has moved on", async () => {
    vi.useFakeTimers({ toFake: ["Date", "performance"] });
    const throttled = collect<ThrottleMessage>(clientChannels.throttle);
    const { runtime, transport } = runtimeOf({
      instances: [instance(1), instance(2)],
      policy: { throttle: { k: 2 }, retry: { maxAttempts: 1 }, ejection: { maxEjectedShare: 0 } },
    });
    transport.script = async () => {
      throw unavailable();
    };
    const codes = new Map<string, number>();
    for (let i = 0; i < 300; i++) {
      const code = (await rejected(runtime.call(getHello, {}))).code;
      codes.set(code, (codes.get(code) ?? 0) + 1);
    }
    const local = codes.get("GANTRY_ERR_THROTTLED") ?? 0;
    expect(local).toBeGreaterThan(150);
    expect(transport.calls.length).toBe(300 - local);
    expect(throttled).toHaveLength(local);
    expect(throttled[0]).toMatchObject({ service: "hello.v1.HelloService", method: "GetHello", accepts: 0 });
    const error = (await settle(runtime.call(getHello, {}))) as GantryError;
    if (error.code === "GANTRY_ERR_THROTTLED") {
      expect(error.status).toBe("UNAVAILABLE");
      expect(error.message).toBe(
        "hello.v1.HelloService is failing; the client throttles calls to it (hello.v1.HelloService/GetHello)",
      );
    }

    // The service recovers; a minute later the window has forgotten the failures.
    transport.script = async () => ({ message: "ok" });
    vi.advanceTimersByTime(61_000);
    for (let i = 0; i < 100; i++) await runtime.call(getHello, {});
  });

  test("a healthy service is never throttled, and the callee's own errors count as accepted", async () => {
    const { runtime, transport } = runtimeOf({ instances: [instance(1)], policy: { throttle: {} } });
    transport.script = async () => {
      throw notFound();
    };
    for (let i = 0; i < 200; i++) expect((await rejected(runtime.call(getHello, {}))).code).toBe("GREETING_NOT_FOUND");
  });

  test("throttle: false turns it off", async () => {
    const { runtime, transport } = runtimeOf({
      instances: [instance(1)],
      policy: { throttle: false, retry: { maxAttempts: 1 } },
    });
    transport.script = async () => {
      throw unavailable();
    };
    for (let i = 0; i < 200; i++) expect((await rejected(runtime.call(getHello, {}))).code).toBe("UNAVAILABLE");
  });
});
