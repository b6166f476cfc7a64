import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, describe, expect, test } from "vitest";
import {
  CallContext,
  type CallMessage,
  callChannel,
  createDecorator,
  createToken,
  currentCall,
  Empty,
  type ExecutionContext,
  Field,
  GantryApp,
  GantryError,
  type Guard,
  Inject,
  Injectable,
  type Interceptor,
  Message,
  Method,
  Service,
  UseGuards,
  UseInterceptors,
} from "../src/index.js";
import { createTestApp, type TestApp } from "../src/testing/index.js";
import { rejected, signal } from "./helpers.js";

@Message()
class EchoRequest {
  @Field(1, { minLength: 1 }) text!: string;
  @Field(2, { type: "int32", max: 10 }) times!: number;
}

@Message()
class EchoReply {
  @Field(1) text!: string;
  @Field(2, { type: "string", repeated: true }) trail!: string[];
}

enum Mood {
  MOOD_UNSPECIFIED = 0,
  HAPPY = 1,
}

@Message()
class MoodReply {
  @Field(1, { enum: Mood }) mood!: Mood;
}

@Message()
class NameReply {
  @Field(1) name!: string;
}

/** An in-memory destination for the app's pino logger: one parsed JSON object per line. */
function memoryLog() {
  const lines: Record<string, unknown>[] = [];
  return { lines, destination: { write: (line: string) => void lines.push(JSON.parse(line)) } };
}

const opened: TestApp[] = [];
afterEach(async () => {
  await Promise.all(opened.splice(0).map((t) => t.close()));
});

async function open(...args: Parameters<typeof createTestApp>): Promise<TestApp> {
  const t = await createTestApp(...args);
  opened.push(t);
  return t;
}

describe("guards and interceptors", () => {
  /** What the guards and interceptors of one call did, in order. */
  let trail: string[] = [];
  afterEach(() => {
    trail = [];
  });

  const guard = (name: string, allow = true): Guard => ({
    canActivate: (context) => {
      trail.push(`guard ${name} (input ${JSON.stringify(context.input)})`);
      return allow;
    },
  });
  const interceptor = (name: string): Interceptor => ({
    intercept: async (context, next) => {
      trail.push(`before ${name} (${context.input instanceof EchoRequest ? "validated" : "raw"})`);
      const output = await next();
      trail.push(`after ${name}`);
      return output;
    },
  });

  @UseGuards(guard("class"))
  @UseInterceptors(interceptor("class"))
  @Service({ package: "pipe", version: "v1" })
  class OrderedService {
    @UseGuards(guard("method"))
    @UseInterceptors(interceptor("method"))
    @Method()
    echo(req: EchoRequest): EchoReply {
      trail.push("method");
      return { text: req.text, trail: [] };
    }

    @Method()
    plain(req: EchoRequest): EchoReply {
      trail.push("plain");
      return { text: req.text, trail: [] };
    }
  }

  test("run global, then class, then method guards, then interceptors in the same order, around the method", async () => {
    const t = await open({
      services: [OrderedService],
      guards: [guard("global")],
      interceptors: [interceptor("global")],
    });
    expect(await t.client(OrderedService).echo({ text: "hi" })).toEqual({ text: "hi", trail: [] });
    expect(trail).toEqual([
      'guard global (input {"text":"hi"})',
      'guard class (input {"text":"hi"})',
      'guard method (input {"text":"hi"})',
      "before global (validated)",
      "before class (validated)",
      "before method (validated)",
      "method",
      "after method",
      "after class",
      "after global",
    ]);
    trail = [];
    await t.client(OrderedService).plain({ text: "x" });
    expect(trail).toEqual([
      'guard global (input {"text":"x"})',
      'guard class (input {"text":"x"})',
      "before global (validated)",
      "before class (validated)",
      "plain",
      "after class",
      "after global",
    ]);
  });

  test("a guard that says no stops the call with PERMISSION_DENIED before validation", async () => {
    @UseGuards(guard("deny", false))
    @Service({ package: "pipe", version: "v1" })
    class Denied {
      @Method()
      echo(req: EchoRequest): EchoReply {
        trail.push("method");
        return { text: req.text, trail: [] };
      }
    }
    const t = await open({ services: [Denied] });
    // The input is invalid too: an unauthorised caller must not learn about its fields.
    const error = await rejected(t.client(Denied).echo({ text: "", times: 99 }));
    expect(error).toMatchObject({
      status: "PERMISSION_DENIED",
      code: "GANTRY_ERR_PERMISSION_DENIED",
      httpStatus: 403,
      message: "not allowed to call /pipe.v1.Denied/Echo",
      violations: [],
    });
    expect(trail).toEqual(['guard deny (input {"text":"","times":99})']);
  });

  test("an allowed call with invalid input gets INVALID_ARGUMENT, and interceptors do not run", async () => {
    const t = await open({ services: [OrderedService] });
    const error = await rejected(t.client(OrderedService).echo({ text: "", times: 11 }));
    expect(error.status).toBe("INVALID_ARGUMENT");
    expect(error.code).toBe("GANTRY_ERR_VALIDATION");
    expect(error.violations).toEqual([
      { field: "text", description: "must be at least 1 character" },
      { field: "times", description: "must be at most 10" },
    ]);
    expect(trail).toEqual([
      'guard class (input {"text":"","times":11})',
      'guard method (input {"text":"","times":11})',
    ]);
  });

  test("a guard may throw an error of its own", async () => {
    const authenticate: Guard = {
      canActivate: (context) => {
        if (context.call.metadata.get("authorization") === undefined) {
          throw new GantryError("UNAUTHENTICATED", "who are you?", { code: "NO_TOKEN" });
        }
        return true;
      },
    };
    const t = await open({ services: [OrderedService], guards: [authenticate] });
    const error = await rejected(t.client(OrderedService).plain({ text: "x" }));
    expect(error).toMatchObject({ status: "UNAUTHENTICATED", code: "NO_TOKEN", httpStatus: 401 });
    const reply = await t.client(OrderedService).plain({ text: "x" }, { metadata: { Authorization: "Bearer t" } });
    expect(reply.text).toBe("x");
  });

  test("a guard class is built through DI with its dependencies", async () => {
    const ALLOWED = createToken<readonly string[]>("allowed users");
    @Injectable()
    class UserGuard implements Guard {
      constructor(@Inject(ALLOWED) readonly allowed: readonly string[]) {}
      canActivate(context: ExecutionContext) {
        return this.allowed.includes(context.call.metadata.get("x-user") ?? "");
      }
    }
    @UseGuards(UserGuard)
    @Service({ package: "pipe", version: "v1" })
    class Guarded {
      @Method()
      echo(req: EchoRequest): EchoReply {
        return { text: req.text, trail: [] };
      }
    }
    const t = await open({ services: [Guarded], providers: [{ provide: ALLOWED, useValue: ["ada"] }] });
    expect(await t.client(Guarded).echo({ text: "a" }, { metadata: { "x-user": "ada" } })).toEqual({
      text: "a",
      trail: [],
    });
    expect((await rejected(t.client(Guarded).echo({ text: "a" }, { metadata: { "x-user": "bob" } }))).status).toBe(
      "PERMISSION_DENIED",
    );
    expect((await t.app.get(UserGuard)).allowed).toEqual(["ada"]);
  });

  test("a custom decorator's value is read in a guard, the method's winning over the class's", async () => {
    const Roles = createDecorator<string[]>("roles");
    const seen: (string[] | undefined)[] = [];
    const rolesGuard: Guard = {
      canActivate: (context) => {
        const roles = context.metadata(Roles);
        seen.push(roles);
        return roles === undefined || roles.includes(context.call.metadata.get("x-role") ?? "");
      },
    };
    @Roles(["user"])
    @Service({ package: "pipe", version: "v1" })
    class RoleService {
      @Method()
      read(req: EchoRequest): EchoReply {
        return { text: req.text, trail: [] };
      }

      @Roles(["admin"])
      @Method()
      write(req: EchoRequest): EchoReply {
        return { text: req.text, trail: [] };
      }
    }
    @Service({ package: "pipe", version: "v1" })
    class Open {
      @Method()
      read(req: EchoRequest): EchoReply {
        return { text: req.text, trail: [] };
      }
    }
    const t = await open({ services: [RoleService, Open], guards: [rolesGuard] });
    const asUser = { metadata: { "x-role": "user" } };
    expect((await t.client(RoleService).read({ text: "r" }, asUser)).text).toBe("r");
    expect((await rejected(t.client(RoleService).write({ text: "w" }, asUser))).status).toBe("PERMISSION_DENIED");
    expect((await t.client(RoleService).write({ text: "w" }, { metadata: { "x-role": "admin" } })).text).toBe("w");
    expect((await t.client(Open).read({ text: "o" })).text).toBe("o");
    expect(seen).toEqual([["user"], ["admin"], ["admin"], undefined]);
    expect(t.app.method(RoleService, "write").metadata(Roles)).toEqual(["admin"]);
    expect(t.app.services[0].metadata(Roles)).toEqual(["user"]);
  });

  test("an interceptor may replace the output", async () => {
    @UseInterceptors({
      intercept: async (_context, next) => {
        const output = (await next()) as EchoReply;
        return { text: output.text.toUpperCase(), trail: ["replaced"] };
      },
    })
    @Service({ package: "pipe", version: "v1" })
    class Shouting {
      @Method()
      echo(req: EchoRequest): EchoReply {
        return { text: req.text, trail: [] };
      }
    }
    const t = await open({ services: [Shouting] });
    expect(await t.client(Shouting).echo({ text: "hi" })).toEqual({ text: "HI", trail: ["replaced"] });
  });

  test("an interceptor that calls next() twice gets an error the second time", async () => {
    let calls = 0;
    const second = signal<unknown>();
    @UseInterceptors({
      intercept: async (_context, next) => {
        const output = await next();
        second.resolve(await next().catch((error: unknown) => error));
        return output;
      },
    })
    @Service({ package: "pipe", version: "v1" })
    class Twice {
      @Method()
      echo(req: EchoRequest): EchoReply {
        calls++;
        return { text: req.text, trail: [] };
      }
    }
    const t = await open({ services: [Twice] });
    await t.client(Twice).echo({ text: "a" });
    expect(await second.promise).toMatchObject({ message: "/pipe.v1.Twice/Echo: an interceptor called next() twice" });
    expect(calls).toBe(1);
  });

  test("an interceptor class is built through DI", async () => {
    const PREFIX = createToken<string>("prefix");
    @Injectable()
    class Prefixer implements Interceptor {
      constructor(@Inject(PREFIX) readonly prefix: string) {}
      async intercept(_context: ExecutionContext, next: () => Promise<unknown>) {
        const output = (await next()) as EchoReply;
        return { ...output, text: this.prefix + output.text };
      }
    }
    @Service({ package: "pipe", version: "v1" })
    class Prefixed {
      @UseInterceptors(Prefixer)
      @Method()
      echo(req: EchoRequest): EchoReply {
        return { text: req.text, trail: [] };
      }
    }
    const t = await open({ services: [Prefixed], providers: [{ provide: PREFIX, useValue: "> " }] });
    expect((await t.client(Prefixed).echo({ text: "a" })).text).toBe("> a");
  });
});

describe("the call context", () => {
  test("is the method's second parameter and currentCall(), also in a function it awaits", async () => {
    const seen: Record<string, unknown> = {};
    async function deeper() {
      await sleep(1);
      return currentCall();
    }
    @Service({ package: "ctx", version: "v1" })
    class ContextService {
      @Method({ output: EchoReply })
      async echo(req: EchoRequest, ctx: CallContext): Promise<EchoReply> {
        seen.same = currentCall() === ctx;
        seen.deeper = (await deeper()) === ctx;
        seen.requestId = ctx.requestId;
        seen.transport = ctx.transport;
        seen.service = ctx.service;
        seen.method = ctx.method.name;
        seen.tenant = ctx.metadata.get("x-tenant-id");
        seen.instance = ctx instanceof CallContext;
        return { text: req.text, trail: [] };
      }
    }
    const t = await open({ services: [ContextService] });
    expect(currentCall()).toBeUndefined();
    await t.client(ContextService).echo({ text: "a" }, { metadata: { "X-Tenant-ID": "acme" } });
    expect(currentCall()).toBeUndefined();
    expect(seen).toEqual({
      same: true,
      deeper: true,
      requestId: expect.stringMatching(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/),
      transport: "direct",
      service: "ctx.v1.ContextService",
      method: "Echo",
      tenant: "acme",
      instance: true,
    });
  });

  test("each call gets its own request id, and concurrent calls keep their own context", async () => {
    const ids: string[] = [];
    @Service({ package: "ctx", version: "v1" })
    class Ids {
      @Method({ output: EchoReply })
      async echo(req: EchoRequest): Promise<EchoReply> {
        await sleep(req.times);
        const ctx = currentCall();
        ids.push(ctx?.requestId ?? "none");
        return { text: `${req.text}:${ctx?.metadata.get("x-n")}`, trail: [] };
      }
    }
    const t = await open({ services: [Ids] });
    const client = t.client(Ids);
    const replies = await Promise.all([
      client.echo({ text: "a", times: 5 }, { metadata: { "x-n": "1" } }),
      client.echo({ text: "b", times: 1 }, { metadata: { "x-n": "2" } }),
    ]);
    expect(replies.map((r) => r.text)).toEqual(["a:1", "b:2"]);
    expect(new Set(ids).size).toBe(2);
  });

  test("input and output are copies: neither side sees the other's changes", async () => {
    const kept: EchoReply = { text: "kept", trail: ["a"] };
    let received: EchoRequest | undefined;
    @Service({ package: "ctx", version: "v1" })
    class Copies {
      @Method()
      echo(req: EchoRequest): EchoReply {
        received = req;
        return kept;
      }
    }
    const t = await open({ services: [Copies] });
    const input = { text: "in" };
    const reply = await t.client(Copies).echo(input);
    expect(received).toBeInstanceOf(EchoRequest);
    expect(received).not.toBe(input);
    reply.trail.push("b");
    expect(kept.trail).toEqual(["a"]);
    expect(reply).not.toBe(kept);
    expect(reply).toBeInstanceOf(EchoReply);
  });
});

describe("deadlines", () => {
  /** A method that takes a second unless its call is aborted. */
  @Service({ package: "slow", version: "v1" })
  class SlowService {
    static signals: AbortSignal[] = [];

    @Method({ output: EchoReply, timeoutMs: 50 })
    async bounded(_req: Empty, ctx: CallContext): Promise<EchoReply> {
      SlowService.signals.push(ctx.signal);
      await sleep(1000, undefined, { signal: ctx.signal });
      return { text: "too late", trail: [] };
    }

    @Method({ output: EchoReply })
    async unbounded(_req: Empty, ctx: CallContext): Promise<EchoReply> {
      SlowService.signals.push(ctx.signal);
      await sleep(1000, undefined, { signal: ctx.signal });
      return { text: "too late", trail: [] };
    }
  }

  afterEach(() => {
    SlowService.signals = [];
  });

  test("a method slower than its timeoutMs is DEADLINE_EXCEEDED and its signal aborts", async () => {
    const t = await open({ services: [SlowService] });
    const error = await rejected(t.client(SlowService).bounded({}));
    expect(error).toMatchObject({
      status: "DEADLINE_EXCEEDED",
      code: "GANTRY_ERR_DEADLINE_EXCEEDED",
      httpStatus: 504,
      retryable: false,
    });
    expect(error.message).toMatch(/^deadline exceeded after (49|50|51) ms$/);
    const [aborted] = SlowService.signals;
    expect(aborted.aborted).toBe(true);
    expect(aborted.reason).toBe(error);
  });

  test("a method that gives up when its signal aborts is not logged as a fault", async () => {
    const log = memoryLog();
    const t = await open({ services: [SlowService] }, { logger: { destination: log.destination } });
    await rejected(t.client(SlowService).bounded({}));
    // The method's AbortError settles after the caller's rejection; let it reach the pipeline.
    await new Promise(setImmediate);
    expect(t.app.inFlight).toBe(0);
    expect(log.lines.filter((line) => line.level === "error")).toEqual([]);
  });

  test("the caller's timeoutMs bounds a method without one", async () => {
    const t = await open({ services: [SlowService] });
    const error = await rejected(t.client(SlowService).unbounded({}, { timeoutMs: 50 }));
    expect(error.code).toBe("GANTRY_ERR_DEADLINE_EXCEEDED");
    expect(SlowService.signals[0].aborted).toBe(true);
  });

  test("the sooner of the caller's and the method's deadline wins", async () => {
    const t = await open({ services: [SlowService] });
    const started = Date.now();
    const error = await rejected(t.client(SlowService).bounded({}, { timeoutMs: 10_000 }));
    expect(error.code).toBe("GANTRY_ERR_DEADLINE_EXCEEDED");
    expect(Date.now() - started).toBeLessThan(900);
  });

  test.each([
    ["beyond the 24.8 days a Node timer can wait", 2 ** 31 + 1000],
    ["infinite", Number.POSITIVE_INFINITY],
  ])("a timeout %s does not cut the call short", async (_what, timeoutMs) => {
    @Service({ package: "slow", version: "v1" })
    class Patient {
      @Method({ output: EchoReply })
      async wait(_req: Empty, ctx: CallContext): Promise<EchoReply> {
        await sleep(30, undefined, { signal: ctx.signal });
        return { text: "done", trail: [] };
      }
    }
    const t = await open({ services: [Patient] });
    expect(await t.client(Patient).wait({}, { timeoutMs })).toEqual({ text: "done", trail: [] });
  });

  test("a deadline already passed is refused before the method runs", async () => {
    const t = await open({ services: [SlowService] });
    const error = await rejected(t.client(SlowService).unbounded({}, { timeoutMs: 0 }));
    expect(error.code).toBe("GANTRY_ERR_DEADLINE_EXCEEDED");
    expect(SlowService.signals).toEqual([]);
  });

  test("the remaining deadline of the current call carries into an inner app.call", async () => {
    const deadlines: Record<string, number | undefined> = {};
    let app!: GantryApp;
    @Service({ package: "nested", version: "v1" })
    class Inner {
      @Method()
      inner(_req: Empty, ctx: CallContext): EchoReply {
        deadlines[ctx.metadata.get("x-which") ?? "?"] = ctx.deadline;
        return { text: "inner", trail: [] };
      }
    }
    @Service({ package: "nested", version: "v1" })
    class Outer {
      @Method({ output: EchoReply, timeoutMs: 5000 })
      async outer(_req: Empty, ctx: CallContext): Promise<EchoReply> {
        deadlines.outer = ctx.deadline;
        const inner = app.method(Inner, "inner");
        await app.call(inner, {}, { metadata: { "x-which": "carried" } });
        await app.call(inner, {}, { metadata: { "x-which": "sooner" }, timeoutMs: 100 });
        await app.call(inner, {}, { metadata: { "x-which": "later" }, timeoutMs: 60_000 });
        return { text: "outer", trail: [] };
      }
    }
    const t = await open({ services: [Inner, Outer] });
    app = t.app;
    const before = Date.now();
    await t.client(Outer).outer({});
    expect(deadlines.outer).toBeGreaterThanOrEqual(before + 5000);
    expect(deadlines.carried).toBe(deadlines.outer);
    expect(deadlines.later).toBe(deadlines.outer);
    expect(deadlines.sooner).toBeLessThan((deadlines.outer ?? 0) - 4000);

    await t.client(Inner).inner({}, { metadata: { "x-which": "top" } });
    expect(deadlines.top).toBeUndefined();
  });
});

describe("load shedding", () => {
  @Service({ package: "busy", version: "v1" })
  class BusyService {
    static release = signal();
    static entered = 0;
    static arrivals: (() => void)[] = [];

    @Method({ output: EchoReply })
    async work(req: EchoRequest): Promise<EchoReply> {
      BusyService.entered++;
      for (const arrive of BusyService.arrivals.splice(0)) arrive();
      await BusyService.release.promise;
      return { text: req.text, trail: [] };
    }
  }

  afterEach(() => {
    BusyService.release = signal();
    BusyService.entered = 0;
  });

  const bothEntered = () =>
    new Promise<void>((resolve) => {
      const check = () => (BusyService.entered >= 2 ? resolve() : BusyService.arrivals.push(check));
      check();
    });

  test.each([
    ["the maxConcurrentCalls option", { maxConcurrentCalls: 2 }, {}],
    ["the limits.maxConcurrentCalls key", {}, { config: { "limits.maxConcurrentCalls": "2" } }],
  ])(
    "with a limit of 2 from %s, a third concurrent call gets RESOURCE_EXHAUSTED",
    async (_how, options, testOptions) => {
      const t = await open({ services: [BusyService], ...options }, testOptions);
      const client = t.client(BusyService);
      const first = client.work({ text: "1" });
      const second = client.work({ text: "2" });
      await bothEntered();
      expect(t.app.inFlight).toBe(2);
      const error = await rejected(client.work({ text: "3" }));
      expect(error).toMatchObject({
        status: "RESOURCE_EXHAUSTED",
        code: "GANTRY_ERR_OVERLOADED",
        retryable: true,
        httpStatus: 503,
        message: "server is at its limit of 2 concurrent calls",
      });
      expect(BusyService.entered).toBe(2);
      BusyService.release.resolve();
      expect((await Promise.all([first, second])).map((r) => r.text)).toEqual(["1", "2"]);
      expect(t.app.inFlight).toBe(0);
      expect((await client.work({ text: "4" })).text).toBe("4");
    },
  );
});

describe("errors a method throws", () => {
  @Service({ package: "faults", version: "v1" })
  class FaultyService {
    static requestId: string | undefined;
    static thrown = new Error("kaboom: password=hunter2");

    @Method()
    explode(): EchoReply {
      FaultyService.requestId = currentCall()?.requestId;
      throw FaultyService.thrown;
    }

    @Method({ output: EchoReply })
    async notFound(): Promise<EchoReply> {
      throw new GantryError("NOT_FOUND", "no such echo", { code: "ECHO_NOT_FOUND" });
    }

    @Method()
    wrongOutput(): EchoReply {
      return { text: 5 as unknown as string, trail: [] };
    }

    @Method()
    unknownEnum(): MoodReply {
      return { mood: 7 as Mood };
    }

    @Method({ output: NameReply })
    loneSurrogate(): NameReply {
      return { name: "broken \ud800 text" };
    }
  }

  test("an unknown error becomes INTERNAL 'internal error', keeps the original as cause and is logged", async () => {
    const log = memoryLog();
    const t = await open({ name: "faulty", services: [FaultyService] }, { logger: { destination: log.destination } });
    const error = await rejected(t.client(FaultyService).explode(undefined));
    expect(error).toMatchObject({
      status: "INTERNAL",
      code: "GANTRY_ERR_INTERNAL",
      message: "internal error",
      httpStatus: 500,
      retryable: false,
    });
    expect(error.cause).toBe(FaultyService.thrown);
    expect(error.message).not.toContain("hunter2");

    const logged = log.lines.filter((line) => line.level === "error");
    expect(logged).toHaveLength(1);
    expect(logged[0]).toMatchObject({
      app: "faulty",
      service: "faults.v1.FaultyService",
      method: "Explode",
      requestId: FaultyService.requestId,
      code: "GANTRY_ERR_INTERNAL",
      msg: "/faults.v1.FaultyService/Explode failed",
      err: { type: "Error", message: "kaboom: password=hunter2" },
    });
    expect((logged[0].err as { stack: string }).stack).toContain("kaboom");
    expect((logged[0].err as { stack: string }).stack).toContain("pipeline.test.ts");
  });

  test("a GantryError reaches the caller as it is and is not logged as a fault", async () => {
    const log = memoryLog();
    const t = await open({ services: [FaultyService] }, { logger: { destination: log.destination } });
    const error = await rejected(t.client(FaultyService).notFound(undefined));
    expect(error).toMatchObject({ status: "NOT_FOUND", code: "ECHO_NOT_FOUND", message: "no such echo" });
    expect(log.lines.filter((line) => line.level === "error")).toEqual([]);
  });

  test("an output of the wrong type is INTERNAL GANTRY_ERR_BAD_OUTPUT naming the field", async () => {
    const t = await open({ services: [FaultyService] });
    const error = await rejected(t.client(FaultyService).wrongOutput(undefined));
    expect(error).toMatchObject({
      status: "INTERNAL",
      code: "GANTRY_ERR_BAD_OUTPUT",
      message: "/faults.v1.FaultyService/WrongOutput returned an invalid EchoReply",
      details: { field: "text", problem: "is not a string" },
    });
  });

  test("an output the caller's side cannot read is the method's fault, not the caller's", async () => {
    const t = await open({ services: [FaultyService] });
    const error = await rejected(t.client(FaultyService).loneSurrogate(undefined));
    expect(error).toMatchObject({
      status: "INTERNAL",
      code: "GANTRY_ERR_BAD_OUTPUT",
      message: "/faults.v1.FaultyService/LoneSurrogate returned an invalid NameReply",
      details: { field: "name", problem: "must be valid Unicode text" },
    });
  });

  test("a number the output's enum does not name reaches the caller (enums are open)", async () => {
    const t = await open({ services: [FaultyService] });
    expect(await t.client(FaultyService).unknownEnum(undefined)).toEqual({ mood: 7 });
  });
});

describe("diagnostics", () => {
  test("every call is published on the gantry:call tracing channel", async () => {
    const events: string[] = [];
    const handlers = {
      start: (message: CallMessage) => void events.push(`start ${message.call.method.name}`),
      end: () => void events.push("end"),
      asyncEnd: (message: CallMessage) =>
        void events.push(`asyncEnd ${message.error === undefined ? "ok" : (message.error as Error).message}`),
      error: (message: CallMessage) => void events.push(`error ${(message.error as GantryError).code}`),
    };
    @Service({ package: "diag", version: "v1" })
    class Traced {
      @Method()
      echo(req: EchoRequest): EchoReply {
        return { text: req.text, trail: [] };
      }
    }
    callChannel.subscribe(handlers as never);
    try {
      const t = await open({ services: [Traced] });
      await t.client(Traced).echo({ text: "a" });
      await rejected(t.client(Traced).echo({ text: "" }));
    } finally {
      callChannel.unsubscribe(handlers as never);
    }
    expect(events).toEqual([
      "start Echo",
      "end",
      "asyncEnd ok",
      // Validation fails synchronously, and the traced call still ends with asyncEnd.
      "start Echo",
      "end",
      "error GANTRY_ERR_VALIDATION",
      "asyncEnd invalid EchoRequest: text must be at least 1 character",
    ]);
  });
});
