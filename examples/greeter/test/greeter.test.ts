import { type ChildProcessByStdio, execFile, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, rm } from "node:fs/promises";
import { connect, type IncomingHttpHeaders } from "node:http2";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { describeService, GantryError, type MethodDescriptor } from "@gantry/core";
import { createTestApp } from "@gantry/core/testing";
import { decodeMessage, encodeMessage } from "@gantry/transport-grpc";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { Greeter } from "../src/greeter.service.js";
import app from "../src/main.js";

const execFileAsync = promisify(execFile);

describe("greeter, in process", () => {
  test("serves what helloworld.proto declares", () => {
    const service = describeService(Greeter);
    expect(service.fullName).toBe("helloworld.Greeter");
    expect(service.description).toBe("The greeting service definition.");
    expect(service.methods.map((m) => [m.key, m.path, m.stream, m.input.name, m.output.name])).toEqual([
      ["sayHello", "/helloworld.Greeter/SayHello", "unary", "HelloRequest", "HelloReply"],
      ["sayHelloStream", "/helloworld.Greeter/SayHelloStream", "server", "HelloRequest", "HelloReply"],
    ]);
  });

  test("SayHello greets by name; input that does not fit HelloRequest is refused", async () => {
    await using t = await createTestApp(app);
    expect(await t.client(Greeter).sayHello({ name: "Ada" })).toEqual({ message: "Hello, Ada" });
    const sayHello = t.app.method(Greeter, "sayHello");
    const error = await t.app.call(sayHello, JSON.parse('{"name": 42}')).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(GantryError);
    expect(error).toMatchObject({ status: "INVALID_ARGUMENT", violations: [{ field: "name" }] });
  });

  test("SayHelloStream sends one reply per greeting", async () => {
    await using t = await createTestApp(app);
    const replies: unknown[] = [];
    for await (const reply of await t.client(Greeter).sayHelloStream({ name: "Ada" })) replies.push(reply);
    expect(replies).toEqual([{ message: "Hello, Ada" }, { message: "Hola, Ada" }, { message: "Bonjour, Ada" }]);
  });
});

describe("greeter, as gantry start runs it", () => {
  let child: ChildProcessByStdio<null, Readable, Readable>;
  let exited: Promise<[number | null, NodeJS.Signals | null]>;
  let http: string;
  let grpc: string;

  beforeAll(async () => {
    const bin = fileURLToPath(new URL("../../../packages/cli/dist/bin.js", import.meta.url));
    const entry = fileURLToPath(new URL("../dist/main.js", import.meta.url));
    const flags = ["http.port=0", "http.host=127.0.0.1", "grpc.port=0", "grpc.host=127.0.0.1"];
    child = spawn(process.execPath, [bin, "start", entry, ...flags.flatMap((flag) => ["--set", flag])], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    exited = once(child, "exit") as Promise<[number | null, NodeJS.Signals | null]>;
    [http, grpc] = await new Promise<[string, string]>((resolve, reject) => {
      let out = "";
      child.stdout.on("data", (chunk: Buffer) => {
        out += chunk.toString();
        const http = /^\s+http\s+(http:\/\/\S+)$/m.exec(out);
        const grpc = /^\s+grpc\s+grpc:\/\/(\S+)$/m.exec(out);
        if (http !== null && grpc !== null) resolve([http[1], grpc[1]]);
      });
      void exited.then(() => reject(new Error(`exited early: ${out}`)));
    });
  });

  afterAll(async () => {
    child.kill("SIGTERM");
    const [code] = await exited;
    expect(code).toBe(0);
  });

  test("answers on the uniform HTTP route of SayHello", async () => {
    const post = (path: string, body: unknown) =>
      fetch(`${http}${path}`, {
        method: "POST",
        body: JSON.stringify(body),
        headers: { "content-type": "application/json" },
      });
    const hello = await post("/helloworld.Greeter/SayHello", { name: "Ada" });
    expect(hello.status).toBe(200);
    expect(await hello.json()).toEqual({ message: "Hello, Ada" });
    const invalid = await post("/helloworld.Greeter/SayHello", { name: ["Ada"] });
    expect(invalid.status).toBe(400);
    expect(await invalid.json()).toMatchObject({ canonicalStatus: "INVALID_ARGUMENT" });
    // Streaming methods are served over gRPC only.
    expect((await post("/helloworld.Greeter/SayHelloStream", { name: "Ada" })).status).toBe(501);
  });

  test("SayHello over gRPC: one request, one reply", async () => {
    expect(await grpcCall(grpc, rpc("SayHello"), { name: "Ada" })).toEqual({
      status: 0,
      replies: [{ message: "Hello, Ada" }],
    });
  });

  test("SayHelloStream over gRPC: the replies in order, then OK", async () => {
    expect(await grpcCall(grpc, rpc("SayHelloStream"), { name: "Ada" })).toEqual({
      status: 0,
      replies: [{ message: "Hello, Ada" }, { message: "Hola, Ada" }, { message: "Bonjour, Ada" }],
    });
  });

  test("Python's grpcio calls it with stubs protoc generated from helloworld.proto", async () => {
    const dir = await mkdtemp(join(tmpdir(), "gantry-greeter-"));
    try {
      const proto = fileURLToPath(new URL("../proto/", import.meta.url));
      await execFileAsync("/usr/bin/protoc", [
        "--plugin=protoc-gen-grpc=/usr/bin/grpc_python_plugin",
        `-I${proto}`,
        `--python_out=${dir}`,
        `--grpc_out=${dir}`,
        "helloworld.proto",
      ]);
      // Debian's python3, not the python3 first on PATH: only it sees python3-grpcio.
      const { stdout } = await execFileAsync("/usr/bin/python3", ["-c", PYTHON_CLIENT, grpc, dir], {
        timeout: 30_000,
        env: { PATH: process.env.PATH, PYTHONDONTWRITEBYTECODE: "1", PYTHONNOUSERSITE: "1" },
      });
      expect(JSON.parse(stdout)).toEqual({
        reply: "Hello, Grace",
        stream: ["Hello, Grace", "Hola, Grace", "Bonjour, Grace"],
      });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 45_000);
});

/** A method of the Greeter by its rpc name. */
function rpc(name: string): MethodDescriptor {
  const method = describeService(Greeter).methods.find((m) => m.name === name);
  if (method === undefined) throw new Error(`no rpc ${name}`);
  return method;
}

/**
 * One gRPC call on a plain HTTP/2 stream, the protocol with no gRPC library: the request as one
 * length-prefixed protobuf message; back, every reply decoded and the grpc-status of the trailers.
 */
async function grpcCall(target: string, method: MethodDescriptor, input: unknown) {
  const session = connect(`http://${target}`);
  try {
    const stream = session.request({
      ":method": "POST",
      ":path": method.path,
      "content-type": "application/grpc",
      te: "trailers",
    });
    const message = encodeMessage(method.input, input);
    const frame = Buffer.alloc(5 + message.length);
    frame.writeUInt32BE(message.length, 1);
    frame.set(message, 5);
    stream.end(frame);
    // A failed call may answer with headers only ("trailers-only"); otherwise the status is in the trailers.
    let end: IncomingHttpHeaders = {};
    stream.on("response", (headers) => {
      end = headers;
    });
    stream.on("trailers", (trailers) => {
      end = trailers;
    });
    const chunks: Buffer[] = [];
    for await (const chunk of stream) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks);
    const replies: unknown[] = [];
    for (let at = 0; at < body.length; at += 5 + body.readUInt32BE(at + 1)) {
      replies.push(decodeMessage(method.output, body.subarray(at + 5, at + 5 + body.readUInt32BE(at + 1))));
    }
    return { status: Number(end["grpc-status"]), replies };
  } finally {
    session.close();
  }
}

const PYTHON_CLIENT = `
import json, sys
target, stubs = sys.argv[1], sys.argv[2]
sys.path.insert(0, stubs)
import grpc, helloworld_pb2, helloworld_pb2_grpc
with grpc.insecure_channel(target, options=[("grpc.enable_http_proxy", 0)]) as channel:
    stub = helloworld_pb2_grpc.GreeterStub(channel)
    reply = stub.SayHello(helloworld_pb2.HelloRequest(name="Grace"), timeout=5)
    stream = stub.SayHelloStream(helloworld_pb2.HelloRequest(name="Grace"), timeout=5)
    print(json.dumps({"reply": reply.message, "stream": [r.message for r in stream]}))
`;
