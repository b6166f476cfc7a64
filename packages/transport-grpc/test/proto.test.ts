import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  describeService,
  Empty,
  Field,
  type GantryApp,
  GantryError,
  Message,
  Method,
  registerEnum,
  Service,
  type ServiceDescriptor,
} from "@gantry/core";
import { descriptorSet, fileDescriptors, generateProto, type ProtoFile, protoFilePath } from "@gantry/transport-grpc";
import protobuf from "protobufjs";
import { afterEach, describe, expect, test } from "vitest";

// Services that use every feature the generator has: each scalar, enums (registered, named after a
// field, with aliases, with the zero value declared last), nesting, recursion, repeated fields, maps
// of every key type, proto3 optional, timestamps, Empty, the four stream kinds and two packages.

enum Color {
  COLOR_UNSPECIFIED = 0,
  COLOR_RED = 1,
  COLOR_GREEN = 2,
}
registerEnum(Color, "Color");

enum Size {
  SIZE_UNSPECIFIED = 0,
  SIZE_SMALL = 1,
  SIZE_LARGE = 2,
  // biome-ignore lint/suspicious/noDuplicateEnumValues: an alias, written with allow_alias
  SIZE_BIG = 2,
}

enum Priority {
  PRIORITY_HIGH = 2,
  PRIORITY_LOW = 1,
  PRIORITY_UNSPECIFIED = 0,
  PRIORITY_NEVER = -1,
}
registerEnum(Priority, "Priority");

@Message({ description: "Every scalar type." })
class Scalars {
  @Field(1, { type: "double" }) aDouble!: number;
  @Field(2, { type: "float" }) aFloat!: number;
  @Field(3, { type: "int32" }) anInt32!: number;
  @Field(4, { type: "int64" }) anInt64!: bigint;
  @Field(5, { type: "uint32" }) aUint32!: number;
  @Field(6, { type: "uint64" }) aUint64!: bigint;
  @Field(7, { type: "sint32" }) aSint32!: number;
  @Field(8, { type: "sint64" }) aSint64!: bigint;
  @Field(9, { type: "fixed32" }) aFixed32!: number;
  @Field(10, { type: "fixed64" }) aFixed64!: bigint;
  @Field(11, { type: "sfixed32" }) aSfixed32!: number;
  @Field(12, { type: "sfixed64" }) aSfixed64!: bigint;
  @Field(13) aBool!: boolean;
  @Field(14) aString!: string;
  @Field(15) aBytes!: Uint8Array;
}

@Message()
class TreeNode {
  @Field(1) label!: string;
  @Field(2, { type: () => TreeNode, repeated: true }) children!: TreeNode[];
  @Field(3, { type: () => TreeNode }) parent?: TreeNode;
}

@Message()
class Maps {
  @Field(1, { map: { key: "int32", value: "string" } }) byInt32!: Record<string, string>;
  @Field(2, { map: { key: "int64", value: "int64" } }) byInt64!: Record<string, bigint>;
  @Field(3, { map: { key: "uint32", value: "double" } }) byUint32!: Record<string, number>;
  @Field(4, { map: { key: "uint64", value: "bytes" } }) byUint64!: Record<string, Uint8Array>;
  @Field(5, { map: { key: "sint32", value: { enum: Color } } }) bySint32!: Record<string, Color>;
  @Field(6, { map: { key: "sint64", value: TreeNode } }) bySint64!: Record<string, TreeNode>;
  @Field(7, { map: { key: "fixed32", value: "timestamp" } }) byFixed32!: Record<string, Date>;
  @Field(8, { map: { key: "fixed64", value: "bool" } }) byFixed64!: Record<string, boolean>;
  @Field(9, { map: { key: "sfixed32", value: "float" } }) bySfixed32!: Record<string, number>;
  @Field(10, { map: { key: "sfixed64", value: "uint32" } }) bySfixed64!: Record<string, number>;
  @Field(11, { map: { key: "bool", value: "string" } }) byBool!: Record<string, string>;
  @Field(12, { map: { key: "string", value: Scalars } }) byString!: Record<string, Scalars>;
  @Field(13, { map: { key: "string", value: Empty } }) markers!: Record<string, Empty>;
}

@Message({ description: "What a customer told us.\n\nSecond paragraph." })
class Profile {
  @Field(1, { optional: true, description: "How they like to be called" }) nickname?: string;
  @Field(2, { type: "int64", optional: true }) age?: bigint;
  @Field(3, { enum: Color, optional: true }) favorite?: Color;
  @Field(4, { optional: true }) verified?: boolean;
  @Field(5, { type: "string", repeated: true }) tags!: string[];
  @Field(6, { deprecated: true, description: "Use id" }) legacy_id!: string;
  @Field(7) createdAt!: Date;
  @Field(8, { type: "timestamp", repeated: true }) logins!: Date[];
  @Field(9, { type: Scalars, repeated: true }) samples!: Scalars[];
  @Field(10, { enum: Color, repeated: true }) palette!: Color[];
  @Field(11, { enum: Size }) size!: Size;
  @Field(12, { enum: Size }) fallbackSize!: Size;
  @Field(13, { enum: Priority }) priority!: Priority;
  @Field(14, { type: "sint32", deprecated: true }) score!: number;
}

@Message()
class Address {
  @Field(1) city!: string;
}

@Message({ name: "Customer" })
class CustomerRecord {
  @Field(1) name!: string;
  @Field(2) address!: Address;
  @Field(3) profile!: Profile;
}

@Service({ package: "shop", version: "v1", description: "The shop's front desk." })
class ShopService {
  @Method({ input: CustomerRecord, output: CustomerRecord, idempotent: true, description: "Looks a customer up." })
  async lookup(req: CustomerRecord): Promise<CustomerRecord> {
    return req;
  }

  @Method({ input: Scalars, output: Maps, stream: "server" })
  async *feed(): AsyncIterable<Maps> {}

  @Method({ input: TreeNode, output: Empty, stream: "client" })
  async upload(): Promise<Empty> {
    return {};
  }

  @Method({ input: Maps, output: Maps, stream: "bidi", idempotent: true })
  async *chat(): AsyncIterable<Maps> {}

  @Method({ input: Empty, output: Empty })
  ping(): Empty {
    return {};
  }
}

@Service({ package: "shop.admin", version: "v1beta1" })
class AdminService {
  @Method({ input: CustomerRecord, output: Empty, description: "Bans a customer.\nFor good." })
  ban(): Empty {
    return {};
  }
}

// Names protoc would resolve to something else when written short: a message named like a keyword,
// a message named like a map entry, and google.protobuf.* from inside a package with a `google` part.
@Message({ name: "bytes" })
class KeywordNamed {
  @Field(1) x!: string;
}

@Message({ name: "TagsEntry" })
class LooksLikeAnEntry {
  @Field(1) q!: string;
}

@Message()
class Shadowing {
  @Field(1, { map: { key: "string", value: "string" } }) tags!: Record<string, string>;
  @Field(2, { type: LooksLikeAnEntry }) other!: LooksLikeAnEntry;
  @Field(3, { type: KeywordNamed }) keyword!: KeywordNamed;
  @Field(4) at!: Date;
}

@Service({ package: "acme.google", version: "v1" })
class EdgeService {
  @Method({ input: Shadowing, output: KeywordNamed, stream: "client" })
  async run(): Promise<KeywordNamed> {
    return { x: "" };
  }
}

const RICH = [ShopService, AdminService, EdgeService].map((type) => describeService(type));

function fileAt(files: readonly ProtoFile[], path: string): string {
  const file = files.find((f) => f.path === path);
  if (file === undefined) throw new Error(`no ${path} among ${files.map((f) => f.path).join(", ")}`);
  return file.content;
}

/** Runs protoc and returns its stdout; a failure's message carries protoc's own error output. */
function protoc(args: readonly string[], input?: Uint8Array): Buffer {
  return execFileSync("protoc", args, { input, maxBuffer: 64 * 1024 * 1024, stdio: ["pipe", "pipe", "pipe"] });
}

/** The entries of a serialized FileDescriptorSet (`repeated FileDescriptorProto file = 1`). */
function splitFileSet(bytes: Uint8Array): Uint8Array[] {
  const files: Uint8Array[] = [];
  let at = 0;
  const varint = () => {
    let value = 0;
    for (let shift = 0; ; shift += 7) {
      const byte = bytes[at++];
      value += (byte & 0x7f) * 2 ** shift;
      if (byte < 0x80) return value;
    }
  };
  while (at < bytes.length) {
    expect(varint()).toBe(0x0a);
    const length = varint();
    files.push(bytes.subarray(at, at + length));
    at += length;
  }
  return files;
}

/** A FileDescriptorProto as protoc prints it in text format, field by field. */
function decodeFileProto(bytes: Uint8Array): string {
  return protoc(
    ["-I", "/usr/include", "--decode=google.protobuf.FileDescriptorProto", "google/protobuf/descriptor.proto"],
    bytes,
  ).toString();
}

const temporary: string[] = [];
afterEach(() => {
  for (const dir of temporary.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** Writes generated files into a fresh temporary directory, removed after the test. */
function writeTree(files: readonly ProtoFile[]): string {
  const dir = mkdtempSync(join(tmpdir(), "gantry-proto-"));
  temporary.push(dir);
  for (const file of files) {
    mkdirSync(dirname(join(dir, file.path)), { recursive: true });
    writeFileSync(join(dir, file.path), file.content);
  }
  return dir;
}

/** Compiles the files with protoc and returns the descriptor of each file it read, as text, by path. */
function compile(files: readonly ProtoFile[]): Map<string, string> {
  const dir = writeTree(files);
  const out = join(dir, "set.pb");
  protoc([
    "-I",
    dir,
    "-I",
    "/usr/include",
    "--fatal_warnings",
    `--descriptor_set_out=${out}`,
    "--include_imports",
    ...files.map((f) => f.path),
  ]);
  const decoded = new Map<string, string>();
  for (const bytes of splitFileSet(readFileSync(out))) {
    const text = decodeFileProto(bytes);
    decoded.set(/^name: "(.*)"$/m.exec(text)?.[1] ?? "", text);
  }
  return decoded;
}

describe("generateProto", () => {
  test("writes one file per package, at a path made of the package", () => {
    expect(generateProto(RICH).map((f) => f.path)).toEqual([
      "acme/google/v1/google.proto",
      "shop/admin/v1beta1/admin.proto",
      "shop/v1/shop.proto",
    ]);
    expect(protoFilePath("hello.v1")).toBe("hello/v1/hello.proto");
    expect(protoFilePath("acme.billing.v2beta1")).toBe("acme/billing/v2beta1/billing.proto");
    expect(protoFilePath("inventory")).toBe("inventory/inventory.proto");
  });

  test("writes services, streams, idempotency and descriptions", () => {
    const shop = fileAt(generateProto(RICH), "shop/v1/shop.proto");
    expect(shop).toContain('syntax = "proto3";\n\npackage shop.v1;\n\n');
    expect(shop).toContain('import "google/protobuf/empty.proto";\nimport "google/protobuf/timestamp.proto";\n');
    expect(shop).toContain(
      [
        "// The shop's front desk.",
        "service ShopService {",
        "  // Looks a customer up.",
        "  rpc Lookup(Customer) returns (Customer) {",
        "    option idempotency_level = IDEMPOTENT;",
        "  }",
        "  rpc Feed(Scalars) returns (stream Maps);",
        "  rpc Upload(stream TreeNode) returns (google.protobuf.Empty);",
        "  rpc Chat(stream Maps) returns (stream Maps) {",
        "    option idempotency_level = IDEMPOTENT;",
        "  }",
        "  rpc Ping(google.protobuf.Empty) returns (google.protobuf.Empty);",
        "}",
      ].join("\n"),
    );
    const admin = fileAt(generateProto(RICH), "shop/admin/v1beta1/admin.proto");
    expect(admin).toContain(
      "  // Bans a customer.\n  // For good.\n  rpc Ban(Customer) returns (google.protobuf.Empty);",
    );
  });

  test("writes fields: scalars, optional, repeated, maps, enums, timestamps, json names and deprecation", () => {
    const shop = fileAt(generateProto(RICH), "shop/v1/shop.proto");
    expect(shop).toContain(
      [
        "// What a customer told us.",
        "//",
        "// Second paragraph.",
        "message Profile {",
        "  // How they like to be called",
        "  optional string nickname = 1;",
        "  optional int64 age = 2;",
        "  optional Color favorite = 3;",
        "  optional bool verified = 4;",
        "  repeated string tags = 5;",
        "  // Use id",
        '  string legacy_id = 6 [json_name = "legacy_id", deprecated = true];',
        "  google.protobuf.Timestamp created_at = 7;",
        "  repeated google.protobuf.Timestamp logins = 8;",
        "  repeated Scalars samples = 9;",
        "  repeated Color palette = 10;",
        "  Size size = 11;",
        "  Size fallback_size = 12;",
        "  Priority priority = 13;",
        "  sint32 score = 14 [deprecated = true];",
        "}",
      ].join("\n"),
    );
    expect(shop).toContain("  map<int32, string> by_int32 = 1;\n  map<int64, int64> by_int64 = 2;");
    expect(shop).toContain("  map<sint32, Color> by_sint32 = 5;\n  map<sint64, TreeNode> by_sint64 = 6;");
    expect(shop).toContain("  map<fixed32, google.protobuf.Timestamp> by_fixed32 = 7;");
    expect(shop).toContain("  map<string, google.protobuf.Empty> markers = 13;");
    expect(shop).toContain("  repeated TreeNode children = 2;\n  TreeNode parent = 3;");
    expect(shop).toContain(
      "  sfixed64 a_sfixed64 = 12;\n  bool a_bool = 13;\n  string a_string = 14;\n  bytes a_bytes = 15;",
    );
    // Enums: the zero value first, aliases allowed, an unregistered enum named after its first field.
    expect(shop).toContain(
      "enum Size {\n  option allow_alias = true;\n  SIZE_UNSPECIFIED = 0;\n  SIZE_SMALL = 1;\n  SIZE_LARGE = 2;\n  SIZE_BIG = 2;\n}",
    );
    expect(shop).toContain(
      "enum Priority {\n  PRIORITY_UNSPECIFIED = 0;\n  PRIORITY_HIGH = 2;\n  PRIORITY_LOW = 1;\n  PRIORITY_NEVER = -1;\n}",
    );
    expect(shop).not.toContain("FallbackSize");
  });

  test("orders messages by first use, depth first from the methods, and is the same on every run", () => {
    const shop = fileAt(generateProto(RICH), "shop/v1/shop.proto");
    const messages = [...shop.matchAll(/^message (\w+)/gm)].map((m) => m[1]);
    expect(messages).toEqual(["Customer", "Address", "Profile", "Scalars", "Maps", "TreeNode"]);
    expect([...shop.matchAll(/^enum (\w+)/gm)].map((m) => m[1])).toEqual(["Color", "Size", "Priority"]);
    expect(generateProto(RICH)).toEqual(generateProto(RICH));
    // A message used from two packages is defined in each.
    expect(fileAt(generateProto(RICH), "shop/admin/v1beta1/admin.proto")).toContain("message Customer {");
  });

  test("writes a type by its full name where the short one would resolve to something else", () => {
    const edge = fileAt(generateProto(RICH), "acme/google/v1/google.proto");
    expect(edge).toContain("rpc Run(stream Shadowing) returns (.acme.google.v1.bytes);");
    expect(edge).toContain("  map<string, string> tags = 1;\n  .acme.google.v1.TagsEntry other = 2;");
    expect(edge).toContain("  .acme.google.v1.bytes keyword = 3;\n  .google.protobuf.Timestamp at = 4;");
  });

  test("protoc accepts every file, and describes it exactly as fileDescriptors does", () => {
    const files = generateProto(RICH);
    const fromProtoc = compile(files);
    const ours = fileDescriptors(RICH);
    expect([...ours.keys()].sort()).toEqual([...fromProtoc.keys()].sort());
    expect([...ours.keys()]).toEqual([
      "acme/google/v1/google.proto",
      "shop/admin/v1beta1/admin.proto",
      "shop/v1/shop.proto",
      "google/protobuf/empty.proto",
      "google/protobuf/timestamp.proto",
    ]);
    for (const [path, bytes] of ours) {
      expect(decodeFileProto(bytes), path).toBe(fromProtoc.get(path));
    }
    // The parts that need proto2 presence are there.
    const shop = fromProtoc.get("shop/v1/shop.proto") ?? "";
    expect(shop).toContain("oneof_index: 0");
    expect(shop).toContain("proto3_optional: true");
    expect(shop).toContain("map_entry: true");
    expect(shop).toContain("idempotency_level: IDEMPOTENT");
    expect(shop).toContain('json_name: "legacy_id"');
  });

  test("descriptorSet finds the file of every symbol, and each file with what it imports", () => {
    const set = descriptorSet(RICH);
    expect(set.services).toEqual([
      "acme.google.v1.EdgeService",
      "shop.admin.v1beta1.AdminService",
      "shop.v1.ShopService",
    ]);
    for (const symbol of [
      "shop.v1.ShopService",
      "shop.v1.ShopService.Lookup",
      "shop.v1.Customer",
      "shop.v1.Profile.nickname",
      "shop.v1.Profile._nickname",
      "shop.v1.Maps.ByInt32Entry",
      "shop.v1.Color",
      "shop.v1.COLOR_RED",
      "shop.v1.Color.COLOR_RED",
    ]) {
      expect(set.fileOf(symbol), symbol).toBe("shop/v1/shop.proto");
    }
    expect(set.fileOf("shop.admin.v1beta1.Customer")).toBe("shop/admin/v1beta1/admin.proto");
    expect(set.fileOf("google.protobuf.Timestamp")).toBe("google/protobuf/timestamp.proto");
    expect(set.fileOf("shop.v1.Nothing")).toBeUndefined();
    expect(set.withDependencies("shop/v1/shop.proto")).toEqual([
      "shop/v1/shop.proto",
      "google/protobuf/empty.proto",
      "google/protobuf/timestamp.proto",
    ]);
    expect(set.withDependencies("acme/google/v1/google.proto")).toEqual([
      "acme/google/v1/google.proto",
      "google/protobuf/timestamp.proto",
    ]);
    expect(set.withDependencies("nope.proto")).toBeUndefined();
    expect(set.file("google/protobuf/empty.proto")).toBeInstanceOf(Uint8Array);
  });

  test("a file without imports or enums is valid too", () => {
    @Message()
    class Ping {
      @Field(1) id!: string;
    }
    @Service({ package: "bare" })
    class BareService {
      @Method({ input: Ping, output: Ping })
      ping(req: Ping): Ping {
        return req;
      }
    }
    const services = [describeService(BareService)];
    const [file] = generateProto(services);
    expect(file.path).toBe("bare/bare.proto");
    expect(file.content).not.toContain("import");
    // The method Ping would shadow the message Ping in the rpc line.
    expect(file.content).toContain("rpc Ping(.bare.Ping) returns (.bare.Ping);");
    const fromProtoc = compile([file]);
    expect(decodeFileProto(fileDescriptors(services).get("bare/bare.proto") as Uint8Array)).toBe(
      fromProtoc.get("bare/bare.proto"),
    );
  });
});

describe("name conflicts", () => {
  function thrown(fn: () => unknown): GantryError {
    try {
      fn();
    } catch (error) {
      expect(error).toBeInstanceOf(GantryError);
      return error as GantryError;
    }
    throw new Error("expected a GantryError");
  }

  /** A service in package `clash.v1` whose one method takes `input` and returns `output`. */
  function serviceOf(input: new () => unknown, output: new () => unknown, name = "ClashService"): ServiceDescriptor {
    @Service({ package: "clash", version: "v1", name })
    class ClashService {
      @Method({ input, output })
      run(): unknown {
        return {};
      }
    }
    return describeService(ClashService);
  }

  test("two message classes with one name in a package", () => {
    const a = (() => {
      @Message({ name: "Thing" })
      class FirstThing {
        @Field(1) a!: string;
      }
      return FirstThing;
    })();
    const b = (() => {
      @Message({ name: "Thing" })
      class SecondThing {
        @Field(1) b!: string;
      }
      return SecondThing;
    })();
    const error = thrown(() => generateProto([serviceOf(a, b)]));
    expect(error.code).toBe("GANTRY_ERR_PROTO_NAME_CONFLICT");
    expect(error.status).toBe("FAILED_PRECONDITION");
    expect(error.message).toContain("clash.v1: message class FirstThing (used by ClashService.run)");
    expect(error.message).toContain("message class SecondThing (used by ClashService.run)");
    expect(error.message).toContain("both named Thing");
    // The same two classes in different packages do not clash.
    @Service({ package: "other", version: "v1" })
    class OtherService {
      @Method({ input: b, output: b })
      run(): unknown {
        return {};
      }
    }
    @Service({ package: "clash", version: "v1" })
    class FirstService {
      @Method({ input: a, output: a })
      run(): unknown {
        return {};
      }
    }
    expect(generateProto([describeService(FirstService), describeService(OtherService)])).toHaveLength(2);
  });

  test("two enums with one name in a package", () => {
    enum Left {
      LEFT_UNSPECIFIED = 0,
    }
    enum Right {
      RIGHT_UNSPECIFIED = 0,
    }
    @Message()
    class Sides {
      @Field(1, { enum: Left }) side!: Left;
    }
    @Message()
    class OtherSides {
      @Field(1, { enum: Right }) side!: Right;
    }
    const error = thrown(() => generateProto([serviceOf(Sides, OtherSides)]));
    expect(error.code).toBe("GANTRY_ERR_PROTO_NAME_CONFLICT");
    expect(error.message).toContain("enum Side (used by Sides.side) and enum Side (used by OtherSides.side)");
  });

  test("a message named like the service", () => {
    @Message({ name: "ClashService" })
    class Named {}
    const error = thrown(() => generateProto([serviceOf(Named, Named)]));
    expect(error.code).toBe("GANTRY_ERR_PROTO_NAME_CONFLICT");
    expect(error.message).toContain("service class ClashService and message class Named");
  });

  test("enum values share the package scope", () => {
    enum Fruit {
      UNSPECIFIED = 0,
      APPLE = 1,
    }
    enum Veg {
      VEG_UNSPECIFIED = 0,
      APPLE = 1,
    }
    @Message()
    class Basket {
      @Field(1, { enum: Fruit }) fruit!: Fruit;
      @Field(2, { enum: Veg }) veg!: Veg;
    }
    const error = thrown(() => generateProto([serviceOf(Basket, Basket)]));
    expect(error.code).toBe("GANTRY_ERR_PROTO_ENUM_VALUE_CONFLICT");
    expect(error.message).toContain("APPLE of enum Fruit (used by Basket.fruit)");
    expect(error.message).toContain("APPLE of enum Veg (used by Basket.veg)");
    expect(error.message).toContain("prefix each value with its enum's name");
  });

  test("enum values equal once the enum's name is stripped", () => {
    enum Mode {
      MODE_UNSPECIFIED = 0,
      MODE_FAST = 1,
      FAST = 2,
    }
    @Message()
    class Run {
      @Field(1, { enum: Mode }) mode!: Mode;
    }
    const error = thrown(() => generateProto([serviceOf(Run, Run)]));
    expect(error.code).toBe("GANTRY_ERR_PROTO_ENUM_VALUE_CONFLICT");
    expect(error.message).toContain("MODE_FAST of enum Mode (used by Run.mode) collides with FAST");
  });

  test("fields whose JSON names clash, and names protoc cannot read", () => {
    @Message()
    class Twins {
      @Field(1) fooBar!: string;
      @Field(2) foobar!: string;
    }
    const twins = thrown(() => generateProto([serviceOf(Twins, Twins)]));
    expect(twins.code).toBe("GANTRY_ERR_PROTO_NAME_CONFLICT");
    expect(twins.message).toContain("field Twins.fooBar and field Twins.foobar");

    @Message({ name: "Not-A-Name" })
    class Dashed {}
    const dashed = thrown(() => generateProto([serviceOf(Dashed, Dashed)]));
    expect(dashed.code).toBe("GANTRY_ERR_PROTO_BAD_NAME");
    expect(dashed.message).toContain('message class Dashed (used by ClashService.run): "Not-A-Name" cannot be used');

    enum Keywords {
      option = 0,
    }
    @Message()
    class UsesKeywords {
      @Field(1, { enum: Keywords }) keywords!: Keywords;
    }
    expect(thrown(() => generateProto([serviceOf(UsesKeywords, UsesKeywords)])).code).toBe("GANTRY_ERR_PROTO_BAD_NAME");
  });
});

describe("examples/hello-world", () => {
  /** The golden files: the generated .proto of examples/hello-world, one per package. */
  const GOLDEN = fileURLToPath(new URL("./golden/hello-world/", import.meta.url));
  const UPDATE = "GANTRY_UPDATE_GOLDEN=1 npx vitest run packages/transport-grpc/test/proto.test.ts";

  async function helloWorld(): Promise<ProtoFile[]> {
    // Loaded by URL: the example is not part of this package's TypeScript project.
    const entry = new URL("../../../examples/hello-world/src/main.ts", import.meta.url).href;
    const { default: app } = (await import(entry)) as { default: GantryApp };
    return generateProto(app.options.services.map((type) => describeService(type)));
  }

  function readGolden(files: readonly ProtoFile[]): ProtoFile[] {
    return files
      .filter((file) => existsSync(join(GOLDEN, file.path)))
      .map((file) => ({ path: file.path, content: readFileSync(join(GOLDEN, file.path), "utf8") }));
  }

  /** `package.Message.field` → field number, from .proto text. */
  function fieldNumbers(files: readonly ProtoFile[]): Map<string, number> {
    const numbers = new Map<string, number>();
    const visit = (namespace: protobuf.NamespaceBase) => {
      for (const nested of namespace.nestedArray) {
        if (nested instanceof protobuf.Type) {
          for (const field of nested.fieldsArray) numbers.set(`${nested.fullName.slice(1)}.${field.name}`, field.id);
        }
        if (nested instanceof protobuf.Namespace || nested instanceof protobuf.Type) visit(nested);
      }
    };
    for (const file of files) visit(protobuf.parse(file.content, { keepCase: true }).root);
    return numbers;
  }

  test("keeps every field number of the golden files", async () => {
    const current = fieldNumbers(await helloWorld());
    const golden = fieldNumbers(readGolden(await helloWorld()));
    // The run that first writes the golden files has nothing to compare with.
    if (golden.size === 0 && process.env.GANTRY_UPDATE_GOLDEN === "1") return;
    expect(golden.size, `no golden files under ${GOLDEN}; write them with ${UPDATE}`).toBeGreaterThan(0);
    const changed = [...golden]
      .filter(([field, number]) => current.has(field) && current.get(field) !== number)
      .map(([field, number]) => `${field} was ${number}, is now ${current.get(field)}`);
    expect(
      changed,
      "field numbers are the wire format: clients built from the old .proto would misread these fields. " +
        "Give the field its old number back; to break the wire format on purpose, delete the golden files and run " +
        UPDATE,
    ).toEqual([]);
  });

  test("generates the golden files exactly", async () => {
    const files = await helloWorld();
    if (process.env.GANTRY_UPDATE_GOLDEN === "1") {
      for (const file of files) {
        mkdirSync(dirname(join(GOLDEN, file.path)), { recursive: true });
        writeFileSync(join(GOLDEN, file.path), file.content);
      }
    }
    expect(files.map((f) => f.path)).toEqual(["hello/v1/hello.proto", "world/v1/world.proto"]);
    for (const file of files) {
      const path = join(GOLDEN, file.path);
      const golden = existsSync(path) ? readFileSync(path, "utf8") : "";
      expect(
        file.content,
        `${file.path} differs from ${path}. If the change is meant, update the golden files with ${UPDATE} and review the diff`,
      ).toBe(golden);
    }
    compile(files);
  });
});
