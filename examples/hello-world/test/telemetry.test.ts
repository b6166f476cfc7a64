import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type OtlpReceiver, type ReceivedSpan, startOtlpReceiver } from "@gantry/telemetry/testing";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { type Started, startEntry } from "./processes.js";

/**
 * World (HTTP) → its typed client → Hello (gRPC), as two `gantry start` processes with telemetry on,
 * exporting over OTLP/HTTP to a receiver this test runs.
 */
describe("one trace across World and Hello, in two processes, at a real OTLP receiver", () => {
  let receiver: OtlpReceiver;
  let dir: string;
  let hello: Started;
  let world: Started;

  beforeAll(async () => {
    receiver = await startOtlpReceiver();
    dir = await mkdtemp(join(tmpdir(), "gantry-otel-"));
    const env = {
      GANTRY_REGISTRY: `local://telemetry?dir=${encodeURIComponent(dir)}`,
      OTEL_TRACES_EXPORTER: "otlp",
      OTEL_METRICS_EXPORTER: "prometheus",
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
      OTEL_EXPORTER_OTLP_PROTOCOL: "http/protobuf",
      // Spans reach the receiver within 50 ms of ending, rather than the default 5 s.
      OTEL_BSP_SCHEDULE_DELAY: "50",
    };
    [hello, world] = await Promise.all([
      startEntry("hello.main.js", env, ["log.level=debug"]),
      startEntry("world.main.js", env),
    ]);
  });

  afterAll(async () => {
    await Promise.all([hello?.stop(), world?.stop()]);
    await receiver?.close();
    await rm(dir, { recursive: true, force: true });
  });

  /** The spans of the trace `traceId`, once `count` of them have arrived. */
  async function traceOf(traceId: string, count: number): Promise<ReceivedSpan[]> {
    for (let waited = 0; waited < 10_000; waited += 50) {
      const spans = receiver.spans().filter((span) => span.traceId === traceId);
      if (spans.length >= count) return spans;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    throw new Error(`trace ${traceId}: ${receiver.spans().filter((s) => s.traceId === traceId).length} spans`);
  }

  async function greet(names: string[], traceparent: string): Promise<Response> {
    return fetch(`${world.http}/world/greet`, {
      method: "POST",
      headers: { "content-type": "application/json", traceparent },
      body: JSON.stringify({ names }),
    });
  }

  test("a greeting is one trace: World's server span → its client span → Hello's server span", async () => {
    const traceId = "4bf92f3577b34da6a3ce929d0e0e4736";
    const callerSpan = "00f067aa0ba902b7";
    const response = await greet(["Ada"], `00-${traceId}-${callerSpan}-01`);
    expect(response.status).toBe(200);

    const spans = await traceOf(traceId, 3);
    expect(spans).toHaveLength(3);
    const server = spans.find((s) => s.resource["service.name"] === "world" && s.kind === "server") as ReceivedSpan;
    const client = spans.find((s) => s.kind === "client") as ReceivedSpan;
    const callee = spans.find((s) => s.resource["service.name"] === "hello") as ReceivedSpan;

    expect(server).toMatchObject({ name: "POST /world/greet", parentSpanId: callerSpan, status: { code: "unset" } });
    expect(server.attributes).toMatchObject({
      "http.request.method": "POST",
      "http.route": "/world/greet",
      "url.path": "/world/greet",
      "http.response.status_code": 200,
      "server.address": "127.0.0.1",
      "network.peer.address": "127.0.0.1",
      "rpc.method": "world.v1.WorldService/Greet",
    });
    expect(server.resource).toMatchObject({ "service.name": "world", "service.version": "0.1.0" });
    expect(server.resource["service.instance.id"]).toEqual(expect.any(String));

    const helloPort = Number(new URL(hello.grpc.replace("grpc:", "http:")).port);
    expect(client).toMatchObject({ name: "hello.v1.HelloService/SayHello", parentSpanId: server.spanId });
    expect(client.attributes).toMatchObject({
      "rpc.system.name": "grpc",
      "rpc.method": "hello.v1.HelloService/SayHello",
      "rpc.status_code": "OK",
      "server.address": "127.0.0.1",
      "server.port": helloPort,
      "gantry.attempt": 1,
    });

    expect(callee).toMatchObject({
      name: "hello.v1.HelloService/SayHello",
      kind: "server",
      parentSpanId: client.spanId,
    });
    expect(callee.attributes).toMatchObject({
      "rpc.system.name": "grpc",
      "rpc.method": "hello.v1.HelloService/SayHello",
      "rpc.status_code": "OK",
      "server.port": helloPort,
      "network.peer.address": "127.0.0.1",
    });
    expect(callee.scope).toBe("@gantry/core");

    // Hello logs its greeting at debug: the line carries the trace and Hello's server span.
    const line = hello
      .output()
      .split("\n")
      .find((l) => l.includes('"msg":"greeting"') && l.includes(traceId));
    expect(line).toBeDefined();
    expect(JSON.parse(line as string)).toMatchObject({ trace_id: traceId, span_id: callee.spanId, name: "Ada" });
  });

  test("a failing call: the callee's code on its span, an error status on the client's", async () => {
    const traceId = "5bf92f3577b34da6a3ce929d0e0e4736";
    const response = await greet(["x".repeat(65)], `00-${traceId}-00f067aa0ba902b7-01`);
    expect(response.status).toBe(400);

    const spans = await traceOf(traceId, 3);
    const server = spans.find((s) => s.resource["service.name"] === "world" && s.kind === "server") as ReceivedSpan;
    const client = spans.find((s) => s.kind === "client") as ReceivedSpan;
    const callee = spans.find((s) => s.resource["service.name"] === "hello") as ReceivedSpan;

    expect(callee.attributes).toMatchObject({
      "rpc.status_code": "INVALID_ARGUMENT",
      "error.type": "GANTRY_ERR_VALIDATION",
    });
    // The caller's mistake: not an error of the server's (OpenTelemetry's RPC conventions).
    expect(callee.status.code).toBe("unset");
    expect(client.status.code).toBe("error");
    expect(client.status.message).toMatch(/^INVALID_ARGUMENT: /);
    expect(client.attributes).toMatchObject({ "rpc.status_code": "INVALID_ARGUMENT" });
    expect(server.attributes).toMatchObject({ "http.response.status_code": 400 });
    expect(server.status.code).toBe("unset");
  });

  test("with Hello gone, World's own span is an error: UNAVAILABLE, HTTP 503", async () => {
    expect(await hello.stop()).toBe(0);
    const traceId = "6bf92f3577b34da6a3ce929d0e0e4736";
    let response = await greet(["Ada"], `00-${traceId}-00f067aa0ba902b7-01`);
    // World may still hold Hello's record for a moment after it left: until it sees the removal its
    // calls fail too, as UNAVAILABLE either way.
    expect(response.status).toBe(503);
    const [server] = await traceOf(traceId, 1);
    expect(server.kind).toBe("server");
    expect(server.attributes).toMatchObject({ "http.response.status_code": 503 });
    expect(server.status.code).toBe("error");
    expect(server.status.message).toMatch(/^UNAVAILABLE: /);
    response = await fetch(`${world.http}/readyz`);
    expect(response.status).toBe(200);
  });

  test("/metrics on World's own HTTP port counts its calls and its client's attempts", async () => {
    const response = await fetch(`${world.http}/metrics`);
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toMatch(/^text\/plain/);
    const text = await response.text();
    const samples = parsePrometheus(text);
    const served = samples.filter(
      (s) => s.name === "rpc_server_call_duration_count" && s.labels.rpc_method === "world.v1.WorldService/Greet",
    );
    expect(served.reduce((sum, s) => sum + s.value, 0)).toBeGreaterThanOrEqual(2);
    const attempts = samples.filter(
      (s) => s.name === "rpc_client_call_duration_count" && s.labels.rpc_method === "hello.v1.HelloService/SayHello",
    );
    expect(attempts.reduce((sum, s) => sum + s.value, 0)).toBeGreaterThanOrEqual(2);
  });
});

interface Sample {
  readonly name: string;
  readonly labels: Record<string, string>;
  readonly value: number;
}

/** The samples of a Prometheus text exposition: `name{label="value",...} number`, comments skipped. */
function parsePrometheus(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (match === null) throw new Error(`not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const pair of (match[2] ?? "").matchAll(/([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"/g)) labels[pair[1]] = pair[2];
    samples.push({ name: match[1], labels, value: Number(match[3]) });
  }
  return samples;
}
