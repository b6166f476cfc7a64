/**
 * In-memory stand-ins for the client runtime's tests: a resolver whose events the test sends, and a
 * transport whose channels answer as the test scripts them. Real transports and registries are tested
 * in their own packages.
 */
import {
  type Channel,
  type ClientPolicy,
  ClientRuntime,
  type ClientTransport,
  type OutboundCall,
  type UnaryCall,
} from "../src/client/index.js";
import {
  coreErrors,
  createLogger,
  describeService,
  Field,
  GantryError,
  type Logger,
  Message,
  Method,
  type MethodDescriptor,
  Service,
} from "../src/index.js";
import type { Resolver, ServiceInstance, Watch, WatchEvent } from "../src/registry/index.js";

@Message()
export class HelloRequest {
  @Field(1) name!: string;
}

@Message()
export class HelloReply {
  @Field(1) message!: string;
}

@Service({ package: "hello", version: "v1" })
export class HelloService {
  @Method({ input: HelloRequest, output: HelloReply })
  async sayHello(): Promise<HelloReply> {
    return { message: "hello" };
  }

  @Method({ input: HelloRequest, output: HelloReply, idempotent: true })
  async getHello(): Promise<HelloReply> {
    return { message: "hello" };
  }
}

export const service = describeService(HelloService);
/** Not idempotent. */
export const sayHello = service.methods.find((m) => m.name === "SayHello") as MethodDescriptor;
/** Idempotent. */
export const getHello = service.methods.find((m) => m.name === "GetHello") as MethodDescriptor;

/** An instance of hello.v1.HelloService at 10.0.0.<n>, with a gRPC endpoint unless told otherwise. */
export function instance(n: number, overrides: Partial<ServiceInstance> = {}): ServiceInstance {
  return {
    id: `i${n}`,
    service: service.fullName,
    apiVersion: "v1",
    version: "1.0.0",
    endpoints: { grpc: `grpc://10.0.0.${n}:50051` },
    metadata: {},
    ...overrides,
  };
}

export function urlOf(n: number): string {
  return `grpc://10.0.0.${n}:50051`;
}

/** A resolver whose events the test sends. */
export class FakeResolver implements Resolver {
  readonly listeners = new Set<(event: WatchEvent) => void>();
  readonly watched: (string | undefined)[] = [];
  readonly refreshed: (string | undefined)[] = [];
  closedWatches = 0;
  /** Sent to every new watch at once, when set. */
  initial: readonly ServiceInstance[] | undefined;

  constructor(initial?: readonly ServiceInstance[]) {
    this.initial = initial;
  }

  async list(): Promise<ServiceInstance[]> {
    return [...(this.initial ?? [])];
  }

  watch(service: string | undefined, listener: (event: WatchEvent) => void): Watch {
    this.watched.push(service);
    this.listeners.add(listener);
    if (this.initial !== undefined) listener({ type: "snapshot", instances: this.initial });
    return {
      close: () => {
        if (this.listeners.delete(listener)) this.closedWatches += 1;
      },
    };
  }

  refresh(service?: string): void {
    this.refreshed.push(service);
  }

  send(event: WatchEvent): void {
    for (const listener of this.listeners) listener(event);
  }

  snapshot(instances: readonly ServiceInstance[]): void {
    this.send({ type: "snapshot", instances });
  }

  add(instance: ServiceInstance): void {
    this.send({ type: "add", instance });
  }

  remove(instance: ServiceInstance): void {
    this.send({ type: "remove", instance });
  }

  error(error: Error): void {
    this.send({ type: "error", error });
  }
}

/** What a fake channel does with one call; the default answers `{ message: "hi from <url>" }`. */
export type Script = (url: string, call: OutboundCall, input: unknown) => Promise<unknown>;

export class FakeChannel implements Channel {
  readonly url: string;
  readonly calls: UnaryCall[] = [];
  closed = false;
  readonly #transport: FakeTransport;

  constructor(url: string, transport: FakeTransport) {
    this.url = url;
    this.#transport = transport;
  }

  unary(call: UnaryCall, input: unknown): void {
    this.calls.push(call);
    this.#transport.calls.push(this.url);
    this.#transport.script(this.url, call, input).then(
      (output) => call.answered(output),
      (error: unknown) => call.failed(error),
    );
  }

  close(): void {
    this.closed = true;
  }
}

export class FakeTransport implements ClientTransport {
  readonly kind: string;
  readonly channels: FakeChannel[] = [];
  /** The URL of every attempt, in order. */
  readonly calls: string[] = [];
  script: Script = async (url) => ({ message: `hi from ${url}` });

  constructor(kind = "grpc") {
    this.kind = kind;
  }

  channel(url: string): FakeChannel {
    const channel = new FakeChannel(url, this);
    this.channels.push(channel);
    return channel;
  }

  /** The channels opened to `url`. */
  opened(url: string): FakeChannel[] {
    return this.channels.filter((c) => c.url === url);
  }

  /** How many attempts went to each URL. */
  counts(): Map<string, number> {
    const counts = new Map<string, number>();
    for (const url of this.calls) counts.set(url, (counts.get(url) ?? 0) + 1);
    return counts;
  }
}

/** Resolves with `value` after `ms`, or rejects as a channel does when the caller gives up on `call`. */
export function after<T>(ms: number, value: T, call?: OutboundCall): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => resolve(value), ms);
    call?.onStop((reason) => {
      clearTimeout(timer);
      reject(reason);
    });
  });
}

/** Never answers; rejects when the caller gives up on `call`. */
export function hang(call: OutboundCall): Promise<never> {
  return new Promise((_, reject) => call.onStop(reject));
}

export function connectRefused(url: string): GantryError {
  return coreErrors.create("GANTRY_ERR_CONNECT", { target: url, reason: "connect ECONNREFUSED" });
}

export function unavailable(message = "backend is down"): GantryError {
  return new GantryError("UNAVAILABLE", message);
}

export function overloaded(): GantryError {
  return coreErrors.create("GANTRY_ERR_OVERLOADED", { limit: 100 });
}

export function notFound(): GantryError {
  return new GantryError("NOT_FOUND", "no such greeting", { code: "GREETING_NOT_FOUND", details: { name: "Ada" } });
}

export const silentLog: Logger = createLogger("client-test", { level: "silent" });

/** A runtime over a fake resolver and transport; close it in afterEach. */
export function setup(
  options: {
    instances?: readonly ServiceInstance[];
    policy?: ClientPolicy;
    transports?: readonly ClientTransport[];
    log?: Logger;
  } = {},
) {
  const resolver = new FakeResolver(options.instances);
  const transport = new FakeTransport("grpc");
  const runtime = new ClientRuntime({
    service,
    resolver,
    transports: options.transports ?? [transport],
    log: options.log ?? silentLog,
    policy: { throttle: false, ...options.policy },
  });
  return { resolver, transport, runtime };
}

/** A seeded source of numbers in [0, 1) (mulberry32), for balancers in tests. */
export function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}
