import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import type { ClientTransport } from "../client/types.js";
import { type ConfigSources, loadConfig } from "../config/load.js";
import type { ConfigSchema } from "../config/schema.js";
import { CallContext, type CallInit, currentCall } from "../context/call-context.js";
import { Metadata } from "../context/metadata.js";
import { AppContainer, type Provider } from "../di/container.js";
import type { Token } from "../di/token.js";
import { appStateChannel } from "../diagnostics.js";
import { GantryError } from "../errors/gantry-error.js";
import { coreErrors } from "../errors/table.js";
import { createLogger, LOGGER, type Logger, type LoggerOptions } from "../logger.js";
import { readMessage, writeMessage } from "../message/json.js";
import type { Constructor } from "../metadata.js";
import { Invoker, type MethodHandler } from "../pipeline/invoker.js";
import type { CallStream } from "../pipeline/streams.js";
import type { Guard, GuardRef, Interceptor, InterceptorRef } from "../pipeline/types.js";
import { type Discovery, REGISTRY, type Registry, type ServiceInstance } from "../registry/index.js";
import { type ClientSpec, clientToken } from "../service/client.js";
import type { ClientCallOptions } from "../service/client-types.js";
import { checkRoutes, describeService, type MethodDescriptor, type ServiceDescriptor } from "../service/descriptor.js";
import { advertisedHost, type Endpoint, type Transport, type TransportHost } from "../transport/index.js";
import { AppClients } from "./clients.js";
import { type CoreConfigValues, coreConfigSchema } from "./config.js";
import type { AppState } from "./state.js";

export interface AppOptions {
  /** The app's name, in logs and discovery; defaults to `gantry-app`. */
  name?: string;
  /** The release version (`1.4.2`); defaults to `0.0.0`. */
  version?: string;
  services: readonly Constructor[];
  providers?: readonly Provider[];
  /** Config schemas whose values the app resolves at start and DI injects. */
  config?: readonly ConfigSchema<unknown>[];
  transports?: readonly Transport[];
  /** Guards and interceptors for every method of every service. */
  guards?: readonly GuardRef[];
  interceptors?: readonly InterceptorRef[];
  /**
   * Where the app registers its services once it listens, and where its clients find others:
   * `discovery()` from `@gantry/discovery` (`GANTRY_REGISTRY`, `local://` by default).
   */
  discovery?: Discovery;
  /** Metadata every registered instance of this app carries. */
  metadata?: Readonly<Record<string, string>>;
  /**
   * The services this app calls, injected with `@InjectClient(Service)`: a class (a contract or an
   * implementation), or `{ service, policy }` to set its balancer, timeouts, retries and breakers.
   */
  clients?: readonly (Constructor | ClientSpec)[];
  /** The client sides calls go out on; by default those of the app's transports. */
  clientTransports?: readonly ClientTransport[];
  /** Default of `clients.direct`: calls to a service served here run in this process. */
  clientsDirect?: boolean;
  logger?: LoggerOptions;
  /** Defaults for the `limits.*` and `shutdown.*` config keys. */
  maxConcurrentCalls?: number;
  shutdown?: { propagationDelayMs?: number; drainTimeoutMs?: number };
}

export interface StartOptions extends ConfigSources {
  /** Providers that replace the app's own (for tests). */
  overrides?: readonly Provider[];
}

/** A shutdown step for other packages: outbound clients close, then telemetry flushes. */
export type ShutdownStep = "clients" | "telemetry";

/**
 * Creates an app: services, providers, config, transports. Nothing runs until `start()`.
 *
 * @example
 * export default createApp({
 *   name: "hello-world",
 *   services: [HelloService],
 *   transports: [httpTransport({ port: 8080 })],
 * });
 */
export function createApp(options: AppOptions): GantryApp {
  return new GantryApp(options);
}

/**
 * A Gantry app. `start()` builds everything through DI, runs start hooks, opens the transports and
 * registers; `close()` shuts down in this order: readiness fails, deregister, the propagation delay,
 * drain calls in flight (bounded), close transports, close outbound clients, stop hooks in reverse,
 * flush telemetry.
 */
export class GantryApp {
  readonly name: string;
  readonly version: string;
  /**
   * This app's process-wide instance id: its services' ids in the registry end with it
   * (`hello.v1.HelloService-<id>`), and telemetry reports it as `service.instance.id`.
   */
  readonly instanceId = randomUUID();
  /** The options the app was created with. */
  readonly options: AppOptions;
  readonly #shutdownHooks: Record<ShutdownStep, (() => unknown)[]> = { clients: [], telemetry: [] };
  #state: AppState = "created";
  #log: Logger | undefined;
  #services: readonly ServiceDescriptor[] = [];
  #container: AppContainer | undefined;
  #invoker: Invoker | undefined;
  readonly #stateListeners = new Set<(state: AppState) => void>();
  #config: ReadonlyMap<ConfigSchema<unknown>, unknown> = new Map();
  #core: CoreConfigValues | undefined;
  #endpoints: Endpoint[] = [];
  #registry: Registry | undefined;
  #registration: AbortController | undefined;
  #appClients: AppClients | undefined;
  #listening: Transport[] = [];
  #starting: Promise<void> | undefined;
  #closing: Promise<void> | undefined;

  constructor(options: AppOptions) {
    this.options = options;
    this.name = options.name ?? "gantry-app";
    this.version = options.version ?? "0.0.0";
  }

  get state(): AppState {
    return this.#state;
  }

  /**
   * True once the transports listen and the first registration succeeded, until shutdown begins. A
   * later registry outage does not change it.
   */
  get ready(): boolean {
    return this.#state === "ready";
  }

  get endpoints(): readonly Endpoint[] {
    return this.#endpoints;
  }

  get services(): readonly ServiceDescriptor[] {
    return this.#services;
  }

  /** The open registry, after start, if the app has discovery. */
  get registry(): Registry | undefined {
    return this.#registry;
  }

  get log(): Logger {
    if (this.#log === undefined)
      throw coreErrors.create("GANTRY_ERR_APP_STATE", { action: "log from", state: this.#state });
    return this.#log;
  }

  /** Calls running now, on every transport. */
  get inFlight(): number {
    return this.#invoker?.inFlight ?? 0;
  }

  /** The resolved values of a config schema. */
  config<T>(schema: ConfigSchema<T>): T {
    if (!this.#config.has(schema)) throw new TypeError(`config schema ${schema.name} is not part of this app`);
    return this.#config.get(schema) as T;
  }

  /** Something DI built, after start. */
  get<T>(target: Constructor<T> | ConfigSchema<T> | Token<T>): Promise<T> {
    if (this.#container === undefined)
      throw coreErrors.create("GANTRY_ERR_APP_STATE", { action: "resolve from", state: this.#state });
    return this.#container.resolve(target as Constructor<T>);
  }

  /** Adds work to a shutdown step (for outbound clients and telemetry). */
  onShutdown(step: ShutdownStep, hook: () => unknown): void {
    this.#shutdownHooks[step].push(hook);
  }

  start(options: StartOptions = {}): Promise<void> {
    if (this.#state !== "created") {
      return Promise.reject(coreErrors.create("GANTRY_ERR_APP_STATE", { action: "start", state: this.#state }));
    }
    this.#setState("starting");
    this.#starting = this.#start(options).catch(async (error: unknown) => {
      await this.#teardown();
      this.#setState("closed");
      throw error;
    });
    return this.#starting;
  }

  /** Shuts down in order; safe to call more than once (every call gets the same promise). */
  close(): Promise<void> {
    this.#closing ??= this.#shutdown();
    return this.#closing;
  }

  /**
   * Runs one method in this process through the full pipeline (guards, validation of a copy of the
   * input, interceptors), as a remote call would. The remaining deadline of the current call, if any,
   * carries over.
   */
  async call(method: MethodDescriptor, input: unknown, options: ClientCallOptions = {}): Promise<unknown> {
    const invoker = this.#invoker;
    if (invoker === undefined || this.#log === undefined) {
      throw coreErrors.create("GANTRY_ERR_NOT_STARTED", { state: this.#state });
    }
    const parent = currentCall();
    let deadline = parent?.deadline;
    if (options.timeoutMs !== undefined)
      deadline = Math.min(deadline ?? Number.POSITIVE_INFINITY, Date.now() + options.timeoutMs);
    const call = new CallContext(
      {
        method,
        transport: "direct",
        metadata: new Metadata(Object.entries(options.metadata ?? {})),
        deadline,
        requestId: options.metadata?.["x-request-id"] ?? parent?.requestId,
        nested: parent !== undefined,
      },
      this.#log,
    );
    // The caller's cancellation (its own signal, or the call it runs in being cancelled) reaches this call.
    const signals = [options.signal, parent?.signal].filter((signal) => signal !== undefined);
    const cancel = () => call.abort(coreErrors.create("GANTRY_ERR_CANCELLED"));
    for (const signal of signals) {
      if (signal.aborted) cancel();
      else signal.addEventListener("abort", cancel, { once: true });
    }
    try {
      const output = await invoker.invoke(method, input, call);
      if (method.stream === "server" || method.stream === "bidi") return copyStream(method, output as CallStream);
      return copyOutput(method, output);
    } finally {
      for (const signal of signals) signal.removeEventListener("abort", cancel);
    }
  }

  /** The descriptor of a method, by service class (or full name) and member or wire name. */
  method(service: Constructor | string, method: string): MethodDescriptor {
    const descriptor = this.#services.find((s) => s.type === service || s.fullName === service);
    const found = descriptor?.methods.find((m) => m.key === method || m.name === method);
    if (found === undefined) {
      const name = typeof service === "string" ? service : service.name;
      throw coreErrors.create("GANTRY_ERR_UNKNOWN_METHOD", { method: `${name}.${method}` });
    }
    return found;
  }

  async #start(options: StartOptions): Promise<void> {
    const appOptions = this.options;
    const transports = appOptions.transports ?? [];
    const coreSchema = coreConfigSchema(appOptions);
    const schemas = [
      coreSchema,
      ...transports.flatMap((t) => (t.config === undefined ? [] : [t.config])),
      ...(appOptions.discovery?.config === undefined ? [] : [appOptions.discovery.config]),
      ...(appOptions.config ?? []),
    ];
    const loaded = loadConfig(schemas, { file: options.file, env: options.env ?? process.env, flags: options.flags });
    this.#config = loaded.values;
    const core = loaded.values.get(coreSchema) as CoreConfigValues;
    this.#core = core;
    const log = createLogger(this.name, { ...appOptions.logger, level: core.log.level });
    this.#log = log;
    for (const warning of loaded.warnings) log.warn(warning);

    const services = appOptions.services.map((type) => describeService(type));
    checkServices(services);
    this.#services = services;

    if (appOptions.discovery !== undefined) {
      this.#registry = await appOptions.discovery.open({
        app: { name: this.name, version: this.version },
        log,
        config: (schema) => this.config(schema),
      });
    }

    const container = new AppContainer();
    this.#container = container;
    container.provide({ provide: LOGGER, useValue: log }, "logger");
    if (this.#registry !== undefined) container.provide({ provide: REGISTRY, useValue: this.#registry }, "registry");
    const clients = this.#clients(core, log, transports);
    for (const spec of appOptions.clients ?? []) {
      const service = typeof spec === "function" ? spec : spec.service;
      container.provide({ provide: clientToken(service), useValue: clients.client(spec) }, `clients: ${service.name}`);
    }
    for (const schema of schemas)
      container.provide({ provide: schema.token, useValue: loaded.values.get(schema) }, schema.name);
    for (const [index, provider] of (appOptions.providers ?? []).entries()) container.provide(provider, String(index));
    for (const service of services) container.provide(service.type, service.type.name);
    for (const ref of extensionClasses(appOptions, services)) {
      if (!container.isBound(ref)) container.provide(ref, ref.name);
    }
    for (const [index, provider] of (options.overrides ?? []).entries())
      container.provide(provider, `overrides[${index}]`);
    container.check();
    await container.buildAll();

    const handlers = new Map<MethodDescriptor, MethodHandler>();
    for (const service of services) {
      const instance = (await container.resolve(service.type)) as object;
      for (const method of service.methods) {
        handlers.set(method, {
          method,
          instance,
          guards: await resolveAll<Guard>(container, [...(appOptions.guards ?? []), ...method.guards]),
          interceptors: await resolveAll<Interceptor>(container, [
            ...(appOptions.interceptors ?? []),
            ...method.interceptors,
          ]),
          inputStream: method.stream === "client" || method.stream === "bidi",
          outputStream: method.stream === "server" || method.stream === "bidi",
        });
      }
    }
    this.#invoker = new Invoker(handlers, core.limits.maxConcurrentCalls);

    for (const built of container.built) {
      if (built.onStart !== undefined) await runHook(built.owner, "onStart", built.onStart);
    }

    const host = this.#host();
    for (const transport of transports) {
      this.#listening.push(transport);
      this.#endpoints.push(...(await transport.listen(host)));
    }
    await this.#register(core.registration.timeout);
    this.#setState("ready");
    log.info(
      { endpoints: this.#endpoints.map((e) => e.url), services: services.map((s) => s.fullName) },
      `${this.name} is ready`,
    );
  }

  async #shutdown(): Promise<void> {
    if (this.#state === "created") {
      this.#setState("closed");
      return;
    }
    if (this.#state === "starting") {
      // A start still waiting for its first registration gives up now rather than at its timeout.
      this.#registration?.abort();
      await this.#starting?.catch(() => undefined);
    }
    if (this.#state === "closed") return;
    const log = this.log;
    const core = this.#core as CoreConfigValues;
    this.#setState("draining");
    log.info(`${this.name} is shutting down`);
    const registrar = this.#registry?.registrar;
    if (registrar !== undefined) {
      // Bounded: a registry that is down must not hold the drain (its TTL removes the records).
      const timeoutMs = core.shutdown.deregisterTimeout;
      await this.#step("deregister", () =>
        withTimeout(registrar.deregister(), timeoutMs, () => new Error(`no answer within ${timeoutMs} ms`)),
      );
    }
    if (core.shutdown.propagationDelay > 0) await sleep(core.shutdown.propagationDelay);
    for (const transport of this.#listening) await this.#step(`drain ${transport.kind}`, () => transport.drain());
    const aborted = (await this.#invoker?.drain(core.shutdown.drainTimeout)) ?? 0;
    if (aborted > 0)
      log.warn({ aborted }, `${aborted} calls did not finish within ${core.shutdown.drainTimeout} ms and were aborted`);
    await this.#teardown();
    this.#setState("closed");
    log.info(`${this.name} closed`);
    log.flush();
  }

  /**
   * Closes what start opened, in reverse: transports, outbound clients, the stop hooks of everything
   * DI built (also when start failed part way), the registry (opened before DI), telemetry.
   */
  async #teardown(): Promise<void> {
    for (const transport of this.#listening.splice(0).reverse())
      await this.#step(`close ${transport.kind}`, () => transport.close());
    const clients = this.#appClients;
    if (clients !== undefined) await this.#step("close clients", () => clients.close());
    for (const hook of this.#shutdownHooks.clients) await this.#step("close clients", hook);
    for (const built of [...(this.#container?.built ?? [])].reverse()) {
      if (built.onStop !== undefined) await this.#step(`${built.owner}.onStop`, built.onStop);
    }
    this.#registration?.abort();
    const registry = this.#registry;
    const timeoutMs = this.#core?.shutdown.deregisterTimeout ?? 5000;
    if (registry !== undefined) {
      await this.#step("close registry", () =>
        withTimeout(registry.close(), timeoutMs, () => new Error(`not closed within ${timeoutMs} ms`)),
      );
    }
    for (const hook of this.#shutdownHooks.telemetry) await this.#step("flush telemetry", hook);
  }

  /** Runs one shutdown step; a failure is logged and shutdown goes on. */
  async #step(what: string, fn: () => unknown): Promise<void> {
    try {
      await fn();
    } catch (error) {
      this.#log?.error({ err: error }, `shutdown: ${what} failed`);
    }
  }

  #setState(state: AppState): void {
    this.#state = state;
    for (const listener of this.#stateListeners) listener(state);
    if (appStateChannel.hasSubscribers) appStateChannel.publish({ app: this, state });
  }

  /** The app's typed clients: direct to services served here, else through discovery. */
  #clients(core: CoreConfigValues, log: Logger, transports: readonly Transport[]): AppClients {
    const served = new Map<string, MethodDescriptor>();
    for (const service of this.#services) for (const method of service.methods) served.set(method.path, method);
    const clientTransports =
      this.options.clientTransports ??
      transports.flatMap((transport) => (transport.client === undefined ? [] : [transport.client()]));
    this.#appClients = new AppClients({
      registry: this.#registry,
      transports: clientTransports,
      log,
      forward: core.clients.forwardMetadata,
      local: core.clients.direct ? (method) => served.get(method.path) : () => undefined,
      direct: (method, input, options) => this.call(method, input, options),
    });
    return this.#appClients;
  }

  #host(): TransportHost {
    const app = this;
    const invoker = this.#invoker as Invoker;
    const log = this.log;
    return {
      app: { name: this.name, version: this.version },
      services: this.#services,
      log,
      get state() {
        return app.#state;
      },
      onStateChange: (listener) => {
        this.#stateListeners.add(listener);
        return () => this.#stateListeners.delete(listener);
      },
      config: (schema) => this.config(schema),
      advertise: (listenHost) => this.#core?.advertise.host ?? advertisedHost(listenHost),
      createCall: (init: CallInit) => new CallContext(init, log),
      invoke: invoker.invoke.bind(invoker),
      dispatch: invoker.dispatch.bind(invoker),
    };
  }

  /** Registers every service; readiness waits for it, bounded by `registration.timeout`. */
  async #register(timeoutMs: number): Promise<void> {
    const registry = this.#registry;
    if (registry === undefined || this.#services.length === 0) return;
    const log = this.log;
    if (registry.registrar === undefined) {
      log.info(`${registry.url} only resolves services: this app's services are not registered by it`);
      return;
    }
    if (this.#endpoints.length === 0) {
      log.info("the app listens on no transport: its services are not registered");
      return;
    }
    const controller = new AbortController();
    this.#registration = controller;
    const registering = registry.registrar.register(this.#instances(), controller.signal);
    await withTimeout(registering, timeoutMs, () => {
      controller.abort();
      return coreErrors.create("GANTRY_ERR_REGISTRATION_TIMEOUT", { url: registry.url, timeoutMs });
    });
  }

  #instances(): ServiceInstance[] {
    const endpoints = Object.fromEntries(this.#endpoints.map((e) => [e.transport, e.url]));
    const zone = this.#core?.zone;
    const registeredAt = Date.now();
    return this.#services.map((service) => ({
      id: `${service.fullName}-${this.instanceId}`,
      service: service.fullName,
      apiVersion: service.apiVersion,
      version: this.version,
      endpoints,
      metadata: { ...this.options.metadata },
      ...(zone === undefined ? {} : { zone }),
      registeredAt,
    }));
  }
}

/** `promise`, or the error `onTimeout` makes if it has not settled within `ms`. */
async function withTimeout<T>(promise: Promise<T>, ms: number, onTimeout: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(onTimeout()), ms);
  });
  try {
    return await Promise.race([promise, timedOut]);
  } finally {
    clearTimeout(timer);
  }
}

function checkServices(services: readonly ServiceDescriptor[]): void {
  const byName = new Map<string, ServiceDescriptor>();
  for (const service of services) {
    const previous = byName.get(service.fullName);
    if (previous !== undefined) {
      throw coreErrors.create("GANTRY_ERR_DUPLICATE_SERVICE", {
        first: previous.type.name,
        second: service.type.name,
        service: service.fullName,
      });
    }
    byName.set(service.fullName, service);
  }
  checkRoutes(services);
}

/** Guard and interceptor classes named anywhere, which DI builds like providers. */
function extensionClasses(options: AppOptions, services: readonly ServiceDescriptor[]): Constructor[] {
  const refs = [
    ...(options.guards ?? []),
    ...(options.interceptors ?? []),
    ...services.flatMap((s) => s.methods.flatMap((m) => [...m.guards, ...m.interceptors])),
  ];
  return [...new Set(refs.filter((ref) => typeof ref === "function") as Constructor[])];
}

async function resolveAll<T>(container: AppContainer, refs: readonly (T | Constructor<T>)[]): Promise<T[]> {
  const resolved: T[] = [];
  for (const ref of refs)
    resolved.push(typeof ref === "function" ? await container.resolve(ref as Constructor<T>) : ref);
  return resolved;
}

async function runHook(owner: string, hook: string, fn: () => unknown): Promise<void> {
  try {
    await fn();
  } catch (error) {
    throw coreErrors.create(
      "GANTRY_ERR_HOOK_FAILED",
      { owner, hook, reason: error instanceof Error ? error.message : String(error) },
      { cause: error },
    );
  }
}

/** A copy of a method's output, as a caller in another process would get it: no shared objects. */
function copyOutput(method: MethodDescriptor, output: unknown): unknown {
  const written = writeMessage(method.output, output, method.path);
  try {
    return readMessage(method.output, written, { rules: false });
  } catch (error) {
    // The output is the method's fault, not the caller's: not INVALID_ARGUMENT but BAD_OUTPUT.
    const violations = error instanceof GantryError ? error.violations : [];
    throw coreErrors.create(
      "GANTRY_ERR_BAD_OUTPUT",
      { method: method.path, message: method.output.name },
      { details: { field: violations[0]?.field ?? "", problem: violations[0]?.description ?? String(error) } },
    );
  }
}

/**
 * A streaming method's output, each message copied. Closing it closes the method's stream, even
 * before the first pull.
 */
function copyStream(method: MethodDescriptor, stream: CallStream): AsyncIterableIterator<unknown> {
  return {
    [Symbol.asyncIterator]() {
      return this;
    },
    async next() {
      const result = await stream.next();
      return result.done === true ? result : { done: false, value: copyOutput(method, result.value) };
    },
    return: () => stream.return(),
  };
}
