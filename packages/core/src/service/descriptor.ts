import { coreErrors } from "../errors/table.js";
import type { MessageRef } from "../message/decorators.js";
import { describeMessage, isMessageClass, type MessageDescriptor } from "../message/descriptor.js";
import { Empty } from "../message/well-known.js";
import { type Constructor, classChain, designParamTypes, designReturnType, getOwn } from "../metadata.js";
import type { GuardRef, InterceptorRef } from "../pipeline/types.js";
import {
  type ClassExtensions,
  type CustomDecorator,
  type HttpMethod,
  type MemberRecord,
  type RouteRecord,
  type StreamKind,
  serviceOptions,
} from "./decorators.js";

/** An HTTP route of a method, checked against its input message. */
export interface HttpRoute {
  readonly method: HttpMethod;
  readonly path: string;
  /** The input fields bound from `:name` path segments, in order. */
  readonly params: readonly string[];
  /** `"*"`: the body is the input message; a field name: the body is that field; undefined: no body. */
  readonly body: "*" | string | undefined;
  /** Input field → request header name (lower case). */
  readonly headers: Readonly<Record<string, string>>;
  readonly status: number;
  /** True for the uniform route `POST /<package>.<Service>/<Method>`. */
  readonly uniform: boolean;
}

export interface MethodDescriptor {
  readonly service: ServiceDescriptor;
  /** The class member that handles it. */
  readonly key: string;
  /** The name on the wire (`SayHello`). */
  readonly name: string;
  /** The gRPC path, also the uniform HTTP route: `/hello.v1.HelloService/SayHello`. */
  readonly path: string;
  readonly input: MessageDescriptor;
  readonly output: MessageDescriptor;
  readonly stream: StreamKind;
  readonly idempotent: boolean;
  readonly timeoutMs: number | undefined;
  readonly description: string | undefined;
  /** Its routes: the declared ones, then the uniform one. */
  readonly routes: readonly HttpRoute[];
  /** Guards and interceptors declared on the class, then on the method. */
  readonly guards: readonly GuardRef[];
  readonly interceptors: readonly InterceptorRef[];
  /** A value recorded by a custom decorator, on the method or else on its class. */
  metadata<T>(decorator: CustomDecorator<T>): T | undefined;
}

export interface ServiceDescriptor {
  readonly type: Constructor;
  /** `HelloService` */
  readonly name: string;
  /** `hello.v1` */
  readonly package: string;
  /** `hello.v1.HelloService` */
  readonly fullName: string;
  /** `v1`: the API version, the last part of the package when it looks like one. */
  readonly apiVersion: string | undefined;
  readonly description: string | undefined;
  readonly methods: readonly MethodDescriptor[];
  metadata<T>(decorator: CustomDecorator<T>): T | undefined;
}

const PACKAGE = /^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)*$/i;
const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/;
const API_VERSION = /^v\d+((alpha|beta)\d*)?$/;

/**
 * Builds and checks the descriptor of a service class: its methods, their messages and routes. Throws
 * a coded error that names the class and member at fault.
 */
export function describeService(type: Constructor): ServiceDescriptor {
  const declared = serviceOptions(type);
  if (declared === undefined)
    throw coreErrors.create("GANTRY_ERR_NOT_A_SERVICE", { name: type.name || "anonymous class" });
  // A class that implements a contract is the contract's service, named after the contract.
  const { options, declaredBy } = declared;
  const name = options.name ?? declaredBy.name;
  const pkg = options.version === undefined ? options.package : `${options.package}.${options.version}`;
  const fail = (member: string, problem: string) =>
    coreErrors.create("GANTRY_ERR_METHOD_TYPE", { service: type.name, member, problem });
  if (!IDENTIFIER.test(name)) throw fail("@Service", `name "${name}" is not a valid identifier`);
  if (!PACKAGE.test(pkg)) throw fail("@Service", `package "${pkg}" is not a valid proto package such as hello.v1`);
  const lastPart = pkg.slice(pkg.lastIndexOf(".") + 1);
  const classCustom = mergedClassCustom(type);
  const methods: MethodDescriptor[] = [];
  const service: ServiceDescriptor = {
    type,
    name,
    package: pkg,
    fullName: `${pkg}.${name}`,
    apiVersion: API_VERSION.test(lastPart) ? lastPart : undefined,
    description: options.description,
    methods,
    metadata: (decorator) => classCustom.get(decorator.key) as never,
  };
  const classExtensions = mergedClassExtensions(type);
  const byName = new Map<string, string>();
  for (const [key, record] of memberRecords(type)) {
    const method = describeMethod(service, key, record, classExtensions, classCustom);
    const previous = byName.get(method.name);
    if (previous !== undefined) {
      throw coreErrors.create("GANTRY_ERR_DUPLICATE_METHOD", {
        service: type.name,
        first: previous,
        second: key,
        method: method.name,
      });
    }
    byName.set(method.name, key);
    methods.push(method);
  }
  return service;
}

function describeMethod(
  service: ServiceDescriptor,
  key: string,
  record: MemberRecord,
  classExtensions: Pick<ClassExtensions, "guards" | "interceptors">,
  classCustom: ReadonlyMap<symbol, unknown>,
): MethodDescriptor {
  const type = service.type;
  const prototype = type.prototype as Record<string, unknown>;
  if (typeof prototype[key] !== "function") {
    throw coreErrors.create("GANTRY_ERR_NO_HANDLER", { service: type.name, member: key });
  }
  const fail = (problem: string) =>
    coreErrors.create("GANTRY_ERR_METHOD_TYPE", { service: type.name, member: key, problem });
  const options = record.method ?? {};
  const stream = options.stream ?? "unary";
  if (!["unary", "server", "client", "bidi"].includes(stream)) throw fail(`unknown stream kind "${stream}"`);
  const name = options.name ?? key.charAt(0).toUpperCase() + key.slice(1);
  if (!IDENTIFIER.test(name)) throw fail(`method name "${name}" is not a valid identifier`);
  if (options.timeoutMs !== undefined && !(Number.isFinite(options.timeoutMs) && options.timeoutMs > 0)) {
    throw fail(`timeoutMs must be a positive number, not ${options.timeoutMs}`);
  }
  const input = resolveInput(prototype, key, options.input, stream, fail);
  const output = resolveOutput(prototype, key, options.output, stream, fail);
  const custom = new Map([...classCustom, ...record.custom]);
  const path = `/${service.fullName}/${name}`;
  const method: MethodDescriptor = {
    service,
    key,
    name,
    path,
    input,
    output,
    stream,
    idempotent: options.idempotent === true,
    timeoutMs: options.timeoutMs,
    description: options.description,
    routes: [],
    guards: [...classExtensions.guards, ...record.guards],
    interceptors: [...classExtensions.interceptors, ...record.interceptors],
    metadata: (decorator) => custom.get(decorator.key) as never,
  };
  const routes = record.routes.map((r) => describeRoute(service, key, input, r));
  routes.push({ method: "POST", path, params: [], body: "*", headers: {}, status: 200, uniform: true });
  (method.routes as HttpRoute[]).push(...routes);
  return method;
}

function resolveInput(
  prototype: object,
  key: string,
  explicit: MessageRef | undefined,
  stream: StreamKind,
  fail: (problem: string) => Error,
): MessageDescriptor {
  if (explicit !== undefined) return messageFrom(explicit, "input", fail);
  if (stream === "client" || stream === "bidi") {
    throw fail("a client or bidi streaming method takes an AsyncIterable; name its message: @Method({ input: X })");
  }
  const first = designParamTypes(prototype, key)?.[0];
  if (first === undefined || isCallContextType(first)) return describeMessage(Empty);
  if (isMessageClass(first)) return describeMessage(first);
  throw fail(`its first parameter is ${nameOf(first)}, not a @Message class; name the input: @Method({ input: X })`);
}

function resolveOutput(
  prototype: object,
  key: string,
  explicit: MessageRef | undefined,
  stream: StreamKind,
  fail: (problem: string) => Error,
): MessageDescriptor {
  if (explicit !== undefined) return messageFrom(explicit, "output", fail);
  if (stream === "server" || stream === "bidi") {
    throw fail("a server or bidi streaming method returns an AsyncIterable; name its message: @Method({ output: X })");
  }
  const returned = designReturnType(prototype, key);
  if (returned === undefined) return describeMessage(Empty);
  if (isMessageClass(returned)) return describeMessage(returned);
  if (returned === Promise) {
    throw fail("it is async, so TypeScript does not record what it returns; name the output: @Method({ output: X })");
  }
  throw fail(`it returns ${nameOf(returned)}, not a @Message class; name the output: @Method({ output: X })`);
}

function messageFrom(ref: MessageRef, role: string, fail: (problem: string) => Error): MessageDescriptor {
  const type = (ref.prototype === undefined ? (ref as () => Constructor)() : ref) as Constructor;
  if (!isMessageClass(type)) throw fail(`its ${role} ${nameOf(type)} is not a @Message class`);
  return describeMessage(type);
}

function describeRoute(
  service: ServiceDescriptor,
  member: string,
  input: MessageDescriptor,
  { method, path, options }: RouteRecord,
): HttpRoute {
  const route = `${method} ${path}`;
  const fail = (problem: string) =>
    coreErrors.create("GANTRY_ERR_BAD_ROUTE", { service: service.type.name, member, route, problem });
  if (typeof path !== "string" || !path.startsWith("/")) throw fail("the path must start with /");
  if (/[?#\s]/.test(path)) throw fail("the path cannot hold ?, # or spaces");
  const params: string[] = [];
  for (const segment of path.split("/").slice(1)) {
    if (segment === "") continue;
    if (!segment.startsWith(":")) {
      if (segment.includes(":")) throw fail(`segment "${segment}" mixes text and a parameter`);
      continue;
    }
    const name = segment.slice(1);
    if (!input.fieldByName.has(name)) throw fail(`:${name} names no field of ${input.name}`);
    if (params.includes(name)) throw fail(`:${name} appears twice`);
    const field = input.fieldByName.get(name);
    if (field?.cardinality === "repeated" || field?.cardinality === "map" || field?.value.kind === "message") {
      throw fail(`:${name} binds ${input.name}.${name}, which is not a single scalar`);
    }
    params.push(field?.key ?? name);
  }
  const hasBody = method === "POST" || method === "PUT" || method === "PATCH";
  const bodyField = hasBody ? (options.body ?? "*") : options.body;
  if (bodyField !== undefined) {
    if (!hasBody) throw fail(`${method} takes no body`);
    if (bodyField !== "*" && !input.fieldByName.has(bodyField))
      throw fail(`body "${bodyField}" names no field of ${input.name}`);
  }
  const headers: Record<string, string> = {};
  for (const [field, header] of Object.entries(options.headers ?? {})) {
    if (!input.fieldByName.has(field))
      throw fail(`header ${header} binds "${field}", which is no field of ${input.name}`);
    headers[field] = header.toLowerCase();
  }
  const status = options.status ?? 200;
  if (!Number.isInteger(status) || status < 200 || status > 299) throw fail(`status ${status} is not a 2xx status`);
  return { method, path: normalizePath(path), params, body: bodyField, headers, status, uniform: false };
}

/** Paths without a trailing slash (except the root). */
function normalizePath(path: string): string {
  return path.length > 1 && path.endsWith("/") ? path.slice(0, -1) : path;
}

/**
 * The key two routes collide on: method and path with parameter names erased.
 * `GET /users/:id` and `GET /users/:name` collide.
 */
export function routeKey(route: HttpRoute): string {
  return `${route.method} ${route.path.replace(/:[^/]+/g, ":")}`;
}

/** Checks that no two methods of the app declare the same route. */
export function checkRoutes(services: readonly ServiceDescriptor[]): void {
  const seen = new Map<string, string>();
  for (const service of services) {
    for (const method of service.methods) {
      for (const route of method.routes) {
        const key = routeKey(route);
        const owner = `${service.type.name}.${method.key}`;
        const previous = seen.get(key);
        if (previous !== undefined) {
          throw coreErrors.create("GANTRY_ERR_DUPLICATE_ROUTE", {
            route: `${route.method} ${route.path}`,
            first: previous,
            second: owner,
          });
        }
        seen.set(key, owner);
      }
    }
  }
}

function memberRecords(type: Constructor): Map<string, MemberRecord> {
  const merged = new Map<string, MemberRecord>();
  for (const link of classChain(type)) {
    for (const [key, record] of getOwn<Map<string, MemberRecord>>("members", link) ?? []) merged.set(key, record);
  }
  return merged;
}

function mergedClassExtensions(type: Constructor): Pick<ClassExtensions, "guards" | "interceptors"> {
  const guards: GuardRef[] = [];
  const interceptors: InterceptorRef[] = [];
  for (const link of classChain(type)) {
    const own = getOwn<ClassExtensions>("classExtensions", link);
    if (own !== undefined) {
      guards.push(...own.guards);
      interceptors.push(...own.interceptors);
    }
  }
  return { guards, interceptors };
}

function mergedClassCustom(type: Constructor): Map<symbol, unknown> {
  const custom = new Map<symbol, unknown>();
  for (const link of classChain(type)) {
    for (const [key, value] of getOwn<ClassExtensions>("classExtensions", link)?.custom ?? []) custom.set(key, value);
  }
  return custom;
}

function isCallContextType(value: unknown): boolean {
  return typeof value === "function" && (value as { isCallContext?: boolean }).isCallContext === true;
}

function nameOf(value: unknown): string {
  return typeof value === "function" ? value.name || "anonymous" : String(value);
}
