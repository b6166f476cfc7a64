import { describe, expect, test } from "vitest";
import {
  describeMessage,
  Field,
  type FieldViolation,
  GantryError,
  Message,
  readMessage,
  registerEnum,
  writeMessage,
} from "../src/index.js";

enum Color {
  COLOR_UNSPECIFIED = 0,
  RED = 1,
  GREEN = 2,
}
registerEnum(Color, "Color");

@Message()
class Item {
  @Field(1, { minLength: 1 }) name!: string;
  @Field(2, { type: "int32" }) quantity!: number;
}

@Message()
class Node {
  @Field(1) name!: string;
  @Field(2, { type: () => Node }) child?: Node;
}

@Message()
class Everything {
  @Field(1, { type: "int32" }) i32!: number;
  @Field(2, { type: "uint32" }) u32!: number;
  @Field(3, { type: "int64" }) i64!: bigint;
  @Field(4, { type: "uint64" }) u64!: bigint;
  @Field(5, { type: "float" }) f32!: number;
  @Field(6) f64!: number;
  @Field(7) flag!: boolean;
  @Field(8) text!: string;
  @Field(9) data!: Uint8Array;
  @Field(10, { enum: Color }) color!: Color;
  @Field(11) item?: Item;
  @Field(12, { type: Item, repeated: true }) items!: Item[];
  @Field(13, { map: { key: "string", value: "int32" } }) labels!: Record<string, number>;
  @Field(14, { optional: true }) nickname?: string;
  @Field(15) createdAt?: Date;
  @Field(16, { type: "string", repeated: true }) tags!: string[];
  @Field(17, { map: { key: "int32", value: Item } }) byId!: Record<string, Item>;
  @Field(18, { type: "int64", optional: true }) maybeCount?: bigint;
  @Field(19, { map: { key: "string", value: Item } }) attrs!: Record<string, Item>;
}

const everything = describeMessage(Everything);
const read = (value: unknown) => readMessage<Everything>(everything, value);

/** The error readMessage throws for this input. */
function readError(value: unknown, descriptor = everything): GantryError {
  try {
    readMessage(descriptor, value);
  } catch (error) {
    expect(error).toBeInstanceOf(GantryError);
    return error as GantryError;
  }
  throw new Error("readMessage accepted the input");
}

/** The violations readMessage reports for this input. */
const violations = (value: unknown, descriptor = everything): readonly FieldViolation[] =>
  readError(value, descriptor).violations;

/** The one violation of a field. */
const violation = (value: unknown, field: string) => {
  const found = violations(value).filter((v) => v.field === field);
  expect(found, `violations of ${field}`).toHaveLength(1);
  return found[0].description;
};

function writeError(value: unknown, method?: string): GantryError {
  try {
    writeMessage(everything, value, method);
  } catch (error) {
    expect(error).toBeInstanceOf(GantryError);
    return error as GantryError;
  }
  throw new Error("writeMessage accepted the value");
}

describe("readMessage", () => {
  test("fills the defaults of absent singular scalars and leaves the rest unset", () => {
    const message = read({});
    expect(message).toBeInstanceOf(Everything);
    expect(message.i32).toBe(0);
    expect(message.u32).toBe(0);
    expect(message.i64).toBe(0n);
    expect(message.u64).toBe(0n);
    expect(message.f32).toBe(0);
    expect(message.f64).toBe(0);
    expect(message.flag).toBe(false);
    expect(message.text).toBe("");
    expect(message.data).toEqual(new Uint8Array(0));
    expect(message.color).toBe(Color.COLOR_UNSPECIFIED);
    expect(message.items).toEqual([]);
    expect(message.tags).toEqual([]);
    expect(Object.keys(message.labels)).toEqual([]);
    expect(Object.keys(message.byId)).toEqual([]);
    for (const unset of ["item", "nickname", "createdAt", "maybeCount"]) {
      expect(Object.hasOwn(message, unset), unset).toBe(false);
    }
  });

  test("treats null and undefined input as an empty message and rejects a non-object", () => {
    expect(read(null).text).toBe("");
    expect(read(undefined).i64).toBe(0n);
    for (const value of ["text", 5, [], true]) {
      expect(violations(value)).toEqual([{ field: "", description: "must be a JSON object (a Everything)" }]);
    }
  });

  test("null for a singular field means its default", () => {
    const message = read({ text: null, i64: null, item: null, nickname: null, items: null, labels: null });
    expect(message.text).toBe("");
    expect(message.i64).toBe(0n);
    expect(message.items).toEqual([]);
    expect(Object.hasOwn(message, "item")).toBe(false);
    expect(Object.hasOwn(message, "nickname")).toBe(false);
  });

  describe("32-bit integers", () => {
    test.each([
      [2_147_483_647, 2_147_483_647],
      [-2_147_483_648, -2_147_483_648],
      ["12", 12],
      ["-7", -7],
      ["1e3", 1000],
      [5.0, 5],
    ])("int32 reads %j as %d", (raw, value) => {
      expect(read({ i32: raw }).i32).toBe(value);
    });

    test.each([2_147_483_648, -2_147_483_649, "2147483648"])("int32 rejects %j as out of range", (raw) => {
      expect(violation({ i32: raw }, "i32")).toBe("must be between -2147483648 and 2147483647");
    });

    test.each([1.5, "1.5", "abc", "", true, {}, [], Number.NaN, Number.POSITIVE_INFINITY, "0x10", " 1"])(
      "int32 rejects %j as not an integer",
      (raw) => {
        expect(violation({ i32: raw }, "i32")).toBe("must be an integer");
      },
    );

    test("uint32 takes 0 to 2^32 - 1", () => {
      expect(read({ u32: 4_294_967_295 }).u32).toBe(4_294_967_295);
      expect(read({ u32: "0" }).u32).toBe(0);
      expect(violation({ u32: -1 }, "u32")).toBe("must be between 0 and 4294967295");
      expect(violation({ u32: 4_294_967_296 }, "u32")).toBe("must be between 0 and 4294967295");
    });
  });

  describe("64-bit integers", () => {
    test.each([
      ["9223372036854775807", 9_223_372_036_854_775_807n],
      ["-9223372036854775808", -9_223_372_036_854_775_808n],
      ["42", 42n],
      [42, 42n],
      [-42, -42n],
      [Number.MAX_SAFE_INTEGER, 9_007_199_254_740_991n],
      [7n, 7n],
      ["1e3", 1000n],
    ])("int64 reads %s as a bigint", (raw, value) => {
      expect(read({ i64: raw }).i64).toBe(value);
    });

    test.each(["9223372036854775808", "-9223372036854775809", 1e19])("int64 rejects %j as out of range", (raw) => {
      expect(violation({ i64: raw }, "i64")).toBe("must be between -9223372036854775808 and 9223372036854775807");
    });

    test.each([1.5, "1.5", "abc", "", true, {}, "0x10"])("int64 rejects %j as not an integer", (raw) => {
      expect(violation({ i64: raw }, "i64")).toBe("must be an integer (as a string or number)");
    });

    test("uint64 takes 0 to 2^64 - 1", () => {
      expect(read({ u64: "18446744073709551615" }).u64).toBe(18_446_744_073_709_551_615n);
      expect(violation({ u64: "-1" }, "u64")).toBe("must be between 0 and 18446744073709551615");
      expect(violation({ u64: "18446744073709551616" }, "u64")).toBe("must be between 0 and 18446744073709551615");
    });
  });

  describe("floating point", () => {
    test("float takes up to its largest finite value", () => {
      expect(read({ f32: 3.4e38 }).f32).toBe(3.4e38);
      expect(read({ f32: -3.4e38 }).f32).toBe(-3.4e38);
      expect(read({ f32: "1.5" }).f32).toBe(1.5);
      expect(violation({ f32: 3.5e38 }, "f32")).toBe("is out of range");
      expect(violation({ f32: "-3.5e38" }, "f32")).toBe("is out of range");
    });

    test("double takes any finite number and the names of the special values", () => {
      expect(read({ f64: 1e300 }).f64).toBe(1e300);
      expect(read({ f64: "-2.5e-3" }).f64).toBe(-0.0025);
      expect(read({ f64: "NaN" }).f64).toBeNaN();
      expect(read({ f64: "Infinity" }).f64).toBe(Number.POSITIVE_INFINITY);
      expect(read({ f64: "-Infinity" }).f64).toBe(Number.NEGATIVE_INFINITY);
      expect(read({ f32: "Infinity" }).f32).toBe(Number.POSITIVE_INFINITY);
    });

    test("double takes the special values as JavaScript numbers, from in-process callers", () => {
      expect(read({ f64: Number.NaN }).f64).toBeNaN();
      expect(read({ f64: Number.NEGATIVE_INFINITY }).f64).toBe(Number.NEGATIVE_INFINITY);
    });

    test.each(["abc", "", "nan", "inf", true, "1,5", {}])("rejects %j as not a number", (raw) => {
      expect(violation({ f64: raw }, "f64")).toBe("must be a number");
    });
  });

  test("bool takes true and false, also as text (bound from a URL)", () => {
    expect(read({ flag: true }).flag).toBe(true);
    expect(read({ flag: "true" }).flag).toBe(true);
    expect(read({ flag: "false" }).flag).toBe(false);
    for (const raw of ["yes", 1, 0, "TRUE", ""]) {
      expect(violation({ flag: raw }, "flag")).toBe("must be true or false");
    }
  });

  test("string takes well-formed text only", () => {
    expect(read({ text: "héllo 😀" }).text).toBe("héllo 😀");
    expect(violation({ text: "bad \uD800 surrogate" }, "text")).toBe("must be valid Unicode text");
    expect(violation({ text: "\uDC00" }, "text")).toBe("must be valid Unicode text");
    expect(violation({ text: 5 }, "text")).toBe("must be a string");
  });

  describe("bytes", () => {
    test("reads base64, standard and URL-safe", () => {
      expect(read({ data: "aGVsbG8=" }).data).toEqual(new Uint8Array([104, 101, 108, 108, 111]));
      expect(read({ data: "aGVsbG8" }).data).toEqual(new Uint8Array([104, 101, 108, 108, 111]));
      expect(read({ data: "-_8=" }).data).toEqual(new Uint8Array([251, 255]));
      expect(read({ data: "+/8=" }).data).toEqual(new Uint8Array([251, 255]));
      expect(read({ data: "" }).data).toEqual(new Uint8Array(0));
    });

    test.each(["not base64!", "aGVs bG8=", "a=b", 5])("rejects %j", (raw) => {
      expect(violation({ data: raw }, "data")).toBe("must be base64 text");
    });

    test("copies a Uint8Array given in-process", () => {
      const given = new Uint8Array([1, 2, 3]);
      const data = read({ data: given }).data;
      expect(data).toEqual(new Uint8Array([1, 2, 3]));
      given[0] = 9;
      expect(data[0]).toBe(1);
    });

    test("copies a Buffer given in-process into a plain Uint8Array", () => {
      const given = Buffer.from([1, 2, 3]);
      const data = read({ data: given }).data;
      given[0] = 9;
      expect(data[0]).toBe(1);
      expect(Buffer.isBuffer(data)).toBe(false);
      expect(data).toEqual(new Uint8Array([1, 2, 3]));
    });
  });

  describe("enums", () => {
    test("reads a name or a known number", () => {
      expect(read({ color: "RED" }).color).toBe(Color.RED);
      expect(read({ color: 2 }).color).toBe(Color.GREEN);
      expect(read({ color: "COLOR_UNSPECIFIED" }).color).toBe(0);
    });

    test.each(["PURPLE", "red", "1", true, 1.5, 2 ** 31])("rejects %j", (raw) => {
      expect(violation({ color: raw }, "color")).toBe("must be one of COLOR_UNSPECIFIED, RED, GREEN");
    });

    test.each([7, -1])("keeps %j, a number the enum does not name (enums are open, as in proto3)", (raw) => {
      expect(read({ color: raw }).color).toBe(raw);
    });
  });

  describe("messages", () => {
    test("reads a nested message as an instance of its class", () => {
      const message = read({ item: { name: "bolt", quantity: "3" } });
      expect(message.item).toBeInstanceOf(Item);
      expect(message.item).toEqual(Object.assign(new Item(), { name: "bolt", quantity: 3 }));
    });

    test("rejects a nested value that is not an object", () => {
      expect(violation({ item: "bolt" }, "item")).toBe("must be an object (a Item)");
      expect(violation({ item: [] }, "item")).toBe("must be an object (a Item)");
    });

    test("reads recursive messages declared with type: () => Node", () => {
      const tree = readMessage<Node>(describeMessage(Node), { name: "a", child: { name: "b", child: { name: "c" } } });
      expect(tree.child?.child?.name).toBe("c");
      expect(tree.child?.child).toBeInstanceOf(Node);
      expect(Object.hasOwn(tree.child?.child ?? {}, "child")).toBe(false);
      expect(describeMessage(Node).fields[1].value).toEqual({ kind: "message", message: describeMessage(Node) });
    });

    test("stops at 64 levels of nesting", () => {
      const nest = (levels: number): Record<string, unknown> => {
        let node: Record<string, unknown> = { name: "leaf" };
        for (let i = 1; i < levels; i++) node = { name: `n${i}`, child: node };
        return node;
      };
      expect(() => readMessage(describeMessage(Node), nest(64))).not.toThrow();
      const error = readError(nest(200), describeMessage(Node));
      expect(error.violations).toEqual([
        { field: Array(64).fill("child").join("."), description: "nests deeper than 64 messages" },
      ]);
      expect(error.code).toBe("GANTRY_ERR_VALIDATION");
    });
  });

  describe("repeated fields", () => {
    test("read every element", () => {
      const message = read({ tags: ["a", "b"], items: [{ name: "x" }, { name: "y", quantity: 2 }] });
      expect(message.tags).toEqual(["a", "b"]);
      expect(message.items.map((i) => i.name)).toEqual(["x", "y"]);
      expect(message.items[1]).toBeInstanceOf(Item);
    });

    test("reject a null element, a bad element and a value that is not a list", () => {
      expect(violations({ tags: ["a", null, 5], items: {} })).toEqual([
        { field: "items", description: "must be a list" },
        { field: "tags[1]", description: "must not be null" },
        { field: "tags[2]", description: "must be a string" },
      ]);
    });
  });

  describe("maps", () => {
    test("read into a null-prototype object", () => {
      const message = read({ labels: { a: 1, b: "2" }, byId: { "7": { name: "seven" } } });
      expect(Object.getPrototypeOf(message.labels)).toBeNull();
      expect({ ...message.labels }).toEqual({ a: 1, b: 2 });
      expect(message.byId["7"]).toBeInstanceOf(Item);
      expect(message.byId["7"].name).toBe("seven");
    });

    test('keep a "__proto__" key as a plain key, without touching Object.prototype', () => {
      const input = JSON.parse('{"labels":{"__proto__":7,"k":1},"attrs":{"__proto__":{"name":"x","polluted":true}}}');
      const message = read(input);
      expect(Object.entries(message.labels)).toEqual([
        ["__proto__", 7],
        ["k", 1],
      ]);
      expect(Object.getPrototypeOf(message.labels)).toBeNull();
      expect(Object.keys(message.attrs)).toEqual(["__proto__"]);
      expect(Object.values(message.attrs)[0]).toBeInstanceOf(Item);
      const plain: Record<string, unknown> = {};
      expect(plain.k).toBeUndefined();
      expect(plain.name).toBeUndefined();
      expect(plain.polluted).toBeUndefined();
      expect(Object.prototype).not.toHaveProperty("polluted");
    });

    test('a top-level "__proto__" key feeds no field', () => {
      const message = read(JSON.parse('{"__proto__":{"text":"evil","i32":5}}'));
      expect(message.text).toBe("");
      expect(message.i32).toBe(0);
      expect(({} as Record<string, unknown>).text).toBeUndefined();
    });

    test("check keys and values, naming the entry by its quoted key", () => {
      expect(violations({ labels: { k: "abc", ok: 1, nul: null }, byId: { x: { name: "a" }, "1.5": {} } })).toEqual([
        { field: 'labels["k"]', description: "must be an integer" },
        { field: 'labels["nul"]', description: "must not be null" },
        { field: 'byId["x"]', description: "key must be an integer" },
        { field: 'byId["1.5"]', description: "key must be an integer" },
      ]);
      expect(violation({ labels: ["a"] }, "labels")).toBe("must be an object (a map)");
      expect(violation({ labels: "a" }, "labels")).toBe("must be an object (a map)");
    });
  });

  describe("optional fields", () => {
    test("stay undefined when absent and keep a default value when set", () => {
      expect(Object.hasOwn(read({}), "nickname")).toBe(false);
      expect(read({ nickname: "" }).nickname).toBe("");
      expect(read({ maybeCount: "0" }).maybeCount).toBe(0n);
      expect(read({ maybeCount: "5" }).maybeCount).toBe(5n);
    });
  });

  describe("timestamps", () => {
    test.each([
      ["2024-05-01T12:00:00Z", "2024-05-01T12:00:00.000Z"],
      ["2024-05-01T14:30:00+02:30", "2024-05-01T12:00:00.000Z"],
      ["2024-05-01T07:00:00-05:00", "2024-05-01T12:00:00.000Z"],
      ["2024-05-01t12:00:00z", "2024-05-01T12:00:00.000Z"],
      ["2024-05-01T12:00:00.123456789Z", "2024-05-01T12:00:00.123Z"],
      ["2024-05-01T12:00:00.5Z", "2024-05-01T12:00:00.500Z"],
      ["2024-02-29T00:00:00Z", "2024-02-29T00:00:00.000Z"],
      ["0001-01-01T00:00:00Z", "0001-01-01T00:00:00.000Z"],
      ["9999-12-31T23:59:59.999999999Z", "9999-12-31T23:59:59.999Z"],
    ])("reads %s", (raw, iso) => {
      expect(read({ createdAt: raw }).createdAt?.toISOString()).toBe(iso);
    });

    test.each([
      "2024-05-01",
      "2024-05-01 12:00:00Z",
      "2024-05-01T12:00:00",
      "2024-05-01T12:00:00.1234567890Z",
      "2024-05-01T12:00:00+0200",
      "May 1, 2024",
    ])("rejects %j as not RFC 3339", (raw) => {
      expect(violation({ createdAt: raw }, "createdAt")).toBe(
        "must be an RFC 3339 timestamp such as 2024-05-01T12:00:00Z",
      );
    });

    test.each([
      "2024-13-01T00:00:00Z",
      "2024-02-30T00:00:00Z",
      "2023-02-29T00:00:00Z",
      "2024-04-31T00:00:00Z",
      "2024-05-01T24:00:00Z",
      "2024-05-01T12:60:00Z",
      "0000-01-01T00:00:00Z",
    ])("rejects %j as no real time", (raw) => {
      expect(violation({ createdAt: raw }, "createdAt")).toBe("must be a valid date between 0001 and 9999");
    });

    test("rejects a value that is not text", () => {
      expect(violation({ createdAt: 1_714_564_800_000 }, "createdAt")).toBe("must be an RFC 3339 timestamp string");
    });

    test("copies a Date given in-process and rejects an invalid one", () => {
      const given = new Date("2024-05-01T12:00:00Z");
      const read1 = read({ createdAt: given }).createdAt;
      expect(read1).not.toBe(given);
      expect(read1?.getTime()).toBe(given.getTime());
      expect(violation({ createdAt: new Date(Number.NaN) }, "createdAt")).toBe("must be a valid date");
    });
  });

  test("ignores unknown fields", () => {
    const message = read({ text: "a", extra: 1, nested: { deep: [1, 2] }, item: { name: "n", whatever: true } });
    expect(message.text).toBe("a");
    expect("extra" in message).toBe(false);
    expect("whatever" in (message.item as object)).toBe(false);
  });

  test("accepts the proto (snake_case) names, the JSON name winning when both are given", () => {
    const message = read({ created_at: "2024-05-01T12:00:00Z", maybe_count: "3", by_id: { "1": { name: "a" } } });
    expect(message.createdAt?.toISOString()).toBe("2024-05-01T12:00:00.000Z");
    expect(message.maybeCount).toBe(3n);
    expect(message.byId["1"].name).toBe("a");
    expect(read({ maybeCount: "1", maybe_count: "2" }).maybeCount).toBe(1n);
    expect(violation({ by_id: { x: {} } }, 'byId["x"]')).toBe("key must be an integer");
  });

  test("reports every bad field at once with its dotted path", () => {
    const error = readError({
      i32: 2 ** 31,
      text: 5,
      items: [{ name: "a" }, { name: "b" }, { name: "", quantity: 1.5 }],
      labels: { k: "x" },
      byId: { "3": { name: 4 } },
      createdAt: "yesterday",
    });
    expect(error.status).toBe("INVALID_ARGUMENT");
    expect(error.code).toBe("GANTRY_ERR_VALIDATION");
    expect(error.httpStatus).toBe(400);
    expect(error.violations).toEqual([
      { field: "i32", description: "must be between -2147483648 and 2147483647" },
      { field: "text", description: "must be a string" },
      { field: "items[2].name", description: "must be at least 1 character" },
      { field: "items[2].quantity", description: "must be an integer" },
      { field: 'labels["k"]', description: "must be an integer" },
      { field: "createdAt", description: "must be an RFC 3339 timestamp such as 2024-05-01T12:00:00Z" },
      { field: 'byId["3"].name', description: "must be a string" },
    ]);
    expect(error.message).toBe(
      "invalid Everything: i32 must be between -2147483648 and 2147483647; text must be a string; " +
        "items[2].name must be at least 1 character (and 4 more)",
    );
  });
});

@Message()
class Rules {
  @Field(1, { required: true }) name!: string;
  @Field(2, { type: "int32", min: 1, max: 10 }) small!: number;
  @Field(3, { type: "int64", min: 0n, max: 100n }) big!: bigint;
  @Field(4, { minLength: 2, maxLength: 3 }) code!: string;
  @Field(5, { pattern: /^[a-z]+$/g }) slug!: string;
  @Field(6, { type: "string", repeated: true, minItems: 1, maxItems: 2 }) tags!: string[];
  @Field(7, { validate: (value) => (String(value).endsWith("!") ? undefined : "must end with !") }) shout!: string;
  @Field(8, { required: true }) item?: Item;
  @Field(9, { map: { key: "string", value: "string" }, maxItems: 1 }) attrs!: Record<string, string>;
  @Field(10, { enum: Color, required: true }) color!: Color;
  @Field(11, { minLength: 3 }) three!: string;
  @Field(12, { type: "double", min: -1.5, max: 1.5 }) ratio!: number;
  @Field(13, { type: "string", repeated: true, maxLength: 2 }) codes!: string[];
}

const rules = describeMessage(Rules);
const valid = {
  name: "n",
  small: 5,
  big: "50",
  code: "ab",
  slug: "abc",
  tags: ["t"],
  shout: "hey!",
  item: { name: "i" },
  attrs: {},
  color: "RED",
  three: "abc",
  ratio: 0,
  codes: ["ab"],
};
/** The violations of the valid message with these fields changed; none when it is accepted. */
function ruleViolations(patch: Record<string, unknown>): readonly FieldViolation[] {
  try {
    readMessage(rules, { ...valid, ...patch });
    return [];
  } catch (error) {
    expect(error).toBeInstanceOf(GantryError);
    return (error as GantryError).violations;
  }
}

describe("validation rules", () => {
  test("a valid message passes", () => {
    expect(readMessage<Rules>(rules, valid).big).toBe(50n);
  });

  test("required: a default, an empty message or a zero enum is missing", () => {
    expect(ruleViolations({ name: "", item: undefined, color: 0 })).toEqual([
      { field: "name", description: "is required" },
      { field: "item", description: "is required" },
      { field: "color", description: "is required" },
    ]);
    expect(ruleViolations({ name: undefined })).toEqual([{ field: "name", description: "is required" }]);
  });

  test("required: a value of the wrong type is reported once, as a wrong type", () => {
    expect(ruleViolations({ name: 5 })).toEqual([{ field: "name", description: "must be a string" }]);
  });

  test("min and max, for numbers and bigints, inclusive", () => {
    expect(ruleViolations({ small: 1, big: 0 })).toEqual([]);
    expect(ruleViolations({ small: 10, big: "100", ratio: 1.5 })).toEqual([]);
    expect(ruleViolations({ small: 0, big: "-1", ratio: -1.6 })).toEqual([
      { field: "small", description: "must be at least 1" },
      { field: "big", description: "must be at least 0" },
      { field: "ratio", description: "must be at least -1.5" },
    ]);
    expect(ruleViolations({ small: 11, big: 101n, ratio: 2 })).toEqual([
      { field: "small", description: "must be at most 10" },
      { field: "big", description: "must be at most 100" },
      { field: "ratio", description: "must be at most 1.5" },
    ]);
  });

  test("minLength and maxLength count code points, not UTF-16 units", () => {
    expect(ruleViolations({ code: "😀😀" })).toEqual([]);
    expect(ruleViolations({ code: "😀😀😀" })).toEqual([]);
    expect(ruleViolations({ code: "😀😀😀😀" })).toEqual([
      { field: "code", description: "must be at most 3 characters" },
    ]);
    expect(ruleViolations({ code: "é" })).toEqual([{ field: "code", description: "must be at least 2 characters" }]);
    expect(ruleViolations({ code: "abcd" })).toEqual([{ field: "code", description: "must be at most 3 characters" }]);
    // Four UTF-16 units, two characters: below a minimum of three.
    expect(ruleViolations({ three: "😀😀" })).toEqual([
      { field: "three", description: "must be at least 3 characters" },
    ]);
    expect(ruleViolations({ three: "😀😀😀" })).toEqual([]);
  });

  test("pattern, also when it carries the g flag", () => {
    expect(ruleViolations({ slug: "Abc" })).toEqual([{ field: "slug", description: "must match /^[a-z]+$/g" }]);
    for (let i = 0; i < 3; i++) expect(ruleViolations({ slug: "abc" })).toEqual([]);
  });

  test("minItems and maxItems, for lists and maps", () => {
    expect(ruleViolations({ tags: [], attrs: { a: "1", b: "2" } })).toEqual([
      { field: "tags", description: "must have at least 1 item" },
      { field: "attrs", description: "must have at most 1 item" },
    ]);
    expect(ruleViolations({ tags: ["a", "b", "c"] })).toEqual([
      { field: "tags", description: "must have at most 2 items" },
    ]);
  });

  test("string rules of a repeated field apply to each element", () => {
    expect(ruleViolations({ codes: ["ok", "too long", "a"] })).toEqual([
      { field: "codes[1]", description: "must be at most 2 characters" },
    ]);
  });

  test("a custom validate gets the value and reports what it returns", () => {
    expect(ruleViolations({ shout: "hey" })).toEqual([{ field: "shout", description: "must end with !" }]);
  });

  test("rules apply to nested messages with their paths", () => {
    expect(ruleViolations({ item: { name: "" } })).toEqual([
      { field: "item.name", description: "must be at least 1 character" },
    ]);
  });

  test("rules: false converts and checks types only", () => {
    const message = readMessage<Rules>(rules, { name: "", small: 50, slug: "UPPER" }, { rules: false });
    expect(message.small).toBe(50);
    expect(() => readMessage(rules, { small: "x" }, { rules: false })).toThrow(GantryError);
  });
});

describe("writeMessage", () => {
  test("writes proto3 JSON: int64 as strings, enums by name, bytes as base64, timestamps as ISO", () => {
    const message = read({
      i32: -5,
      u32: 7,
      i64: "9223372036854775807",
      u64: "18446744073709551615",
      f32: 1.5,
      f64: "NaN",
      flag: true,
      text: "hi",
      data: "aGVsbG8=",
      color: "GREEN",
      item: { name: "bolt", quantity: 2 },
      items: [{ name: "a" }],
      labels: { k: 1 },
      nickname: "nick",
      createdAt: "2024-05-01T14:00:00.5+02:00",
      tags: ["x"],
      byId: { "3": { name: "c" } },
      maybeCount: "0",
      attrs: {},
    });
    expect(writeMessage(everything, message)).toEqual({
      i32: -5,
      u32: 7,
      i64: "9223372036854775807",
      u64: "18446744073709551615",
      f32: 1.5,
      f64: "NaN",
      flag: true,
      text: "hi",
      data: "aGVsbG8=",
      color: "GREEN",
      item: { name: "bolt", quantity: 2 },
      items: [{ name: "a", quantity: 0 }],
      labels: { k: 1 },
      nickname: "nick",
      createdAt: "2024-05-01T12:00:00.500Z",
      tags: ["x"],
      byId: { "3": { name: "c", quantity: 0 } },
      maybeCount: "0",
      attrs: {},
    });
  });

  test("writes defaults of singular fields and leaves out unset optional and message fields", () => {
    expect(writeMessage(everything, {})).toEqual({
      i32: 0,
      u32: 0,
      i64: "0",
      u64: "0",
      f32: 0,
      f64: 0,
      flag: false,
      text: "",
      data: "",
      color: "COLOR_UNSPECIFIED",
      items: [],
      labels: {},
      tags: [],
      byId: {},
      attrs: {},
    });
    expect(writeMessage(everything, { nickname: "" })).toHaveProperty("nickname", "");
  });

  test("writes the special float values as text and an unknown enum number as a number", () => {
    const out = writeMessage(everything, {
      f32: Number.NEGATIVE_INFINITY,
      f64: Number.POSITIVE_INFINITY,
      color: 7,
    }) as Record<string, unknown>;
    expect(out.f32).toBe("-Infinity");
    expect(out.f64).toBe("Infinity");
    expect(out.color).toBe(7);
  });

  test("writes only the view of a Uint8Array", () => {
    const data = new Uint8Array([0, 1, 2, 3]).subarray(1, 3);
    expect((writeMessage(everything, { data }) as { data: string }).data).toBe("AQI=");
  });

  test("writes a Map or an object as a map, keeping a __proto__ key", () => {
    const fromMap = writeMessage(everything, { labels: new Map([["a", 1]]) }) as { labels: unknown };
    expect(fromMap.labels).toEqual({ a: 1 });
    const labels = read(JSON.parse('{"labels":{"__proto__":7}}')).labels;
    const out = writeMessage(everything, { labels }) as { labels: Record<string, unknown> };
    expect(Object.keys(out.labels)).toEqual(["__proto__"]);
    expect(JSON.stringify(out.labels)).toBe('{"__proto__":7}');
    expect(Object.entries(read(JSON.parse(JSON.stringify(out))).labels)).toEqual([["__proto__", 7]]);
  });

  test("round trips through JSON text", () => {
    const input = {
      i64: "-12",
      data: "AAEC",
      createdAt: "2024-05-01T12:00:00.000Z",
      labels: { a: 1 },
      color: "RED",
      items: [{ name: "x", quantity: 3 }],
    };
    const once = writeMessage(everything, read(input));
    const twice = writeMessage(everything, read(JSON.parse(JSON.stringify(once))));
    expect(twice).toEqual(once);
    expect(once).toMatchObject(input);
  });

  test.each([
    [{ text: 5 }, "text", "is not a string"],
    [{ flag: "true" }, "flag", "is not a boolean"],
    [{ i32: 1.5 }, "i32", "is not an integer"],
    [{ i32: "1" }, "i32", "is not an integer"],
    [{ i64: 1.5 }, "i64", "is not a bigint"],
    [{ f64: "1" }, "f64", "is not a number"],
    [{ data: "aGk=" }, "data", "is not a Uint8Array"],
    [{ color: "RED" }, "color", "is not an enum number"],
    [{ createdAt: "2024-05-01T12:00:00Z" }, "createdAt", "is not a valid Date"],
    [{ createdAt: new Date(Number.NaN) }, "createdAt", "is not a valid Date"],
    [{ item: "bolt" }, "item", "is not a Item"],
    [{ items: [{ name: "a" }, { name: 5 }] }, "items[1].name", "is not a string"],
    [{ items: {} }, "items", "is not an array"],
    [{ tags: ["a", null] }, "tags[1]", "is not a string"],
    [{ labels: 5 }, "labels", "is not an object"],
    [{ labels: { k: "x" } }, 'labels["k"]', "is not an integer"],
  ])("rejects %j as INTERNAL GANTRY_ERR_BAD_OUTPUT naming %s", (value, field, problem) => {
    const error = writeError(value, "/shop.v1.Shop/Get");
    expect(error.status).toBe("INTERNAL");
    expect(error.code).toBe("GANTRY_ERR_BAD_OUTPUT");
    expect(error.httpStatus).toBe(500);
    expect(error.message).toBe("/shop.v1.Shop/Get returned an invalid Everything");
    expect(error.details).toEqual({ field, problem });
  });

  test.each([
    [{ i32: 2 ** 31 }, "i32", "must be between -2147483648 and 2147483647"],
    [{ u32: -1 }, "u32", "must be between 0 and 4294967295"],
    [{ i64: 2n ** 63n }, "i64", "must be between -9223372036854775808 and 9223372036854775807"],
    [{ u64: -1n }, "u64", "must be between 0 and 18446744073709551615"],
    [{ f32: 1e39 }, "f32", "is out of range"],
  ])("rejects the out-of-range value %s as GANTRY_ERR_BAD_OUTPUT", (value, field, problem) => {
    expect(writeError(value).details).toEqual({ field, problem });
  });

  test("rejects a value that is not an object, naming the message", () => {
    const error = writeError("text");
    expect(error.code).toBe("GANTRY_ERR_BAD_OUTPUT");
    expect(error.message).toBe("Everything returned an invalid Everything");
    expect(error.details).toEqual({ field: "", problem: "is not an object" });
    expect(writeError(null).details).toEqual({ field: "", problem: "is not an object" });
  });

  test("rejects a message nested deeper than 64 levels", () => {
    const node = describeMessage(Node);
    let value: Record<string, unknown> = { name: "leaf" };
    for (let i = 0; i < 70; i++) value = { name: "n", child: value };
    let error: unknown;
    try {
      writeMessage(node, value);
    } catch (caught) {
      error = caught;
    }
    expect(error).toMatchObject({
      code: "GANTRY_ERR_BAD_OUTPUT",
      details: { problem: "nests deeper than 64 messages" },
    });
  });
});
