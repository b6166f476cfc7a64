import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  type Constructor,
  describeMessage,
  Field,
  GantryError,
  Message,
  type MessageDescriptor,
  readMessage,
  registerEnum,
  type ValueType,
  writeMessage,
} from "@gantry/core";
import protobuf from "protobufjs";
import { describe, expect, test } from "vitest";
import { decodeMessage, encodeMessage } from "../src/codec.js";

enum Color {
  COLOR_UNSPECIFIED = 0,
  RED = 1,
  GREEN = 2,
  BELOW = -5,
}
registerEnum(Color, "Color");

@Message()
class Item {
  @Field(1) name!: string;
  @Field(2, { type: "int32" }) quantity!: number;
}

@Message()
class Scalars {
  @Field(1, { type: "double" }) double!: number;
  @Field(2, { type: "float" }) float!: number;
  @Field(3, { type: "int32" }) int32!: number;
  @Field(4, { type: "int64" }) int64!: bigint;
  @Field(5, { type: "uint32" }) uint32!: number;
  @Field(6, { type: "uint64" }) uint64!: bigint;
  @Field(7, { type: "sint32" }) sint32!: number;
  @Field(8, { type: "sint64" }) sint64!: bigint;
  @Field(9, { type: "fixed32" }) fixed32!: number;
  @Field(10, { type: "fixed64" }) fixed64!: bigint;
  @Field(11, { type: "sfixed32" }) sfixed32!: number;
  @Field(12, { type: "sfixed64" }) sfixed64!: bigint;
  @Field(13) bool!: boolean;
  @Field(14) string!: string;
  @Field(15) bytes!: Uint8Array;
  @Field(16, { enum: Color }) color!: Color;
}

@Message()
class Lists {
  @Field(1, { type: "double", repeated: true }) double!: number[];
  @Field(2, { type: "float", repeated: true }) float!: number[];
  @Field(3, { type: "int32", repeated: true }) int32!: number[];
  @Field(4, { type: "int64", repeated: true }) int64!: bigint[];
  @Field(5, { type: "uint32", repeated: true }) uint32!: number[];
  @Field(6, { type: "uint64", repeated: true }) uint64!: bigint[];
  @Field(7, { type: "sint32", repeated: true }) sint32!: number[];
  @Field(8, { type: "sint64", repeated: true }) sint64!: bigint[];
  @Field(9, { type: "fixed32", repeated: true }) fixed32!: number[];
  @Field(10, { type: "fixed64", repeated: true }) fixed64!: bigint[];
  @Field(11, { type: "sfixed32", repeated: true }) sfixed32!: number[];
  @Field(12, { type: "sfixed64", repeated: true }) sfixed64!: bigint[];
  @Field(13, { type: "bool", repeated: true }) bool!: boolean[];
  @Field(14, { type: "string", repeated: true }) string!: string[];
  @Field(15, { type: "bytes", repeated: true }) bytes!: Uint8Array[];
  @Field(16, { enum: Color, repeated: true }) color!: Color[];
  @Field(17, { type: Item, repeated: true }) items!: Item[];
}

@Message()
class Maps {
  @Field(1, { map: { key: "int32", value: "string" } }) int32!: Record<string, string>;
  @Field(2, { map: { key: "int64", value: "string" } }) int64!: Record<string, string>;
  @Field(3, { map: { key: "uint32", value: "string" } }) uint32!: Record<string, string>;
  @Field(4, { map: { key: "uint64", value: "string" } }) uint64!: Record<string, string>;
  @Field(5, { map: { key: "sint32", value: "string" } }) sint32!: Record<string, string>;
  @Field(6, { map: { key: "sint64", value: "string" } }) sint64!: Record<string, string>;
  @Field(7, { map: { key: "fixed32", value: "string" } }) fixed32!: Record<string, string>;
  @Field(8, { map: { key: "fixed64", value: "string" } }) fixed64!: Record<string, string>;
  @Field(9, { map: { key: "sfixed32", value: "string" } }) sfixed32!: Record<string, string>;
  @Field(10, { map: { key: "sfixed64", value: "string" } }) sfixed64!: Record<string, string>;
  @Field(11, { map: { key: "bool", value: "string" } }) bool!: Record<string, string>;
  @Field(12, { map: { key: "string", value: "string" } }) string!: Record<string, string>;
  @Field(13, { map: { key: "string", value: Item } }) items!: Record<string, Item>;
  @Field(14, { map: { key: "string", value: { enum: Color } } }) colors!: Record<string, Color>;
  @Field(15, { map: { key: "string", value: "bytes" } }) blobs!: Record<string, Uint8Array>;
  @Field(16, { map: { key: "string", value: "timestamp" } }) times!: Record<string, Date>;
  @Field(17, { map: { key: "string", value: "int64" } }) counts!: Record<string, bigint>;
  @Field(18, { map: { key: "string", value: "double" } }) ratios!: Record<string, number>;
}

@Message()
class Optionals {
  @Field(1, { type: "int32", optional: true }) int32?: number;
  @Field(2, { optional: true }) string?: string;
  @Field(3, { type: "int64", optional: true }) int64?: bigint;
  @Field(4, { optional: true }) bool?: boolean;
  @Field(5, { enum: Color, optional: true }) color?: Color;
  @Field(6, { type: "double", optional: true }) double?: number;
  @Field(7, { optional: true }) bytes?: Uint8Array;
}

@Message()
class Tree {
  @Field(1) name!: string;
  @Field(2, { type: () => Tree }) child?: Tree;
  @Field(3, { type: () => Tree, repeated: true }) children!: Tree[];
}

@Message()
class Times {
  @Field(1) at?: Date;
  @Field(2, { type: "timestamp", repeated: true }) list!: Date[];
}

@Message()
class Rich {
  @Field(1) name!: string;
  @Field(2, { type: "int64" }) id!: bigint;
  @Field(3, { type: "double" }) ratio!: number;
  @Field(4, { type: "float" }) weight!: number;
  @Field(5, { type: "sint32" }) delta!: number;
  @Field(6, { type: "uint64" }) big!: bigint;
  @Field(7, { type: "fixed64" }) stamp!: bigint;
  @Field(8, { type: "sfixed32" }) offset!: number;
  @Field(9) active!: boolean;
  @Field(10) data!: Uint8Array;
  @Field(11, { enum: Color }) color!: Color;
  @Field(12) item?: Item;
  @Field(13, { type: "int32", repeated: true }) scores!: number[];
  @Field(14, { type: "string", repeated: true }) tags!: string[];
  @Field(15, { type: Item, repeated: true }) items!: Item[];
  @Field(16, { map: { key: "string", value: "int32" } }) labels!: Record<string, number>;
  @Field(17, { map: { key: "int64", value: Item } }) byId!: Record<string, Item>;
  @Field(18) at?: Date;
  @Field(19, { type: "int32", optional: true }) retries?: number;
  @Field(20, { enum: Color, repeated: true }) colors!: Color[];
}

const SCALAR_FIELDS = `
  double double = 1; float float = 2; int32 int32 = 3; int64 int64 = 4; uint32 uint32 = 5; uint64 uint64 = 6;
  sint32 sint32 = 7; sint64 sint64 = 8; fixed32 fixed32 = 9; fixed64 fixed64 = 10; sfixed32 sfixed32 = 11;
  sfixed64 sfixed64 = 12; bool bool = 13; string string = 14; bytes bytes = 15; Color color = 16;`;
const LIST_FIELDS = `${SCALAR_FIELDS.replace(/(\w+ \w+ = \d+);/g, "repeated $1;")} repeated Item items = 17;`;

/** The same types, written by hand in .proto, for protobufjs; Ts has google.protobuf.Timestamp's fields. */
const PROTO = `
syntax = "proto3";
package test;
enum Color { COLOR_UNSPECIFIED = 0; RED = 1; GREEN = 2; BELOW = -5; }
message Ts { int64 seconds = 1; int32 nanos = 2; }
message Item { string name = 1; int32 quantity = 2; }
message Scalars { ${SCALAR_FIELDS} }
message Lists { ${LIST_FIELDS} }
message UnpackedLists { ${LIST_FIELDS.replace(/(repeated (?!string|bytes|Item)\w+ \w+ = \d+);/g, "$1 [packed = false];")} }
message Maps {
  map<int32, string> int32 = 1; map<int64, string> int64 = 2; map<uint32, string> uint32 = 3;
  map<uint64, string> uint64 = 4; map<sint32, string> sint32 = 5; map<sint64, string> sint64 = 6;
  map<fixed32, string> fixed32 = 7; map<fixed64, string> fixed64 = 8; map<sfixed32, string> sfixed32 = 9;
  map<sfixed64, string> sfixed64 = 10; map<bool, string> bool = 11; map<string, string> string = 12;
  map<string, Item> items = 13; map<string, Color> colors = 14; map<string, bytes> blobs = 15;
  map<string, Ts> times = 16; map<string, int64> counts = 17; map<string, double> ratios = 18;
}
message Optionals {
  optional int32 int32 = 1; optional string string = 2; optional int64 int64 = 3; optional bool bool = 4;
  optional Color color = 5; optional double double = 6; optional bytes bytes = 7;
}
message Tree { string name = 1; Tree child = 2; repeated Tree children = 3; }
message Times { Ts at = 1; repeated Ts list = 2; }
`;
const pb = protobuf.parse(PROTO, { keepCase: true }).root;
/** protobufjs's toObject in the form `plain` gives. */
const PB_OBJECT = { longs: String, enums: Number, bytes: String, defaults: true, arrays: true, objects: true };

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const UINT64_MAX = 2n ** 64n - 1n;
const FLOAT_MAX = 3.4028234663852886e38;

/**
 * A message (native, or as decodeMessage returns it) in the form protobufjs's toObject gives with
 * PB_OBJECT: defaults filled, 64-bit integers and map keys as decimal strings, bytes as base64,
 * timestamps as { seconds, nanos }, unset messages null, unset optionals absent.
 */
function plain(descriptor: MessageDescriptor, message: object): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const field of descriptor.fields) {
    const value = (message as Record<string, unknown>)[field.key];
    switch (field.cardinality) {
      case "repeated":
        out[field.key] = ((value ?? []) as unknown[]).map((item) => plainValue(field.value, item));
        break;
      case "map": {
        const map: Record<string, unknown> = {};
        const entries = value instanceof Map ? [...value] : Object.entries(value ?? {});
        for (const [key, item] of entries) map[String(key)] = plainValue(field.value, item);
        out[field.key] = map;
        break;
      }
      case "optional":
        if (value !== undefined) out[field.key] = plainValue(field.value, value);
        break;
      default:
        out[field.key] = value === undefined ? plainDefault(field.value) : plainValue(field.value, value);
    }
  }
  return out;
}

function plainValue(type: ValueType, value: unknown): unknown {
  switch (type.kind) {
    case "message":
      return plain(type.message, value as object);
    case "timestamp": {
      const ms = (value as Date).getTime();
      const seconds = Math.floor(ms / 1000);
      return { seconds: String(seconds), nanos: (ms - seconds * 1000) * 1_000_000 };
    }
    case "enum":
      return value;
    case "scalar":
      if (type.scalar === "bytes") return Buffer.from(value as Uint8Array).toString("base64");
      if (type.scalar === "float") return Math.fround(value as number);
      return typeof value === "bigint" || type.scalar.endsWith("64") ? String(value) : value;
  }
}

function plainDefault(type: ValueType): unknown {
  if (type.kind === "message" || type.kind === "timestamp") return null;
  if (type.kind === "enum") return 0;
  switch (type.scalar) {
    case "string":
    case "bytes":
      return "";
    case "bool":
      return false;
    default:
      return type.scalar.endsWith("64") && type.scalar !== "double" ? "0" : 0;
  }
}

/**
 * Checks a value both ways against protobufjs: it reads what we write, we read what it writes,
 * and we read what we write; all three give the same message.
 */
function crossCheck(type: Constructor, value: object, pbName = type.name): void {
  const descriptor = describeMessage(type);
  const pbType = pb.lookupType(`test.${pbName}`);
  const expected = plain(descriptor, value);
  const ours = encodeMessage(descriptor, value);
  expect(pbType.toObject(pbType.decode(ours), PB_OBJECT), "protobufjs reading ours").toEqual(expected);
  const theirs = pbType.encode(pbType.fromObject(expected)).finish();
  expect(plain(descriptor, decodeMessage(descriptor, theirs)), "ours reading protobufjs").toEqual(expected);
  expect(plain(descriptor, decodeMessage(descriptor, ours)), "ours reading ours").toEqual(expected);
}

const hex = (text: string) => new Uint8Array(Buffer.from(text.replace(/\s/g, ""), "hex"));
const toHex = (bytes: Uint8Array) => Buffer.from(bytes).toString("hex");

/** A varint, for building bytes by hand. */
function varint(value: bigint): number[] {
  let rest = BigInt.asUintN(64, value);
  const out: number[] = [];
  while (rest > 0x7fn) {
    out.push(Number(rest & 0x7fn) | 0x80);
    rest >>= 7n;
  }
  out.push(Number(rest));
  return out;
}

/** A length-delimited record of field `number`. */
const record = (number: number, body: number[]) => [
  ...varint(BigInt(number * 8 + 2)),
  ...varint(BigInt(body.length)),
  ...body,
];

/** The reason of the GANTRY_ERR_MALFORMED_PROTOBUF error that decoding these bytes throws. */
function malformed(type: Constructor, bytes: Uint8Array | number[]): string {
  const descriptor = describeMessage(type);
  try {
    decodeMessage(descriptor, bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes));
  } catch (error) {
    expect(error).toBeInstanceOf(GantryError);
    const gantry = error as GantryError;
    expect(gantry.code).toBe("GANTRY_ERR_MALFORMED_PROTOBUF");
    expect(gantry.status).toBe("INVALID_ARGUMENT");
    const prefix = `the request message is not valid protobuf for ${descriptor.name}: `;
    expect(gantry.message.startsWith(prefix), gantry.message).toBe(true);
    return gantry.message.slice(prefix.length);
  }
  throw new Error("decodeMessage accepted the bytes");
}

/** The GANTRY_ERR_BAD_OUTPUT error that encoding this value throws. */
function badOutput(type: Constructor, value: unknown): GantryError {
  try {
    encodeMessage(describeMessage(type), value);
  } catch (error) {
    expect(error).toBeInstanceOf(GantryError);
    expect((error as GantryError).code).toBe("GANTRY_ERR_BAD_OUTPUT");
    expect((error as GantryError).status).toBe("INTERNAL");
    return error as GantryError;
  }
  throw new Error("encodeMessage accepted the value");
}

const decode = <T>(type: Constructor, bytes: Uint8Array | number[]) =>
  decodeMessage(describeMessage(type), bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes)) as Partial<T>;

const EDGES: Record<keyof Scalars, unknown[]> = {
  double: [
    0,
    -0,
    -1,
    0.1,
    1.5,
    Number.MAX_VALUE,
    -Number.MAX_VALUE,
    Number.MIN_VALUE,
    Number.NaN,
    Number.POSITIVE_INFINITY,
    Number.NEGATIVE_INFINITY,
  ],
  float: [0, -0, -1, 0.1, 1.5, FLOAT_MAX, -FLOAT_MAX, 2 ** -149, Number.NaN, Number.POSITIVE_INFINITY, -Infinity],
  int32: [0, -1, 1, 127, 128, 2 ** 31 - 1, -(2 ** 31)],
  int64: [0n, -1n, 1n, 2n ** 32n, -(2n ** 32n), 2n ** 53n, -(2n ** 53n) - 1n, INT64_MAX, INT64_MIN],
  uint32: [0, 1, 2 ** 31, 2 ** 32 - 1],
  uint64: [0n, 1n, 2n ** 32n - 1n, 2n ** 53n + 1n, 2n ** 63n, UINT64_MAX],
  sint32: [0, -1, 1, 2 ** 31 - 1, -(2 ** 31)],
  sint64: [0n, -1n, 1n, 2n ** 53n, -(2n ** 53n), INT64_MAX, INT64_MIN],
  fixed32: [0, 1, 2 ** 31, 2 ** 32 - 1],
  fixed64: [0n, 1n, 2n ** 63n, UINT64_MAX],
  sfixed32: [0, -1, 2 ** 31 - 1, -(2 ** 31)],
  sfixed64: [0n, -1n, INT64_MAX, INT64_MIN],
  bool: [false, true],
  string: ["", "a", "héllo wörld", "日本語", "emoji 😀", "\u0000", "\uFEFFbom", "x".repeat(300)],
  bytes: [new Uint8Array(0), new Uint8Array([0, 1, 255]), new Uint8Array(300).map((_, i) => i)],
  color: [Color.COLOR_UNSPECIFIED, Color.RED, Color.BELOW, 7, -7],
};

describe("encodeMessage and decodeMessage against protobufjs", () => {
  describe.each(Object.entries(EDGES))("%s", (key, values) => {
    test.each(values.map((value) => [value]))("%s", (value) => {
      crossCheck(Scalars, { [key]: value });
    });
  });

  test("every scalar at once", () => {
    crossCheck(Scalars, {
      double: -2.5,
      float: 0.25,
      int32: -3,
      int64: INT64_MIN,
      uint32: 2 ** 32 - 1,
      uint64: UINT64_MAX,
      sint32: -(2 ** 31),
      sint64: INT64_MAX,
      fixed32: 7,
      fixed64: 2n ** 63n,
      sfixed32: -9,
      sfixed64: -1n,
      bool: true,
      string: "Zoë 日本",
      bytes: new Uint8Array([9, 8, 7]),
      color: Color.GREEN,
    });
  });

  const lists = Object.fromEntries(Object.entries(EDGES).map(([key, values]) => [key, values]));
  lists.items = [{ name: "a", quantity: 1 }, {}, { name: "", quantity: -1 }];

  test("repeated fields of every type, packed", () => {
    crossCheck(Lists, lists);
    crossCheck(Lists, {});
  });

  test("repeated fields of every type, unpacked", () => {
    crossCheck(Lists, lists, "UnpackedLists");
  });

  test("maps with every key type", () => {
    crossCheck(Maps, {
      int32: { "-2147483648": "min", "0": "zero", "2147483647": "max" },
      int64: { [String(INT64_MIN)]: "min", "-1": "minus one", [String(INT64_MAX)]: "max" },
      uint32: { "0": "", "4294967295": "max" },
      uint64: { [String(UINT64_MAX)]: "max", "1": "one" },
      sint32: { "-1": "a", "2147483647": "b" },
      sint64: { [String(INT64_MIN)]: "min", "5": "five" },
      fixed32: { "4294967295": "max" },
      fixed64: { [String(UINT64_MAX)]: "max" },
      sfixed32: { "-2147483648": "min" },
      sfixed64: { [String(INT64_MIN)]: "min", [String(INT64_MAX)]: "max" },
      bool: { true: "yes", false: "no" },
      string: { "": "empty", ключ: "значение" },
      items: { a: { name: "x", quantity: 3 }, b: {} },
      colors: { red: Color.RED, below: Color.BELOW, unknown: 9 },
      blobs: { none: new Uint8Array(0), some: new Uint8Array([1, 2]) },
      times: { epoch: new Date(0), before: new Date(-1), later: new Date("2024-05-01T12:00:00.123Z") },
      counts: { big: INT64_MAX, zero: 0n },
      ratios: { nan: Number.NaN, half: 0.5 },
    });
  });

  test("optional fields are written when set, even to their defaults", () => {
    crossCheck(Optionals, {});
    crossCheck(Optionals, {
      int32: 0,
      string: "",
      int64: 0n,
      bool: false,
      color: 0,
      double: 0,
      bytes: new Uint8Array(0),
    });
    crossCheck(Optionals, { int32: -1, string: "x", int64: INT64_MIN, bool: true, color: Color.BELOW, double: -0 });
  });

  test("nested and recursive messages", () => {
    crossCheck(Tree, {
      name: "root",
      child: { name: "child", child: { name: "grandchild", children: [{ name: "leaf" }] } },
      children: [{ name: "a" }, { name: "" }, { name: "c", child: {} }],
    });
  });

  test("timestamps, before 1970 and to the millisecond", () => {
    crossCheck(Times, {
      at: new Date("1969-07-20T20:17:40.123Z"),
      list: [
        new Date(0),
        new Date(-1),
        new Date(1),
        new Date("0001-01-01T00:00:00.000Z"),
        new Date("9999-12-31T23:59:59.999Z"),
      ],
    });
    crossCheck(Times, { at: new Date(0) });
  });
});

describe("encodeMessage", () => {
  const scalars = describeMessage(Scalars);

  test("leaves out singular fields at their defaults", () => {
    const defaults = { double: 0, float: 0, int32: 0, int64: 0n, string: "", bytes: new Uint8Array(0), bool: false };
    expect(encodeMessage(scalars, { ...defaults, color: 0 })).toHaveLength(0);
    expect(encodeMessage(scalars, {})).toHaveLength(0);
    expect(encodeMessage(describeMessage(Tree), { name: "", children: [] })).toHaveLength(0);
  });

  test("writes what proto3 specifies, byte for byte", () => {
    // A negative int32 or enum is sign-extended to ten bytes.
    expect(toHex(encodeMessage(scalars, { int32: -1 }))).toBe("18ffffffffffffffffff01");
    expect(toHex(encodeMessage(scalars, { color: Color.BELOW }))).toBe("8001fbffffffffffffffff01");
    expect(toHex(encodeMessage(scalars, { sint32: -1, sint64: 1n }))).toBe("38014002");
    expect(toHex(encodeMessage(scalars, { float: 1.5 }))).toBe("150000c03f");
    expect(toHex(encodeMessage(scalars, { double: -0 }))).toBe("090000000000000080");
    expect(toHex(encodeMessage(scalars, { fixed32: 1, sfixed64: -2n }))).toBe("4d0100000061feffffffffffffff");
    expect(toHex(encodeMessage(scalars, { string: "é" }))).toBe("7202c3a9");
    // Packed scalars, one record per string.
    const lists = describeMessage(Lists);
    expect(toHex(encodeMessage(lists, { int32: [1, 300], string: ["a", ""] }))).toBe("1a0301ac027201617200");
    // Optional fields at their default are written.
    expect(toHex(encodeMessage(describeMessage(Optionals), { int32: 0, string: "" }))).toBe("08001200");
    // Timestamps: seconds and nanos, nanos never negative.
    expect(toHex(encodeMessage(describeMessage(Times), { at: new Date(-1) }))).toBe(
      "0a11" + "08ffffffffffffffffff01" + "10c08faedc03",
    );
    expect(toHex(encodeMessage(describeMessage(Times), { at: new Date(0) }))).toBe("0a00");
  });

  test("takes a Map for a map field, and numbers for 64-bit integers", () => {
    const maps = describeMessage(Maps);
    const bytes = encodeMessage(maps, {
      int32: new Map([
        [1, "a"],
        [-2, "b"],
      ]),
      int64: new Map([[INT64_MIN, "min"]]),
      bool: new Map([[true, "yes"]]),
      counts: { n: -5, big: 2 ** 53 },
    });
    const decoded = decodeMessage(maps, bytes);
    expect({ ...(decoded.int32 as object) }).toEqual({ "1": "a", "-2": "b" });
    expect({ ...(decoded.int64 as object) }).toEqual({ [String(INT64_MIN)]: "min" });
    expect({ ...(decoded.bool as object) }).toEqual({ true: "yes" });
    expect({ ...(decoded.counts as object) }).toEqual({ n: -5n, big: 2n ** 53n });
    const numbers = encodeMessage(scalars, {
      int64: -1,
      uint64: 2 ** 64 - 2 ** 11,
      fixed64: 2 ** 40,
      sfixed64: -(2 ** 63),
    });
    expect(decodeMessage(scalars, numbers)).toEqual({
      int64: -1n,
      uint64: 2n ** 64n - 2n ** 11n,
      fixed64: 2n ** 40n,
      sfixed64: INT64_MIN,
    });
  });

  test("a map key named __proto__ stays a key", () => {
    const maps = describeMessage(Maps);
    const string = Object.defineProperty({}, "__proto__", { value: "x", enumerable: true });
    const decoded = decodeMessage(maps, encodeMessage(maps, { string })).string as Record<string, string>;
    expect(Object.keys(decoded)).toEqual(["__proto__"]);
    expect(Object.getOwnPropertyDescriptor(decoded, "__proto__")?.value).toBe("x");
  });

  test("encodes class instances, and a getter that encodes meanwhile does not disturb it", () => {
    const item = describeMessage(Item);
    const inner: string[] = [];
    const value = {
      get name() {
        inner.push(toHex(encodeMessage(item, { name: "in", quantity: 1 })));
        return "out";
      },
      quantity: 2,
    };
    expect(toHex(encodeMessage(item, value))).toBe("0a036f75741002");
    expect(inner).toEqual(["0a02696e1001", "0a02696e1001"]);
    const instance = readMessage<Item>(item, { name: "x", quantity: 5 });
    expect(decodeMessage(item, encodeMessage(item, instance))).toEqual({ name: "x", quantity: 5 });
  });

  describe("a value of the wrong type throws what writeMessage throws", () => {
    const cases: [string, Constructor, unknown][] = [
      ["a string in an int32", Scalars, { int32: "1" }],
      ["a fraction in an int32", Scalars, { int32: 1.5 }],
      ["an int32 out of range", Scalars, { int32: 2 ** 31 }],
      ["a negative uint32", Scalars, { uint32: -1 }],
      ["a fixed32 out of range", Scalars, { fixed32: 2 ** 32 }],
      ["a string in an int64", Scalars, { int64: "5" }],
      ["a fraction in an int64", Scalars, { int64: 1.5 }],
      ["an int64 out of range", Scalars, { int64: 2n ** 63n }],
      ["an int64 number out of range", Scalars, { sint64: 2 ** 63 }],
      ["a negative uint64", Scalars, { uint64: -1n }],
      ["a uint64 out of range", Scalars, { fixed64: 2n ** 64n }],
      ["a float out of range", Scalars, { float: 3.5e38 }],
      ["a string in a double", Scalars, { double: "1" }],
      ["a number in a bool", Scalars, { bool: 1 }],
      ["a number in a string", Scalars, { string: 5 }],
      ["a string in bytes", Scalars, { bytes: "AAEC" }],
      ["a name in an enum", Scalars, { color: "RED" }],
      ["a non-array in a repeated field", Lists, { int32: 5 }],
      ["null in a list", Lists, { int32: [1, null] }],
      ["a bad field in a list of messages", Lists, { items: [{}, { name: 5 }] }],
      ["a non-object in a map", Maps, { string: 5 }],
      ["a bad value in a map", Maps, { items: { k: 5 } }],
      ["a bad value in a Map", Maps, { counts: new Map([["k", "5"]]) }],
      ["a non-object in a message field", Tree, { child: "x" }],
      ["a bad field deep down", Tree, { child: { children: [{ child: { name: false } }] } }],
      ["a string in a timestamp", Times, { at: "2024-01-01T00:00:00Z" }],
      ["an invalid Date", Times, { at: new Date(Number.NaN) }],
    ];
    test.each(cases)("%s", (_name, type, value) => {
      const details = badOutput(type, value).details;
      let expected: unknown;
      try {
        writeMessage(describeMessage(type), value);
      } catch (error) {
        expected = (error as GantryError).details;
      }
      expect(details).toEqual(expected);
    });

    test("a root that is not an object", () => {
      expect(badOutput(Item, "x").details).toEqual({ field: "", problem: "is not an object" });
      expect(badOutput(Item, null).details).toEqual({ field: "", problem: "is not an object" });
    });
  });

  test("a value the binary format cannot carry throws GANTRY_ERR_BAD_OUTPUT", () => {
    expect(badOutput(Maps, { int32: { abc: "x" } }).details).toEqual({
      field: 'int32["abc"]',
      problem: "key must be an integer",
    });
    expect(badOutput(Maps, { uint32: { "-1": "x" } }).details).toEqual({
      field: 'uint32["-1"]',
      problem: "key must be between 0 and 4294967295",
    });
    expect(badOutput(Maps, { int64: { [String(2n ** 63n)]: "x" } }).details).toEqual({
      field: `int64["${2n ** 63n}"]`,
      problem: `key must be between ${INT64_MIN} and ${INT64_MAX}`,
    });
    expect(badOutput(Maps, { bool: { yes: "x" } }).details).toEqual({
      field: 'bool["yes"]',
      problem: "key must be true or false",
    });
    expect(badOutput(Scalars, { color: 1.5 }).details).toEqual({
      field: "color",
      problem: "is not an enum number (an int32)",
    });
    expect(badOutput(Times, { list: [new Date(0), new Date("+010000-01-01T00:00:00Z")] }).details).toEqual({
      field: "list[1]",
      problem: "is outside 0001-01-01 to 9999-12-31",
    });
    const loop: Record<string, unknown> = { name: "loop" };
    loop.child = loop;
    const error = badOutput(Tree, loop);
    expect(error.details.problem).toBe("nests deeper than 64 messages");
    expect(error.details.field).toBe(Array(64).fill("child").join("."));
  });

  test("a value that changes between measuring and writing throws GANTRY_ERR_BAD_OUTPUT", () => {
    let reads = 0;
    const shifty = {
      get bytes() {
        return new Uint8Array(reads++ === 0 ? 1 : 5);
      },
    };
    expect(badOutput(Scalars, shifty).details).toEqual({ field: "", problem: "changed while it was being encoded" });
  });

  test("names the method when given one", () => {
    try {
      encodeMessage(describeMessage(Item), { name: 1 }, "Shop.GetItem");
      expect.unreachable();
    } catch (error) {
      expect((error as GantryError).message).toBe("Shop.GetItem returned an invalid Item");
    }
  });
});

describe("decodeMessage", () => {
  test("leaves out the fields absent on the wire, for readMessage to fill", () => {
    expect(Object.keys(decodeMessage(describeMessage(Scalars), new Uint8Array(0)))).toEqual([]);
    expect(Object.keys(decodeMessage(describeMessage(Lists), new Uint8Array(0)))).toEqual([]);
    const message = readMessage<Scalars>(describeMessage(Scalars), decode(Scalars, hex("1805")));
    expect(message).toBeInstanceOf(Scalars);
    expect(message.int32).toBe(5);
    expect(message.int64).toBe(0n);
    expect(message.string).toBe("");
  });

  test("skips unknown fields of every wire type, groups included", () => {
    const bytes = [
      ...[0x48, 0x96, 0x01], // field 9 of Item: varint
      ...[0x51, 1, 2, 3, 4, 5, 6, 7, 8], // field 10: fixed64
      ...record(11, [1, 2, 3]),
      ...[0x63, 0x6b, 0x08, 0x01, 0x6c, 0x6d, 0x01, 0x02, 0x03, 0x04, 0x64], // field 12: a group holding a group
      ...[0x6d, 1, 2, 3, 4], // field 13: fixed32
      ...record(1, [0x61]),
      ...[0xf8, 0xff, 0xff, 0xff, 0x0f, 0x01], // the largest field number
    ];
    expect(decode(Item, bytes)).toEqual({ name: "a" });
  });

  test("reads packed and unpacked records of the same repeated field", () => {
    expect(decode<Lists>(Lists, hex("1801 1a02 0203 1804")).int32).toEqual([1, 2, 3, 4]);
    expect(decode<Lists>(Lists, hex("4a08 01000000 02000000 4d03000000")).fixed32).toEqual([1, 2, 3]);
    expect(decode<Lists>(Lists, hex("8201 00")).color).toEqual([]);
  });

  test("takes the last value of a singular field and merges a repeated message", () => {
    expect(decode<Scalars>(Scalars, hex("1801 1802")).int32).toBe(2);
    expect(decode<Scalars>(Scalars, hex("7201 61 7201 62")).string).toBe("b");
    const tree = decode<Tree>(Tree, [
      ...record(2, [...record(1, [0x61]), ...record(3, [])]),
      ...record(2, [...record(3, [...record(1, [0x62])]), ...record(2, [])]),
    ]);
    expect(tree).toEqual({ child: { name: "a", children: [{}, { name: "b" }], child: {} } });
    const times = decode<Times>(Times, [...record(1, [0x08, 0x05]), ...record(1, [0x10, ...varint(1_000_000n)])]);
    expect(times.at?.getTime()).toBe(5001);
  });

  test("gives map entries without a key or value the defaults", () => {
    const maps = decode<Maps>(Maps, [
      ...record(12, []),
      ...record(12, record(1, [0x6b])),
      ...record(1, [0x12, 0x00]),
      ...record(11, []),
      ...record(13, record(1, [0x6b])),
      ...record(15, []),
      ...record(16, []),
      ...record(17, [0x0a, 0x00]),
      ...record(12, [...record(2, [0x76]), ...record(1, [0x6b])]),
    ]);
    expect({ ...maps.string }).toEqual({ "": "", k: "v" });
    expect({ ...maps.int32 }).toEqual({ "0": "" });
    expect({ ...maps.bool }).toEqual({ false: "" });
    expect({ ...maps.items }).toEqual({ k: {} });
    expect({ ...maps.blobs }).toEqual({ "": new Uint8Array(0) });
    expect({ ...maps.times }).toEqual({ "": new Date(0) });
    expect({ ...maps.counts }).toEqual({ "": 0n });
  });

  test("keeps enum numbers the enum does not name", () => {
    expect(decode<Scalars>(Scalars, hex("8001 07")).color).toBe(7);
    expect(decode<Scalars>(Scalars, [0x80, 0x01, ...varint(-7n)]).color).toBe(-7);
    expect(decode<Lists>(Lists, [0x82, 0x01, 0x0b, ...varint(-5n), 0x09]).color).toEqual([Color.BELOW, 9]);
  });

  test("takes the low 32 bits of a longer varint in a 32-bit field, as protobuf does", () => {
    expect(decode<Scalars>(Scalars, [0x18, ...varint(2n ** 32n + 5n)]).int32).toBe(5);
    expect(decode<Scalars>(Scalars, [0x28, ...varint(-1n)]).uint32).toBe(2 ** 32 - 1);
    expect(decode<Scalars>(Scalars, [0x68, ...varint(2n ** 40n)]).bool).toBe(true);
  });

  test("copies bytes out of the input", () => {
    const input = Buffer.from(encodeMessage(describeMessage(Scalars), { bytes: new Uint8Array([1, 2, 3]) }));
    const decoded = decode<Scalars>(Scalars, input);
    input.fill(0);
    expect(decoded.bytes).toEqual(new Uint8Array([1, 2, 3]));
    expect(decoded.bytes?.buffer).not.toBe(input.buffer);
  });

  test("drops nanoseconds below a millisecond", () => {
    const times = decode<Times>(Times, record(1, [0x08, 0x01, 0x10, ...varint(1_999_999n)]));
    expect(times.at?.getTime()).toBe(1001);
  });

  test("reads messages 64 deep, the outermost included, as readMessage does", () => {
    let bytes: number[] = [];
    for (let i = 0; i < 63; i++) bytes = record(2, bytes);
    const tree = describeMessage(Tree);
    const message = readMessage<Tree>(tree, decodeMessage(tree, new Uint8Array(bytes)));
    expect(message.child?.child).toBeInstanceOf(Tree);
    expect(malformed(Tree, record(2, bytes))).toBe(
      `${Array(64).fill("child").join(".")}: nests deeper than 64 messages`,
    );
  });

  describe("malformed bytes throw GANTRY_ERR_MALFORMED_PROTOBUF with the reason and the field", () => {
    const cases: [string, Constructor, number[] | Uint8Array, string][] = [
      ["a truncated varint", Scalars, hex("1896"), "int32: varint is cut off by the end of the message"],
      ["a truncated tag", Scalars, hex("80"), "varint is cut off by the end of the message"],
      [
        "a varint over 10 bytes",
        Scalars,
        [0x20, ...Array(10).fill(0xff), 0x01],
        "int64: varint is longer than 10 bytes",
      ],
      ["a tag over 32 bits", Scalars, hex("ffffffff7f"), "tag is longer than 32 bits"],
      ["field number 0", Scalars, hex("0001"), "field number 0 is not allowed (tag 0)"],
      [
        "a length past the end",
        Scalars,
        hex("7205 6162"),
        "string: length 5 runs past the end of the message (2 bytes left)",
      ],
      [
        "a 64-bit length",
        Scalars,
        [0x7a, ...varint(2n ** 40n)],
        "bytes: length 1099511627776 runs past the end of the message (0 bytes left)",
      ],
      ["a truncated double", Scalars, hex("090000"), "double: 64-bit value is cut off by the end of the message"],
      ["a truncated float", Scalars, hex("1500"), "float: 32-bit value is cut off by the end of the message"],
      ["a wire type mismatch", Scalars, hex("7001"), "string: has wire type 0, but string uses wire type 2"],
      ["a mismatch on a message", Tree, hex("1001"), "child: has wire type 0, but message Tree uses wire type 2"],
      [
        "a mismatch on a repeated scalar",
        Lists,
        hex("1d00000000"),
        "int32: has wire type 5, but int32 uses wire type 0 or 2 (packed)",
      ],
      ["invalid UTF-8", Scalars, hex("7202 c328"), "string: is not valid UTF-8"],
      ["an overlong encoding", Scalars, hex("7202 c080"), "string: is not valid UTF-8"],
      ["a UTF-16 surrogate", Scalars, hex("7203 eda080"), "string: is not valid UTF-8"],
      ["a long invalid string", Scalars, [0x72, 20, ...Array(19).fill(0x61), 0xff], "string: is not valid UTF-8"],
      [
        "invalid UTF-8 in a list",
        Tree,
        [...record(3, []), ...record(3, record(1, [0xff]))],
        "children[1].name: is not valid UTF-8",
      ],
      [
        "invalid UTF-8 in a map value",
        Maps,
        record(13, [...record(1, [0x6b]), ...record(2, record(1, [0xff]))]),
        'items["k"].name: is not valid UTF-8',
      ],
      ["invalid UTF-8 in a map key", Maps, record(12, record(1, [0xff])), "string: map key: is not valid UTF-8"],
      [
        "a map key of the wrong wire type",
        Maps,
        record(1, [0x0d, 0, 0, 0, 0]),
        "int32: map key: has wire type 5, but int32 uses wire type 0",
      ],
      [
        "a truncated map entry",
        Maps,
        record(12, [0x0a, 0x05]),
        "string: map key: length 5 runs past the end of the message (0 bytes left)",
      ],
      [
        "a packed run not of whole values",
        Lists,
        hex("4a03 010203"),
        "fixed32: packed run of 3 bytes is not a whole number of 4-byte values",
      ],
      ["a packed varint cut off", Lists, hex("1a02 0180"), "int32[1]: varint is cut off by the end of the message"],
      ["a wire type that does not exist", Scalars, hex("f601"), "field 30: wire type 6 does not exist"],
      ["wire type 7", Item, hex("1f"), "field 3: wire type 7 does not exist"],
      ["an end-group tag alone", Scalars, hex("f401"), "field 30: end-group tag without a start-group tag"],
      ["a group never ended", Scalars, hex("f301 0801"), "field 30: group has no end-group tag"],
      [
        "a group ended by another field",
        Scalars,
        hex("f301 fc01"),
        "field 30: group ends with the end-group tag of field 31",
      ],
      [
        "a group where a message is expected",
        Tree,
        hex("13 14"),
        "child: has wire type 3, but message Tree uses wire type 2",
      ],
      ["a truncated unknown field", Item, hex("1d0102"), "field 3: 32-bit value is cut off by the end of the message"],
      [
        "timestamp seconds after 9999",
        Times,
        record(1, [0x08, ...varint(253_402_300_800n)]),
        "at: timestamp seconds 253402300800 are outside 0001-01-01 to 9999-12-31",
      ],
      [
        "timestamp seconds before year 1",
        Times,
        record(1, [0x08, ...varint(-62_135_596_801n)]),
        "at: timestamp seconds -62135596801 are outside 0001-01-01 to 9999-12-31",
      ],
      [
        "timestamp seconds far out of range",
        Times,
        record(1, [0x08, ...varint(INT64_MIN)]),
        `at: timestamp seconds ${INT64_MIN} are outside 0001-01-01 to 9999-12-31`,
      ],
      [
        "negative timestamp nanos",
        Times,
        record(1, [0x10, ...varint(-1n)]),
        "at: timestamp nanos -1 are outside 0 to 999999999",
      ],
      [
        "timestamp nanos of a whole second",
        Times,
        record(2, [0x10, ...varint(1_000_000_000n)]),
        "list[0]: timestamp nanos 1000000000 are outside 0 to 999999999",
      ],
      [
        "timestamp seconds of the wrong wire type",
        Times,
        record(1, [0x0d, 0, 0, 0, 0]),
        "at: timestamp seconds has wire type 5, not 0",
      ],
      [
        "groups nested too deep",
        Item,
        [...Array(70).fill(0x1b), ...Array(70).fill(0x1c)],
        "field 3: nests deeper than 64 messages and groups",
      ],
    ];
    test.each(cases)("%s", (_name, type, bytes, reason) => {
      expect(malformed(type, bytes)).toBe(reason);
    });
  });

  test("fuzz: any bytes either decode or throw GANTRY_ERR_MALFORMED_PROTOBUF", () => {
    const random = mulberry32(20_240_501);
    const pick = (n: number) => Math.floor(random() * n);
    const types: Constructor[] = [Scalars, Lists, Maps, Optionals, Tree, Times, Rich];
    const seeds: [Constructor, Uint8Array][] = [
      [Rich, encodeMessage(describeMessage(Rich), RICH_VALUE)],
      [
        Lists,
        encodeMessage(describeMessage(Lists), { int32: [1, -1, 300], string: ["a", "é"], items: [{ name: "x" }] }),
      ],
      [
        Maps,
        encodeMessage(describeMessage(Maps), {
          int64: { "-1": "x" },
          items: { a: { name: "b" } },
          times: { t: new Date(-1) },
        }),
      ],
      [
        Tree,
        encodeMessage(describeMessage(Tree), { name: "r", child: { child: { name: "c" } }, children: [{ name: "x" }] }),
      ],
    ];
    let decoded = 0;
    for (let i = 0; i < 2000; i++) {
      let type = types[pick(types.length)];
      let bytes: Uint8Array;
      if (i % 4 === 0) {
        bytes = new Uint8Array(pick(48)).map(() => pick(256));
      } else {
        // A valid message with one to three random edits, read mostly as its own type.
        const [seedType, seed] = seeds[i % seeds.length];
        if (i % 4 !== 1) type = seedType;
        const mutated = [...seed];
        for (let edits = 1 + pick(3); edits > 0; edits--) {
          const at = pick(mutated.length);
          const kind = pick(10);
          if (kind < 4) mutated[at] = pick(256);
          else if (kind < 8) mutated[at] ^= 1 << pick(8);
          else if (kind < 9) mutated.splice(at, 0, pick(256));
          else mutated.length = at;
        }
        bytes = new Uint8Array(mutated);
      }
      const descriptor = describeMessage(type);
      let message: Record<string, unknown>;
      try {
        message = decodeMessage(descriptor, bytes);
      } catch (error) {
        expect(error, `bytes ${toHex(bytes)} as ${descriptor.name}`).toBeInstanceOf(GantryError);
        expect((error as GantryError).code).toBe("GANTRY_ERR_MALFORMED_PROTOBUF");
        continue;
      }
      decoded++;
      // What decodes, readMessage takes or rejects with a validation error (unknown enum numbers).
      try {
        readMessage(descriptor, message);
      } catch (error) {
        expect((error as GantryError).code, `bytes ${toHex(bytes)} as ${descriptor.name}`).toBe(
          "GANTRY_ERR_VALIDATION",
        );
      }
    }
    // Both outcomes occur often: the loop reaches past the decoder's first checks.
    expect(decoded).toBeGreaterThan(100);
    expect(decoded).toBeLessThan(1800);
  });
});

const RICH_VALUE: Rich = {
  name: "Zoë 日本",
  id: INT64_MIN,
  ratio: -0.1,
  weight: 1.5,
  delta: -(2 ** 31),
  big: UINT64_MAX,
  stamp: 1_234_567_890_123n,
  offset: -7,
  active: true,
  data: new Uint8Array([0, 1, 255]),
  color: Color.BELOW,
  item: { name: "nested", quantity: -1 },
  scores: [1, -1, 300],
  tags: ["", "b"],
  items: [{ name: "x" } as Item, { quantity: 2 } as Item],
  labels: { z: 1, a: -2 },
  byId: { "-5": { name: "neg" } as Item, [String(INT64_MAX)]: {} as Item },
  at: new Date("1969-07-20T20:17:40.123Z"),
  retries: 0,
  // 7 is not in the enum: proto3 enums are open.
  colors: [Color.RED, Color.GREEN, 7 as Color],
};

const RICH_PROTO = `
syntax = "proto3";
package test;
import "google/protobuf/timestamp.proto";
enum Color { COLOR_UNSPECIFIED = 0; RED = 1; GREEN = 2; BELOW = -5; }
message Item { string name = 1; int32 quantity = 2; }
message Rich {
  string name = 1; int64 id = 2; double ratio = 3; float weight = 4; sint32 delta = 5; uint64 big = 6;
  fixed64 stamp = 7; sfixed32 offset = 8; bool active = 9; bytes data = 10; Color color = 11; Item item = 12;
  repeated int32 scores = 13; repeated string tags = 14; repeated Item items = 15; map<string, int32> labels = 16;
  map<int64, Item> by_id = 17; google.protobuf.Timestamp at = 18; optional int32 retries = 19;
  repeated Color colors = 20;
}
`;

/** RICH_VALUE as protoc prints it (map entries sorted by key). */
const RICH_TEXT = `name: "Zo\\303\\253 \\346\\227\\245\\346\\234\\254"
id: -9223372036854775808
ratio: -0.1
weight: 1.5
delta: -2147483648
big: 18446744073709551615
stamp: 1234567890123
offset: -7
active: true
data: "\\000\\001\\377"
color: BELOW
item {
  name: "nested"
  quantity: -1
}
scores: 1
scores: -1
scores: 300
tags: ""
tags: "b"
items {
  name: "x"
}
items {
  quantity: 2
}
labels {
  key: "a"
  value: -2
}
labels {
  key: "z"
  value: 1
}
by_id {
  key: -5
  value {
    name: "neg"
  }
}
by_id {
  key: 9223372036854775807
  value {
  }
}
at {
  seconds: -14182940
  nanos: 123000000
}
retries: 0
colors: RED
colors: GREEN
colors: 7
`;

describe("encodeMessage and decodeMessage against protoc", () => {
  test("protoc reads what we write and we read what it writes", () => {
    const rich = describeMessage(Rich);
    const dir = mkdtempSync(join(tmpdir(), "gantry-codec-"));
    try {
      writeFileSync(join(dir, "rich.proto"), RICH_PROTO);
      const protoc = (mode: string, input: Uint8Array | string) =>
        execFileSync("protoc", [`-I${dir}`, "-I/usr/include", `--${mode}=test.Rich`, "rich.proto"], {
          cwd: dir,
          input,
        });
      expect(protoc("decode", encodeMessage(rich, RICH_VALUE)).toString()).toBe(RICH_TEXT);
      const bytes = protoc("encode", RICH_TEXT);
      expect(plain(rich, decodeMessage(rich, bytes))).toEqual(plain(rich, RICH_VALUE));
      const message = readMessage<Rich>(rich, { ...decodeMessage(rich, bytes), colors: [1, 2] });
      expect(message.at).toEqual(new Date("1969-07-20T20:17:40.123Z"));
      expect(message.byId["-5"]).toEqual({ name: "neg", quantity: 0 });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

/** A small seeded generator, so that the fuzz loop runs the same bytes every time. */
function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}
