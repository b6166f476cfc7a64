import { execFile } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import {
  createApp,
  describeService,
  Field,
  type GantryApp,
  Message,
  Method,
  registerEnum,
  Service,
} from "@gantry/core";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { generateProto, grpcTransport, protoFilePath } from "../src/index.js";

// A client in another language: Python's grpcio (Debian's python3-grpcio), with stubs that Debian's
// protoc generated from the .proto Gantry generates, calls a Gantry service over real gRPC. It proves
// that the wire format (int64 past 2^53, uint64 max, maps, proto3 presence, enums, timestamps before
// 1970), the error details, health and both versions of reflection agree with a non-Node implementation.

const execFileAsync = promisify(execFile);
const PYTHON = "/usr/bin/python3"; // not the python3 first on PATH: only Debian's sees python3-grpcio
const PROTOC = "/usr/bin/protoc";
const GRPC_PLUGIN = "/usr/bin/grpc_python_plugin";
const GRPC_PROTO = "/usr/share/grpc-proto";
const CLIENT = fileURLToPath(new URL("./interop/client.py", import.meta.url));

enum Color {
  COLOR_UNSPECIFIED = 0,
  COLOR_RED = 1,
  COLOR_BLUE = 2,
}
registerEnum(Color, "Color");

@Message()
class InteropRequest {
  @Field(1, { type: "int64" }) id!: bigint;
  @Field(2, { type: "uint64" }) big!: bigint;
  @Field(3, { map: { key: "string", value: "int32" } }) scores!: Record<string, number>;
  @Field(4, { optional: true }) nickname?: string;
  @Field(5, { enum: Color }) color!: Color;
  @Field(6) at?: Date;
  @Field(7, { type: "string", repeated: true, maxItems: 10 }) tags!: string[];
}

/** What the server received, each value changed in a way that shows it was read right. */
@Message()
class InteropReply {
  @Field(1, { type: "int64" }) nextId!: bigint;
  @Field(2, { type: "uint64" }) big!: bigint;
  @Field(3, { map: { key: "string", value: "int32" } }) doubled!: Record<string, number>;
  @Field(4) nicknameSet!: boolean;
  @Field(5, { optional: true }) nickname?: string;
  @Field(6, { enum: Color }) color!: Color;
  @Field(7) nextDay?: Date;
  @Field(8, { type: "string", repeated: true }) tags!: string[];
}

@Service({ package: "interop", version: "v1" })
class InteropService {
  @Method({ output: InteropReply })
  async echo(request: InteropRequest): Promise<InteropReply> {
    return {
      nextId: request.id + 1n,
      big: request.big,
      doubled: Object.fromEntries(Object.entries(request.scores).map(([name, score]) => [name, score * 2])),
      nicknameSet: request.nickname !== undefined,
      nickname: request.nickname,
      color: request.color,
      nextDay: request.at === undefined ? undefined : new Date(request.at.getTime() + 86_400_000),
      tags: request.tags,
    };
  }
}

// google.rpc.Status and the details Gantry sends in it, as googleapis declares them (Debian packages
// no googleapis protos): to read the grpc-status-details-bin trailer in Python.
const RPC_PROTOS = {
  "google/rpc/status.proto": `syntax = "proto3";
package google.rpc;
import "google/protobuf/any.proto";
message Status {
  int32 code = 1;
  string message = 2;
  repeated google.protobuf.Any details = 3;
}
`,
  "google/rpc/error_details.proto": `syntax = "proto3";
package google.rpc;
message ErrorInfo {
  string reason = 1;
  string domain = 2;
  map<string, string> metadata = 3;
}
message BadRequest {
  message FieldViolation {
    string field = 1;
    string description = 2;
  }
  repeated FieldViolation field_violations = 1;
}
`,
};

let app: GantryApp;
let dir: string;
let target: string;
let out: Record<string, unknown>;

/** Compiles .proto files under `root` into Python message and gRPC stubs in `stubs`. */
async function protoc(root: string, stubs: string, files: readonly string[]): Promise<void> {
  await execFileAsync(PROTOC, [
    `--plugin=protoc-gen-grpc=${GRPC_PLUGIN}`,
    `-I${root}`,
    `--python_out=${stubs}`,
    `--grpc_out=${stubs}`,
    ...files,
  ]);
}

beforeAll(async () => {
  app = createApp({
    name: "interop",
    services: [InteropService],
    transports: [grpcTransport({ port: 0, host: "127.0.0.1" })],
  });
  await app.start({ env: {}, flags: { "log.level": "silent" } });
  dir = await mkdtemp(join(tmpdir(), "gantry-interop-"));
  const protos = join(dir, "proto");
  const stubs = join(dir, "stubs");
  await mkdir(stubs);
  const files = [
    ...generateProto([describeService(InteropService)]),
    ...Object.entries(RPC_PROTOS).map(([path, content]) => ({ path, content })),
  ];
  for (const file of files) {
    await mkdir(join(protos, dirname(file.path)), { recursive: true });
    await writeFile(join(protos, file.path), file.content);
  }
  await protoc(
    protos,
    stubs,
    files.map((file) => file.path),
  );
  await protoc(GRPC_PROTO, stubs, [
    "grpc/health/v1/health.proto",
    "grpc/reflection/v1/reflection.proto",
    "grpc/reflection/v1alpha/reflection.proto",
  ]);
  // Async, so that this process's server goes on serving while Python calls it.
  target = app.endpoints[0].url.replace("grpc://", "");
  const module = protoFilePath("interop.v1").replace(/\.proto$/, "");
  const { stdout } = await execFileAsync(PYTHON, [CLIENT, target, stubs, module], {
    timeout: 30_000,
    env: { PATH: process.env.PATH, PYTHONDONTWRITEBYTECODE: "1", PYTHONNOUSERSITE: "1" },
  });
  out = JSON.parse(stdout);
}, 60_000);

afterAll(async () => {
  await app?.close();
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

describe("a Python grpcio client with protoc's stubs", () => {
  test("sends and reads int64, uint64, maps, optional, enums and timestamps as Gantry does", () => {
    expect(out.reply).toEqual({
      next_id: "-9007199254740992",
      big: "18446744073709551615",
      doubled: { ada: 72, grace: -170 },
      nickname_set: true,
      nickname: "",
      color: "COLOR_BLUE",
      next_day: "1969-07-21T20:17:40.500Z",
      tags: ["x", "y"],
    });
    expect(out.reply_has_nickname).toBe(true);
    // int64 max; a timestamp a nanosecond before 1970 loses its nanoseconds toward the past, as Date
    // holds milliseconds (rounding would move it across the epoch).
    expect(out.edges).toEqual({
      next_id: "9223372036854775807",
      color: "COLOR_RED",
      next_day: "1970-01-01T23:59:59.999Z",
    });
  });

  test("an unset optional field stays unset both ways", () => {
    expect(out.bare).toEqual({ next_id: "1" });
    expect(out.bare_has_nickname).toBe(false);
  });

  test("a broken rule is INVALID_ARGUMENT, with the specific code and the field in the rich status", () => {
    const message = "invalid InteropRequest: tags must have at most 10 items";
    expect(out.error).toEqual({
      code: "INVALID_ARGUMENT",
      details: message,
      status: {
        code: 3,
        message,
        details: [
          {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            reason: "GANTRY_ERR_VALIDATION",
            domain: "gantry",
            metadata: { retryable: "false" },
          },
          {
            "@type": "type.googleapis.com/google.rpc.BadRequest",
            field_violations: [{ field: "tags", description: "must have at most 10 items" }],
          },
        ],
      },
    });
  });
});

describe("health, from Python", () => {
  test("the server and its service are SERVING; an unknown service is NOT_FOUND", () => {
    expect(out.health).toEqual({ server: "SERVING", service: "SERVING", unknown: "NOT_FOUND" });
  });
});

describe.each(["v1", "v1alpha"])("server reflection %s, as grpcurl uses it", (version) => {
  test("lists the services, describes each, serves the file of any symbol, and its types alone call", () => {
    const files = ["interop/v1/interop.proto", "google/protobuf/timestamp.proto"];
    expect(out[`reflection_${version}`]).toEqual({
      valid_host: target,
      services: [
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
        "interop.v1.InteropService",
      ],
      // Each file exactly as protoc describes the .proto it came from: the one Gantry generates for
      // the app's service, the standard ones for health and reflection.
      described: {
        "grpc.health.v1.Health": { files: ["grpc/health/v1/health.proto"], same_as_protoc: true },
        "grpc.reflection.v1.ServerReflection": { files: ["grpc/reflection/v1/reflection.proto"], same_as_protoc: true },
        "grpc.reflection.v1alpha.ServerReflection": {
          files: ["grpc/reflection/v1alpha/reflection.proto"],
          same_as_protoc: true,
        },
        "interop.v1.InteropService": { files, same_as_protoc: true },
      },
      files_by_symbol: {
        "interop.v1.InteropService.Echo": files,
        "interop.v1.InteropReply": files,
        "interop.v1.Color": files,
      },
      files_by_name: files,
      unknown_symbol: { error_code: 5, error_message: "symbol nope.v1.Nope not found" },
      // The client half-closed the stream it held open: the server ends it with OK and nothing more.
      left_after_close: 0,
      // Built from the reflected descriptors alone: int64 and uint64 past 2^53, a map, an optional
      // string, an enum by name and a timestamp before 1970 with a fraction, read back the same way.
      dynamic_echo: {
        next_id: "9007199254740994",
        big: "9007199254740993",
        doubled: { linus: 42 },
        nickname_set: true,
        nickname: "Ada",
        color: "COLOR_RED",
        next_day: "1900-01-02T00:00:00.250Z",
        tags: ["dynamic"],
      },
      // What `grpcurl -d '{"service":"..."}' host grpc.health.v1.Health/Check` does.
      dynamic_health: { status: "SERVING" },
    });
  });
});
