import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  type CallContext,
  createApp,
  Field,
  type GantryApp,
  GantryError,
  Message,
  Method,
  registerEnum,
  Service,
} from "@gantry/core";
import { discovery } from "@gantry/discovery";
import { grpcTransport } from "@gantry/transport-grpc";
import { httpTransport } from "@gantry/transport-http";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { runGantry } from "./gantry.js";

enum Tone {
  TONE_UNSPECIFIED = 0,
  TONE_WARM = 1,
  TONE_COLD = 2,
}
registerEnum(Tone, "Tone");

@Message()
class GreetRequest {
  @Field(1) name!: string;
  @Field(2, { enum: Tone }) tone!: Tone;
  @Field(3, { type: "int64" }) visits!: bigint;
  @Field(4) at?: Date;
}

@Message()
class GreetReply {
  @Field(1) message!: string;
  @Field(2, { enum: Tone }) tone!: Tone;
  @Field(3, { type: "int64" }) nextVisit!: bigint;
  @Field(4) at?: Date;
  /** The transport the call came in by. */
  @Field(5) transport!: string;
}

/** Calls that reached a method, across every instance. */
let served = 0;

@Service({ package: "calltest", version: "v1" })
class GreeterService {
  @Method({ output: GreetReply })
  async greet(request: GreetRequest, call: CallContext): Promise<GreetReply> {
    served += 1;
    if (request.name === "nobody") {
      throw new GantryError("NOT_FOUND", "nobody is not known here", { code: "CALLTEST_NOT_KNOWN" });
    }
    return {
      message: `Hello, ${request.name}`,
      tone: request.tone,
      nextVisit: request.visits + 1n,
      at: request.at,
      transport: call.transport,
    };
  }

  @Method({ input: GreetRequest, output: GreetReply, stream: "server" })
  async *follow(request: GreetRequest): AsyncGenerator<GreetReply> {
    yield { message: request.name, tone: request.tone, nextVisit: 0n, transport: "" };
  }
}

const GREET = "calltest.v1.GreeterService.Greet";
const INPUT = JSON.stringify({
  name: "Ada",
  tone: "TONE_WARM",
  visits: "9007199254740993",
  at: "2024-02-29T03:04:05.678Z",
});
const REPLY = {
  message: "Hello, Ada",
  tone: "TONE_WARM",
  nextVisit: "9007199254740994",
  at: "2024-02-29T03:04:05.678Z",
};

describe("gantry call", () => {
  let dir: string;
  const apps: GantryApp[] = [];
  /** GANTRY_REGISTRY for a namespace with one gRPC-only instance, one with that and an HTTP-only one, and one HTTP-only. */
  let grpcOnly: Record<string, string>;
  let mixed: Record<string, string>;
  let httpOnly: Record<string, string>;

  async function start(namespace: string, kind: "grpc" | "http"): Promise<Record<string, string>> {
    const env = { GANTRY_REGISTRY: `local://${namespace}?dir=${encodeURIComponent(dir)}` };
    const app = createApp({
      name: `call-${kind}`,
      services: [GreeterService],
      transports: [
        kind === "grpc" ? grpcTransport({ host: "127.0.0.1", port: 0 }) : httpTransport({ host: "127.0.0.1", port: 0 }),
      ],
      discovery: discovery(),
      logger: { level: "silent" },
    });
    apps.push(app);
    await app.start({ env });
    return env;
  }

  beforeAll(async () => {
    // mkdtemp makes the directory 0700, as local:// requires.
    dir = await mkdtemp(join(tmpdir(), "gantry-call-"));
    grpcOnly = await start("grpc-only", "grpc");
    mixed = await start("mixed", "grpc");
    await start("mixed", "http");
    httpOnly = await start("http-only", "http");
  });

  afterAll(async () => {
    await Promise.all(apps.map((app) => app.close()));
    await rm(dir, { recursive: true, force: true });
  });

  test("calls an instance that offers only gRPC, its messages learned by reflection, and prints proto3 JSON", async () => {
    const result = await runGantry(["call", GREET, INPUT], grpcOnly);
    expect(result.stderr).toBe("");
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout)).toEqual({ ...REPLY, transport: "grpc" });
    const forced = await runGantry(
      ["call", "calltest.v1.GreeterService/Greet", INPUT, "--transport", "grpc"],
      grpcOnly,
    );
    expect(forced.code).toBe(0);
    expect(JSON.parse(forced.stdout)).toEqual({ ...REPLY, transport: "grpc" });
  });

  test("a method's error is printed with its code, exit 1", async () => {
    const result = await runGantry(["call", GREET, '{"name":"nobody"}'], grpcOnly);
    expect(result.code).toBe(1);
    expect(result.stdout).toBe("");
    expect(result.stderr).toMatch(/^gantry call: nobody is not known here .*\[CALLTEST_NOT_KNOWN\]$/m);
  });

  test("an input field of the wrong type fails with INVALID_ARGUMENT naming the fields, before anything is sent", async () => {
    const before = served;
    const result = await runGantry(["call", GREET, '{"name":"Ada","visits":"many","tone":"TONE_HOT"}'], grpcOnly);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^gantry call: invalid GreetRequest: tone .*; visits .* \[GANTRY_ERR_VALIDATION\]$/m);
    expect(result.stderr).not.toMatch(/\n\s+at /);
    expect(served).toBe(before);
  });

  test("--transport http against an instance that offers only gRPC says none offers http, exit 1", async () => {
    const result = await runGantry(["call", GREET, INPUT, "--transport", "http", "-t", "2s"], grpcOnly);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("(none of the 1 offers http with a client transport for it)");
    expect(result.stderr).toContain("[GANTRY_ERR_NO_INSTANCES]");
  });

  test("--transport grpc against instances that offer only HTTP says none offers grpc, exit 1", async () => {
    const result = await runGantry(["call", GREET, INPUT, "--transport", "grpc"], httpOnly);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(
      "no instance of calltest.v1.GreeterService is available (none of the 1 offers grpc) [GANTRY_ERR_NO_INSTANCES]",
    );
  });

  test("an unknown method lists the service's methods; a streaming method is refused as usage", async () => {
    const unknown = await runGantry(["call", "calltest.v1.GreeterService.Wave", "{}"], grpcOnly);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain(
      "calltest.v1.GreeterService has no method Wave; its methods: Greet, Follow [GANTRY_ERR_REFLECTION_NO_METHOD]",
    );
    const streaming = await runGantry(["call", "calltest.v1.GreeterService.Follow", "{}"], grpcOnly);
    expect(streaming.code).toBe(2);
    expect(streaming.stderr).toContain("calltest.v1.GreeterService/Follow is a server streaming method");
    const badKind = await runGantry(["call", GREET, "{}", "--transport", "quic"], grpcOnly);
    expect(badKind.code).toBe(2);
    expect(badKind.stderr).toContain('--transport takes grpc or http, not "quic" [GANTRY_ERR_USAGE]');
  });

  test("in a fleet of a gRPC-only and an HTTP-only instance, both get the same input and give the same reply", async () => {
    // The balancer picks at random: call until both have answered (each does with odds 1/2 a call).
    const transports = new Set<string>();
    for (let i = 0; i < 20 && transports.size < 2; i++) {
      const result = await runGantry(["call", GREET, INPUT], mixed);
      expect(result.stderr).toBe("");
      const reply = JSON.parse(result.stdout) as { transport: string };
      expect(reply).toEqual({ ...REPLY, transport: reply.transport });
      transports.add(reply.transport);
    }
    expect([...transports].sort()).toEqual(["grpc", "http"]);
  });

  test("with only HTTP instances the JSON goes as it is, as before", async () => {
    const result = await runGantry(["call", GREET, INPUT], httpOnly);
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout)).toEqual({ ...REPLY, transport: "http" });
  });

  test("--help says how the transport is chosen", async () => {
    const help = await runGantry(["call", "--help"]);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain("--transport <kind>");
    expect(help.stdout).toContain("server reflection");
  });
});
