import { injectable } from "inversify";
import type { MessageRef } from "../message/decorators.js";
import { type Constructor, classChain, getOwn, ownMap, setOwn } from "../metadata.js";
import type { GuardRef, InterceptorRef } from "../pipeline/types.js";

export interface ServiceOptions {
  /** The service name in .proto and on the wire; defaults to the class name. */
  name?: string;
  /** The proto package, such as `hello`. */
  package: string;
  /**
   * The API version, such as `v1`; it becomes the last part of the proto package (`hello.v1`). Leave
   * it out when `package` already ends in one. This is not the release version (`1.4.2`), which is
   * the app's.
   */
  version?: string;
  description?: string;
}

/** How a method streams, as in gRPC. Streaming methods take or return AsyncIterables. */
export type StreamKind = "unary" | "server" | "client" | "bidi";

export interface MethodOptions {
  /** The method name on the wire; defaults to the member name in PascalCase (`sayHello` → `SayHello`). */
  name?: string;
  /** The input message; inferred from the first parameter's type when that is a @Message class. */
  input?: MessageRef;
  /** The output message; needed for async methods, whose TypeScript return type is a Promise. */
  output?: MessageRef;
  stream?: StreamKind;
  /** Safe to run twice: clients may retry it after failures that might have reached the server. */
  idempotent?: boolean;
  /** The longest the server lets the call run when the caller gives no shorter deadline. */
  timeoutMs?: number;
  description?: string;
}

export type HttpMethod = "GET" | "POST" | "PUT" | "PATCH" | "DELETE";

export interface RouteOptions {
  /**
   * Where the body goes, as in google.api.http: `"*"` (the default for POST, PUT and PATCH) maps it
   * onto the whole input message; a field name maps it onto that field, and the remaining fields are
   * bound from the query string. GET and DELETE take no body: fields not in the path come from the query.
   */
  body?: "*" | string;
  /** Input fields bound from request headers: `{ tenant: "x-tenant-id" }`. */
  headers?: Readonly<Record<string, string>>;
  /** The HTTP status of a successful response; 200 by default. */
  status?: number;
}

/** @internal What the route decorators record. */
export interface RouteRecord {
  readonly method: HttpMethod;
  readonly path: string;
  readonly options: RouteOptions;
}

/** @internal Everything recorded on one member of a service class. */
export interface MemberRecord {
  method?: MethodOptions;
  routes: RouteRecord[];
  guards: GuardRef[];
  interceptors: InterceptorRef[];
  custom: Map<symbol, unknown>;
}

/** @internal Guards, interceptors and custom metadata recorded on a class. */
export interface ClassExtensions {
  guards: GuardRef[];
  interceptors: InterceptorRef[];
  custom: Map<symbol, unknown>;
}

/**
 * Marks a class as a service. Gantry builds it through DI (constructor injection), serves its
 * decorated methods on every transport of the app, and registers it in discovery.
 *
 * @example
 * @Service({ package: "hello", version: "v1" })
 * export class HelloService {
 *   @Get("/hello/:name")
 *   @Method({ output: HelloReply, idempotent: true })
 *   async sayHello(req: HelloRequest): Promise<HelloReply> { ... }
 * }
 */
export function Service(options: ServiceOptions): ClassDecorator {
  return (target) => {
    setOwn("service", target, options);
    injectable()(target);
  };
}

/**
 * Marks a member as a method of its service, transport-neutral: one input message (and optionally
 * the call context) in, one output message (or an AsyncIterable of them) out.
 *
 * @example
 * @Method({ output: HelloReply, idempotent: true, timeoutMs: 500 })
 * async sayHello(req: HelloRequest, ctx: CallContext): Promise<HelloReply> { ... }
 */
export function Method(options: MethodOptions = {}): MethodDecorator {
  return (prototype, key) => {
    const record = memberRecord(prototype, key);
    record.method = { ...record.method, ...options };
  };
}

function route(method: HttpMethod) {
  return (path: string, options: RouteOptions = {}): MethodDecorator =>
    (prototype, key) => {
      const record = memberRecord(prototype, key);
      record.method ??= {};
      record.routes.push({ method, path, options });
    };
}

/**
 * Serves a method at an HTTP route (besides its uniform route `POST /<package>.<Service>/<Method>`).
 * `:name` segments bind path values into input fields of that name.
 *
 * @example
 * @Get("/users/:id", { headers: { tenant: "x-tenant-id" } })
 */
export const Get = route("GET");
/** @see Get */
export const Post = route("POST");
/** @see Get */
export const Put = route("PUT");
/** @see Get */
export const Patch = route("PATCH");
/** @see Get */
export const Delete = route("DELETE");

/**
 * Runs guards before a method (on a method) or before every method of a service (on a class). A guard
 * that returns false stops the call with PERMISSION_DENIED, before the input is validated.
 *
 * @example
 * @UseGuards(RolesGuard)
 */
export function UseGuards(...guards: GuardRef[]): ClassDecorator & MethodDecorator {
  return ((target: object, key?: string | symbol) => {
    if (key === undefined) classExtensions(target as Constructor).guards.push(...guards);
    else memberRecord(target, key).guards.push(...guards);
  }) as ClassDecorator & MethodDecorator;
}

/**
 * Wraps a method (or every method of a service) in interceptors, after guards and validation.
 *
 * @example
 * @UseInterceptors(TimingInterceptor)
 */
export function UseInterceptors(...interceptors: InterceptorRef[]): ClassDecorator & MethodDecorator {
  return ((target: object, key?: string | symbol) => {
    if (key === undefined) classExtensions(target as Constructor).interceptors.push(...interceptors);
    else memberRecord(target, key).interceptors.push(...interceptors);
  }) as ClassDecorator & MethodDecorator;
}

/** A decorator of your own that records a value on a service or method, for guards and interceptors. */
export interface CustomDecorator<T> {
  (value: T): ClassDecorator & MethodDecorator;
  readonly key: symbol;
}

/**
 * Creates a decorator that records a value on a service class or a method. Guards and interceptors read
 * it with `context.metadata(decorator)`; a value on the method wins over one on the class.
 *
 * @example
 * export const Roles = createDecorator<string[]>("roles");
 * // @Roles(["admin"]) on a method, then in a guard: context.metadata(Roles)
 */
export function createDecorator<T>(name: string): CustomDecorator<T> {
  const key = Symbol(`gantry:custom:${name}`);
  const decorator = (value: T) =>
    ((target: object, member?: string | symbol) => {
      if (member === undefined) classExtensions(target as Constructor).custom.set(key, value);
      else memberRecord(target, member).custom.set(key, value);
    }) as ClassDecorator & MethodDecorator;
  return Object.assign(decorator, { key });
}

function memberRecord(prototype: object, key: string | symbol): MemberRecord {
  if (typeof key !== "string") throw new TypeError("Gantry methods must have string names");
  const members = ownMap<string, MemberRecord>("members", prototype.constructor);
  let record = members.get(key);
  if (record === undefined) {
    record = { routes: [], guards: [], interceptors: [], custom: new Map() };
    members.set(key, record);
  }
  return record;
}

function classExtensions(type: Constructor): ClassExtensions {
  let extensions = getOwn<ClassExtensions>("classExtensions", type);
  if (extensions === undefined) {
    extensions = { guards: [], interceptors: [], custom: new Map() };
    setOwn("classExtensions", type, extensions);
  }
  return extensions;
}

/**
 * @internal The @Service options of a class, or of its nearest base that has them (a class that
 * implements a contract inherits the contract's service), with the class that declared them.
 */
export function serviceOptions(type: Constructor): { options: ServiceOptions; declaredBy: Constructor } | undefined {
  for (const link of classChain(type).reverse()) {
    const options = getOwn<ServiceOptions>("service", link);
    if (options !== undefined) return { options, declaredBy: link };
  }
  return undefined;
}

/**
 * The members of a class and its bases that its decorators made methods (`@Method`, a route, a guard
 * or an interceptor), each with the `@Method` options it declared (undefined when it declared none):
 * for bindings that complete a class from elsewhere, such as a `.proto` file. A subclass's record wins.
 */
export function declaredMethods(type: Constructor): ReadonlyMap<string, MethodOptions | undefined> {
  const members = new Map<string, MethodOptions | undefined>();
  for (const link of classChain(type)) {
    for (const [key, record] of getOwn<Map<string, MemberRecord>>("members", link) ?? [])
      members.set(key, record.method);
  }
  return members;
}
