import { Container } from "inversify";
import { coreErrors } from "../errors/table.js";
import { type Constructor, designParamTypes, getOwn } from "../metadata.js";
import { type InjectionTarget, identifierOf, type ParameterRecord } from "./decorators.js";

/**
 * What an app can provide to DI.
 *
 * @example
 * providers: [
 *   UserRepository,                                               // a class, built once
 *   { provide: DB, useFactory: async (config) => connect(config.dbUrl), inject: [AppConfig],
 *     onStop: (db) => db.end() },                                 // an async factory
 *   { provide: CLOCK, useValue: systemClock },                    // a value
 *   { provide: Mailer, useClass: SmtpMailer },                    // a class under another name
 * ]
 */
export type Provider<T = unknown> =
  | Constructor<T>
  | ClassProvider<T>
  | ValueProvider<T>
  | FactoryProvider<T>
  | ExistingProvider<T>;

interface ProviderHooks<T> {
  /** Runs at start, after everything is built, in the order things were built. */
  onStart?: (value: T) => unknown;
  /** Runs at shutdown, in reverse order. */
  onStop?: (value: T) => unknown;
}

export interface ClassProvider<T = unknown> extends ProviderHooks<T> {
  provide: InjectionTarget<T>;
  useClass: Constructor<T>;
}

export interface ValueProvider<T = unknown> extends ProviderHooks<T> {
  provide: InjectionTarget<T>;
  useValue: T;
}

export interface FactoryProvider<T = unknown> extends ProviderHooks<T> {
  provide: InjectionTarget<T>;
  // biome-ignore lint/suspicious/noExplicitAny: the factory's parameters follow `inject`
  useFactory: (...dependencies: any[]) => T | Promise<T>;
  inject?: readonly InjectionTarget[];
}

export interface ExistingProvider<T = unknown> {
  provide: InjectionTarget<T>;
  useExisting: InjectionTarget<T>;
}

/** Something built by DI, in the order it was built, with its lifecycle hooks. */
export interface Built {
  readonly owner: string;
  readonly instance: unknown;
  readonly onStart?: () => unknown;
  readonly onStop?: () => unknown;
}

const NOT_INJECTABLE = new Set<unknown>([
  undefined,
  Object,
  String,
  Number,
  Boolean,
  Symbol,
  BigInt,
  Array,
  Function,
  Promise,
]);

/**
 * The app's DI container (inversify 8): everything a singleton, everything built at start so that a
 * missing or failing provider stops the start, not the first call.
 */
export class AppContainer {
  readonly #container = new Container({ defaultScope: "Singleton" });
  readonly #identifiers: (Constructor | symbol)[] = [];
  readonly #hooks = new Map<Constructor | symbol, ProviderHooks<unknown>>();
  readonly #classes = new Map<Constructor | symbol, Constructor>();
  readonly #factories = new Map<Constructor | symbol, readonly InjectionTarget[]>();
  readonly #built: Built[] = [];

  /** Binds a provider; a later binding of the same identifier replaces it (overrides for tests). */
  provide(provider: Provider, where: string): void {
    const { identifier, bind } = this.#binding(provider, where);
    if (this.#container.isBound(identifier)) {
      // unbind also drops the identifier's activation handler: it is registered again below.
      this.#container.unbind(identifier);
      this.#classes.delete(identifier);
      this.#factories.delete(identifier);
      this.#hooks.delete(identifier);
    } else {
      this.#identifiers.push(identifier);
    }
    bind();
    this.#container.onActivation(identifier, (_context, instance) => {
      this.#record(identifier, instance);
      return instance;
    });
  }

  isBound(target: InjectionTarget): boolean {
    return this.#container.isBound(identifierOf(target));
  }

  /** Checks that every constructor parameter and factory dependency has a provider. */
  check(): void {
    for (const [identifier, type] of this.#classes) this.#checkClass(type, nameOf(identifier));
    for (const [identifier, dependencies] of this.#factories) {
      dependencies.forEach((dependency, index) => {
        if (!this.#container.isBound(identifierOf(dependency))) {
          throw coreErrors.create("GANTRY_ERR_MISSING_PROVIDER", {
            owner: `the factory of ${nameOf(identifier)}`,
            index,
            dependency: nameOf(identifierOf(dependency)),
            hint: "add it to the app's providers",
          });
        }
      });
    }
  }

  /** Builds everything bound, dependencies first. */
  async buildAll(): Promise<void> {
    for (const identifier of this.#identifiers) await this.resolve(identifier);
  }

  async resolve<T>(target: InjectionTarget<T>): Promise<T> {
    const identifier = identifierOf(target);
    try {
      return await this.#container.getAsync<T>(identifier as symbol);
    } catch (error) {
      if (error instanceof Error && (error as { code?: string }).code?.startsWith("GANTRY_ERR_")) throw error;
      throw coreErrors.create(
        "GANTRY_ERR_PROVIDER_FAILED",
        { owner: nameOf(identifier), reason: error instanceof Error ? error.message : String(error) },
        { cause: error },
      );
    }
  }

  /** Everything built so far, in the order it was built. */
  get built(): readonly Built[] {
    return this.#built;
  }

  #record(identifier: Constructor | symbol, instance: unknown): void {
    const hooks = this.#hooks.get(identifier) ?? {};
    const own = instance as { onStart?: () => unknown; onStop?: () => unknown } | null;
    const onStart = hooks.onStart ?? (typeof own?.onStart === "function" ? own.onStart : undefined);
    const onStop = hooks.onStop ?? (typeof own?.onStop === "function" ? own.onStop : undefined);
    this.#built.push({
      owner: nameOf(identifier),
      instance,
      onStart: onStart && (() => onStart.call(instance, instance)),
      onStop: onStop && (() => onStop.call(instance, instance)),
    });
  }

  #binding(provider: Provider, where: string): { identifier: Constructor | symbol; bind: () => void } {
    const fail = (problem: string) => coreErrors.create("GANTRY_ERR_BAD_PROVIDER", { index: where, problem });
    if (typeof provider === "function") {
      return {
        identifier: provider,
        bind: () => {
          this.#checkClass(provider, nameOf(provider), false);
          this.#classes.set(provider, provider);
          this.#container.bind(provider).toSelf().inSingletonScope();
        },
      };
    }
    if (typeof provider !== "object" || provider === null || !("provide" in provider)) {
      throw fail("a provider is a class or an object with provide and useClass, useValue, useFactory or useExisting");
    }
    const identifier = identifierOf(provider.provide);
    if (typeof identifier !== "function" && typeof identifier !== "symbol")
      throw fail("provide must be a class, a token or a config schema");
    const hooks: ProviderHooks<unknown> = {
      onStart: (provider as ProviderHooks<unknown>).onStart,
      onStop: (provider as ProviderHooks<unknown>).onStop,
    };
    const binder = () => {
      this.#hooks.set(identifier, hooks);
      return this.#container.bind<unknown>(identifier);
    };
    if ("useClass" in provider) {
      if (typeof provider.useClass !== "function") throw fail(`useClass of ${nameOf(identifier)} is not a class`);
      return {
        identifier,
        bind: () => {
          this.#checkClass(provider.useClass, nameOf(identifier), false);
          this.#classes.set(identifier, provider.useClass);
          binder()
            .to(provider.useClass as new (...args: never[]) => unknown)
            .inSingletonScope();
        },
      };
    }
    if ("useValue" in provider) return { identifier, bind: () => void binder().toConstantValue(provider.useValue) };
    if ("useFactory" in provider) {
      if (typeof provider.useFactory !== "function")
        throw fail(`useFactory of ${nameOf(identifier)} is not a function`);
      const dependencies = provider.inject ?? [];
      return {
        identifier,
        bind: () => {
          this.#factories.set(identifier, dependencies);
          binder()
            .toResolvedValue(provider.useFactory, dependencies.map(identifierOf) as never)
            .inSingletonScope();
        },
      };
    }
    if ("useExisting" in provider) {
      return { identifier, bind: () => void binder().toService(identifierOf(provider.useExisting)) };
    }
    throw fail(`${nameOf(identifier)} needs useClass, useValue, useFactory or useExisting`);
  }

  /**
   * Checks the constructor parameters of a class. Parameters whose type names no provider are checked
   * before binding (inversify refuses to bind such a class with an error of its own); whether the
   * others are bound, once everything is (`bindings`).
   */
  #checkClass(type: Constructor, owner: string, bindings = true): void {
    const types = designParamTypes(type) ?? [];
    const records = getOwn<Map<number, ParameterRecord>>("inject", type) ?? new Map<number, ParameterRecord>();
    const count = Math.max(types.length, type.length);
    for (let index = 0; index < count; index++) {
      const record = records.get(index);
      const identifier = record?.identifier ?? types[index];
      if (record?.optional) continue;
      if (NOT_INJECTABLE.has(identifier)) {
        throw coreErrors.create("GANTRY_ERR_MISSING_PROVIDER", {
          owner,
          index,
          dependency: nameOf(identifier),
          hint: "its type cannot name a provider; mark it with @Inject(token)",
        });
      }
      if (bindings && !this.#container.isBound(identifier as symbol)) {
        throw coreErrors.create("GANTRY_ERR_MISSING_PROVIDER", {
          owner,
          index,
          dependency: nameOf(identifier),
          hint: "add it to the app's providers (or its services)",
        });
      }
    }
  }
}

function nameOf(identifier: unknown): string {
  if (typeof identifier === "function") return identifier.name || "anonymous class";
  if (typeof identifier === "symbol") return identifier.description ?? "a token";
  return String(identifier);
}
