import {
  coreErrors,
  type FieldDescriptor,
  type MessageDescriptor,
  type ScalarType,
  type ValueType,
} from "@gantry/core";
import { grpcErrors } from "./errors.js";

/**
 * The protobuf binary format, driven by the same message descriptors as core's proto3 JSON mapping
 * and agreeing with it on every type: 64-bit integers are bigint, bytes Uint8Array, enums numbers,
 * timestamps Date (google.protobuf.Timestamp on the wire), maps plain objects keyed by the key's
 * string form.
 *
 * Encoding measures the message first, keeping the length of every string, nested message, packed
 * run and map entry in one list, then writes into a single buffer of the exact size, reading the
 * lengths back in the same order. Values are checked while measuring, as writeMessage checks them.
 *
 * Decoding follows the protobuf rules for what a parser must accept: unknown fields are skipped,
 * groups (wire types 3 and 4) included, and dropped; packed and unpacked records of a packable
 * repeated field are both read; the last value of a singular field wins; a singular message or
 * timestamp that occurs more than once is merged into the earlier one; a map entry without a key or
 * value takes the default; enum numbers outside the enum are kept as numbers (proto3 enums are open).
 * Anything else is malformed and is reported with the path of the field it was found in.
 */

/** Messages nest at most this deep, the outermost counting as the first, as in core's JSON reader. */
const MAX_DEPTH = 64;
const FLOAT_MAX = 3.4028234663852886e38;
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const UINT64_MAX = 2n ** 64n - 1n;
const TWO_32 = 4_294_967_296;
const TWO_53 = 2 ** 53;
const TWO_63 = 2 ** 63;
const TWO_64 = 2 ** 64;
/** The range of google.protobuf.Timestamp: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z. */
const MIN_SECONDS = -62_135_596_800;
const MAX_SECONDS = 253_402_300_799;
const TIMESTAMP_RANGE = "0001-01-01 to 9999-12-31";
const INTEGER = /^-?\d+$/;
/** ASCII strings shorter than this are decoded in JavaScript; from this length a native call is faster. */
const SHORT_STRING = 8;

const WIRE_VARINT = 0;
const WIRE_FIXED64 = 1;
const WIRE_LENGTH = 2;
const WIRE_START_GROUP = 3;
const WIRE_END_GROUP = 4;
const WIRE_FIXED32 = 5;

// The value types, as small integers so that the switches over them compile to jump tables.
const DOUBLE = 0;
const FLOAT = 1;
const INT32 = 2;
const INT64 = 3;
const UINT32 = 4;
const UINT64 = 5;
const SINT32 = 6;
const SINT64 = 7;
const FIXED32 = 8;
const FIXED64 = 9;
const SFIXED32 = 10;
const SFIXED64 = 11;
const BOOL = 12;
const STRING = 13;
const BYTES = 14;
const ENUM = 15;
const MESSAGE = 16;
const TIMESTAMP = 17;

const SCALAR_CODES: Readonly<Record<ScalarType, number>> = {
  double: DOUBLE,
  float: FLOAT,
  int32: INT32,
  int64: INT64,
  uint32: UINT32,
  uint64: UINT64,
  sint32: SINT32,
  sint64: SINT64,
  fixed32: FIXED32,
  fixed64: FIXED64,
  sfixed32: SFIXED32,
  sfixed64: SFIXED64,
  bool: BOOL,
  string: STRING,
  bytes: BYTES,
};

const SINGULAR = 0;
const OPTIONAL = 1;
const REPEATED = 2;
const MAP = 3;

/** How a message is encoded and decoded, derived once from its descriptor. */
interface MessagePlan {
  readonly name: string;
  readonly fields: FieldPlan[];
  /** Fields by number, when the numbers are small enough for an array; otherwise `byNumberMap`. */
  byNumber: (FieldPlan | undefined)[] | undefined;
  byNumberMap: Map<number, FieldPlan> | undefined;
}

interface FieldPlan {
  readonly key: string;
  readonly number: number;
  readonly cardinality: number;
  /** The type of the value, each element or each map value. */
  readonly type: number;
  /** The wire type of one value. */
  readonly wire: number;
  /** The tag of each record: packed runs and map entries are length-delimited. */
  readonly tag: number;
  readonly tagSize: number;
  /** Repeated scalars and enums: written packed, read packed or not. */
  readonly packable: boolean;
  readonly keyType: number;
  readonly keyWire: number;
  /** The key type as errors name it, `string` when the field is not a map. */
  readonly keyName: string;
  readonly message: MessagePlan | undefined;
  /** The value type as errors name it: `int32`, `enum Color`, `message Item`, `timestamp`. */
  readonly typeName: string;
}

const plans = new WeakMap<MessageDescriptor, MessagePlan>();

function planFor(descriptor: MessageDescriptor): MessagePlan {
  const cached = plans.get(descriptor);
  if (cached !== undefined) return cached;
  const plan: MessagePlan = { name: descriptor.name, fields: [], byNumber: undefined, byNumberMap: undefined };
  // Cached before its fields are planned, so that recursive messages resolve to this same plan.
  plans.set(descriptor, plan);
  let max = 0;
  for (const field of descriptor.fields) {
    plan.fields.push(planField(field));
    max = Math.max(max, field.number);
  }
  if (max <= 1024) {
    plan.byNumber = new Array<FieldPlan | undefined>(max + 1).fill(undefined);
    for (const field of plan.fields) plan.byNumber[field.number] = field;
  } else {
    plan.byNumberMap = new Map(plan.fields.map((field) => [field.number, field]));
  }
  return plan;
}

function planField(field: FieldDescriptor): FieldPlan {
  const type = typeCode(field.value);
  const wire = wireType(type);
  const cardinality =
    field.cardinality === "repeated"
      ? REPEATED
      : field.cardinality === "map"
        ? MAP
        : field.cardinality === "optional"
          ? OPTIONAL
          : SINGULAR;
  const packable = cardinality === REPEATED && wire !== WIRE_LENGTH;
  const tag = field.number * 8 + (packable || cardinality === MAP ? WIRE_LENGTH : wire);
  const keyType = field.mapKey === undefined ? STRING : SCALAR_CODES[field.mapKey];
  return {
    key: field.key,
    number: field.number,
    cardinality,
    type,
    wire,
    tag,
    tagSize: varintSize(tag),
    packable,
    keyType,
    keyWire: wireType(keyType),
    keyName: field.mapKey ?? "string",
    message: field.value.kind === "message" ? planFor(field.value.message) : undefined,
    typeName: typeName(field.value),
  };
}

function typeCode(value: ValueType): number {
  switch (value.kind) {
    case "scalar":
      return SCALAR_CODES[value.scalar];
    case "enum":
      return ENUM;
    case "message":
      return MESSAGE;
    case "timestamp":
      return TIMESTAMP;
  }
}

function typeName(value: ValueType): string {
  switch (value.kind) {
    case "scalar":
      return value.scalar;
    case "enum":
      return `enum ${value.enum.name}`;
    case "message":
      return `message ${value.message.name}`;
    case "timestamp":
      return "timestamp";
  }
}

function wireType(type: number): number {
  switch (type) {
    case DOUBLE:
    case FIXED64:
    case SFIXED64:
      return WIRE_FIXED64;
    case FLOAT:
    case FIXED32:
    case SFIXED32:
      return WIRE_FIXED32;
    case STRING:
    case BYTES:
    case MESSAGE:
    case TIMESTAMP:
      return WIRE_LENGTH;
    default:
      return WIRE_VARINT;
  }
}

/** What is wrong with an output value or an input byte, and where: the path is built as it unwinds. */
class Problem {
  path = "";
  constructor(public description: string) {}

  /** Prefixes the path with a field key or an `[index]`. */
  within(segment: string): this {
    if (this.path === "") this.path = segment;
    else if (this.path.charCodeAt(0) === 91 /* [ */) this.path = segment + this.path;
    else this.path = `${segment}.${this.path}`;
    return this;
  }

  get reason(): string {
    return this.path === "" ? this.description : `${this.path}: ${this.description}`;
  }
}

function at(error: unknown, segment: string): unknown {
  if (error instanceof Problem) error.within(segment);
  return error;
}

// Scratch space for floating point conversions, read and written in little-endian order.
const f64 = new Float64Array(1);
const f64Bytes = new Uint8Array(f64.buffer);
const f32 = new Float32Array(1);
const f32Bytes = new Uint8Array(f32.buffer);
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

// ---------------------------------------------------------------------------------------------
// Encoding

/** The state of one encoding: the lengths measured, then the buffer they are written into. */
class Encoder {
  buf: Buffer = EMPTY;
  pos = 0;
  /**
   * What the write pass needs from the measuring pass, in the order it is written: the lengths of
   * strings, messages, packed runs and map entries, and the two halves of each 64-bit integer.
   */
  sizes: number[] = [];
  /** How many entries of `sizes` this encoding has filled: the list is reused, not cleared. */
  count = 0;
  cursor = 0;
  /** The two 32-bit halves of the last 64-bit integer split. */
  lo = 0;
  hi = 0;
}

const EMPTY = Buffer.alloc(0);
/** The encoder of the calls not in progress, reused; a nested call (from a getter) makes its own. */
let spareEncoder: Encoder | undefined = new Encoder();

/**
 * Encodes a message (a method's output, or any value of the message type) to protobuf bytes.
 * A value of the wrong type, or out of its type's range, throws what core's writeMessage throws:
 * GANTRY_ERR_BAD_OUTPUT (INTERNAL), with the field and the problem in `details` for the log.
 *
 * @example
 * const bytes = encodeMessage(describeMessage(HelloReply), { message: "Hello, Ada" });
 */
export function encodeMessage(descriptor: MessageDescriptor, message: unknown, method = descriptor.name): Buffer {
  if (typeof message !== "object" || message === null) throw badOutput(descriptor, method, "", "is not an object");
  const plan = planFor(descriptor);
  const encoder = spareEncoder ?? new Encoder();
  spareEncoder = undefined;
  try {
    const size = sizeFields(plan, message as Record<string, unknown>, encoder, 1);
    const buf = Buffer.allocUnsafe(size);
    encoder.buf = buf;
    try {
      writeFields(plan, message as Record<string, unknown>, encoder);
    } catch (error) {
      throw badOutput(descriptor, method, "", CHANGED, error);
    }
    // Only a value that changes between the two passes (a getter) can make them disagree.
    if (encoder.pos !== size) throw badOutput(descriptor, method, "", CHANGED);
    return buf;
  } catch (error) {
    if (error instanceof Problem) throw badOutput(descriptor, method, error.path, error.description);
    throw error;
  } finally {
    encoder.buf = EMPTY;
    encoder.pos = 0;
    encoder.count = 0;
    // A very large message's list is not kept for the next call.
    if (encoder.sizes.length > 65_536) encoder.sizes = [];
    encoder.cursor = 0;
    spareEncoder = encoder;
  }
}

const CHANGED = "changed while it was being encoded";

function badOutput(descriptor: MessageDescriptor, method: string, field: string, problem: string, cause?: unknown) {
  return coreErrors.create(
    "GANTRY_ERR_BAD_OUTPUT",
    { method, message: descriptor.name },
    { details: { field, problem }, cause },
  );
}

function sizeFields(plan: MessagePlan, message: Record<string, unknown>, e: Encoder, depth: number): number {
  if (depth > MAX_DEPTH) throw new Problem(`nests deeper than ${MAX_DEPTH} messages`);
  const fields = plan.fields;
  let size = 0;
  let field: FieldPlan | undefined;
  try {
    for (let i = 0; i < fields.length; i++) {
      field = fields[i];
      const value = message[field.key];
      if (value === undefined || value === null) continue;
      switch (field.cardinality) {
        case SINGULAR:
          if (!isDefault(field.type, value)) size += field.tagSize + sizeValue(field, field.type, value, e, depth);
          break;
        case OPTIONAL:
          size += field.tagSize + sizeValue(field, field.type, value, e, depth);
          break;
        case REPEATED:
          size += sizeRepeated(field, value, e, depth);
          break;
        default:
          size += sizeMap(field, value, e, depth);
      }
    }
  } catch (error) {
    throw field === undefined ? error : at(error, field.key);
  }
  return size;
}

/** Whether a singular field holds its type's default, which proto3 does not write. */
function isDefault(type: number, value: unknown): boolean {
  switch (type) {
    case STRING:
      return value === "";
    case BOOL:
      return value === false;
    case BYTES:
      return value instanceof Uint8Array && value.length === 0;
    case DOUBLE:
    case FLOAT:
      // -0 is not the default: it is written, so that it reads back as -0.
      return value === 0 && 1 / value > 0;
    case INT64:
    case UINT64:
    case SINT64:
    case FIXED64:
    case SFIXED64:
      return value === 0n || value === 0;
    case MESSAGE:
    case TIMESTAMP:
      return false;
    default:
      return value === 0;
  }
}

/** The encoded size of one value, without its tag; checks its type as writeMessage does. */
function sizeValue(field: FieldPlan, type: number, value: unknown, e: Encoder, depth: number): number {
  switch (type) {
    case DOUBLE:
      if (typeof value !== "number") throw new Problem("is not a number");
      return 8;
    case FLOAT:
      if (typeof value !== "number") throw new Problem("is not a number");
      if (Math.abs(value) > FLOAT_MAX && Number.isFinite(value)) throw new Problem("is out of range");
      return 4;
    case INT32:
      return int32Size(checkInteger(value, -2_147_483_648, 2_147_483_647));
    case UINT32:
      return varintSize(checkInteger(value, 0, 4_294_967_295));
    case SINT32: {
      const v = checkInteger(value, -2_147_483_648, 2_147_483_647);
      return varintSize(((v << 1) ^ (v >> 31)) >>> 0);
    }
    case FIXED32:
      checkInteger(value, 0, 4_294_967_295);
      return 4;
    case SFIXED32:
      checkInteger(value, -2_147_483_648, 2_147_483_647);
      return 4;
    case INT64:
    case UINT64:
    case SINT64:
      split64(checkInt64(value, type === UINT64), e);
      if (type === SINT64) zigzag64(e);
      // Kept for the write pass, so that a bigint is converted once.
      keep(e, e.lo);
      keep(e, e.hi);
      return varint64Size(e.lo, e.hi);
    case FIXED64:
    case SFIXED64:
      split64(checkInt64(value, type === FIXED64), e);
      keep(e, e.lo);
      keep(e, e.hi);
      return 8;
    case BOOL:
      if (typeof value !== "boolean") throw new Problem("is not a boolean");
      return 1;
    case STRING: {
      if (typeof value !== "string") throw new Problem("is not a string");
      const length = Buffer.byteLength(value, "utf8");
      keep(e, length);
      return varintSize(length) + length;
    }
    case BYTES:
      if (!(value instanceof Uint8Array)) throw new Problem("is not a Uint8Array");
      return varintSize(value.length) + value.length;
    case ENUM:
      if (typeof value !== "number") throw new Problem("is not an enum number");
      if (!Number.isInteger(value) || value < -2_147_483_648 || value > 2_147_483_647) {
        throw new Problem("is not an enum number (an int32)");
      }
      return int32Size(value);
    case MESSAGE: {
      const plan = field.message as MessagePlan;
      if (typeof value !== "object" || value === null) throw new Problem(`is not a ${plan.name}`);
      const slot = keep(e, 0);
      const length = sizeFields(plan, value as Record<string, unknown>, e, depth + 1);
      e.sizes[slot] = length;
      return varintSize(length) + length;
    }
    default: {
      const ms = checkDate(value);
      const seconds = Math.floor(ms / 1000);
      return 1 + timestampSize(seconds, (ms - seconds * 1000) * 1_000_000);
    }
  }
}

/** Appends to the encoder's list of sizes; returns the slot, to fill in later if it is a placeholder. */
function keep(e: Encoder, value: number): number {
  const slot = e.count++;
  e.sizes[slot] = value;
  return slot;
}

function checkInteger(value: unknown, min: number, max: number): number {
  if (typeof value !== "number" || !Number.isInteger(value)) throw new Problem("is not an integer");
  if (value < min || value > max) throw new Problem(`must be between ${min} and ${max}`);
  return value;
}

/** A 64-bit integer, given as a bigint or as an integer number, in the range of its type. */
function checkInt64(value: unknown, unsigned: boolean): bigint | number {
  if (typeof value === "bigint") {
    if (unsigned ? value < 0n || value > UINT64_MAX : value < INT64_MIN || value > INT64_MAX)
      throw int64Range(unsigned);
    return value;
  }
  if (typeof value !== "number" || !Number.isInteger(value)) throw new Problem("is not a bigint");
  // Exact: 2^63 and 2^64 are doubles, and an integer double below them is at most their predecessor.
  if (unsigned ? value < 0 || value >= TWO_64 : value < -TWO_63 || value >= TWO_63) throw int64Range(unsigned);
  return value;
}

function int64Range(unsigned: boolean): Problem {
  return new Problem(
    unsigned ? `must be between 0 and ${UINT64_MAX}` : `must be between ${INT64_MIN} and ${INT64_MAX}`,
  );
}

/** The time of a valid Date in the range of google.protobuf.Timestamp, in milliseconds. */
function checkDate(value: unknown): number {
  const ms = value instanceof Date ? value.getTime() : Number.NaN;
  if (Number.isNaN(ms)) throw new Problem("is not a valid Date");
  if (ms < MIN_SECONDS * 1000 || ms >= (MAX_SECONDS + 1) * 1000) throw new Problem(`is outside ${TIMESTAMP_RANGE}`);
  return ms;
}

/** The size of a Timestamp message's fields. */
function timestampSize(seconds: number, nanos: number): number {
  let size = 0;
  if (seconds !== 0) size += 1 + (seconds < 0 ? 10 : varint64Size(seconds >>> 0, Math.floor(seconds / TWO_32)));
  if (nanos !== 0) size += 1 + varintSize(nanos);
  return size;
}

/** Sets `lo` and `hi` to the two's complement halves of a 64-bit integer. */
function split64(value: bigint | number, e: Encoder): void {
  const number = typeof value === "bigint" ? Number(value) : value;
  if (typeof value === "bigint" && (number <= -TWO_53 || number >= TWO_53)) {
    // Beyond 2^53 a double may have rounded: split the bigint itself.
    e.lo = Number(BigInt.asUintN(32, value));
    e.hi = Number(BigInt.asUintN(32, value >> 32n));
  } else {
    // Exact for every integer double in range: the division is by a power of two.
    e.lo = number >>> 0;
    e.hi = Math.floor(number / TWO_32) >>> 0;
  }
}

function zigzag64(e: Encoder): void {
  const mask = e.hi >> 31;
  e.hi = (((e.hi << 1) | (e.lo >>> 31)) ^ mask) >>> 0;
  e.lo = ((e.lo << 1) ^ mask) >>> 0;
}

function varintSize(value: number): number {
  return value < 0x80 ? 1 : value < 0x4000 ? 2 : value < 0x20_0000 ? 3 : value < 0x1000_0000 ? 4 : 5;
}

function varint64Size(lo: number, hi: number): number {
  return hi === 0 ? varintSize(lo) : ((70 - Math.clz32(hi)) / 7) | 0;
}

/** Negative int32 and enum values are sign-extended to 64 bits: ten bytes. */
function int32Size(value: number): number {
  return value < 0 ? 10 : varintSize(value);
}

function sizeRepeated(field: FieldPlan, value: unknown, e: Encoder, depth: number): number {
  if (!Array.isArray(value)) throw new Problem("is not an array");
  const count = value.length;
  if (count === 0) return 0;
  let i = 0;
  try {
    if (field.packable) {
      // The run's length is written before its values: its slot comes first.
      const slot = keep(e, 0);
      let length = 0;
      for (; i < count; i++) length += sizeValue(field, field.type, value[i], e, depth);
      e.sizes[slot] = length;
      return field.tagSize + varintSize(length) + length;
    }
    let size = field.tagSize * count;
    for (; i < count; i++) size += sizeValue(field, field.type, value[i], e, depth);
    return size;
  } catch (error) {
    throw at(error, `[${i}]`);
  }
}

function sizeMap(field: FieldPlan, value: unknown, e: Encoder, depth: number): number {
  if (typeof value !== "object") throw new Problem("is not an object");
  let size = 0;
  if (value instanceof Map) {
    for (const [key, item] of value) size += sizeEntry(field, key, item, e, depth);
  } else {
    const object = value as Record<string, unknown>;
    for (const key of Object.keys(object)) size += sizeEntry(field, key, object[key], e, depth);
  }
  return size;
}

function sizeEntry(field: FieldPlan, key: unknown, item: unknown, e: Encoder, depth: number): number {
  try {
    const slot = keep(e, 0);
    const length =
      2 +
      sizeValue(field, field.keyType, mapKey(field.keyType, key), e, depth) +
      sizeValue(field, field.type, item, e, depth);
    e.sizes[slot] = length;
    return field.tagSize + varintSize(length) + length;
  } catch (error) {
    throw at(error, `[${JSON.stringify(String(key))}]`);
  }
}

/** A map key in its scalar type, from its string form (or, in a Map, the value itself). */
function mapKey(type: number, key: unknown): unknown {
  switch (type) {
    case STRING:
      return typeof key === "string" ? key : String(key);
    case BOOL:
      if (key === true || key === "true") return true;
      if (key === false || key === "false") return false;
      throw new Problem("key must be true or false");
    case INT64:
    case SINT64:
    case SFIXED64:
    case UINT64:
    case FIXED64: {
      const unsigned = type === UINT64 || type === FIXED64;
      const value = typeof key === "string" && INTEGER.test(key) ? BigInt(key) : key;
      if (typeof value !== "bigint" && !(typeof value === "number" && Number.isInteger(value))) {
        throw new Problem("key must be an integer");
      }
      try {
        return checkInt64(value, unsigned);
      } catch (error) {
        if (error instanceof Problem) error.description = `key ${error.description}`;
        throw error;
      }
    }
    default: {
      const unsigned = type === UINT32 || type === FIXED32;
      const value = typeof key === "string" && INTEGER.test(key) ? Number(key) : key;
      if (typeof value !== "number" || !Number.isInteger(value)) throw new Problem("key must be an integer");
      const min = unsigned ? 0 : -2_147_483_648;
      const max = unsigned ? 4_294_967_295 : 2_147_483_647;
      if (value < min || value > max) throw new Problem(`key must be between ${min} and ${max}`);
      return value;
    }
  }
}

function writeFields(plan: MessagePlan, message: Record<string, unknown>, e: Encoder): void {
  const fields = plan.fields;
  for (let i = 0; i < fields.length; i++) {
    const field = fields[i];
    const value = message[field.key];
    if (value === undefined || value === null) continue;
    switch (field.cardinality) {
      case SINGULAR:
        if (isDefault(field.type, value)) break;
        writeVarint(e, field.tag);
        writeValue(field, field.type, value, e);
        break;
      case OPTIONAL:
        writeVarint(e, field.tag);
        writeValue(field, field.type, value, e);
        break;
      case REPEATED:
        writeRepeated(field, value as unknown[], e);
        break;
      default:
        writeMap(field, value as object, e);
    }
  }
}

function writeRepeated(field: FieldPlan, list: unknown[], e: Encoder): void {
  const count = list.length;
  if (count === 0) return;
  if (field.packable) {
    writeVarint(e, field.tag);
    writeVarint(e, e.sizes[e.cursor++]);
    for (let i = 0; i < count; i++) writeValue(field, field.type, list[i], e);
  } else {
    for (let i = 0; i < count; i++) {
      writeVarint(e, field.tag);
      writeValue(field, field.type, list[i], e);
    }
  }
}

function writeMap(field: FieldPlan, value: object, e: Encoder): void {
  if (value instanceof Map) {
    for (const [key, item] of value) writeEntry(field, key, item, e);
  } else {
    const object = value as Record<string, unknown>;
    for (const key of Object.keys(object)) writeEntry(field, key, object[key], e);
  }
}

function writeEntry(field: FieldPlan, key: unknown, item: unknown, e: Encoder): void {
  writeVarint(e, field.tag);
  writeVarint(e, e.sizes[e.cursor++]);
  e.buf[e.pos++] = 8 | field.keyWire;
  writeValue(field, field.keyType, mapKey(field.keyType, key), e);
  e.buf[e.pos++] = 16 | field.wire;
  writeValue(field, field.type, item, e);
}

/** Writes one value, without its tag; its type was checked when it was measured. */
function writeValue(field: FieldPlan, type: number, value: unknown, e: Encoder): void {
  switch (type) {
    case DOUBLE:
      writeDouble(e, value as number);
      return;
    case FLOAT:
      writeFloat(e, value as number);
      return;
    case INT32:
    case ENUM:
      if ((value as number) >= 0) writeVarint(e, value as number);
      else writeVarint64(e, (value as number) >>> 0, 0xffff_ffff);
      return;
    case UINT32:
      writeVarint(e, value as number);
      return;
    case SINT32:
      writeVarint(e, (((value as number) << 1) ^ ((value as number) >> 31)) >>> 0);
      return;
    case FIXED32:
    case SFIXED32:
      writeFixed32(e, (value as number) >>> 0);
      return;
    case INT64:
    case UINT64:
    case SINT64: {
      const lo = e.sizes[e.cursor++];
      writeVarint64(e, lo, e.sizes[e.cursor++]);
      return;
    }
    case FIXED64:
    case SFIXED64:
      writeFixed32(e, e.sizes[e.cursor++]);
      writeFixed32(e, e.sizes[e.cursor++]);
      return;
    case BOOL:
      e.buf[e.pos++] = value ? 1 : 0;
      return;
    case STRING: {
      const length = e.sizes[e.cursor++];
      writeVarint(e, length);
      e.buf.write(value as string, e.pos, length, "utf8");
      e.pos += length;
      return;
    }
    case BYTES: {
      const bytes = value as Uint8Array;
      writeVarint(e, bytes.length);
      e.buf.set(bytes, e.pos);
      e.pos += bytes.length;
      return;
    }
    case MESSAGE:
      writeVarint(e, e.sizes[e.cursor++]);
      writeFields(field.message as MessagePlan, value as Record<string, unknown>, e);
      return;
    default:
      writeTimestamp(e, (value as Date).getTime());
  }
}

function writeTimestamp(e: Encoder, ms: number): void {
  const seconds = Math.floor(ms / 1000);
  const nanos = (ms - seconds * 1000) * 1_000_000;
  e.buf[e.pos++] = timestampSize(seconds, nanos);
  if (seconds !== 0) {
    e.buf[e.pos++] = 0x08;
    writeVarint64(e, seconds >>> 0, Math.floor(seconds / TWO_32) >>> 0);
  }
  if (nanos !== 0) {
    e.buf[e.pos++] = 0x10;
    writeVarint(e, nanos);
  }
}

/** Writes an unsigned 32-bit varint. */
function writeVarint(e: Encoder, value: number): void {
  const buf = e.buf;
  let pos = e.pos;
  while (value > 0x7f) {
    buf[pos++] = (value & 0x7f) | 0x80;
    value >>>= 7;
  }
  buf[pos++] = value;
  e.pos = pos;
}

function writeVarint64(e: Encoder, lo: number, hi: number): void {
  const buf = e.buf;
  let pos = e.pos;
  while (hi !== 0) {
    buf[pos++] = (lo & 0x7f) | 0x80;
    lo = ((lo >>> 7) | (hi << 25)) >>> 0;
    hi >>>= 7;
  }
  while (lo > 0x7f) {
    buf[pos++] = (lo & 0x7f) | 0x80;
    lo >>>= 7;
  }
  buf[pos++] = lo;
  e.pos = pos;
}

function writeFixed32(e: Encoder, value: number): void {
  const buf = e.buf;
  const pos = e.pos;
  buf[pos] = value;
  buf[pos + 1] = value >>> 8;
  buf[pos + 2] = value >>> 16;
  buf[pos + 3] = value >>> 24;
  e.pos = pos + 4;
}

function writeFloat(e: Encoder, value: number): void {
  f32[0] = value;
  const buf = e.buf;
  const pos = e.pos;
  if (LITTLE_ENDIAN) {
    buf[pos] = f32Bytes[0];
    buf[pos + 1] = f32Bytes[1];
    buf[pos + 2] = f32Bytes[2];
    buf[pos + 3] = f32Bytes[3];
  } else {
    buf[pos] = f32Bytes[3];
    buf[pos + 1] = f32Bytes[2];
    buf[pos + 2] = f32Bytes[1];
    buf[pos + 3] = f32Bytes[0];
  }
  e.pos = pos + 4;
}

function writeDouble(e: Encoder, value: number): void {
  f64[0] = value;
  const buf = e.buf;
  const pos = e.pos;
  for (let i = 0; i < 8; i++) buf[pos + i] = f64Bytes[LITTLE_ENDIAN ? i : 7 - i];
  e.pos = pos + 8;
}

// ---------------------------------------------------------------------------------------------
// Decoding

/** A cursor over the input; `end` is the end of the message (or packed run) being read. */
class Reader {
  pos = 0;
  end: number;
  /** The high 32 bits of the last varint read. */
  hi = 0;

  constructor(readonly bytes: Buffer) {
    this.end = bytes.length;
  }
}

/** The prototype of decoded messages: no inherited keys, so a field named `constructor` reads as absent. */
const DECODED = Object.freeze(Object.create(null) as object);
const UTF8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/**
 * Decodes protobuf bytes into a plain object in native form, keyed by field key, for core's
 * readMessage (which applies the rules and builds the class instance). Fields absent on the wire
 * are absent from the object. Malformed bytes throw GANTRY_ERR_MALFORMED_PROTOBUF
 * (INVALID_ARGUMENT) with the reason and the path of the field at fault.
 *
 * @example
 * const request = readMessage<HelloRequest>(descriptor, decodeMessage(descriptor, bytes));
 */
export function decodeMessage(descriptor: MessageDescriptor, bytes: Uint8Array): Record<string, unknown> {
  const buffer = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
  const reader = new Reader(buffer);
  const message = Object.create(DECODED) as Record<string, unknown>;
  try {
    readFields(planFor(descriptor), reader, message, 1);
  } catch (error) {
    if (error instanceof Problem) {
      throw grpcErrors.create("GANTRY_ERR_MALFORMED_PROTOBUF", { message: descriptor.name, reason: error.reason });
    }
    throw error;
  }
  return message;
}

function readFields(plan: MessagePlan, r: Reader, message: Record<string, unknown>, depth: number): void {
  if (depth > MAX_DEPTH) throw new Problem(`nests deeper than ${MAX_DEPTH} messages`);
  let field: FieldPlan | undefined;
  let number = 0;
  try {
    while (r.pos < r.end) {
      field = undefined;
      number = 0;
      const tag = readTag(r);
      number = tag >>> 3;
      const wire = tag & 7;
      field = plan.byNumber !== undefined ? plan.byNumber[number] : plan.byNumberMap?.get(number);
      if (field === undefined) {
        skipField(r, wire, number, depth);
        continue;
      }
      switch (field.cardinality) {
        case SINGULAR:
        case OPTIONAL:
          if (wire !== field.wire) throw wireMismatch(field, wire);
          // Only a message or timestamp merges with an earlier occurrence; a scalar's last value wins.
          message[field.key] = readValue(
            field,
            field.type,
            r,
            field.wire === WIRE_LENGTH ? message[field.key] : undefined,
            depth,
          );
          break;
        case REPEATED:
          readRepeated(field, wire, r, message, depth);
          break;
        default:
          if (wire !== WIRE_LENGTH) throw wireMismatch(field, wire);
          readEntry(field, r, message, depth);
      }
    }
  } catch (error) {
    if (error instanceof Problem && field !== undefined) error.within(field.key);
    else if (error instanceof Problem && number !== 0) error.description = `field ${number}: ${error.description}`;
    throw error;
  }
}

function wireMismatch(field: FieldPlan, wire: number): Problem {
  const expected = field.packable ? `${field.wire} or 2 (packed)` : `${field.wire}`;
  return new Problem(`has wire type ${wire}, but ${field.typeName} uses wire type ${expected}`);
}

function readRepeated(
  field: FieldPlan,
  wire: number,
  r: Reader,
  message: Record<string, unknown>,
  depth: number,
): void {
  const packed = field.packable && wire === WIRE_LENGTH;
  if (!packed && wire !== field.wire) throw wireMismatch(field, wire);
  let list = message[field.key] as unknown[] | undefined;
  if (list === undefined) {
    list = [];
    message[field.key] = list;
  }
  if (!packed) {
    try {
      list.push(readValue(field, field.type, r, undefined, depth));
    } catch (error) {
      throw at(error, `[${list.length}]`);
    }
    return;
  }
  const length = readLength(r);
  const width = field.wire === WIRE_FIXED64 ? 8 : field.wire === WIRE_FIXED32 ? 4 : 1;
  if (length % width !== 0)
    throw new Problem(`packed run of ${length} bytes is not a whole number of ${width}-byte values`);
  const end = r.end;
  r.end = r.pos + length;
  try {
    while (r.pos < r.end) list.push(readValue(field, field.type, r, undefined, depth));
  } catch (error) {
    throw at(error, `[${list.length}]`);
  }
  r.end = end;
}

function readEntry(field: FieldPlan, r: Reader, message: Record<string, unknown>, depth: number): void {
  let map = message[field.key] as Record<string, unknown> | undefined;
  if (map === undefined) {
    // A null-prototype object, so that a "__proto__" key is a key, as in core's JSON reader.
    map = Object.create(null) as Record<string, unknown>;
    message[field.key] = map;
  }
  const length = readLength(r);
  const end = r.end;
  r.end = r.pos + length;
  let key: unknown;
  let value: unknown;
  let part = "entry";
  try {
    while (r.pos < r.end) {
      part = "entry";
      const tag = readTag(r);
      const number = tag >>> 3;
      const wire = tag & 7;
      if (number === 1) {
        part = "key";
        if (wire !== field.keyWire) {
          throw new Problem(`has wire type ${wire}, but ${field.keyName} uses wire type ${field.keyWire}`);
        }
        key = readValue(field, field.keyType, r, undefined, depth);
      } else if (number === 2) {
        part = "value";
        if (wire !== field.wire) throw wireMismatch(field, wire);
        value = readValue(field, field.type, r, value, depth);
      } else {
        skipField(r, wire, number, depth);
      }
    }
  } catch (error) {
    if (error instanceof Problem) {
      if (part === "value" && key !== undefined) error.within(`[${JSON.stringify(keyString(key))}]`);
      else error.description = `map ${part}: ${error.description}`;
    }
    throw error;
  }
  r.end = end;
  map[key === undefined ? defaultKey(field.keyType) : keyString(key)] =
    value === undefined ? defaultValue(field.type) : value;
}

/** A map key's string form, as in JSON: `"1"`, `"true"`, `"-5"`. */
function keyString(key: unknown): string {
  return typeof key === "string" ? key : String(key);
}

function defaultKey(type: number): string {
  return type === STRING ? "" : type === BOOL ? "false" : "0";
}

/** The value of a map entry that has none. */
function defaultValue(type: number): unknown {
  switch (type) {
    case STRING:
      return "";
    case BOOL:
      return false;
    case BYTES:
      return new Uint8Array(0);
    case INT64:
    case UINT64:
    case SINT64:
    case FIXED64:
    case SFIXED64:
      return 0n;
    case MESSAGE:
      return Object.create(DECODED);
    case TIMESTAMP:
      return new Date(0);
    default:
      return 0;
  }
}

/** Reads one value whose wire type was checked; a message or timestamp is merged into `previous`. */
function readValue(field: FieldPlan, type: number, r: Reader, previous: unknown, depth: number): unknown {
  switch (type) {
    case DOUBLE:
      return readDouble(r);
    case FLOAT:
      return readFloat(r);
    case INT32:
    case ENUM:
      return readVarint(r) | 0;
    case UINT32:
      return readVarint(r);
    case SINT32: {
      const value = readVarint(r);
      return (value >>> 1) ^ -(value & 1);
    }
    case FIXED32:
      return readFixed32(r);
    case SFIXED32:
      return readFixed32(r) | 0;
    case INT64:
      return toBigInt(readVarint(r), r.hi, true);
    case UINT64:
      return toBigInt(readVarint(r), r.hi, false);
    case SINT64: {
      const lo = readVarint(r);
      const hi = r.hi;
      const mask = -(lo & 1);
      return toBigInt((((lo >>> 1) | (hi << 31)) ^ mask) >>> 0, ((hi >>> 1) ^ mask) >>> 0, true);
    }
    case FIXED64:
      return toBigInt(readFixed32(r), readFixed32(r), false);
    case SFIXED64:
      return toBigInt(readFixed32(r), readFixed32(r), true);
    case BOOL:
      return (readVarint(r) | r.hi) !== 0;
    case STRING:
      return readString(r);
    case BYTES: {
      const length = readLength(r);
      const start = r.bytes.byteOffset + r.pos;
      r.pos += length;
      // A copy: a Buffer's slice() would be a view of the caller's memory.
      return new Uint8Array(r.bytes.buffer.slice(start, start + length));
    }
    case MESSAGE: {
      const length = readLength(r);
      const end = r.end;
      r.end = r.pos + length;
      const message = (previous ?? Object.create(DECODED)) as Record<string, unknown>;
      readFields(field.message as MessagePlan, r, message, depth + 1);
      r.end = end;
      return message;
    }
    default:
      return readTimestamp(r, previous as Date | undefined);
  }
}

function readTimestamp(r: Reader, previous: Date | undefined): Date {
  const length = readLength(r);
  const end = r.end;
  r.end = r.pos + length;
  let seconds = 0;
  let nanos = 0;
  if (previous !== undefined) {
    const ms = previous.getTime();
    seconds = Math.floor(ms / 1000);
    nanos = (ms - seconds * 1000) * 1_000_000;
  }
  while (r.pos < r.end) {
    const tag = readTag(r);
    const number = tag >>> 3;
    const wire = tag & 7;
    if ((number === 1 || number === 2) && wire !== WIRE_VARINT) {
      throw new Problem(`timestamp ${number === 1 ? "seconds" : "nanos"} has wire type ${wire}, not 0`);
    }
    if (number === 1) {
      const lo = readVarint(r);
      const hi = r.hi;
      // Exact within the range of a Timestamp; far outside it, only the range check below needs it.
      seconds = (hi | 0) * TWO_32 + lo;
      if (seconds < MIN_SECONDS || seconds > MAX_SECONDS) {
        throw new Problem(`timestamp seconds ${toBigInt(lo, hi, true)} are outside ${TIMESTAMP_RANGE}`);
      }
    } else if (number === 2) {
      nanos = readVarint(r) | 0;
      if (nanos < 0 || nanos > 999_999_999) throw new Problem(`timestamp nanos ${nanos} are outside 0 to 999999999`);
    } else {
      skipField(r, wire, number, 0);
    }
  }
  r.end = end;
  // Date has millisecond precision: nanoseconds below a millisecond are dropped.
  return new Date(seconds * 1000 + Math.floor(nanos / 1_000_000));
}

/** A 64-bit integer from its halves (unsigned 32-bit numbers), through a number where that is exact. */
function toBigInt(lo: number, hi: number, signed: boolean): bigint {
  if (hi === 0) return BigInt(lo);
  if (signed && hi >= 0x8000_0000) {
    if (hi >= 0xffe0_0000) return BigInt((hi - TWO_32) * TWO_32 + lo);
    return BigInt.asIntN(64, (BigInt(hi) << 32n) | BigInt(lo));
  }
  if (hi < 0x20_0000) return BigInt(hi * TWO_32 + lo);
  return (BigInt(hi) << 32n) | BigInt(lo);
}

function readTag(r: Reader): number {
  const tag = readVarint(r);
  if (r.hi !== 0) throw new Problem("tag is longer than 32 bits");
  if (tag < 8) throw new Problem(`field number 0 is not allowed (tag ${tag})`);
  return tag;
}

/** Reads a varint: returns its low 32 bits, unsigned, and leaves the high 32 in `r.hi`. */
function readVarint(r: Reader): number {
  const pos = r.pos;
  if (pos < r.end) {
    const byte = r.bytes[pos];
    if (byte < 0x80) {
      r.pos = pos + 1;
      r.hi = 0;
      return byte;
    }
  }
  return readLongVarint(r);
}

function readLongVarint(r: Reader): number {
  const bytes = r.bytes;
  const end = r.end;
  let pos = r.pos;
  let lo = 0;
  let hi = 0;
  let byte: number;
  for (let shift = 0; shift < 28; shift += 7) {
    if (pos >= end) throw truncatedVarint();
    byte = bytes[pos++];
    lo |= (byte & 0x7f) << shift;
    if (byte < 0x80) {
      r.pos = pos;
      r.hi = 0;
      return lo >>> 0;
    }
  }
  if (pos >= end) throw truncatedVarint();
  byte = bytes[pos++];
  lo |= (byte & 0x0f) << 28;
  hi = (byte & 0x7f) >> 4;
  if (byte < 0x80) {
    r.pos = pos;
    r.hi = hi;
    return lo >>> 0;
  }
  // Bytes 6 to 10; of the tenth, only the lowest bit fits in 64 bits and the rest is ignored.
  for (let shift = 3; shift < 32; shift += 7) {
    if (pos >= end) throw truncatedVarint();
    byte = bytes[pos++];
    hi |= (byte & 0x7f) << shift;
    if (byte < 0x80) {
      r.pos = pos;
      r.hi = hi >>> 0;
      return lo >>> 0;
    }
  }
  throw new Problem("varint is longer than 10 bytes");
}

function truncatedVarint(): Problem {
  return new Problem("varint is cut off by the end of the message");
}

/** Reads the length of a length-delimited record and checks that it fits. */
function readLength(r: Reader): number {
  const length = readVarint(r);
  if (r.hi !== 0 || length > r.end - r.pos) {
    throw new Problem(
      `length ${toBigInt(length, r.hi, false)} runs past the end of the message (${r.end - r.pos} bytes left)`,
    );
  }
  return length;
}

function need(r: Reader, size: number): void {
  if (r.end - r.pos < size) throw new Problem(`${size * 8}-bit value is cut off by the end of the message`);
}

function readFixed32(r: Reader): number {
  need(r, 4);
  const bytes = r.bytes;
  const pos = r.pos;
  r.pos = pos + 4;
  return (bytes[pos] | (bytes[pos + 1] << 8) | (bytes[pos + 2] << 16) | (bytes[pos + 3] << 24)) >>> 0;
}

function readFloat(r: Reader): number {
  need(r, 4);
  const bytes = r.bytes;
  const pos = r.pos;
  r.pos = pos + 4;
  if (LITTLE_ENDIAN) {
    f32Bytes[0] = bytes[pos];
    f32Bytes[1] = bytes[pos + 1];
    f32Bytes[2] = bytes[pos + 2];
    f32Bytes[3] = bytes[pos + 3];
  } else {
    f32Bytes[3] = bytes[pos];
    f32Bytes[2] = bytes[pos + 1];
    f32Bytes[1] = bytes[pos + 2];
    f32Bytes[0] = bytes[pos + 3];
  }
  return f32[0];
}

function readDouble(r: Reader): number {
  need(r, 8);
  const bytes = r.bytes;
  const pos = r.pos;
  r.pos = pos + 8;
  for (let i = 0; i < 8; i++) f64Bytes[LITTLE_ENDIAN ? i : 7 - i] = bytes[pos + i];
  return f64[0];
}

function readString(r: Reader): string {
  const length = readLength(r);
  const bytes = r.bytes;
  const start = r.pos;
  const end = start + length;
  r.pos = end;
  let i = start;
  if (length < SHORT_STRING) {
    let text = "";
    for (; i < end; i++) {
      const byte = bytes[i];
      if (byte >= 0x80) break;
      text += String.fromCharCode(byte);
    }
    if (i === end) return text;
  }
  while (i < end && bytes[i] < 0x80) i++;
  // ASCII needs no checking; anything else goes through the validating decoder.
  if (i === end) return bytes.toString("latin1", start, end);
  try {
    return UTF8.decode(bytes.subarray(start, end));
  } catch {
    throw new Problem("is not valid UTF-8");
  }
}

/** Skips a field this message does not know, checking that it is well formed. */
function skipField(r: Reader, wire: number, number: number, depth: number): void {
  switch (wire) {
    case WIRE_VARINT:
      readVarint(r);
      return;
    case WIRE_FIXED64:
      need(r, 8);
      r.pos += 8;
      return;
    case WIRE_LENGTH: {
      // Not `r.pos += readLength(r)`: that would add to the position from before the length was read.
      const length = readLength(r);
      r.pos += length;
      return;
    }
    case WIRE_START_GROUP:
      skipGroup(r, number, depth);
      return;
    case WIRE_END_GROUP:
      throw new Problem("end-group tag without a start-group tag");
    case WIRE_FIXED32:
      need(r, 4);
      r.pos += 4;
      return;
    default:
      throw new Problem(`wire type ${wire} does not exist`);
  }
}

/** Skips a group (proto2's delimited messages) up to its end-group tag; groups count toward the depth. */
function skipGroup(r: Reader, number: number, depth: number): void {
  if (depth >= MAX_DEPTH) throw new Problem(`nests deeper than ${MAX_DEPTH} messages and groups`);
  for (;;) {
    if (r.pos >= r.end) throw new Problem("group has no end-group tag");
    const tag = readTag(r);
    const inner = tag >>> 3;
    const wire = tag & 7;
    if (wire === WIRE_END_GROUP) {
      if (inner !== number) throw new Problem(`group ends with the end-group tag of field ${inner}`);
      return;
    }
    skipField(r, wire, inner, depth + 1);
  }
}
