import { type Constructor, getOwn, ownList, setOwn } from "../metadata.js";

/** The protobuf scalar types. 64-bit integers are `bigint` in TypeScript; `bytes` is a Uint8Array. */
export type ScalarType =
  | "double"
  | "float"
  | "int32"
  | "int64"
  | "uint32"
  | "uint64"
  | "sint32"
  | "sint64"
  | "fixed32"
  | "fixed64"
  | "sfixed32"
  | "sfixed64"
  | "bool"
  | "string"
  | "bytes";

/** Types a map key may have, as in protobuf. */
export type MapKeyType = Exclude<ScalarType, "double" | "float" | "bytes">;

/** A TypeScript numeric enum object (`enum Color { COLOR_UNSPECIFIED = 0, RED = 1 }`). */
export type EnumObject = Readonly<Record<string, string | number>>;

/** A message class, or a function returning it for classes declared later (recursive messages). */
export type MessageRef = Constructor | (() => Constructor);

/** The type of a field's value (of each element when repeated, of each value in a map). */
export type TypeRef = ScalarType | "timestamp" | MessageRef | { readonly enum: EnumObject };

export interface FieldRules {
  /** Must be present and not the type's default (non-empty string, non-zero number, a set message). */
  required?: boolean;
  /** Inclusive numeric bounds (for int64 fields, given as bigint or number). */
  min?: number | bigint;
  max?: number | bigint;
  /** Length bounds of a string, in characters (code points). */
  minLength?: number;
  maxLength?: number;
  /** A pattern a string must match. */
  pattern?: RegExp;
  /** Size bounds of a repeated field or map. */
  minItems?: number;
  maxItems?: number;
  /** A check of your own: return a description of what is wrong, or undefined. */
  validate?: (value: unknown) => string | undefined;
}

export interface FieldOptions extends FieldRules {
  /** The value type; inferred from the property's TypeScript type where that is unambiguous. */
  type?: TypeRef;
  /** Shorthand for `type: { enum }`. */
  enum?: EnumObject;
  /** A list of values of `type`. */
  repeated?: boolean;
  /** A map from `key` to `value`, as a plain object in TypeScript. */
  map?: { key: MapKeyType; value: TypeRef };
  /** A scalar with explicit presence (proto3 `optional`): undefined when absent, not the default. */
  optional?: boolean;
  /** Shown in the generated .proto and OpenAPI. */
  description?: string;
  deprecated?: boolean;
}

export interface MessageOptions {
  /** The message name in .proto; defaults to the class name. */
  name?: string;
  description?: string;
}

/** @internal What @Field records. */
export interface FieldRecord {
  readonly key: string;
  readonly number: number;
  readonly options: FieldOptions;
}

/**
 * Marks a class as a message: the one declaration that gives its TypeScript type, its validation,
 * its proto3 JSON mapping and its `.proto` definition.
 *
 * @example
 * @Message()
 * export class HelloRequest {
 *   @Field(1, { minLength: 1, maxLength: 64 }) name!: string;
 * }
 */
export function Message(options: MessageOptions = {}): ClassDecorator {
  return (target) => {
    setOwn("message", target, options);
  };
}

/**
 * Declares a field of a message with its stable field number. A renamed field keeps its number.
 *
 * @example
 * @Field(2, { type: "int64", min: 0n }) count!: bigint;
 * @Field(3, { type: "string", repeated: true, maxItems: 10 }) tags!: string[];
 * @Field(4, { map: { key: "string", value: "int32" } }) scores!: Record<string, number>;
 * @Field(5, { optional: true }) nickname?: string;
 */
export function Field(number: number, options: FieldOptions = {}): PropertyDecorator {
  return (prototype, key) => {
    if (typeof key !== "string") throw new TypeError("@Field must decorate a property with a string name");
    ownList<FieldRecord>("fields", prototype.constructor).push({ key, number, options });
  };
}

const enumNames = new WeakMap<EnumObject, string>();

/**
 * Names a TypeScript enum for the generated `.proto`. Without it an enum is named after the first
 * field that uses it (`color` gives `Color`).
 *
 * @example
 * export enum Color { COLOR_UNSPECIFIED = 0, RED = 1 }
 * registerEnum(Color, "Color");
 */
export function registerEnum<E extends EnumObject>(enumObject: E, name: string): E {
  enumNames.set(enumObject, name);
  return enumObject;
}

/** @internal */
export function registeredEnumName(enumObject: EnumObject): string | undefined {
  return enumNames.get(enumObject);
}

/** @internal */
export function messageOptions(type: Constructor): MessageOptions | undefined {
  return getOwn<MessageOptions>("message", type);
}
