/**
 * Testing helpers: build an app with providers replaced and call its methods in-process, through the
 * real pipeline (guards, validation, interceptors), without opening a port.
 *
 * @example
 * await using t = await createTestApp(app, { overrides: [{ provide: DB, useValue: fakeDb }] });
 * const reply = await t.client(HelloService).sayHello({ name: "Ada" });
 */
import { type AppOptions, createApp, GantryApp } from "../app/app.js";
import type { Provider } from "../di/container.js";
import type { LoggerOptions } from "../logger.js";
import type { Constructor } from "../metadata.js";
import type { Discovery, Registrar, Resolver } from "../registry/index.js";
import type { ClientCallOptions, ServiceClient } from "../service/client-types.js";

export interface TestAppOptions {
  /** Providers that replace the app's own. */
  overrides?: readonly Provider[];
  /** Config values by dotted key, with the precedence of `--set` flags. */
  config?: Readonly<Record<string, string>>;
  /** The environment the config reads; empty by default, so the machine's does not leak in. */
  env?: Readonly<Record<string, string | undefined>>;
  /** Open the app's transports too (off by default: calls go in-process). */
  transports?: boolean;
  /**
   * `true` for the app's own discovery (give it a `GANTRY_REGISTRY` of the test's own in `env`), or
   * a replacement. Off by default: a test app registers nowhere, so tests never show up in the
   * machine's `local://` registry.
   */
  discovery?: boolean | Discovery;
  /** Logging; silent by default. */
  logger?: LoggerOptions;
}

/** A started app for tests, with typed in-process clients. Close it, or use `await using`. */
export class TestApp {
  readonly app: GantryApp;

  constructor(app: GantryApp) {
    this.app = app;
  }

  /** A typed client whose calls run in this process through the full pipeline. */
  client<S>(service: Constructor<S>): ServiceClient<S> {
    return new Proxy({} as ServiceClient<S>, {
      get: (_target, key) => {
        if (typeof key !== "string" || key === "then") return undefined;
        const method = this.app.method(service, key);
        return (input: unknown, options?: ClientCallOptions) => this.app.call(method, input, options);
      },
    });
  }

  close(): Promise<void> {
    return this.app.close();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** Builds and starts an app (or a copy of an existing app's options) for a test. */
export async function createTestApp(app: GantryApp | AppOptions, options: TestAppOptions = {}): Promise<TestApp> {
  const base = app instanceof GantryApp ? app.options : app;
  const testApp = createApp({
    ...base,
    transports: options.transports ? base.transports : [],
    discovery:
      options.discovery === true ? base.discovery : options.discovery === false ? undefined : options.discovery,
    logger: options.logger ?? { level: "silent" },
  });
  await testApp.start({ overrides: options.overrides, flags: options.config, env: options.env ?? {} });
  return new TestApp(testApp);
}

/**
 * Waits until `check` holds, polling every few milliseconds; throws when it still does not after
 * `timeoutMs`. For what a test cannot await: a server's side of a call, a probe, a counter.
 *
 * @example
 * await until(() => channelProbe.seen.has(key));
 */
export async function until(check: () => boolean, timeoutMs = 2000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`the condition did not hold within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/**
 * A resolver with fixed instances: each endpoint set is one instance of whichever service is asked
 * for (for tests of clients without a registry).
 */
export function fixedResolver(endpoints: readonly Readonly<Record<string, string>>[]): Resolver {
  const instances = (service = "*") =>
    endpoints.map((set, index) => ({
      id: `${service}-${index}`,
      service,
      apiVersion: undefined,
      version: "",
      endpoints: set,
      metadata: {},
    }));
  return {
    list: async (service) => instances(service),
    watch(service, listener) {
      let open = true;
      queueMicrotask(() => {
        if (open) listener({ type: "snapshot", instances: instances(service) });
      });
      return {
        close: () => {
          open = false;
        },
      };
    },
  };
}

/** A discovery whose registry is the given registrar and resolver, for lifecycle tests. */
export function discoveryOf(parts: {
  registrar?: Registrar;
  resolver?: Resolver;
  close?: () => Promise<void>;
}): Discovery {
  return {
    open: () => ({
      url: "test://",
      registrar: parts.registrar,
      resolver: parts.resolver,
      close: parts.close ?? (async () => undefined),
    }),
  };
}

export {
  channelProbe,
  failureOf,
  Kitchen,
  kitchenDefaults,
  kitchenSample,
  MetaReply,
  Mood,
  ProbeService,
  type PromisedChannel,
  probeCall,
  probeMethod,
  promised,
} from "./channel-kit.js";
export {
  type ConformanceCallOptions,
  type ConformanceCase,
  type ConformanceClient,
  type ConformanceFailure,
  type ConformanceReply,
  ConformanceService,
  conformanceApp,
  conformanceCases,
  conformanceProbe,
  typedConformanceClient,
} from "./conformance.js";
