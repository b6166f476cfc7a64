import { execFile } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createServer, type Server as NetServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import {
  createApp,
  describeService,
  Empty,
  Field,
  type GantryApp,
  GantryError,
  isGantryError,
  Message,
  type MessageDescriptor,
  Method,
  type MethodDescriptor,
  readMessage,
  registerEnum,
  Service,
  type ServiceDescriptor,
  type ValueType,
  writeMessage,
} from "@gantry/core";
import { sendUnary } from "@gantry/core/client";
import {
  Server,
  ServerCredentials,
  type ServerDuplexStream,
  type ServerUnaryCall,
  type sendUnaryData,
} from "@grpc/grpc-js";
import protobuf from "protobufjs";
import descriptor from "protobufjs/ext/descriptor.js";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { decodeMessage, encodeMessage } from "../src/codec.js";
import { describeFromReflection, grpcClientTransport, grpcTransport } from "../src/index.js";
import { requestDescriptor, responseDescriptor } from "../src/reflection.js";

const execFileAsync = promisify(execFile);

// ------------------------------------------------------------------------------------------------
// A code-first service with a message of every kind, served over gRPC only

enum Mood {
  MOOD_UNSPECIFIED = 0,
  MOOD_HAPPY = 1,
  MOOD_SAD = 2,
}
registerEnum(Mood, "Mood");

@Message()
class Leaf {
  @Field(1) label!: string;
  @Field(2, { enum: Mood }) mood!: Mood;
}

@Message()
class Branch {
  @Field(1) name!: string;
  @Field(2, { type: Leaf, repeated: true }) leaves!: Leaf[];
  @Field(3) at?: Date;
}

@Message()
class Kitchen {
  @Field(1) text!: string;
  @Field(2, { type: "int32" }) i32!: number;
  @Field(3, { type: "int64" }) i64!: bigint;
  @Field(4, { type: "uint32" }) u32!: number;
  @Field(5, { type: "uint64" }) u64!: bigint;
  @Field(6, { type: "sint32" }) s32!: number;
  @Field(7, { type: "sint64" }) s64!: bigint;
  @Field(8, { type: "fixed32" }) fx32!: number;
  @Field(9, { type: "fixed64" }) fx64!: bigint;
  @Field(10, { type: "sfixed32" }) sfx32!: number;
  @Field(11, { type: "sfixed64" }) sfx64!: bigint;
  @Field(12, { type: "double" }) dbl!: number;
  @Field(13, { type: "float" }) flt!: number;
  @Field(14) flag!: boolean;
  @Field(15) data!: Uint8Array;
  @Field(16, { enum: Mood }) mood!: Mood;
  @Field(17, { type: "timestamp" }) createdAt!: Date;
  @Field(18) branch!: Branch;
  @Field(19, { type: "string", repeated: true }) tags!: string[];
  @Field(20, { type: "int64", repeated: true }) ids!: bigint[];
  @Field(21, { type: Branch, repeated: true }) branches!: Branch[];
  @Field(22, { enum: Mood, repeated: true }) moods!: Mood[];
  @Field(23, { map: { key: "string", value: "int64" } }) counts!: Record<string, bigint>;
  @Field(24, { map: { key: "int32", value: Leaf } }) leafById!: Record<string, Leaf>;
  @Field(25, { map: { key: "bool", value: { enum: Mood } } }) moodByFlag!: Record<string, Mood>;
  @Field(26, { optional: true }) nickname?: string;
  @Field(27, { type: "int32", optional: true }) maybeCount?: number;
  @Field(28, { type: "timestamp", repeated: true }) history!: Date[];
}

@Message()
class Watched {
  @Field(1) kitchen!: Kitchen;
}

@Service({ package: "kitchen", version: "v1" })
class KitchenService {
  @Method({ output: Kitchen })
  async echo(request: Kitchen): Promise<Kitchen> {
    return request;
  }

  @Method({ input: Empty, output: Empty, idempotent: true })
  async ping(): Promise<Empty> {
    return {};
  }

  @Method({ input: Kitchen, output: Watched, stream: "server" })
  async *watch(request: Kitchen): AsyncGenerator<Watched> {
    yield { kitchen: request };
  }
}

/** Every field of every kind set to a value that is not its default, as proto3 JSON. */
const KITCHEN_JSON = {
  text: "héllo",
  i32: -7,
  i64: "-9007199254740993",
  u32: 4294967295,
  u64: "18446744073709551615",
  s32: -2147483648,
  s64: "-9223372036854775808",
  fx32: 123,
  fx64: "9223372036854775807",
  sfx32: -5,
  sfx64: "-42",
  dbl: 1.5e300,
  flt: 0.5,
  flag: true,
  data: "AAEC/w==",
  mood: "MOOD_SAD",
  createdAt: "1969-07-20T20:17:40.123Z",
  branch: { name: "root", leaves: [{ label: "a", mood: "MOOD_HAPPY" }], at: "2024-02-29T12:00:00.000Z" },
  tags: ["x", "y"],
  ids: ["1", "-9007199254740993"],
  branches: [
    { name: "b1", leaves: [] },
    { name: "b2", leaves: [{ label: "c", mood: "MOOD_SAD" }] },
  ],
  moods: ["MOOD_HAPPY", "MOOD_SAD"],
  counts: { one: "1", big: "9223372036854775807" },
  leafById: { "-3": { label: "neg", mood: "MOOD_HAPPY" }, "7": { label: "seven", mood: "MOOD_UNSPECIFIED" } },
  moodByFlag: { true: "MOOD_HAPPY", false: "MOOD_SAD" },
  nickname: "",
  maybeCount: 0,
  history: ["2000-01-01T00:00:00.000Z", "1970-01-01T00:00:00.500Z"],
};

function methodOf(service: ServiceDescriptor, name: string): MethodDescriptor {
  const method = service.methods.find((m) => m.name === name);
  if (method === undefined) throw new Error(`${service.fullName} has no method ${name}`);
  return method;
}

/** Calls a unary method with a proto3 JSON input through the gRPC client transport; the reply as proto3 JSON. */
async function callJson(url: string, method: MethodDescriptor, json: unknown): Promise<unknown> {
  const channel = grpcClientTransport().channel(url);
  try {
    const request = { method, deadline: Date.now() + 5000, metadata: {} };
    return writeMessage(method.output, await sendUnary(channel, request, readMessage(method.input, json)));
  } finally {
    channel.close();
  }
}

/** A value type as plain data, comparable across two descriptors of the same proto type. */
function shapeOf(type: ValueType, seen = new Set<string>()): unknown {
  switch (type.kind) {
    case "scalar":
      return type.scalar;
    case "timestamp":
      return "timestamp";
    case "enum":
      return { enum: type.enum.values.map((v) => [v.name, v.number]) };
    case "message":
      return messageShape(type.message, seen);
  }
}

function messageShape(message: MessageDescriptor, seen = new Set<string>()): unknown {
  if (seen.has(message.name)) return { recursive: message.name };
  const inner = new Set([...seen, message.name]);
  return message.fields.map((f) => ({
    key: f.key,
    number: f.number,
    protoName: f.protoName,
    cardinality: f.cardinality,
    mapKey: f.mapKey,
    value: shapeOf(f.value, inner),
  }));
}

async function failure(promise: Promise<unknown>): Promise<GantryError> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  if (!isGantryError(error)) throw new Error(`expected a GantryError, got ${String(error)}`);
  return error;
}

describe("describeFromReflection against a Gantry server", () => {
  let app: GantryApp;
  let url: string;

  beforeAll(async () => {
    app = createApp({
      name: "reflection-client-test",
      services: [KitchenService],
      transports: [grpcTransport({ host: "127.0.0.1", port: 0 })],
    });
    await app.start({ env: {}, flags: { "log.level": "silent" } });
    url = app.endpoints[0].url;
  });

  afterAll(async () => {
    await app?.close();
  });

  test("gives every method with its stream kind, idempotency and messages, field by field as the server has them", async () => {
    const described = await describeFromReflection(url, "kitchen.v1.KitchenService");
    const served = describeService(KitchenService);
    expect(described.fullName).toBe("kitchen.v1.KitchenService");
    expect(described.apiVersion).toBe("v1");
    expect(described.methods.map((m) => [m.name, m.path, m.stream, m.idempotent])).toEqual([
      ["Echo", "/kitchen.v1.KitchenService/Echo", "unary", false],
      ["Ping", "/kitchen.v1.KitchenService/Ping", "unary", true],
      ["Watch", "/kitchen.v1.KitchenService/Watch", "server", false],
    ]);
    for (const method of served.methods) {
      const reflected = methodOf(described, method.name);
      expect(messageShape(reflected.input), `${method.name} input`).toEqual(messageShape(method.input));
      expect(messageShape(reflected.output), `${method.name} output`).toEqual(messageShape(method.output));
    }
  });

  test("the reflected messages read proto3 JSON and round-trip every field through a real call", async () => {
    const echo = methodOf(await describeFromReflection(url, "kitchen.v1.KitchenService"), "Echo");
    const reply = (await callJson(url, echo, KITCHEN_JSON)) as Record<string, unknown>;
    for (const [key, value] of Object.entries(KITCHEN_JSON)) expect(reply[key], key).toEqual(value);
    expect(Object.keys(reply).sort()).toEqual(Object.keys(KITCHEN_JSON).sort());

    const ping = methodOf(await describeFromReflection(url, "kitchen.v1.KitchenService"), "Ping");
    expect(await callJson(url, ping, {})).toEqual({});
  });

  test("proto3 JSON input of the wrong type fails with INVALID_ARGUMENT naming each field", async () => {
    const echo = methodOf(await describeFromReflection(url, "kitchen.v1.KitchenService"), "Echo");
    const error = (() => {
      try {
        readMessage(echo.input, { i32: "seven", mood: "MOOD_GRUMPY", branch: { leaves: [{ label: 3 }] } });
      } catch (caught) {
        return caught as GantryError;
      }
      throw new Error("expected readMessage to throw");
    })();
    expect(error.status).toBe("INVALID_ARGUMENT");
    expect(error.violations.map((v) => v.field)).toEqual(["i32", "mood", "branch.leaves[0].label"]);
  });

  test("an unknown service lists the services the server has; an unknown method lists the methods", async () => {
    const noService = await failure(describeFromReflection(url, "kitchen.v1.Nope"));
    expect(noService.code).toBe("GANTRY_ERR_REFLECTION_NO_SERVICE");
    expect(noService.status).toBe("NOT_FOUND");
    expect(noService.message).toBe(
      `${url} does not serve kitchen.v1.Nope; it serves kitchen.v1.KitchenService, grpc.health.v1.Health, ` +
        "grpc.reflection.v1.ServerReflection, grpc.reflection.v1alpha.ServerReflection",
    );
    // A symbol that exists but is a message, not a service.
    const message = await failure(describeFromReflection(url, "kitchen.v1.Kitchen"));
    expect(message.code).toBe("GANTRY_ERR_REFLECTION_NO_SERVICE");
    expect(message.message).toContain("it serves kitchen.v1.KitchenService");

    const noMethod = await failure(describeFromReflection(url, "kitchen.v1.KitchenService", { method: "Cook" }));
    expect(noMethod.code).toBe("GANTRY_ERR_REFLECTION_NO_METHOD");
    expect(noMethod.message).toBe("kitchen.v1.KitchenService has no method Cook; its methods: Echo, Ping, Watch");
    const found = await describeFromReflection(url, "kitchen.v1.KitchenService", { method: "Echo" });
    expect(found.methods).toHaveLength(3);
  });
});

// ------------------------------------------------------------------------------------------------
// A server in another image: protoc's descriptors for two packages, served one file per answer by a
// v1alpha-only reflection service, and a method that echoes the bytes it gets.

const MONEY_PROTO = `syntax = "proto3";
package shop.common.v1;

message Money {
  string currency = 1;
  int64 units = 2;
  int32 nanos = 3;
}
`;

const CART_PROTO = `syntax = "proto3";
package shop.v1;

import "google/protobuf/timestamp.proto";
import "shop/common/v1/money.proto";

message Cart {
  message Line {
    string sku = 1;
    shop.common.v1.Money price = 2;
    uint32 quantity = 3;
  }
  enum State {
    STATE_UNSPECIFIED = 0;
    STATE_OPEN = 1;
    STATE_PAID = 2;
  }
  string id = 1;
  repeated Line lines = 2;
  map<string, shop.common.v1.Money> totals = 3;
  State state = 4;
  google.protobuf.Timestamp updated_at = 5;
  optional string coupon_code = 6;
}

service CartService {
  rpc Echo(Cart) returns (Cart);
}
`;

/** The files protoc describes for cart.proto and its imports, each serialized, by name. */
async function compileCart(dir: string): Promise<Map<string, Uint8Array>> {
  await mkdir(join(dir, "shop/common/v1"), { recursive: true });
  await mkdir(join(dir, "shop/v1"), { recursive: true });
  await writeFile(join(dir, "shop/common/v1/money.proto"), MONEY_PROTO);
  await writeFile(join(dir, "shop/v1/cart.proto"), CART_PROTO);
  const out = join(dir, "set.pb");
  await execFileAsync("/usr/bin/protoc", [
    `-I${dir}`,
    "--include_imports",
    `--descriptor_set_out=${out}`,
    "shop/v1/cart.proto",
  ]);
  const set = descriptor.FileDescriptorSet.decode(await readFile(out)) as protobuf.Message & {
    file: (protobuf.Message & { name: string })[];
  };
  return new Map(set.file.map((file) => [file.name, descriptor.FileDescriptorProto.encode(file).finish()]));
}

/** A reflection service that answers with exactly the one file asked for, as many non-Gantry servers do. */
function oneFileReflection(files: ReadonlyMap<string, Uint8Array>, asked: string[]) {
  return (call: ServerDuplexStream<Buffer, Buffer>) => {
    call.on("data", (bytes: Buffer) => {
      const request = decodeMessage(requestDescriptor, bytes) as {
        fileByFilename?: string;
        fileContainingSymbol?: string;
      };
      const name =
        request.fileByFilename ?? (request.fileContainingSymbol?.startsWith("shop.v1.") ? "shop/v1/cart.proto" : "");
      asked.push(name);
      const file = files.get(name);
      const response =
        file === undefined
          ? { errorResponse: { errorCode: 5, errorMessage: "not found" } }
          : { fileDescriptorResponse: { fileDescriptorProto: [file] } };
      call.write(Buffer.from(encodeMessage(responseDescriptor, response)));
    });
    call.on("end", () => call.end());
  };
}

const rawMethod = (path: string, requestStream: boolean, responseStream: boolean) => ({
  path,
  requestStream,
  responseStream,
  requestSerialize: (value: Buffer) => value,
  requestDeserialize: (value: Buffer) => value,
  responseSerialize: (value: Buffer) => value,
  responseDeserialize: (value: Buffer) => value,
});

async function listen(server: Server): Promise<string> {
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (error, bound) =>
      error === null ? resolve(bound) : reject(error),
    ),
  );
  return `grpc://127.0.0.1:${port}`;
}

function shutdown(server: Server): Promise<void> {
  return new Promise((resolve) => server.tryShutdown(() => resolve()));
}

describe("describeFromReflection against a server that is not Gantry", () => {
  let dir: string;
  let server: Server;
  let url: string;
  const asked: string[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "gantry-reflection-"));
    const files = await compileCart(dir);
    server = new Server();
    server.addService(
      { ServerReflectionInfo: rawMethod("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", true, true) },
      { ServerReflectionInfo: oneFileReflection(files, asked) },
    );
    server.addService(
      { Echo: rawMethod("/shop.v1.CartService/Echo", false, false) },
      { Echo: (call: ServerUnaryCall<Buffer, Buffer>, done: sendUnaryData<Buffer>) => done(null, call.request) },
    );
    url = await listen(server);
  });

  afterAll(async () => {
    if (server !== undefined) await shutdown(server);
    await rm(dir, { recursive: true, force: true });
  });

  test("falls back to v1alpha, follows the imports file by file, and calls with messages from another package", async () => {
    const described = await describeFromReflection(url, "shop.v1.CartService", { method: "Echo" });
    expect(asked[0]).toBe("shop/v1/cart.proto");
    expect(asked.slice(1).sort()).toEqual(["google/protobuf/timestamp.proto", "shop/common/v1/money.proto"]);
    const echo = methodOf(described, "Echo");
    expect(echo.input.fields.map((f) => [f.key, f.protoName, f.number, f.cardinality])).toEqual([
      ["id", "id", 1, "singular"],
      ["lines", "lines", 2, "repeated"],
      ["totals", "totals", 3, "map"],
      ["state", "state", 4, "singular"],
      ["updatedAt", "updated_at", 5, "singular"],
      ["couponCode", "coupon_code", 6, "optional"],
    ]);
    const cart = {
      id: "c-1",
      lines: [{ sku: "tea", price: { currency: "EUR", units: "9007199254740993", nanos: 500_000_000 }, quantity: 3 }],
      totals: { EUR: { currency: "EUR", units: "27", nanos: 0 } },
      state: "STATE_PAID",
      updatedAt: "2025-05-05T05:05:05.500Z",
      couponCode: "",
    };
    expect(await callJson(url, echo, cart)).toEqual(cart);
  });
});

// ------------------------------------------------------------------------------------------------
// Servers that cannot be described

describe("describeFromReflection fails with a coded error, and in bounded time", () => {
  test("a gRPC server without reflection: GANTRY_ERR_REFLECTION_UNAVAILABLE", async () => {
    const server = new Server();
    server.addService(
      { Echo: rawMethod("/plain.v1.PlainService/Echo", false, false) },
      { Echo: (call: ServerUnaryCall<Buffer, Buffer>, done: sendUnaryData<Buffer>) => done(null, call.request) },
    );
    try {
      const url = await listen(server);
      const error = await failure(describeFromReflection(url, "plain.v1.PlainService"));
      expect(error.code).toBe("GANTRY_ERR_REFLECTION_UNAVAILABLE");
      expect(error.status).toBe("UNIMPLEMENTED");
      expect(error.message).toBe(
        `${url} does not serve gRPC server reflection (grpc.reflection.v1 or v1alpha), so the messages of ` +
          "plain.v1.PlainService cannot be learned from it",
      );
    } finally {
      await shutdown(server);
    }
  });

  test("a port where nothing listens: GANTRY_ERR_CONNECT", async () => {
    const probe = createServer();
    await new Promise<void>((resolve) => probe.listen(0, "127.0.0.1", resolve));
    const { port } = probe.address() as { port: number };
    await new Promise((resolve) => probe.close(resolve));
    const error = await failure(describeFromReflection(`grpc://127.0.0.1:${port}`, "a.v1.B"));
    expect(error.code).toBe("GANTRY_ERR_CONNECT");
    expect(error.message).toContain(`could not reach grpc://127.0.0.1:${port}`);
  });

  test("a peer that accepts the connection and never answers: DEADLINE_EXCEEDED at the deadline", async () => {
    const sockets = new Set<Socket>();
    const silent: NetServer = createServer((socket) => {
      sockets.add(socket);
      socket.on("close", () => sockets.delete(socket));
    });
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    try {
      const { port } = silent.address() as { port: number };
      const started = Date.now();
      const error = await failure(
        describeFromReflection(`grpc://127.0.0.1:${port}`, "a.v1.B", { deadline: started + 300 }),
      );
      expect(error.code).toBe("GANTRY_ERR_DEADLINE_EXCEEDED");
      expect(Date.now() - started).toBeLessThan(2000);
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => silent.close(resolve));
    }
  });

  test("a URL that is not grpc://: GANTRY_ERR_CONNECT before anything is opened", async () => {
    const error = await failure(describeFromReflection("http://127.0.0.1:1", "a.v1.B"));
    expect(error.code).toBe("GANTRY_ERR_CONNECT");
    expect(error.message).toContain("not a grpc:// or grpcs:// URL");
  });
});
