import { createServer } from "node:net";
import {
  type CallContext,
  clientToken,
  coreErrors,
  createApp,
  createLogger,
  describeService,
  Field,
  type GantryApp,
  InjectClient,
  Message,
  Method,
  Service,
  type ServiceClient,
} from "@gantry/core";
import { ClientRuntime, type ClientTransport, type UnaryCall } from "@gantry/core/client";
import { discoveryOf, fixedResolver, until } from "@gantry/core/testing";
import { httpClientTransport, httpTransport } from "@gantry/transport-http";
import { trace } from "@opentelemetry/api";
import { afterEach, describe, expect, test } from "vitest";
import { startTelemetry, type Telemetry } from "../src/index.js";
import { type OtlpReceiver, type ReceivedSpan, startOtlpReceiver } from "../src/testing/index.js";

/** The spans core makes itself (server, client attempts), and what a method does inside them. */

@Message()
class Note {
  @Field(1) text!: string;
  @Field(2) traceparent!: string;
}

@Service({ package: "notes", version: "v1" })
class NoteService {
  @Method({ output: Note })
  async echo(note: Note, ctx: CallContext): Promise<Note> {
    ctx.log.info({ text: note.text }, "echo");
    // The method's own span, under the server span.
    await trace.getTracer("notes").startActiveSpan("notes.store", async (span) => {
      span.setAttribute("server.span", trace.getActiveSpan() === span);
      span.end();
    });
    return { text: note.text, traceparent: ctx.metadata.get("traceparent") ?? "" };
  }
}

/** Calls NoteService through its typed client; one instance in its registry may be dead. */
@Service({ package: "relay", version: "v1" })
class RelayService {
  constructor(@InjectClient(NoteService) private readonly notes: ServiceClient<NoteService>) {}

  @Method({ output: Note })
  async relay(note: Note): Promise<Note> {
    return this.notes.echo({ text: note.text });
  }
}

const silent = createLogger("tracing-test", { level: "silent" });
const closing: (() => Promise<unknown>)[] = [];
let telemetry: Telemetry | undefined;

afterEach(async () => {
  for (const close of closing.splice(0).reverse()) await close();
  await telemetry?.shutdown();
  telemetry = undefined;
});

async function tracing(): Promise<OtlpReceiver> {
  const receiver = await startOtlpReceiver();
  closing.push(() => receiver.close());
  telemetry = await startTelemetry({
    serviceName: "notes",
    endpoint: receiver.url,
    metricsExporter: "none",
    log: silent,
    env: { OTEL_BSP_SCHEDULE_DELAY: "20" },
  });
  return receiver;
}

async function notesApp(lines?: string[]): Promise<GantryApp> {
  const app = createApp({
    name: "notes",
    services: [NoteService],
    transports: [httpTransport({ host: "127.0.0.1", port: 0 })],
    logger:
      lines === undefined
        ? { level: "silent" }
        : { level: "info", destination: { write: (line: string) => lines.push(line) } },
  });
  await app.start({ env: {} });
  closing.push(() => app.close());
  return app;
}

async function relayApp(notesUrls: string[]): Promise<GantryApp> {
  const app = createApp({
    name: "relay",
    services: [RelayService],
    clients: [{ service: NoteService, policy: { balancer: "round-robin" } }],
    clientTransports: [httpClientTransport()],
    transports: [httpTransport({ host: "127.0.0.1", port: 0 })],
    discovery: discoveryOf({ resolver: fixedResolver(notesUrls.map((url) => ({ http: url }))) }),
    shutdown: { propagationDelayMs: 0 },
    logger: { level: "silent" },
  });
  await app.start({ env: {} });
  closing.push(() => app.close());
  return app;
}

async function post(app: GantryApp, path: string, body: unknown, headers: Record<string, string> = {}) {
  const response = await fetch(`${app.endpoints[0].url}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify(body),
  });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

function byName(spans: ReceivedSpan[], name: string): ReceivedSpan[] {
  return spans.filter((span) => span.name === name);
}

describe("the spans core makes", () => {
  test("a method's own spans and log lines are under its server span", async () => {
    const receiver = await tracing();
    const lines: string[] = [];
    const notes = await notesApp(lines);
    const { status } = await post(notes, "/notes.v1.NoteService/Echo", { text: "hi" });
    expect(status).toBe(200);

    const spans = await receiver.waitForSpans(2);
    const [server] = byName(spans, "POST /notes.v1.NoteService/Echo");
    const [own] = byName(spans, "notes.store");
    expect(server.kind).toBe("server");
    expect(server.parentSpanId).toBeUndefined();
    expect(own).toMatchObject({ traceId: server.traceId, parentSpanId: server.spanId, kind: "internal" });
    expect(own.attributes["server.span"]).toBe(true);
    expect(server.attributes).toMatchObject({
      "http.request.method": "POST",
      "http.route": "/notes.v1.NoteService/Echo",
      "http.response.status_code": 200,
      "rpc.method": "notes.v1.NoteService/Echo",
    });

    const echo = lines.map((line) => JSON.parse(line)).find((line) => line.msg === "echo");
    expect(echo).toMatchObject({ trace_id: server.traceId, span_id: server.spanId, trace_flags: "01" });
  });

  test("a retry is a second client span: the refused attempt with its error, then the one that answered", async () => {
    const receiver = await tracing();
    const notes = await notesApp();
    const dead = `http://127.0.0.1:${await closedPort()}`;
    const relay = await relayApp([dead, notes.endpoints[0].url]);
    // Round-robin from either instance: within two calls one goes first to the dead one, is refused
    // (never ran, so retried on the other) and ejects it.
    for (let i = 0; i < 2; i++)
      expect((await post(relay, "/relay.v1.RelayService/Relay", { text: `${i}` })).status).toBe(200);

    const spans = await receiver.waitForSpans(2 * 4 + 1);
    const attempts = byName(spans, "notes.v1.NoteService/Echo").filter((span) => span.kind === "client");
    expect(attempts).toHaveLength(3);
    const refused = attempts.find((span) => span.status.code === "error") as ReceivedSpan;
    expect(refused.attributes).toMatchObject({
      "gantry.attempt": 1,
      "error.type": "GANTRY_ERR_CONNECT",
      "rpc.status_code": "UNAVAILABLE",
      "server.port": Number(new URL(dead).port),
    });
    const retry = attempts.find((span) => span.traceId === refused.traceId && span !== refused) as ReceivedSpan;
    expect(retry.attributes).toMatchObject({ "gantry.attempt": 2, "rpc.status_code": "OK" });
    expect(retry.parentSpanId).toBe(refused.parentSpanId);
    const [callee] = spans.filter((span) => span.kind === "server" && span.parentSpanId === retry.spanId);
    expect(callee.name).toBe("POST /notes.v1.NoteService/Echo");
  });

  test("a retry's span is under the caller's span, whatever context its channel reported the failure from", async () => {
    const receiver = await tracing();
    const reported: UnaryCall[] = [];
    const transport: ClientTransport = {
      kind: "grpc",
      channel: () => ({ unary: (call) => void reported.push(call), close() {} }),
    };
    const service = describeService(NoteService);
    const runtime = new ClientRuntime({
      service,
      resolver: fixedResolver([{ grpc: "grpc://127.0.0.1:1" }, { grpc: "grpc://127.0.0.1:2" }]),
      transports: [transport],
      log: silent,
      policy: { retry: { baseDelayMs: 1 } },
    });
    closing.push(() => runtime.close());
    const answer = trace.getTracer("test").startActiveSpan("caller", (span) => {
      const call = runtime.call(service.methods[0], { text: "x" });
      span.end();
      return call;
    });
    await until(() => reported.length === 1);
    // From this test's own context, outside the caller's span, as a channel's socket callback may be.
    reported[0].failed(coreErrors.create("GANTRY_ERR_CONNECT", { target: "grpc://127.0.0.1:1", reason: "refused" }));
    await until(() => reported.length === 2);
    reported[1].answered({ text: "x", traceparent: "" });
    expect(await answer).toEqual({ text: "x", traceparent: "" });

    const spans = await receiver.waitForSpans(3);
    const caller = byName(spans, "caller")[0];
    const attempts = byName(spans, "notes.v1.NoteService/Echo");
    expect(attempts.map((span) => span.attributes["gantry.attempt"])).toEqual([1, 2]);
    expect(attempts.map((span) => span.parentSpanId)).toEqual([caller.spanId, caller.spanId]);
  });

  test("the traceparent an attempt sends names its client span", async () => {
    const receiver = await tracing();
    const notes = await notesApp();
    const relay = await relayApp([notes.endpoints[0].url]);
    const { body } = await post(relay, "/relay.v1.RelayService/Relay", { text: "x" });

    const spans = await receiver.waitForSpans(4);
    const [client] = spans.filter((span) => span.kind === "client");
    expect(body.traceparent).toBe(`00-${client.traceId}-${client.spanId}-01`);
  });

  test("a direct call to a service in the same process is an internal span under the caller's", async () => {
    const receiver = await tracing();
    const app = createApp({
      name: "both",
      services: [NoteService, RelayService],
      clients: [NoteService, RelayService],
      logger: { level: "silent" },
    });
    await app.start({ env: {} });
    closing.push(() => app.close());
    const relay = await app.get(clientToken(RelayService));
    await relay.relay({ text: "direct" });

    const spans = await receiver.waitForSpans(3);
    const [outer] = byName(spans, "relay.v1.RelayService/Relay");
    const [inner] = byName(spans, "notes.v1.NoteService/Echo");
    expect(outer.kind).toBe("internal");
    expect(inner).toMatchObject({ kind: "internal", traceId: outer.traceId, parentSpanId: outer.spanId });
  });
});

describe("without an OpenTelemetry SDK", () => {
  test("no span is made and no trace context is sent", async () => {
    const notes = await notesApp();
    const relay = await relayApp([notes.endpoints[0].url]);
    const { body } = await post(relay, "/relay.v1.RelayService/Relay", { text: "x" });
    expect(body.traceparent).toBe("");
    expect(trace.getActiveSpan()).toBeUndefined();
  });
});
