import { coreErrors } from "../errors/table.js";
import { type Constructor, classChain, designType, getOwn } from "../metadata.js";
import {
  type EnumObject,
  type FieldRecord,
  type FieldRules,
  type MapKeyType,
  type MessageOptions,
  messageOptions,
  registeredEnumName,
  type ScalarType,
  type TypeRef,
} from "./decorators.js";

export interface EnumValue {
  readonly name: string;
  readonly number: number;
}

export interface EnumDescriptor {
  readonly name: string;
  readonly object: EnumObject;
  readonly values: readonly EnumValue[];
  readonly numberByName: ReadonlyMap<string, number>;
  readonly nameByNumber: ReadonlyMap<number, string>;
}

/** The type of one value of a field: the field itself, each element, or each map value. */
export type ValueType =
  | { readonly kind: "scalar"; readonly scalar: ScalarType }
  | { readonly kind: "enum"; readonly enum: EnumDescriptor }
  | { readonly kind: "message"; readonly message: MessageDescriptor }
  | { readonly kind: "timestamp" };

export type Cardinality = "singular" | "optional" | "repeated" | "map";

/** Every rule of a field, each key present (undefined when not set): one object shape for all fields. */
export type FieldRuleSet = { readonly [K in keyof Required<FieldRules>]: FieldRules[K] };

export interface FieldDescriptor {
  /** The TypeScript property, which is also the proto3 JSON name. */
  readonly key: string;
  readonly number: number;
  /** The snake_case name used in `.proto` and accepted in JSON input. */
  readonly protoName: string;
  readonly value: ValueType;
  readonly cardinality: Cardinality;
  readonly mapKey?: MapKeyType;
  /** The field's validation rules, every key present (undefined when not set), or undefined when it has none. */
  readonly rules: FieldRuleSet | undefined;
  readonly description?: string;
  readonly deprecated: boolean;
}

export interface MessageDescriptor {
  readonly type: Constructor;
  readonly name: string;
  readonly description?: string;
  readonly fields: readonly FieldDescriptor[];
  /** Fields by JSON name and by proto name. */
  readonly fieldByName: ReadonlyMap<string, FieldDescriptor>;
}

const MAX_FIELD_NUMBER = 536_870_911;
const INT_SCALARS_32 = new Set<ScalarType>(["int32", "uint32", "sint32", "fixed32", "sfixed32"]);
const INT_SCALARS_64 = new Set<ScalarType>(["int64", "uint64", "sint64", "fixed64", "sfixed64"]);
const SCALARS = new Set<string>([...INT_SCALARS_32, ...INT_SCALARS_64, "double", "float", "bool", "string", "bytes"]);

const cache = new WeakMap<Constructor, MessageDescriptor>();

export function isMessageClass(value: unknown): value is Constructor {
  return typeof value === "function" && messageOptions(value as Constructor) !== undefined;
}

/**
 * The descriptor of a message class, built once from its decorators and checked: field numbers,
 * types, rules. Throws a coded error naming the message and field at fault.
 */
export function describeMessage(type: Constructor, owner = type.name): MessageDescriptor {
  const cached = cache.get(type);
  if (cached !== undefined) return cached;
  const options = getOwn<MessageOptions>("message", type);
  if (options === undefined) throw coreErrors.create("GANTRY_ERR_NOT_A_MESSAGE", { owner, name: type.name });
  const fields: FieldDescriptor[] = [];
  const fieldByName = new Map<string, FieldDescriptor>();
  const descriptor: MessageDescriptor = {
    type,
    name: options.name ?? type.name,
    description: options.description,
    fields,
    fieldByName,
  };
  // Cached before its fields are built, so recursive messages resolve to this same descriptor.
  cache.set(type, descriptor);
  try {
    const byNumber = new Map<number, string>();
    for (const record of fieldRecords(type)) {
      const field = describeField(descriptor.name, type, record);
      const previous = byNumber.get(field.number);
      if (previous !== undefined) {
        throw coreErrors.create("GANTRY_ERR_DUPLICATE_FIELD", {
          message: descriptor.name,
          number: field.number,
          first: previous,
          second: field.key,
        });
      }
      byNumber.set(field.number, field.key);
      fields.push(field);
      fieldByName.set(field.key, field);
      if (field.protoName !== field.key) fieldByName.set(field.protoName, field);
    }
    fields.sort((a, b) => a.number - b.number);
  } catch (error) {
    cache.delete(type);
    throw error;
  }
  return descriptor;
}

function fieldRecords(type: Constructor): FieldRecord[] {
  const records = new Map<string, FieldRecord>();
  for (const link of classChain(type)) {
    for (const record of getOwn<FieldRecord[]>("fields", link) ?? []) records.set(record.key, record);
  }
  return [...records.values()];
}

function describeField(message: string, type: Constructor, record: FieldRecord): FieldDescriptor {
  const { key, number, options } = record;
  const fail = (problem: string) => coreErrors.create("GANTRY_ERR_BAD_FIELD", { message, field: key, problem });
  if (!Number.isInteger(number) || number < 1 || number > MAX_FIELD_NUMBER || (number >= 19_000 && number <= 19_999)) {
    throw fail(`field number ${number} is not allowed (1 to ${MAX_FIELD_NUMBER}, not 19000 to 19999)`);
  }
  const design = designType(type.prototype, key);
  let cardinality: Cardinality = "singular";
  let value: ValueType;
  let mapKey: MapKeyType | undefined;
  if (options.map !== undefined) {
    if (options.repeated || options.optional) throw fail("a map cannot also be repeated or optional");
    if (!SCALARS.has(options.map.key) || ["double", "float", "bytes"].includes(options.map.key)) {
      throw fail(`map key type ${String(options.map.key)} is not allowed (integers, bool or string)`);
    }
    cardinality = "map";
    mapKey = options.map.key;
    value = resolveType(options.map.value, key, fail);
  } else {
    const ref: TypeRef | undefined = options.enum !== undefined ? { enum: options.enum } : options.type;
    const repeated = options.repeated === true || (design === Array && ref !== undefined);
    if (design === Array && ref === undefined) {
      throw fail('an array field needs its element type: @Field(n, { type: "string", repeated: true })');
    }
    if (repeated) {
      if (options.optional) throw fail("a repeated field cannot be optional");
      if (design !== undefined && design !== Array && design !== Object) {
        throw fail(`repeated, but its TypeScript type is ${nameOf(design)}, not an array`);
      }
      cardinality = "repeated";
    }
    value = ref !== undefined ? resolveType(ref, key, fail) : inferType(design, fail);
    if (!repeated) checkDesignType(design, value, fail);
    if (options.optional) {
      if (value.kind === "message" || value.kind === "timestamp") {
        throw fail("message and timestamp fields always have presence; drop optional");
      }
      cardinality = "optional";
    }
  }
  checkRules(options, value, cardinality, fail);
  return {
    key,
    number,
    protoName: snakeCase(key),
    value,
    cardinality,
    mapKey,
    rules: normalizeRules(options),
    description: options.description,
    deprecated: options.deprecated === true,
  };
}

/**
 * The rules in one object shape for every field, so that reading them at each call stays monomorphic;
 * undefined for a field without rules, which then skips rule checking altogether.
 */
function normalizeRules(options: FieldRules): FieldRuleSet | undefined {
  const rules = {
    required: options.required === true,
    min: options.min,
    max: options.max,
    minLength: options.minLength,
    maxLength: options.maxLength,
    pattern: options.pattern,
    minItems: options.minItems,
    maxItems: options.maxItems,
    validate: options.validate,
  };
  const any = rules.required || Object.entries(rules).some(([key, value]) => key !== "required" && value !== undefined);
  return any ? rules : undefined;
}

function resolveType(ref: TypeRef, key: string, fail: (problem: string) => Error): ValueType {
  if (typeof ref === "string") {
    if (ref === "timestamp") return { kind: "timestamp" };
    if (SCALARS.has(ref)) return { kind: "scalar", scalar: ref };
    throw fail(`unknown type "${ref}"`);
  }
  if (typeof ref === "function") {
    const type = (ref.prototype === undefined ? (ref as () => Constructor)() : ref) as Constructor;
    if (!isMessageClass(type)) throw fail(`${nameOf(type)} is not a @Message class`);
    return { kind: "message", message: describeMessage(type) };
  }
  if (typeof ref === "object" && ref !== null && "enum" in ref)
    return { kind: "enum", enum: describeEnum(ref.enum, key, fail) };
  throw fail("unknown type");
}

function inferType(design: unknown, fail: (problem: string) => Error): ValueType {
  switch (design) {
    case String:
      return { kind: "scalar", scalar: "string" };
    case Number:
      return { kind: "scalar", scalar: "double" };
    case Boolean:
      return { kind: "scalar", scalar: "bool" };
    case BigInt:
      return { kind: "scalar", scalar: "int64" };
    case Date:
      return { kind: "timestamp" };
    case Uint8Array:
    case Buffer:
      return { kind: "scalar", scalar: "bytes" };
  }
  if (isMessageClass(design)) return { kind: "message", message: describeMessage(design) };
  throw fail(
    `its type cannot be inferred from TypeScript (${nameOf(design)}); say it: @Field(n, { type: "int32" | "string" | MessageClass | ... })`,
  );
}

/** The TypeScript type a value kind must have, where emitDecoratorMetadata can tell. */
function checkDesignType(design: unknown, value: ValueType, fail: (problem: string) => Error): void {
  if (design === undefined || design === Object) return;
  let expected: unknown[];
  switch (value.kind) {
    case "timestamp":
      expected = [Date];
      break;
    case "enum":
      // tsc records an enum-typed property as Number; transpilers without type information record the enum object.
      expected = [Number, value.enum.object];
      break;
    case "message":
      expected = [value.message.type];
      break;
    case "scalar":
      if (INT_SCALARS_64.has(value.scalar)) expected = [BigInt];
      else if (value.scalar === "bool") expected = [Boolean];
      else if (value.scalar === "string") expected = [String];
      else if (value.scalar === "bytes") expected = [Uint8Array, Buffer];
      else expected = [Number];
      break;
  }
  if (expected.includes(design)) return;
  if (value.kind === "message" && typeof design === "function" && design.prototype instanceof value.message.type)
    return;
  const wanted = value.kind === "scalar" ? value.scalar : value.kind;
  throw fail(
    `declared ${wanted}, which is ${expected.map(nameOf).join(" or ")} in TypeScript, but the property is ${nameOf(design)}`,
  );
}

function checkRules(
  rules: FieldRules,
  value: ValueType,
  cardinality: Cardinality,
  fail: (problem: string) => Error,
): void {
  const isList = cardinality === "repeated" || cardinality === "map";
  const isString = value.kind === "scalar" && value.scalar === "string";
  const isNumber = value.kind === "scalar" && !["string", "bytes", "bool"].includes(value.scalar);
  if ((rules.minLength !== undefined || rules.maxLength !== undefined || rules.pattern !== undefined) && !isString) {
    throw fail("minLength, maxLength and pattern apply to string fields");
  }
  if ((rules.min !== undefined || rules.max !== undefined) && !isNumber) {
    throw fail("min and max apply to numeric fields");
  }
  if ((rules.minItems !== undefined || rules.maxItems !== undefined) && !isList) {
    throw fail("minItems and maxItems apply to repeated and map fields");
  }
}

function describeEnum(object: EnumObject, key: string, fail: (problem: string) => Error): EnumDescriptor {
  const values: EnumValue[] = [];
  for (const [name, number] of Object.entries(object)) {
    if (typeof number === "number") values.push({ name, number });
  }
  if (values.length === 0) throw fail("the enum has no numeric values (string enums cannot be sent as protobuf enums)");
  if (!values.some((v) => v.number === 0)) throw fail("the enum needs a value 0 (proto3 uses it as the default)");
  for (const v of values) {
    if (!Number.isInteger(v.number) || v.number < -(2 ** 31) || v.number >= 2 ** 31) {
      throw fail(`enum value ${v.name} = ${v.number} is not an int32`);
    }
  }
  return {
    name: registeredEnumName(object) ?? pascalCase(key),
    object,
    values,
    numberByName: new Map(values.map((v) => [v.name, v.number])),
    nameByNumber: new Map(values.map((v) => [v.number, v.name])),
  };
}

/** Whether a scalar type is a 64-bit integer (bigint in TypeScript, a string in JSON). */
export function isInt64(scalar: ScalarType): boolean {
  return INT_SCALARS_64.has(scalar);
}

export function isInt32(scalar: ScalarType): boolean {
  return INT_SCALARS_32.has(scalar);
}

function nameOf(value: unknown): string {
  return typeof value === "function" ? value.name || "anonymous" : String(value);
}

function snakeCase(key: string): string {
  return key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

function pascalCase(key: string): string {
  return key.charAt(0).toUpperCase() + key.slice(1);
}
