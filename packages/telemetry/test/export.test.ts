import { createServer, type Socket } from "node:net";
import { createLogger } from "@gantry/core";
import { context, propagation, SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import { afterEach, describe, expect, test } from "vitest";
import { startTelemetry, type Telemetry } from "../src/index.js";
import { type OtlpReceiver, startOtlpReceiver } from "../src/testing/index.js";

const log = createLogger("telemetry-test", { level: "silent" });

let telemetry: Telemetry | undefined;
let receiver: OtlpReceiver | undefined;

afterEach(async () => {
  await telemetry?.shutdown();
  await receiver?.close();
  telemetry = undefined;
  receiver = undefined;
});

/** Starts a receiver and telemetry that exports traces (only) to it. */
async function exportingTo(protocol: "http/protobuf" | "http/json", env: Record<string, string> = {}) {
  receiver = await startOtlpReceiver();
  telemetry = await startTelemetry({
    serviceName: "hello",
    serviceVersion: "1.4.2",
    instanceId: "hello-7f3a",
    protocol,
    endpoint: receiver.url,
    metricsExporter: "none",
    log,
    env: { OTEL_BSP_SCHEDULE_DELAY: "50", ...env },
  });
  return receiver;
}

describe.each(["http/protobuf", "http/json"] as const)("traces over OTLP %s", (protocol) => {
  test("a parent and a child span reach the receiver with ids, kinds, attributes, status and resource", async () => {
    const received = await exportingTo(protocol);
    const tracer = trace.getTracer("gantry-test");
    const parent = tracer.startSpan("hello.v1.HelloService/SayHello", { kind: SpanKind.SERVER });
    parent.setAttributes({ "rpc.method": "hello.v1.HelloService/SayHello", attempt: 2, ok: false, tags: ["a", "b"] });
    context.with(trace.setSpan(context.active(), parent), () => {
      const child = tracer.startSpan("db.query", { kind: SpanKind.CLIENT });
      child.setStatus({ code: SpanStatusCode.ERROR, message: "no rows" });
      child.end();
    });
    parent.end();

    const spans = await received.waitForSpans(2);
    const server = spans.find((span) => span.name === "hello.v1.HelloService/SayHello");
    const client = spans.find((span) => span.name === "db.query");
    expect(server).toMatchObject({
      traceId: parent.spanContext().traceId,
      spanId: parent.spanContext().spanId,
      parentSpanId: undefined,
      kind: "server",
      attributes: { "rpc.method": "hello.v1.HelloService/SayHello", attempt: 2, ok: false, tags: ["a", "b"] },
      status: { code: "unset", message: "" },
      scope: "gantry-test",
      resource: {
        "service.name": "hello",
        "service.version": "1.4.2",
        "service.instance.id": "hello-7f3a",
        "telemetry.sdk.language": "nodejs",
      },
    });
    expect(server?.traceId).toMatch(/^[0-9a-f]{32}$/);
    expect(client).toMatchObject({
      traceId: server?.traceId,
      parentSpanId: server?.spanId,
      kind: "client",
      status: { code: "error", message: "no rows" },
    });
    expect(client?.endTimeUnixNano).toBeGreaterThanOrEqual(client?.startTimeUnixNano ?? 0n);
    expect(received.counts()).toMatchObject({ spans: 2, metrics: 0 });
  });
});

describe("startTelemetry", () => {
  test("registers W3C trace-context and baggage propagation", async () => {
    await exportingTo("http/protobuf");
    const span = trace.getTracer("gantry-test").startSpan("outbound");
    const baggage = propagation.createBaggage({ tenant: { value: "acme" } });
    const carrier: Record<string, string> = {};
    propagation.inject(propagation.setBaggage(trace.setSpan(context.active(), span), baggage), carrier);
    span.end();
    const { traceId, spanId } = span.spanContext();
    expect(carrier).toEqual({ traceparent: `00-${traceId}-${spanId}-01`, baggage: "tenant=acme" });
  });

  test("shutdown flushes the spans still queued, and is idempotent", async () => {
    // A batch delay far longer than the test: only the shutdown's flush can send these.
    const received = await exportingTo("http/protobuf", { OTEL_BSP_SCHEDULE_DELAY: "600000" });
    for (let i = 0; i < 5; i++) trace.getTracer("gantry-test").startSpan(`queued ${i}`).end();
    expect(received.counts().spans).toBe(0);
    const first = telemetry?.shutdown();
    expect(telemetry?.shutdown()).toBe(first);
    await first;
    expect(received.counts().spans).toBe(5);
    // Unregistered: spans made now go nowhere, and telemetry can start again.
    expect(trace.getTracer("gantry-test").startSpan("after").isRecording()).toBe(false);
    telemetry = await startTelemetry({ env: { OTEL_TRACES_EXPORTER: "none", OTEL_METRICS_EXPORTER: "none" }, log });
  });

  test("shutdown returns within its bound when the collector never answers", async () => {
    const sockets = new Set<Socket>();
    const silent = createServer((socket) => {
      sockets.add(socket);
      socket.on("error", () => undefined);
    });
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    try {
      const port = (silent.address() as { port: number }).port;
      telemetry = await startTelemetry({
        endpoint: `http://127.0.0.1:${port}`,
        metricsExporter: "otlp",
        log,
        env: {},
      });
      trace.getTracer("gantry-test").startSpan("stuck").end();
      const startedAt = performance.now();
      await telemetry.shutdown(300);
      const elapsed = performance.now() - startedAt;
      expect(elapsed).toBeGreaterThanOrEqual(250);
      expect(elapsed).toBeLessThan(2000);
      expect(sockets.size).toBeGreaterThan(0);
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => silent.close(resolve));
    }
  });

  test("a second start while one runs is GANTRY_ERR_TELEMETRY_STARTED", async () => {
    await exportingTo("http/protobuf");
    await expect(startTelemetry({ env: {}, log })).rejects.toMatchObject({
      code: "GANTRY_ERR_TELEMETRY_STARTED",
      message: expect.stringContaining("already started in this process"),
    });
  });

  test("bad configuration fails before anything is registered", async () => {
    await expect(startTelemetry({ env: { OTEL_TRACES_EXPORTER: "jaeger" }, log })).rejects.toMatchObject({
      code: "GANTRY_ERR_TELEMETRY_EXPORTER",
    });
    await expect(startTelemetry({ env: {}, instrumentations: ["http"], log })).rejects.toMatchObject({
      code: "GANTRY_ERR_TELEMETRY_INSTRUMENTATION_REFUSED",
    });
    expect(trace.getTracer("gantry-test").startSpan("nothing").isRecording()).toBe(false);
  });

  test("OTEL_SDK_DISABLED=true sets nothing up", async () => {
    telemetry = await startTelemetry({ metricsExporter: "prometheus", env: { OTEL_SDK_DISABLED: "true" }, log });
    expect(telemetry.prometheus).toBeUndefined();
    expect(trace.getTracer("gantry-test").startSpan("nothing").isRecording()).toBe(false);
  });

  test("metrics pushed over OTLP reach the receiver's /v1/metrics", async () => {
    receiver = await startOtlpReceiver();
    telemetry = await startTelemetry({ endpoint: receiver.url, tracesExporter: "none", log, env: {} });
    const { metrics } = await import("@opentelemetry/api");
    metrics.getMeter("gantry-test").createCounter("test.events").add(3);
    await telemetry.shutdown();
    expect(receiver.counts()).toMatchObject({ requests: 1, metrics: 1, spans: 0 });
  });

  test("the undici instrumentation traces fetch, as a client span", async () => {
    receiver = await startOtlpReceiver();
    telemetry = await startTelemetry({
      endpoint: receiver.url,
      metricsExporter: "none",
      instrumentations: ["undici"],
      log,
      env: { OTEL_BSP_SCHEDULE_DELAY: "50" },
    });
    const response = await fetch(`${receiver.url}/not-otlp`);
    expect(response.status).toBe(404);
    const [span] = await receiver.waitForSpans(1);
    expect(span).toMatchObject({ kind: "client", attributes: { "http.response.status_code": 404 } });
  });
});

describe("the OTLP receiver", () => {
  test("counting only: spans are counted, not kept, and waits resolve on the count", async () => {
    receiver = await startOtlpReceiver({ keep: false });
    telemetry = await startTelemetry({
      endpoint: receiver.url,
      metricsExporter: "none",
      log,
      env: { OTEL_BSP_SCHEDULE_DELAY: "50" },
    });
    for (let i = 0; i < 300; i++) trace.getTracer("gantry-test").startSpan(`span ${i}`).end();
    expect(await receiver.waitForSpans(300)).toEqual([]);
    expect(receiver.counts().spans).toBe(300);
  });

  test("accepts logs as JSON, refuses other paths and types, and a wait is bounded", async () => {
    receiver = await startOtlpReceiver();
    const logs = {
      resourceLogs: [{ scopeLogs: [{ logRecords: [{ body: { stringValue: "a" } }, { body: { stringValue: "b" } }] }] }],
    };
    const post = (path: string, type: string, body: string) =>
      fetch(receiver?.url + path, { method: "POST", headers: { "content-type": type }, body });
    const accepted = await post("/v1/logs", "application/json", JSON.stringify(logs));
    expect([accepted.status, await accepted.text()]).toEqual([200, "{}"]);
    expect(receiver.counts()).toMatchObject({ requests: 1, logRecords: 2 });
    expect((await post("/v1/other", "application/json", "{}")).status).toBe(404);
    expect((await post("/v1/traces", "text/plain", "x")).status).toBe(415);
    expect((await post("/v1/traces", "application/x-protobuf", "\u00ff")).status).toBe(400);
    await expect(receiver.waitForSpans(1, 50)).rejects.toThrow("0 of 1 spans arrived within 50 ms");
  });
});
