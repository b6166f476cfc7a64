import type { FieldViolation } from "../errors/gantry-error.js";
import { coreErrors } from "../errors/table.js";
import type { ScalarType } from "./decorators.js";
import type { FieldDescriptor, FieldRuleSet, MessageDescriptor, ValueType } from "./descriptor.js";

/**
 * The proto3 JSON mapping, driven by message descriptors: reading (with validation, reporting every
 * bad field at once) and writing. int64 travels as a string, enums by name, bytes as base64,
 * timestamps as RFC 3339; unknown fields are ignored so that rolling upgrades work.
 */

const MAX_DEPTH = 64;
const FLOAT_MAX = 3.4028234663852886e38;
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const UINT64_MAX = 2n ** 64n - 1n;
const DECIMAL = /^-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?$/;
const INTEGER = /^-?\d+$/;
const BASE64 = /^[A-Za-z0-9+/_-]*={0,2}$/;
const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})$/;

/** Thrown inside the reader for one bad value; the message is the violation's description. */
class Invalid {
  constructor(readonly description: string) {}
}

interface ReadState {
  readonly violations: FieldViolation[];
  readonly rules: boolean;
  depth: number;
}

export interface ReadOptions {
  /** Apply the fields' validation rules (true); false only converts and checks types. */
  rules?: boolean;
}

/**
 * Reads a message from a parsed JSON value (or from values bound from a URL, which are strings),
 * applying the field rules. Throws INVALID_ARGUMENT listing every bad field.
 */
export function readMessage<T>(descriptor: MessageDescriptor, value: unknown, options: ReadOptions = {}): T {
  const state: ReadState = { violations: [], rules: options.rules !== false, depth: 0 };
  let message: unknown;
  if (value === undefined || value === null) value = {};
  if (typeof value !== "object" || Array.isArray(value)) {
    state.violations.push({ field: "", description: `must be a JSON object (a ${descriptor.name})` });
  } else {
    message = readObject(descriptor, value as Record<string, unknown>, "", state);
  }
  if (state.violations.length > 0) throw validationError(descriptor, state.violations);
  return message as T;
}

/** The INVALID_ARGUMENT error of a message with these bad fields. */
export function validationError(descriptor: MessageDescriptor, violations: readonly FieldViolation[]) {
  const shown = violations.slice(0, 3).map((v) => (v.field === "" ? v.description : `${v.field} ${v.description}`));
  const more = violations.length > 3 ? ` (and ${violations.length - 3} more)` : "";
  return coreErrors.create(
    "GANTRY_ERR_VALIDATION",
    { message: descriptor.name, summary: shown.join("; ") + more },
    { violations },
  );
}

function readObject(
  descriptor: MessageDescriptor,
  input: Record<string, unknown>,
  prefix: string,
  state: ReadState,
): object {
  const message = Object.create(descriptor.type.prototype) as Record<string, unknown>;
  if (++state.depth > MAX_DEPTH) {
    state.violations.push({ field: prefix.slice(0, -1), description: `nests deeper than ${MAX_DEPTH} messages` });
    state.depth--;
    return message;
  }
  for (const field of descriptor.fields) {
    let raw = input[field.key];
    if (raw === undefined && field.protoName !== field.key) raw = input[field.protoName];
    const value = readField(field, raw, prefix, state);
    if (value !== undefined) message[field.key] = value;
  }
  state.depth--;
  return message;
}

function readField(field: FieldDescriptor, raw: unknown, prefix: string, state: ReadState): unknown {
  const path = prefix + field.key;
  let value: unknown;
  switch (field.cardinality) {
    case "repeated": {
      if (raw === undefined || raw === null) {
        value = [];
        break;
      }
      if (!Array.isArray(raw)) {
        state.violations.push({ field: path, description: "must be a list" });
        return undefined;
      }
      const list: unknown[] = new Array(raw.length);
      for (let i = 0; i < raw.length; i++) list[i] = readValue(field.value, raw[i], `${path}[${i}]`, state, false);
      value = list;
      break;
    }
    case "map": {
      if (raw === undefined || raw === null) {
        value = Object.create(null);
        break;
      }
      if (typeof raw !== "object" || Array.isArray(raw)) {
        state.violations.push({ field: path, description: "must be an object (a map)" });
        return undefined;
      }
      // A null-prototype object: keys such as "__proto__" stay plain keys.
      const map = Object.create(null) as Record<string, unknown>;
      for (const key of Object.keys(raw)) {
        const keyPath = `${path}[${JSON.stringify(key)}]`;
        const mapKey = readMapKey(field, key);
        if (mapKey instanceof Invalid) {
          state.violations.push({ field: keyPath, description: `key ${mapKey.description}` });
          continue;
        }
        map[mapKey] = readValue(field.value, (raw as Record<string, unknown>)[key], keyPath, state, false);
      }
      value = map;
      break;
    }
    default: {
      if (raw === undefined || raw === null) {
        value = field.cardinality === "optional" ? undefined : defaultValue(field.value);
      } else {
        value = readValue(field.value, raw, path, state, true);
        // A value of the wrong type is already reported; its rules (such as required) say nothing more.
        if (value === undefined) return undefined;
      }
    }
  }
  if (state.rules && field.rules !== undefined) checkRules(field, field.rules, value, path, state);
  return value;
}

function readValue(type: ValueType, raw: unknown, path: string, state: ReadState, allowNull: boolean): unknown {
  if (raw === null && !allowNull) {
    state.violations.push({ field: path, description: "must not be null" });
    return undefined;
  }
  let value: unknown;
  switch (type.kind) {
    case "scalar":
      value = readScalar(type.scalar, raw);
      break;
    case "enum": {
      if (typeof raw === "string") {
        const number = type.enum.numberByName.get(raw);
        value = number ?? new Invalid(`must be one of ${enumNames(type)}`);
      } else if (typeof raw === "number" && Number.isInteger(raw) && raw >= -(2 ** 31) && raw < 2 ** 31) {
        // Enums are open, as in proto3: a number this release does not name (a newer peer's) is kept.
        value = raw;
      } else {
        value = new Invalid(`must be one of ${enumNames(type)}`);
      }
      break;
    }
    case "timestamp":
      value = readTimestamp(raw);
      break;
    case "message":
      if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
        value = new Invalid(`must be an object (a ${type.message.name})`);
      } else {
        return readObject(type.message, raw as Record<string, unknown>, `${path}.`, state);
      }
  }
  if (value instanceof Invalid) {
    state.violations.push({ field: path, description: value.description });
    return undefined;
  }
  return value;
}

function enumNames(type: { enum: { values: readonly { name: string }[] } }): string {
  return type.enum.values.map((v) => v.name).join(", ");
}

function readScalar(scalar: ScalarType, raw: unknown): unknown {
  switch (scalar) {
    case "string":
      if (typeof raw !== "string") return new Invalid("must be a string");
      return raw.isWellFormed() ? raw : new Invalid("must be valid Unicode text");
    case "bool":
      if (typeof raw === "boolean") return raw;
      if (raw === "true") return true;
      if (raw === "false") return false;
      return new Invalid("must be true or false");
    case "double":
    case "float":
      return readFloat(raw, scalar === "float");
    case "int32":
    case "sint32":
    case "sfixed32":
      return readInt32(raw, -(2 ** 31), 2 ** 31 - 1);
    case "uint32":
    case "fixed32":
      return readInt32(raw, 0, 2 ** 32 - 1);
    case "int64":
    case "sint64":
    case "sfixed64":
      return readInt64(raw, INT64_MIN, INT64_MAX);
    case "uint64":
    case "fixed64":
      return readInt64(raw, 0n, UINT64_MAX);
    case "bytes":
      // Not raw.slice(): on a Buffer that is a view of the caller's memory, not a copy.
      if (raw instanceof Uint8Array) return new Uint8Array(raw);
      if (typeof raw !== "string" || !BASE64.test(raw)) return new Invalid("must be base64 text");
      return new Uint8Array(Buffer.from(raw, "base64"));
  }
}

function readFloat(raw: unknown, single: boolean): unknown {
  let value: number;
  // NaN and the infinities are valid values; JSON spells them as text, in-process callers as numbers.
  if (typeof raw === "number") {
    if (!Number.isFinite(raw)) return raw;
    value = raw;
  } else if (raw === "NaN") return Number.NaN;
  else if (raw === "Infinity") return Number.POSITIVE_INFINITY;
  else if (raw === "-Infinity") return Number.NEGATIVE_INFINITY;
  else if (typeof raw === "string" && DECIMAL.test(raw)) value = Number(raw);
  else return new Invalid("must be a number");
  if (!Number.isFinite(value) || (single && Math.abs(value) > FLOAT_MAX)) return new Invalid("is out of range");
  return value;
}

function readInt32(raw: unknown, min: number, max: number): unknown {
  let value: number;
  if (typeof raw === "number") value = raw;
  else if (typeof raw === "string" && DECIMAL.test(raw)) value = Number(raw);
  else return new Invalid("must be an integer");
  if (!Number.isInteger(value)) return new Invalid("must be an integer");
  if (value < min || value > max) return new Invalid(`must be between ${min} and ${max}`);
  return value;
}

function readInt64(raw: unknown, min: bigint, max: bigint): unknown {
  let value: bigint;
  if (typeof raw === "bigint") value = raw;
  else if (typeof raw === "string" && INTEGER.test(raw)) value = BigInt(raw);
  else if (typeof raw === "number" && Number.isInteger(raw)) value = BigInt(raw);
  else if (typeof raw === "string" && DECIMAL.test(raw) && Number.isInteger(Number(raw))) value = BigInt(Number(raw));
  else return new Invalid("must be an integer (as a string or number)");
  if (value < min || value > max) return new Invalid(`must be between ${min} and ${max}`);
  return value;
}

function readTimestamp(raw: unknown): unknown {
  if (raw instanceof Date)
    return Number.isNaN(raw.getTime()) ? new Invalid("must be a valid date") : new Date(raw.getTime());
  if (typeof raw !== "string") return new Invalid("must be an RFC 3339 timestamp string");
  const match = RFC3339.exec(raw);
  if (match === null) return new Invalid("must be an RFC 3339 timestamp such as 2024-05-01T12:00:00Z");
  const [, year, month, day, hour, minute, second, fraction = "", offset] = match;
  const ms = `${fraction}000`.slice(0, 3);
  const time = Date.parse(`${year}-${month}-${day}T${hour}:${minute}:${second}.${ms}${offset === "z" ? "Z" : offset}`);
  // Date.parse rolls 2023-02-29 over to March 1 and accepts 24:00: check the fields themselves.
  const days = [31, isLeap(Number(year)) ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][Number(month) - 1];
  if (Number.isNaN(time) || year === "0000" || days === undefined || Number(day) > days || Number(hour) > 23) {
    return new Invalid("must be a valid date between 0001 and 9999");
  }
  return new Date(time);
}

function isLeap(year: number): boolean {
  return year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
}

function readMapKey(field: FieldDescriptor, key: string): string | Invalid {
  const type = field.mapKey ?? "string";
  if (type === "string") return key;
  if (type === "bool") return key === "true" || key === "false" ? key : new Invalid("must be true or false");
  const value = readScalar(type, key);
  return value instanceof Invalid ? value : String(value);
}

function defaultValue(type: ValueType): unknown {
  switch (type.kind) {
    case "scalar":
      return defaultScalar(type.scalar);
    case "enum":
      return 0;
    default:
      return undefined;
  }
}

function defaultScalar(scalar: ScalarType): unknown {
  switch (scalar) {
    case "string":
      return "";
    case "bool":
      return false;
    case "bytes":
      return new Uint8Array(0);
    case "int64":
    case "uint64":
    case "sint64":
    case "fixed64":
    case "sfixed64":
      return 0n;
    default:
      return 0;
  }
}

function checkRules(field: FieldDescriptor, rules: FieldRuleSet, value: unknown, path: string, state: ReadState): void {
  const fail = (description: string) => state.violations.push({ field: path, description });
  if (rules.required && isEmpty(field, value)) {
    fail("is required");
    return;
  }
  if (value === undefined) return;
  if (field.cardinality === "repeated" || field.cardinality === "map") {
    const size = Array.isArray(value) ? value.length : Object.keys(value as object).length;
    if (rules.minItems !== undefined && size < rules.minItems)
      fail(`must have at least ${count(rules.minItems, "item")}`);
    if (rules.maxItems !== undefined && size > rules.maxItems)
      fail(`must have at most ${count(rules.maxItems, "item")}`);
    // Value rules (length, pattern, bounds) apply to each element or map value.
    if (hasValueRules(rules)) {
      const items: [string, unknown][] = Array.isArray(value)
        ? value.map((item, i) => [`${path}[${i}]`, item])
        : Object.entries(value as object).map(([key, item]) => [`${path}[${JSON.stringify(key)}]`, item]);
      for (const [itemPath, item] of items) {
        checkValueRules(rules, item, (description) => state.violations.push({ field: itemPath, description }));
      }
    }
  } else {
    checkValueRules(rules, value, fail);
  }
  if (rules.validate !== undefined) {
    const problem = rules.validate(value);
    if (problem !== undefined) fail(problem);
  }
}

/** `1 character`, `3 characters` */
function count(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? "" : "s"}`;
}

function hasValueRules(rules: FieldRuleSet): boolean {
  return (
    rules.minLength !== undefined ||
    rules.maxLength !== undefined ||
    rules.pattern !== undefined ||
    rules.min !== undefined ||
    rules.max !== undefined
  );
}

function checkValueRules(rules: FieldRuleSet, value: unknown, fail: (d: string) => void): void {
  if (typeof value === "string") {
    if (rules.minLength !== undefined || rules.maxLength !== undefined) {
      // A string has between half its UTF-16 length and its UTF-16 length in code points: count them
      // only when that range leaves the answer open.
      const units = value.length;
      const open =
        (rules.minLength !== undefined && units >= rules.minLength && Math.ceil(units / 2) < rules.minLength) ||
        (rules.maxLength !== undefined && units > rules.maxLength);
      const length = open ? [...value].length : units;
      if (rules.minLength !== undefined && length < rules.minLength)
        fail(`must be at least ${count(rules.minLength, "character")}`);
      if (rules.maxLength !== undefined && length > rules.maxLength)
        fail(`must be at most ${count(rules.maxLength, "character")}`);
    }
    if (rules.pattern !== undefined) {
      rules.pattern.lastIndex = 0;
      if (!rules.pattern.test(value)) fail(`must match ${rules.pattern}`);
    }
  } else if (typeof value === "number" || typeof value === "bigint") {
    if (rules.min !== undefined && value < rules.min) fail(`must be at least ${rules.min}`);
    if (rules.max !== undefined && value > rules.max) fail(`must be at most ${rules.max}`);
  }
}

function isEmpty(field: FieldDescriptor, value: unknown): boolean {
  if (value === undefined) return true;
  if (field.cardinality === "repeated") return (value as unknown[]).length === 0;
  if (field.cardinality === "map") return Object.keys(value as object).length === 0;
  if (field.cardinality === "optional") return false;
  return (
    value === "" ||
    value === 0 ||
    value === 0n ||
    value === false ||
    (value instanceof Uint8Array && value.length === 0)
  );
}

/**
 * Writes a message as a proto3 JSON value. Every field is written, defaults included, except unset
 * optional and message fields. A value of the wrong type is a bug in the method: it throws INTERNAL
 * (GANTRY_ERR_BAD_OUTPUT), with the field and problem in `details` for the log.
 */
export function writeMessage(descriptor: MessageDescriptor, message: unknown, method = descriptor.name): unknown {
  const state: WriteState = { method, message: descriptor.name };
  if (typeof message !== "object" || message === null) throw badOutput(state, "", "is not an object");
  return writeObject(descriptor, message as Record<string, unknown>, "", state, 0);
}

interface WriteState {
  readonly method: string;
  readonly message: string;
}

function badOutput(state: WriteState, field: string, problem: string) {
  return coreErrors.create(
    "GANTRY_ERR_BAD_OUTPUT",
    { method: state.method, message: state.message },
    { details: { field, problem } },
  );
}

function writeObject(
  descriptor: MessageDescriptor,
  message: Record<string, unknown>,
  prefix: string,
  state: WriteState,
  depth: number,
): Record<string, unknown> {
  if (depth > MAX_DEPTH) throw badOutput(state, prefix, `nests deeper than ${MAX_DEPTH} messages`);
  const out: Record<string, unknown> = {};
  for (const field of descriptor.fields) {
    const value = message[field.key];
    const path = prefix + field.key;
    switch (field.cardinality) {
      case "repeated": {
        if (value === undefined || value === null) {
          out[field.key] = [];
          break;
        }
        if (!Array.isArray(value)) throw badOutput(state, path, "is not an array");
        const list = new Array(value.length);
        for (let i = 0; i < value.length; i++)
          list[i] = writeValue(field.value, value[i], `${path}[${i}]`, state, depth);
        out[field.key] = list;
        break;
      }
      case "map": {
        // A null-prototype object, so that a "__proto__" key is written as a key.
        const map = Object.create(null) as Record<string, unknown>;
        if (value !== undefined && value !== null) {
          if (typeof value !== "object") throw badOutput(state, path, "is not an object");
          const entries = value instanceof Map ? [...value.entries()] : Object.entries(value);
          for (const [key, item] of entries)
            map[String(key)] = writeValue(field.value, item, `${path}[${JSON.stringify(String(key))}]`, state, depth);
        }
        out[field.key] = map;
        break;
      }
      default:
        if (value === undefined || value === null) {
          if (field.cardinality === "singular" && field.value.kind !== "message" && field.value.kind !== "timestamp") {
            out[field.key] = writeValue(field.value, defaultValue(field.value), path, state, depth);
          }
        } else {
          out[field.key] = writeValue(field.value, value, path, state, depth);
        }
    }
  }
  return out;
}

function writeValue(type: ValueType, value: unknown, path: string, state: WriteState, depth: number): unknown {
  switch (type.kind) {
    case "message":
      if (typeof value !== "object" || value === null) throw badOutput(state, path, `is not a ${type.message.name}`);
      return writeObject(type.message, value as Record<string, unknown>, `${path}.`, state, depth + 1);
    case "timestamp":
      if (!(value instanceof Date) || Number.isNaN(value.getTime()))
        throw badOutput(state, path, "is not a valid Date");
      return value.toISOString();
    case "enum":
      if (typeof value !== "number") throw badOutput(state, path, "is not an enum number");
      return type.enum.nameByNumber.get(value) ?? value;
    case "scalar":
      return writeScalar(type.scalar, value, path, state);
  }
}

/** The integer as it is, or BAD_OUTPUT when its type cannot hold it (the reader would refuse it). */
function inRange<T extends number | bigint>(scalar: ScalarType, value: T, path: string, state: WriteState): T {
  const checked = readScalar(scalar, value);
  if (checked instanceof Invalid) throw badOutput(state, path, checked.description);
  return value;
}

function writeScalar(scalar: ScalarType, value: unknown, path: string, state: WriteState): unknown {
  switch (scalar) {
    case "string":
      if (typeof value !== "string") throw badOutput(state, path, "is not a string");
      return value;
    case "bool":
      if (typeof value !== "boolean") throw badOutput(state, path, "is not a boolean");
      return value;
    case "bytes":
      if (!(value instanceof Uint8Array)) throw badOutput(state, path, "is not a Uint8Array");
      return Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString("base64");
    case "double":
    case "float":
      if (typeof value !== "number") throw badOutput(state, path, "is not a number");
      if (!Number.isFinite(value)) return String(value);
      if (scalar === "float" && Math.abs(value) > FLOAT_MAX) throw badOutput(state, path, "is out of range");
      return value;
    case "int64":
    case "uint64":
    case "sint64":
    case "fixed64":
    case "sfixed64":
      if (typeof value !== "bigint" && !(typeof value === "number" && Number.isInteger(value)))
        throw badOutput(state, path, "is not a bigint");
      return inRange(scalar, value, path, state).toString();
    default:
      if (typeof value !== "number" || !Number.isInteger(value)) throw badOutput(state, path, "is not an integer");
      return inRange(scalar, value, path, state);
  }
}
