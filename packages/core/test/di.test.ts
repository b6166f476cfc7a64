import { describe, expect, test } from "vitest";
import {
  type ConfigOf,
  config,
  createApp,
  createToken,
  defineConfig,
  Field,
  Inject,
  Injectable,
  LOGGER,
  type Logger,
  Message,
  Method,
  Optional,
  Service,
} from "../src/index.js";
import { createTestApp } from "../src/testing/index.js";
import { rejected } from "./helpers.js";

@Message()
class Reply {
  @Field(1) message!: string;
}

interface Clock {
  now(): number;
}
const CLOCK = createToken<Clock>("clock");
const GREETING = createToken<string>("greeting");
const CACHE = createToken<Map<string, string>>("cache");

const AppConfig = defineConfig({ greeting: config.string({ default: "Hello" }) }, { name: "app" });

@Injectable()
class Repository {
  readonly id = Math.random();
}

@Injectable()
class Greeter {
  constructor(
    readonly repository: Repository,
    @Inject(CLOCK) readonly clock: Clock,
    @Inject(AppConfig) readonly config: ConfigOf<typeof AppConfig>,
  ) {}

  greet(name: string): string {
    return `${this.config.greeting} ${name} at ${this.clock.now()}`;
  }
}

@Service({ package: "di", version: "v1" })
class GreeterService {
  constructor(
    readonly greeter: Greeter,
    readonly repository: Repository,
  ) {}

  @Method()
  hello(): Reply {
    return { message: this.greeter.greet("Ada") };
  }
}

const fixedClock: Clock = { now: () => 42 };

describe("constructor injection", () => {
  test("by class, by token and by config schema", async () => {
    await using t = await createTestApp(
      {
        services: [GreeterService],
        providers: [Repository, Greeter, { provide: CLOCK, useValue: fixedClock }],
        config: [AppConfig],
      },
      { config: { greeting: "Hi" } },
    );
    expect(await t.client(GreeterService).hello(undefined)).toEqual({ message: "Hi Ada at 42" });
    const greeter = await t.app.get(Greeter);
    expect(greeter.clock).toBe(fixedClock);
    expect(greeter.config).toEqual({ greeting: "Hi" });
    expect(greeter.config).toBe(t.app.config(AppConfig));
    expect(await t.app.get(AppConfig)).toBe(greeter.config);
  });

  test("services and providers are singletons, the same instance everywhere", async () => {
    @Service({ package: "di", version: "v1" })
    class Other {
      constructor(
        readonly greeterService: GreeterService,
        readonly repository: Repository,
      ) {}
    }
    await using t = await createTestApp({
      services: [GreeterService, Other],
      providers: [Repository, Greeter, { provide: CLOCK, useValue: fixedClock }],
      config: [AppConfig],
    });
    const service = await t.app.get(GreeterService);
    const other = await t.app.get(Other);
    expect(other.greeterService).toBe(service);
    expect(other.repository).toBe(service.repository);
    expect(service.greeter.repository).toBe(service.repository);
    expect(await t.app.get(Repository)).toBe(service.repository);
  });

  test("the app's logger is injected by the LOGGER token", async () => {
    @Injectable()
    class UsesLogger {
      constructor(@Inject(LOGGER) readonly log: Logger) {}
    }
    await using t = await createTestApp({ services: [], providers: [UsesLogger] });
    expect((await t.app.get(UsesLogger)).log).toBe(t.app.log);
  });
});

describe("providers", () => {
  test("useValue, useClass and useExisting", async () => {
    abstract class Mailer {
      abstract send(to: string): string;
    }
    @Injectable()
    class SmtpMailer extends Mailer {
      send(to: string) {
        return `smtp:${to}`;
      }
    }
    const MAILER = createToken<Mailer>("mailer");
    await using t = await createTestApp({
      services: [],
      providers: [
        { provide: GREETING, useValue: "hey" },
        { provide: Mailer, useClass: SmtpMailer },
        { provide: MAILER, useExisting: Mailer },
      ],
    });
    expect(await t.app.get(GREETING)).toBe("hey");
    const mailer = await t.app.get(Mailer);
    expect(mailer).toBeInstanceOf(SmtpMailer);
    expect(mailer.send("ada")).toBe("smtp:ada");
    expect(await t.app.get(MAILER)).toBe(mailer);
  });

  test("sync and async factories with their dependencies", async () => {
    const URL_TOKEN = createToken<string>("url");
    const CONNECTION = createToken<{ url: string; greeting: string }>("connection");
    const seen: unknown[] = [];
    await using t = await createTestApp(
      {
        services: [],
        config: [AppConfig],
        providers: [
          {
            provide: URL_TOKEN,
            useFactory: (cfg: ConfigOf<typeof AppConfig>) => `db://${cfg.greeting}`,
            inject: [AppConfig],
          },
          {
            provide: CONNECTION,
            useFactory: async (url: string, repository: Repository, cfg: ConfigOf<typeof AppConfig>) => {
              seen.push(repository);
              await Promise.resolve();
              return { url, greeting: cfg.greeting };
            },
            inject: [URL_TOKEN, Repository, AppConfig],
          },
          Repository,
        ],
      },
      { config: { greeting: "x" } },
    );
    expect(await t.app.get(CONNECTION)).toEqual({ url: "db://x", greeting: "x" });
    expect(seen).toEqual([await t.app.get(Repository)]);
    expect(await t.app.get(CONNECTION)).toBe(await t.app.get(CONNECTION));
  });

  test("a class gets the value of an async factory", async () => {
    const DB = createToken<{ name: string }>("db");
    @Injectable()
    class UsesDb {
      constructor(@Inject(DB) readonly db: { name: string }) {}
    }
    await using t = await createTestApp({
      services: [],
      providers: [UsesDb, { provide: DB, useFactory: async () => ({ name: "pg" }) }],
    });
    expect((await t.app.get(UsesDb)).db).toEqual({ name: "pg" });
  });

  test("@Optional gives undefined when nothing provides the dependency", async () => {
    @Injectable()
    class MaybeCached {
      constructor(@Optional() @Inject(CACHE) readonly cache?: Map<string, string>) {}
    }
    await using t = await createTestApp({ services: [], providers: [MaybeCached] });
    expect((await t.app.get(MaybeCached)).cache).toBeUndefined();

    const cache = new Map([["a", "b"]]);
    await using t2 = await createTestApp({
      services: [],
      providers: [MaybeCached, { provide: CACHE, useValue: cache }],
    });
    expect((await t2.app.get(MaybeCached)).cache).toBe(cache);
  });

  test("GANTRY_ERR_BAD_PROVIDER for something that is not a provider", async () => {
    const error = await rejected(createTestApp({ services: [], providers: [{ provide: CACHE } as never] }));
    expect(error.code).toBe("GANTRY_ERR_BAD_PROVIDER");
    expect(error.message).toBe("providers[0]: cache needs useClass, useValue, useFactory or useExisting");
    const notObject = await rejected(createTestApp({ services: [], providers: [Repository, 5 as never] }));
    expect(notObject.message).toMatch(/^providers\[1\]: a provider is a class or an object/);
  });
});

describe("overrides", () => {
  test("replace a provider, and what depends on it gets the replacement", async () => {
    const base = createApp({
      services: [GreeterService],
      providers: [Repository, Greeter, { provide: CLOCK, useValue: { now: () => 1 } }],
      config: [AppConfig],
    });
    await using t = await createTestApp(base, { overrides: [{ provide: CLOCK, useValue: fixedClock }] });
    expect(await t.client(GreeterService).hello(undefined)).toEqual({ message: "Hello Ada at 42" });
    expect(base.state).toBe("created");
  });

  test("replace a class provider with a fake class", async () => {
    @Injectable()
    class FakeRepository extends Repository {
      readonly fake = true;
    }
    await using t = await createTestApp(
      {
        services: [GreeterService],
        providers: [Repository, Greeter, { provide: CLOCK, useValue: fixedClock }],
        config: [AppConfig],
      },
      { overrides: [{ provide: Repository, useClass: FakeRepository }] },
    );
    const service = await t.app.get(GreeterService);
    expect(service.repository).toBeInstanceOf(FakeRepository);
    expect(service.greeter.repository).toBe(service.repository);
  });

  test("an override's own hooks run, and the replaced provider's do not", async () => {
    const events: string[] = [];
    const t = await createTestApp(
      {
        services: [],
        providers: [
          {
            provide: CLOCK,
            useValue: fixedClock,
            onStart: () => void events.push("original start"),
            onStop: () => void events.push("original stop"),
          },
        ],
      },
      {
        overrides: [
          {
            provide: CLOCK,
            useValue: { now: () => 0 },
            onStart: () => void events.push("override start"),
            onStop: () => void events.push("override stop"),
          },
        ],
      },
    );
    await t.close();
    expect(events).toEqual(["override start", "override stop"]);
  });
});

describe("GANTRY_ERR_MISSING_PROVIDER", () => {
  test("names the class, the parameter index and the missing class", async () => {
    @Service({ package: "di", version: "v1" })
    class NeedsRepository {
      constructor(
        @Inject(CLOCK) readonly clock: Clock,
        readonly repository: Repository,
      ) {}
    }
    const error = await rejected(
      createTestApp({ services: [NeedsRepository], providers: [{ provide: CLOCK, useValue: fixedClock }] }),
    );
    expect(error.code).toBe("GANTRY_ERR_MISSING_PROVIDER");
    expect(error.status).toBe("FAILED_PRECONDITION");
    expect(error.message).toBe(
      "NeedsRepository: constructor parameter #1 (Repository) has no provider; add it to the app's providers (or its services)",
    );
  });

  test("names a missing token", async () => {
    @Injectable()
    class NeedsClock {
      constructor(@Inject(CLOCK) readonly clock: Clock) {}
    }
    const error = await rejected(createTestApp({ services: [], providers: [NeedsClock] }));
    expect(error.message).toBe(
      "NeedsClock: constructor parameter #0 (clock) has no provider; add it to the app's providers (or its services)",
    );
  });

  test("for a primitive-typed parameter without @Inject", async () => {
    @Injectable()
    class NeedsString {
      constructor(
        readonly repository: Repository,
        readonly name: string,
      ) {}
    }
    const error = await rejected(createTestApp({ services: [], providers: [Repository, NeedsString] }));
    expect(error.code).toBe("GANTRY_ERR_MISSING_PROVIDER");
    expect(error.message).toBe(
      "NeedsString: constructor parameter #1 (String) has no provider; its type cannot name a provider; mark it with @Inject(token)",
    );
  });

  test("for an interface-typed parameter without @Inject", async () => {
    @Injectable()
    class NeedsClock {
      constructor(readonly clock: Clock) {}
    }
    const error = await rejected(createTestApp({ services: [], providers: [NeedsClock] }));
    expect(error.message).toBe(
      "NeedsClock: constructor parameter #0 (Object) has no provider; its type cannot name a provider; mark it with @Inject(token)",
    );
  });

  test("for a factory dependency", async () => {
    const error = await rejected(
      createTestApp({
        services: [],
        providers: [
          Repository,
          { provide: GREETING, useFactory: (_r: Repository, c: Clock) => String(c), inject: [Repository, CLOCK] },
        ],
      }),
    );
    expect(error.code).toBe("GANTRY_ERR_MISSING_PROVIDER");
    expect(error.message).toBe(
      "the factory of greeting: constructor parameter #1 (clock) has no provider; add it to the app's providers",
    );
  });

  test("for a guard's dependency", async () => {
    @Injectable()
    class ClockGuard {
      constructor(@Inject(CLOCK) readonly clock: Clock) {}
      canActivate() {
        return true;
      }
    }
    const error = await rejected(createTestApp({ services: [GreeterService], guards: [ClockGuard] }));
    expect(error.code).toBe("GANTRY_ERR_MISSING_PROVIDER");
  });
});

describe("GANTRY_ERR_PROVIDER_FAILED", () => {
  test("for a throwing factory, naming it and keeping the cause", async () => {
    const cause = new Error("connection refused");
    const error = await rejected(
      createTestApp({
        services: [],
        providers: [
          {
            provide: GREETING,
            useFactory: () => {
              throw cause;
            },
          },
        ],
      }),
    );
    expect(error.code).toBe("GANTRY_ERR_PROVIDER_FAILED");
    expect(error.status).toBe("FAILED_PRECONDITION");
    expect(error.message).toBe("greeting could not be built: connection refused");
    expect(error.cause).toBe(cause);
  });

  test("for a rejecting async factory and a throwing constructor", async () => {
    const asyncError = await rejected(
      createTestApp({
        services: [],
        providers: [{ provide: GREETING, useFactory: async () => Promise.reject(new Error("timeout")) }],
      }),
    );
    expect(asyncError.message).toBe("greeting could not be built: timeout");

    @Injectable()
    class Exploding {
      constructor() {
        throw new Error("boom");
      }
    }
    const ctorError = await rejected(createTestApp({ services: [], providers: [Exploding] }));
    expect(ctorError.code).toBe("GANTRY_ERR_PROVIDER_FAILED");
    expect(ctorError.message).toMatch(/^Exploding could not be built: .*boom/);
  });
});
