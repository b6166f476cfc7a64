import diagnostics from "node:diagnostics_channel";
import { afterEach, describe, expect, test, vi } from "vitest";
import {
  type AppState,
  CallContext,
  channels,
  createApp,
  createToken,
  describeService,
  Empty,
  type FactoryProvider,
  Field,
  GantryApp,
  GantryError,
  Injectable,
  Message,
  Method,
  Service,
} from "../src/index.js";
import type { Registrar, ServiceInstance } from "../src/registry/index.js";
import { discoveryOf } from "../src/testing/index.js";
import type { Endpoint, Transport, TransportHost } from "../src/transport/index.js";
import { rejected, signal } from "./helpers.js";

@Message()
class Reply {
  @Field(1) message!: string;
}

@Service({ package: "registered", version: "v1" })
class RegisteredService {
  @Method()
  ping(): Reply {
    return { message: "pong" };
  }
}

/** Every app a test creates is closed after it, whatever happened. */
const apps: GantryApp[] = [];
const unsubscribers: (() => void)[] = [];
afterEach(async () => {
  for (const unsubscribe of unsubscribers.splice(0)) unsubscribe();
  await Promise.all(apps.splice(0).map((app) => app.close()));
});

function track(app: GantryApp): GantryApp {
  apps.push(app);
  return app;
}

/** Records the state changes of one app, from the `gantry:app:state` diagnostics channel. */
function recordStates(app: GantryApp, record: (event: string) => void): void {
  const listener = (message: unknown) => {
    const { app: from, state } = message as { app: GantryApp; state: AppState };
    if (from === app) record(`state ${state}`);
  };
  diagnostics.subscribe(channels.appState, listener);
  unsubscribers.push(() => diagnostics.unsubscribe(channels.appState, listener));
}

describe("start and stop hooks", () => {
  test("onStart runs in build order (dependencies first), onStop in reverse", async () => {
    const events: string[] = [];
    @Injectable()
    class Database {
      onStart() {
        events.push("Database.onStart");
      }
      onStop() {
        events.push("Database.onStop");
      }
    }
    @Injectable()
    class Repository {
      constructor(readonly db: Database) {}
      async onStart() {
        await Promise.resolve();
        events.push("Repository.onStart");
      }
      async onStop() {
        events.push("Repository.onStop");
      }
    }
    @Service({ package: "life", version: "v1" })
    class LifeService {
      constructor(readonly repository: Repository) {}
      onStart() {
        events.push(`LifeService.onStart (this is the instance: ${this instanceof LifeService})`);
      }
      onStop() {
        events.push("LifeService.onStop");
      }
      @Method()
      ping(): Reply {
        return { message: "pong" };
      }
    }
    // Listed in the reverse of their dependency order: build order, not list order, decides.
    const app = track(
      createApp({ services: [LifeService], providers: [Repository, Database], logger: { level: "silent" } }),
    );
    await app.start({ env: {} });
    expect(events).toEqual([
      "Database.onStart",
      "Repository.onStart",
      "LifeService.onStart (this is the instance: true)",
    ]);
    await app.close();
    expect(events.slice(3)).toEqual(["LifeService.onStop", "Repository.onStop", "Database.onStop"]);
  });

  test("provider-level onStart and onStop get the provided value", async () => {
    const events: string[] = [];
    interface Named {
      name: string;
    }
    const POOL = createToken<Named>("pool");
    const CACHE = createToken<Named>("cache");
    const pool: FactoryProvider<Named> = {
      provide: POOL,
      useFactory: async () => ({ name: "pool" }),
      onStart: (value) => void events.push(`start ${value.name}`),
      onStop: async (value) => void events.push(`stop ${value.name}`),
    };
    const cache: FactoryProvider<Named> = {
      provide: CACHE,
      useFactory: (from: Named) => ({ name: `cache over ${from.name}` }),
      inject: [POOL],
      onStart: (value) => void events.push(`start ${value.name}`),
      onStop: (value) => void events.push(`stop ${value.name}`),
    };
    const app = track(
      createApp({
        services: [],
        providers: [pool as FactoryProvider, cache as FactoryProvider],
        logger: { level: "silent" },
      }),
    );
    await app.start({ env: {} });
    await app.close();
    expect(events).toEqual(["start pool", "start cache over pool", "stop cache over pool", "stop pool"]);
  });

  test("a class provided also under an alias (useExisting) starts and stops once", async () => {
    const events: string[] = [];
    @Injectable()
    class Mailer {
      onStart() {
        events.push("start");
      }
      onStop() {
        events.push("stop");
      }
    }
    const MAILER = createToken<Mailer>("mailer");
    const app = track(
      createApp({
        services: [],
        providers: [Mailer, { provide: MAILER, useExisting: Mailer }],
        logger: { level: "silent" },
      }),
    );
    await app.start({ env: {} });
    expect(await app.get(MAILER)).toBe(await app.get(Mailer));
    await app.close();
    expect(events).toEqual(["start", "stop"]);
  });

  test("a failing onStart stops the start with GANTRY_ERR_HOOK_FAILED, and what was built is stopped", async () => {
    const events: string[] = [];
    const cause = new Error("disk full");
    @Injectable()
    class Database {
      onStart() {
        events.push("Database.onStart");
      }
      onStop() {
        events.push("Database.onStop");
      }
    }
    @Injectable()
    class Repository {
      constructor(readonly db: Database) {}
      onStart() {
        throw cause;
      }
      onStop() {
        events.push("Repository.onStop");
      }
    }
    const app = track(createApp({ services: [], providers: [Repository, Database], logger: { level: "silent" } }));
    const error = await rejected(app.start({ env: {} }));
    expect(error.code).toBe("GANTRY_ERR_HOOK_FAILED");
    expect(error.status).toBe("FAILED_PRECONDITION");
    expect(error.message).toBe("Repository.onStart failed: disk full");
    expect(error.cause).toBe(cause);
    expect(events).toEqual(["Database.onStart", "Repository.onStop", "Database.onStop"]);
    expect(app.state).toBe("closed");
    expect(app.ready).toBe(false);
    await app.close();
    expect(events).toHaveLength(3);
  });

  test("readiness waits for the first registration, at most registration.timeout", async () => {
    let aborted: AbortSignal | undefined;
    const app = track(
      createApp({
        services: [RegisteredService],
        discovery: discoveryOf({
          registrar: {
            register: (_instances, signal) => {
              aborted = signal;
              return new Promise(() => undefined);
            },
            deregister: async () => undefined,
          },
        }),
        transports: [fakeTransport(() => undefined)],
        logger: { level: "silent" },
      }),
    );
    const error = await rejected(app.start({ env: { GANTRY_REGISTRATION_TIMEOUT: "50ms" } }));
    expect(error.code).toBe("GANTRY_ERR_REGISTRATION_TIMEOUT");
    expect(error.status).toBe("UNAVAILABLE");
    expect(error.message).toBe("could not register with test:// within 50 ms");
    expect(aborted?.aborted).toBe(true);
    expect(app.state).toBe("closed");
  });

  test("close() during a start that waits for its registration gives up at once", async () => {
    let aborted: AbortSignal | undefined;
    const app = track(
      createApp({
        services: [RegisteredService],
        discovery: discoveryOf({
          registrar: {
            register: (_instances, signal) =>
              new Promise((_, reject) => {
                aborted = signal;
                signal?.addEventListener("abort", () => reject(signal.reason));
              }),
            deregister: async () => undefined,
          },
        }),
        transports: [fakeTransport(() => undefined)],
        logger: { level: "silent" },
      }),
    );
    const starting = app.start({ env: {} });
    await vi.waitFor(() => expect(aborted).toBeDefined());
    const began = performance.now();
    await app.close();
    expect(performance.now() - began).toBeLessThan(1000);
    expect(aborted?.aborted).toBe(true);
    await expect(starting).rejects.toBeDefined();
    expect(app.state).toBe("closed");
  });

  test("a registry that never confirms the deregistration or its close does not hold shutdown", async () => {
    const events: string[] = [];
    const app = track(
      createApp({
        services: [RegisteredService],
        discovery: discoveryOf({
          registrar: { register: async () => undefined, deregister: () => new Promise(() => undefined) },
          close: () => {
            events.push("registry close");
            return new Promise(() => undefined);
          },
        }),
        transports: [fakeTransport((event) => events.push(event))],
        logger: { level: "silent" },
      }),
    );
    await app.start({ env: { GANTRY_SHUTDOWN_DEREGISTER_TIMEOUT: "50ms" } });
    await app.close();
    expect(events).toEqual(["listen", "transport drain", "transport close", "registry close"]);
  });

  test("an app that listens on no transport registers nothing", async () => {
    let registered = false;
    const app = track(
      createApp({
        services: [RegisteredService],
        discovery: discoveryOf({
          registrar: {
            register: async () => {
              registered = true;
            },
            deregister: async () => undefined,
          },
        }),
        logger: { level: "silent" },
      }),
    );
    await app.start({ env: {} });
    expect(app.ready).toBe(true);
    expect(registered).toBe(false);
  });

  test("a failed registration closes the transports and stops what was built", async () => {
    const events: string[] = [];
    const cause = new Error("registry down");
    const app = track(
      createApp({
        services: [RegisteredService],
        providers: [{ provide: createToken("thing"), useValue: 1, onStop: () => void events.push("onStop") }],
        transports: [fakeTransport((event) => events.push(event))],
        discovery: discoveryOf({
          registrar: {
            register: async () => {
              throw cause;
            },
            deregister: async () => void events.push("deregister"),
          },
          close: async () => void events.push("registry close"),
        }),
        logger: { level: "silent" },
      }),
    );
    await expect(app.start({ env: {} })).rejects.toBe(cause);
    expect(events).toEqual(["listen", "transport close", "onStop", "registry close"]);
    expect(app.state).toBe("closed");
  });
});

describe("app state", () => {
  test("goes created → starting → ready → draining → closed; ready only in ready", async () => {
    const events: string[] = [];
    const app = track(createApp({ services: [], logger: { level: "silent" } }));
    recordStates(app, (event) => events.push(event));
    expect(app.state).toBe("created");
    expect(app.ready).toBe(false);
    const starting = app.start({ env: {} });
    expect(app.state).toBe("starting");
    expect(app.ready).toBe(false);
    await starting;
    expect(app.state).toBe("ready");
    expect(app.ready).toBe(true);
    await app.close();
    expect(app.state).toBe("closed");
    expect(app.ready).toBe(false);
    expect(events).toEqual(["state starting", "state ready", "state draining", "state closed"]);
  });

  test("start twice is GANTRY_ERR_APP_STATE, while starting, once ready and once closed", async () => {
    const app = track(createApp({ services: [], logger: { level: "silent" } }));
    const starting = app.start({ env: {} });
    const whileStarting = await rejected(app.start({ env: {} }));
    expect(whileStarting.code).toBe("GANTRY_ERR_APP_STATE");
    expect(whileStarting.message).toBe("cannot start an app that is starting");
    await starting;
    expect((await rejected(app.start({ env: {} }))).message).toBe("cannot start an app that is ready");
    await app.close();
    expect((await rejected(app.start({ env: {} }))).message).toBe("cannot start an app that is closed");
  });

  test("close() twice returns the same promise, and stops once", async () => {
    let stops = 0;
    const app = track(
      createApp({
        services: [],
        providers: [{ provide: createToken("x"), useValue: 1, onStop: () => void stops++ }],
        logger: { level: "silent" },
      }),
    );
    await app.start({ env: {} });
    const first = app.close();
    const second = app.close();
    expect(second).toBe(first);
    await first;
    expect(app.close()).toBe(first);
    expect(stops).toBe(1);
  });

  test("close() before start closes the app without starting it", async () => {
    const app = track(createApp({ services: [], logger: { level: "silent" } }));
    await app.close();
    expect(app.state).toBe("closed");
    expect((await rejected(app.start({ env: {} }))).code).toBe("GANTRY_ERR_APP_STATE");
  });

  test("close() while starting waits for the start and then shuts down", async () => {
    const events: string[] = [];
    const gate = signal();
    const app = track(
      createApp({
        services: [],
        providers: [
          {
            provide: createToken("slow"),
            useFactory: async () => {
              await gate.promise;
              return 1;
            },
            onStop: () => void events.push("onStop"),
          },
        ],
        logger: { level: "silent" },
      }),
    );
    const starting = app.start({ env: {} });
    const closing = app.close();
    gate.resolve();
    await starting;
    await closing;
    expect(app.state).toBe("closed");
    expect(events).toEqual(["onStop"]);
  });

  test("calls before start are refused with GANTRY_ERR_NOT_STARTED", async () => {
    @Service({ package: "life", version: "v1" })
    class Early {
      @Method()
      ping(): Reply {
        return { message: "pong" };
      }
    }
    const app = track(createApp({ services: [Early], logger: { level: "silent" } }));
    const error = await rejected(app.call(describeService(Early).methods[0], {}));
    expect(error).toMatchObject({ status: "UNAVAILABLE", code: "GANTRY_ERR_NOT_STARTED", retryable: true });
    expect(error.message).toBe("the app is created, not serving");
  });
});

/** A transport that only records what the app asks of it. */
function fakeTransport(record: (event: string) => void, hooks: { drain?: () => void } = {}): Transport {
  let host: TransportHost | undefined;
  return {
    kind: "fake",
    async listen(given) {
      host = given;
      record("listen");
      const endpoint: Endpoint = { transport: "fake", url: "fake://127.0.0.1:1", host: "127.0.0.1", port: 1 };
      return [endpoint];
    },
    drain() {
      record(host === undefined ? "transport drain before listen" : "transport drain");
      hooks.drain?.();
    },
    async close() {
      record("transport close");
    },
  };
}

describe("shutdown", () => {
  @Service({ package: "shutdown", version: "v1" })
  class SlowService {
    static started = signal();
    static release = signal();
    static events: string[] = [];

    @Method({ output: Reply })
    async slow(): Promise<Reply> {
      SlowService.events.push("slow call starts");
      SlowService.started.resolve();
      await SlowService.release.promise;
      SlowService.events.push("slow call returns");
      return { message: "done" };
    }

    @Method()
    fast(): Reply {
      return { message: "fast" };
    }

    @Method({ output: Reply })
    async forever(_input: Empty, ctx: CallContext): Promise<Reply> {
      SlowService.started.resolve();
      ctx.signal.addEventListener("abort", () => {
        SlowService.events.push(`forever aborted: ${(ctx.signal.reason as GantryError).code}`);
      });
      return new Promise<Reply>(() => undefined);
    }
  }

  afterEach(() => {
    SlowService.started = signal();
    SlowService.release = signal();
    SlowService.events = [];
  });

  test("closes in the documented order, letting the call in flight finish first", async () => {
    const events = SlowService.events;
    const record = (event: string) => events.push(event);
    const times = new Map<string, number>();
    const registered: ServiceInstance[] = [];
    let app: GantryApp;
    const registrar: Registrar = {
      async register(instances) {
        registered.push(...instances);
        record("register");
      },
      async deregister() {
        times.set("deregister", performance.now());
        record(`deregister (state ${app.state}, ready ${app.ready})`);
      },
    };
    const transport = fakeTransport(record, {
      drain: () => {
        times.set("drain", performance.now());
        record(`in flight at drain: ${app.inFlight}`);
        // The call in flight may finish now: the app must wait for it before closing the transport.
        SlowService.release.resolve();
      },
    });
    const A = createToken<string>("a");
    const B = createToken<string>("b");
    app = track(
      createApp({
        name: "shutdown-order",
        version: "1.4.2",
        services: [SlowService],
        providers: [
          { provide: A, useValue: "a", onStop: () => void record("A.onStop") },
          { provide: B, useFactory: (a: string) => `${a}b`, inject: [A], onStop: () => void record("B.onStop") },
        ],
        transports: [transport],
        discovery: discoveryOf({ registrar, close: async () => void record("registry close") }),
        shutdown: { propagationDelayMs: 50 },
        logger: { level: "silent" },
      }),
    );
    recordStates(app, record);
    app.onShutdown("clients", () => record("clients"));
    app.onShutdown("telemetry", async () => {
      await Promise.resolve();
      record("telemetry");
    });

    await app.start({ env: {} });
    expect(app.endpoints).toEqual([{ transport: "fake", url: "fake://127.0.0.1:1", host: "127.0.0.1", port: 1 }]);
    expect(registered).toEqual([
      {
        id: expect.stringMatching(/^shutdown\.v1\.SlowService-[0-9a-f-]{36}$/),
        service: "shutdown.v1.SlowService",
        apiVersion: "v1",
        version: "1.4.2",
        endpoints: { fake: "fake://127.0.0.1:1" },
        metadata: {},
        registeredAt: expect.any(Number),
      },
    ]);

    const slow = app.call(app.method(SlowService, "slow"), {});
    await SlowService.started.promise;
    expect(app.inFlight).toBe(1);
    const closing = app.close();
    expect(app.state).toBe("draining");
    expect(app.ready).toBe(false);
    await closing;
    expect(await slow).toEqual({ message: "done" });

    expect(events).toEqual([
      "state starting",
      "listen",
      "register",
      "state ready",
      "slow call starts",
      "state draining",
      "deregister (state draining, ready false)",
      "transport drain",
      "in flight at drain: 1",
      "slow call returns",
      "transport close",
      "clients",
      "B.onStop",
      "A.onStop",
      "registry close",
      "telemetry",
      "state closed",
    ]);
    // The propagation delay lies between deregistering and draining (timers may fire a little early).
    expect((times.get("drain") ?? 0) - (times.get("deregister") ?? 0)).toBeGreaterThanOrEqual(45);
  });

  test("calls during the propagation delay are still served", async () => {
    let app!: GantryApp;
    const served = signal<unknown>();
    app = track(
      createApp({
        services: [SlowService],
        discovery: discoveryOf({
          registrar: {
            register: async () => undefined,
            deregister: async () => {
              // Clients have not yet seen the deregistration: their calls must still succeed.
              served.resolve(await app.call(app.method(SlowService, "fast"), {}));
            },
          },
        }),
        shutdown: { propagationDelayMs: 20 },
        logger: { level: "silent" },
      }),
    );
    await app.start({ env: {} });
    await app.close();
    expect(await served.promise).toEqual({ message: "fast" });
  });

  test("a call arriving once draining began is rejected with UNAVAILABLE GANTRY_ERR_SHUTTING_DOWN", async () => {
    const drained = signal();
    const app = track(
      createApp({
        services: [SlowService],
        transports: [fakeTransport(() => undefined, { drain: () => drained.resolve() })],
        logger: { level: "silent" },
      }),
    );
    await app.start({ env: {} });
    const slow = app.call(app.method(SlowService, "slow"), {});
    await SlowService.started.promise;
    const closing = app.close();
    await drained.promise;
    // One turn of the event loop: the app goes from draining its transports to draining its calls.
    await new Promise(setImmediate);
    const error = await rejected(app.call(app.method(SlowService, "fast"), {}));
    expect(error).toMatchObject({
      status: "UNAVAILABLE",
      code: "GANTRY_ERR_SHUTTING_DOWN",
      retryable: true,
      httpStatus: 503,
      message: "server is shutting down",
    });
    expect(app.state).toBe("draining");
    SlowService.release.resolve();
    await closing;
    expect(await slow).toEqual({ message: "done" });
  });

  test("a call still running after drainTimeoutMs is aborted, and close completes", async () => {
    const lines: string[] = [];
    const app = track(
      createApp({
        services: [SlowService],
        shutdown: { drainTimeoutMs: 50 },
        logger: { destination: { write: (line: string) => void lines.push(line) } },
      }),
    );
    await app.start({ env: {} });
    const forever = app.call(app.method(SlowService, "forever"), {});
    await SlowService.started.promise;
    await app.close();
    expect(app.state).toBe("closed");
    const error = await rejected(forever);
    expect(error).toMatchObject({ status: "UNAVAILABLE", code: "GANTRY_ERR_DRAIN_TIMEOUT" });
    expect(SlowService.events).toEqual(["forever aborted: GANTRY_ERR_DRAIN_TIMEOUT"]);
    const warning = lines.map((line) => JSON.parse(line)).find((entry) => entry.level === "warn");
    expect(warning).toMatchObject({ aborted: 1, msg: "1 calls did not finish within 50 ms and were aborted" });
  });

  test("a failing shutdown step is logged and the others still run", async () => {
    const events: string[] = [];
    const lines: string[] = [];
    const app = track(
      createApp({
        services: [],
        providers: [{ provide: createToken("x"), useValue: 1, onStop: () => void events.push("onStop") }],
        transports: [
          {
            kind: "broken",
            listen: async () => [],
            drain: () => undefined,
            close: async () => {
              throw new Error("close failed");
            },
          },
        ],
        logger: { destination: { write: (line: string) => void lines.push(line) } },
      }),
    );
    app.onShutdown("telemetry", () => void events.push("telemetry"));
    await app.start({ env: {} });
    await app.close();
    expect(events).toEqual(["onStop", "telemetry"]);
    const failure = lines.map((line) => JSON.parse(line)).find((entry) => entry.level === "error");
    expect(failure).toMatchObject({ msg: "shutdown: close broken failed", err: { message: "close failed" } });
  });
});
