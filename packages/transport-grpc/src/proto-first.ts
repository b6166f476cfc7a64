import { existsSync } from "node:fs";
import { dirname, isAbsolute, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import {
  type Constructor,
  declaredMethods,
  describeMessage,
  Empty,
  type EnumObject,
  Field,
  type FieldOptions,
  isMessageClass,
  type MapKeyType,
  Message,
  type MessageRef,
  Method,
  type MethodOptions,
  registerEnum,
  type ScalarType,
  Service,
  type StreamKind,
  type TypeRef,
} from "@gantry/core";
import protobuf from "protobufjs";
import { grpcErrors } from "./errors.js";

/** Where a proto-first service comes from. */
export interface ProtoServiceOptions {
  /**
   * The `.proto` file: a file URL (`new URL("../proto/helloworld.proto", import.meta.url)`, which works
   * from `src/` and `dist/` alike) or a path, resolved against the working directory when relative.
   */
  file: URL | string;
  /** The service's full name in the file: `helloworld.Greeter`. */
  service: string;
  /**
   * Where to look for the file's imports, in order, before the importing file's own directory (as
   * protoc's `-I`). `google/protobuf/timestamp.proto` and `empty.proto` need none.
   */
  includeDirs?: readonly (URL | string)[];
}

/**
 * Binds a class to a service of an existing `.proto` file. Each rpc is served by the member of the same
 * name in lowerCamelCase or as written (`rpc SayHello` ↔ `sayHello` or `SayHello`), or by a member whose
 * `@Method({ name })` names it. The proto's messages become `@Message` classes (one per proto type,
 * shared by every service that uses it) whose fields are the proto3 JSON names, so JSON over HTTP
 * matches the proto3 JSON mapping. A member may still carry `@Method` (for `timeoutMs`, `idempotent`),
 * routes, guards and interceptors; what it declares about the rpc must agree with the proto.
 *
 * The file is read and checked when the decorator runs, that is when the module loads: a missing file,
 * an rpc without a member or a proto feature Gantry cannot serve throws a coded GantryError then.
 *
 * @example
 * interface HelloRequest { name: string }
 * interface HelloReply { message: string }
 *
 * @ProtoService({ file: new URL("../proto/helloworld.proto", import.meta.url), service: "helloworld.Greeter" })
 * export class Greeter {
 *   async sayHello(request: HelloRequest): Promise<HelloReply> {
 *     return { message: `Hello, ${request.name}` };
 *   }
 * }
 */
export function ProtoService(options: ProtoServiceOptions): ClassDecorator {
  return (target) => {
    bindService(target as unknown as Constructor, options);
  };
}

/**
 * What binding one class needs beside the proto: the class and `.proto` file its errors name, and where
 * the message classes and enum objects it makes are kept.
 */
interface Binding {
  readonly owner: string;
  readonly file: string;
  readonly types: TypeCache;
}

/** One class per proto message and one object per proto enum, by declaring file and full name. */
interface TypeCache {
  readonly messages: Map<string, Constructor>;
  readonly enums: Map<string, EnumObject>;
}

/** The types of every `.proto` file on disk: shared by every @ProtoService class that uses them. */
const fileTypes: TypeCache = { messages: new Map(), enums: new Map() };

const WELL_KNOWN_PREFIX = ".google.protobuf.";
const TIMESTAMP = ".google.protobuf.Timestamp";
const EMPTY = ".google.protobuf.Empty";

function bindService(type: Constructor, options: ProtoServiceOptions): void {
  const owner = type.name || "anonymous class";
  const file = toPath(options.file, owner, String(options.file));
  const binding: Binding = { owner, file: displayPath(file), types: fileTypes };
  const includeDirs = (options.includeDirs ?? []).map((dir) => toPath(dir, owner, binding.file));
  const root = loadRoot(file, includeDirs, binding);
  bindRpcs(type, findService(root, file, options.service, binding), binding);
}

/**
 * Binds a class to a service that a protobufjs root built elsewhere describes (from the descriptors a
 * server sends by reflection), as @ProtoService binds one of a `.proto` file: each rpc to the member of
 * its name. The messages get classes of their own, shared with no other service: another server may
 * describe the same names differently. `source` says where the descriptors came from, in errors.
 */
export function bindDescribedService(type: Constructor, service: protobuf.Service, source: string): void {
  const binding: Binding = { owner: type.name, file: source, types: { messages: new Map(), enums: new Map() } };
  bindRpcs(type, service, binding);
}

function bindRpcs(type: Constructor, service: protobuf.Service, binding: Binding): void {
  const owner = binding.owner;
  const pkg = packageOf(service);
  if (pkg === "") {
    throw unsupported(binding, service.name, "a service outside any package", "; declare a package in the file");
  }

  const prototype = type.prototype as object;
  const declared = declaredMethods(type);
  const members = bindMembers(service, prototype, declared, binding);
  const bound = new Set(members.values());
  for (const [key, memberOptions] of declared) {
    if (!bound.has(key)) {
      const method = memberOptions?.name ?? key.charAt(0).toUpperCase() + key.slice(1);
      throw grpcErrors.create("GANTRY_ERR_PROTO_NO_RPC", {
        owner,
        member: key,
        service: fullName(service),
        file: binding.file,
        method,
        rpcs: service.methodsArray.map((m) => m.name).join(", ") || "none",
      });
    }
  }
  for (const [rpc, key] of members) checkDeclared(rpc, key, declared.get(key), binding);

  const methods = [...members].map(([rpc, key]) => {
    const input = messageRef(rpc.resolvedRequestType as protobuf.Type, `${rpcPath(rpc)} input`, binding);
    const output = messageRef(rpc.resolvedResponseType as protobuf.Type, `${rpcPath(rpc)} output`, binding);
    return { rpc, key, input, output };
  });

  Service({ name: service.name, package: pkg, description: service.comment ?? undefined })(type);
  for (const { rpc, key, input, output } of methods) {
    // Method() merges into what the member declared: the proto's name, messages and stream kind win
    // (checked above to agree), the member's own idempotent and description are kept.
    const own = declared.get(key) ?? {};
    const methodOptions: MethodOptions = { name: rpc.name, input, output, stream: streamKind(rpc) };
    if (own.idempotent === undefined && isIdempotent(rpc)) methodOptions.idempotent = true;
    if (own.description === undefined && rpc.comment) methodOptions.description = rpc.comment;
    Method(methodOptions)(prototype, key, memberDescriptor(prototype, key) as PropertyDescriptor);
  }
}

// --- Loading the file -----------------------------------------------------------------------------

const roots = new Map<string, protobuf.Root>();

/** The file and its imports, parsed once per file and include path. */
function loadRoot(file: string, includeDirs: readonly string[], binding: Binding): protobuf.Root {
  const cacheKey = [file, ...includeDirs].join("\0");
  const cached = roots.get(cacheKey);
  if (cached !== undefined) return cached;
  const root = new protobuf.Root();
  const missing = new Map<string, string>();
  root.resolvePath = (origin, target) => {
    if (origin === "" || isAbsolute(target)) return resolve(target);
    const dirs = [...includeDirs, dirname(origin)];
    for (const dir of dirs) {
      const candidate = resolve(dir, target);
      if (existsSync(candidate)) return candidate;
    }
    const first = resolve(dirname(origin), target);
    missing.set(
      first,
      `${displayPath(origin)} imports "${target}", found in none of ${dirs.map(displayPath).join(", ")}`,
    );
    return first;
  };
  try {
    root.loadSync(file, { alternateCommentMode: true });
    root.resolveAll();
  } catch (error) {
    const path = (error as NodeJS.ErrnoException).path;
    const reason =
      (path !== undefined && missing.get(path)) || (error instanceof Error ? error.message : String(error));
    throw grpcErrors.create(
      "GANTRY_ERR_PROTO_FILE",
      { owner: binding.owner, file: binding.file, reason },
      { cause: error },
    );
  }
  roots.set(cacheKey, root);
  return root;
}

function findService(root: protobuf.Root, file: string, name: string, binding: Binding): protobuf.Service {
  const wanted = name.startsWith(".") ? name : `.${name}`;
  let found: protobuf.ReflectionObject | null = null;
  try {
    found = root.lookup(wanted.slice(1));
  } catch {
    found = null;
  }
  if (found instanceof protobuf.Service && found.fullName === wanted) return found;
  const services = allServices(root)
    .filter((s) => s.filename === file)
    .map(fullName);
  throw grpcErrors.create("GANTRY_ERR_PROTO_NO_SERVICE", {
    owner: binding.owner,
    file: binding.file,
    service: name,
    services: services.join(", ") || "none",
  });
}

function allServices(namespace: protobuf.NamespaceBase): protobuf.Service[] {
  const services: protobuf.Service[] = [];
  for (const nested of namespace.nestedArray) {
    if (nested instanceof protobuf.Service) services.push(nested);
    else if (nested instanceof protobuf.Namespace || nested instanceof protobuf.Type)
      services.push(...allServices(nested));
  }
  return services;
}

// --- Binding rpcs to members ----------------------------------------------------------------------

/**
 * Each rpc's member: one whose `@Method({ name })` names the rpc, else the rpc's name in lowerCamelCase,
 * else as written. A member serves one rpc.
 */
function bindMembers(
  service: protobuf.Service,
  prototype: object,
  declared: ReadonlyMap<string, MethodOptions | undefined>,
  binding: Binding,
): Map<protobuf.Method, string> {
  const members = new Map<protobuf.Method, string>();
  const taken = new Set<string>();
  const byDeclaredName = new Map<string, string>();
  for (const [key, options] of declared) if (options?.name !== undefined) byDeclaredName.set(options.name, key);
  for (const rpc of service.methodsArray) {
    const explicit = byDeclaredName.get(rpc.name);
    if (explicit !== undefined) {
      members.set(rpc, explicit);
      taken.add(explicit);
    }
  }
  for (const rpc of service.methodsArray) {
    if (members.has(rpc)) continue;
    const candidates = [...new Set([rpc.name.charAt(0).toLowerCase() + rpc.name.slice(1), rpc.name])];
    const key = candidates.find((c) => !taken.has(c) && memberDescriptor(prototype, c) !== undefined);
    if (key === undefined) {
      throw grpcErrors.create("GANTRY_ERR_PROTO_NO_HANDLER", {
        rpc: rpcPath(rpc),
        owner: binding.owner,
        candidates: candidates.join(" or "),
      });
    }
    members.set(rpc, key);
    taken.add(key);
  }
  for (const [rpc, key] of members) {
    const descriptor = memberDescriptor(prototype, key);
    const value = descriptor?.value as unknown;
    if (descriptor === undefined || typeof value !== "function") {
      let actual = "missing";
      if (descriptor?.get !== undefined || descriptor?.set !== undefined) actual = "an accessor";
      else if (descriptor !== undefined) actual = value === null ? "null" : `a ${typeof value}`;
      throw grpcErrors.create("GANTRY_ERR_PROTO_NOT_A_METHOD", {
        rpc: rpcPath(rpc),
        owner: binding.owner,
        member: key,
        actual,
      });
    }
  }
  return members;
}

/** What a member's own `@Method` says about its rpc must agree with the proto. */
function checkDeclared(rpc: protobuf.Method, key: string, declared: MethodOptions | undefined, binding: Binding): void {
  if (declared === undefined) return;
  const mistyped = (aspect: string, said: string, proto: string) =>
    grpcErrors.create("GANTRY_ERR_PROTO_MISTYPED", {
      owner: binding.owner,
      member: key,
      aspect,
      declared: said,
      rpc: rpcPath(rpc),
      file: binding.file,
      expected: proto,
    });
  if (declared.name !== undefined && declared.name !== rpc.name) throw mistyped("name", declared.name, rpc.name);
  const stream = streamKind(rpc);
  if (declared.stream !== undefined && declared.stream !== stream) throw mistyped("stream", declared.stream, stream);
  const sides = [
    ["input", declared.input, rpc.resolvedRequestType],
    ["output", declared.output, rpc.resolvedResponseType],
  ] as const;
  for (const [aspect, ref, protoType] of sides) {
    if (ref === undefined || protoType === null) continue;
    const said = declaredMessageName(ref);
    if (!sameMessage(said, protoType)) throw mistyped(aspect, said, fullName(protoType));
  }
}

function declaredMessageName(ref: MessageRef): string {
  const type = (ref.prototype === undefined ? (ref as () => Constructor)() : ref) as Constructor;
  if (isMessageClass(type)) {
    try {
      return describeMessage(type).name;
    } catch {
      // A message class core would refuse still has a name to compare.
    }
  }
  return type.name;
}

/** Whether a declared message name stands for the proto type: its full, class or simple name. */
function sameMessage(name: string, type: protobuf.Type): boolean {
  return name === fullName(type) || name === typeName(type) || name === type.name;
}

/** A member's property descriptor on the class or its bases (not Object's). */
function memberDescriptor(prototype: object, key: string): PropertyDescriptor | undefined {
  for (let link: object | null = prototype; link !== null && link !== Object.prototype; ) {
    const descriptor = Object.getOwnPropertyDescriptor(link, key);
    if (descriptor !== undefined) return descriptor;
    link = Object.getPrototypeOf(link) as object | null;
  }
  return undefined;
}

function streamKind(rpc: protobuf.Method): StreamKind {
  if (rpc.requestStream && rpc.responseStream) return "bidi";
  if (rpc.requestStream) return "client";
  if (rpc.responseStream) return "server";
  return "unary";
}

function isIdempotent(rpc: protobuf.Method): boolean {
  const level = rpc.options?.idempotency_level as unknown;
  return level === "NO_SIDE_EFFECTS" || level === "IDEMPOTENT";
}

// --- Messages and enums -----------------------------------------------------------------------------

/** The @Message class of an rpc's input or output. */
function messageRef(type: protobuf.Type, where: string, binding: Binding): Constructor {
  if (type.fullName === EMPTY) return Empty;
  if (type.fullName.startsWith(WELL_KNOWN_PREFIX)) {
    const hint = "; wrap it in a message of your own (of the well-known types, google.protobuf.Empty can be one)";
    throw unsupported(binding, where, `${fullName(type)} as an rpc input or output`, hint);
  }
  return messageClass(type, binding);
}

function messageClass(type: protobuf.Type, binding: Binding): Constructor {
  const key = `${type.filename ?? ""}\0${type.fullName}`;
  const cached = binding.types.messages.get(key);
  if (cached !== undefined) return cached;
  if (type.extensions !== undefined && type.extensions.length > 0) {
    throw unsupported(binding, fullName(type), "extension ranges", "", type.filename);
  }
  const name = typeName(type);
  const cls = class {};
  Object.defineProperty(cls, "name", { value: name });
  Message({ name, description: type.comment ?? undefined })(cls);
  // Cached before its fields, so that a message that contains itself resolves to this same class.
  binding.types.messages.set(key, cls);
  try {
    for (const field of type.fieldsArray) {
      Field(field.id, fieldOptions(field, binding))(cls.prototype, field.jsonName);
    }
  } catch (error) {
    binding.types.messages.delete(key);
    throw error;
  }
  return cls;
}

function fieldOptions(field: protobuf.Field, binding: Binding): FieldOptions {
  const element = `${fullName(field.parent as protobuf.Type)}.${field.protoName}`;
  const fail = (feature: string, hint?: string) => unsupported(binding, element, feature, hint, field.filename);
  if (field.declaringField !== null) throw fail("extensions");
  if (field.required) throw fail("proto2 required fields", "; make it optional and check it in the method");
  if (field.options?.default !== undefined) throw fail("proto2 default values", "; drop [default = ...]");
  if (field.delimited) throw fail("groups (delimited encoding)", "; use a nested message");
  const description = field.comment ?? undefined;
  const deprecated = field.options?.deprecated === true ? true : undefined;
  const value = valueType(field, fail, binding);
  if (field instanceof protobuf.MapField) {
    return { map: { key: field.keyType as MapKeyType, value }, description, deprecated };
  }
  const options: FieldOptions = typeof value === "object" && "enum" in value ? { enum: value.enum } : { type: value };
  if (field.repeated) options.repeated = true;
  else if (field.hasPresence && (field.resolvedType === null || field.resolvedType instanceof protobuf.Enum)) {
    // proto3 `optional`, a oneof member, proto2 `optional`: a scalar or enum that is absent stays undefined.
    options.optional = true;
  }
  options.description = description;
  options.deprecated = deprecated;
  return options;
}

function valueType(field: protobuf.Field, fail: (feature: string, hint?: string) => Error, binding: Binding): TypeRef {
  const resolved = field.resolvedType;
  if (resolved === null) return field.type as ScalarType;
  if (resolved.fullName === TIMESTAMP) return "timestamp";
  if (resolved.fullName === EMPTY) return Empty;
  if (resolved.fullName.startsWith(WELL_KNOWN_PREFIX)) {
    throw fail(fullName(resolved), " (of the well-known types, google.protobuf.Timestamp and Empty are)");
  }
  if (resolved instanceof protobuf.Enum) return { enum: enumObject(resolved, binding) };
  return messageClass(resolved, binding);
}

function enumObject(type: protobuf.Enum, binding: Binding): EnumObject {
  const key = `${type.filename ?? ""}\0${type.fullName}`;
  const cached = binding.types.enums.get(key);
  if (cached !== undefined) return cached;
  if (!Object.values(type.values).includes(0)) {
    const hint = "; proto3 and Gantry use 0 as the default";
    throw unsupported(binding, fullName(type), "an enum without a value 0", hint, type.filename);
  }
  const object = Object.freeze({ ...type.values });
  registerEnum(object, typeName(type));
  binding.types.enums.set(key, object);
  return object;
}

// --- Names and paths ------------------------------------------------------------------------------

/** `helloworld.Greeter`: the full name without protobufjs's leading dot. */
function fullName(object: protobuf.ReflectionObject): string {
  return object.fullName.slice(1);
}

/**
 * The name of a message or enum class: its name in its package, with a nested type's path joined by
 * underscores (`Order.Line` gives `Order_Line`), since the `.proto` Gantry generates has no nesting.
 */
function typeName(object: protobuf.ReflectionObject): string {
  const parts = [object.name];
  for (let parent = object.parent; parent instanceof protobuf.Type; parent = parent.parent) parts.unshift(parent.name);
  return parts.join("_");
}

function packageOf(service: protobuf.Service): string {
  return service.parent === null ? "" : fullName(service.parent);
}

/** `helloworld.Greeter/SayHello` */
function rpcPath(rpc: protobuf.Method): string {
  return `${fullName(rpc.parent as protobuf.Service)}/${rpc.name}`;
}

function toPath(location: URL | string, owner: string, file: string): string {
  try {
    return resolve(location instanceof URL || location.startsWith("file:") ? fileURLToPath(location) : location);
  } catch (error) {
    throw grpcErrors.create(
      "GANTRY_ERR_PROTO_FILE",
      { owner, file, reason: `${String(location)} is not a file path or file: URL` },
      { cause: error },
    );
  }
}

/** A path relative to the working directory when it lies inside it, for shorter messages. */
function displayPath(path: string): string {
  const inside = relative(process.cwd(), path);
  return inside !== "" && !inside.startsWith("..") && !isAbsolute(inside) ? inside : path;
}

/** A proto feature Gantry cannot serve, at `element` of `source` (a file the service's file imports, or itself). */
function unsupported(binding: Binding, element: string, feature: string, hint = "", source?: string | null) {
  return grpcErrors.create("GANTRY_ERR_PROTO_UNSUPPORTED", {
    owner: binding.owner,
    element,
    file: source ? displayPath(source) : binding.file,
    feature,
    hint,
  });
}
