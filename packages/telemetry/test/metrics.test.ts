import diagnostics from "node:diagnostics_channel";
import {
  createApp,
  createLogger,
  Field,
  type GantryApp,
  GantryError,
  Message,
  Method,
  metricsSource,
  Service,
} from "@gantry/core";
import { type AttemptMessage, clientChannels } from "@gantry/core/client";
import { httpTransport } from "@gantry/transport-http";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { PROMETHEUS_CONTENT_TYPE, startTelemetry, type Telemetry } from "../src/index.js";

@Message()
class PingRequest {
  @Field(1) name!: string;
}

@Message()
class PingReply {
  @Field(1) message!: string;
}

@Service({ package: "telemetry.v1" })
class PingService {
  @Method({ output: PingReply })
  async ping(req: PingRequest): Promise<PingReply> {
    if (req.name === "missing") throw new GantryError("NOT_FOUND", `no ${req.name}`, { code: "NAME_NOT_FOUND" });
    if (req.name === "crash") throw new Error("boom");
    return { message: `pong ${req.name}` };
  }
}

interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

/** The samples of a Prometheus text exposition; comments and blank lines skipped. */
function parsePrometheus(text: string): Sample[] {
  return text
    .split("\n")
    .filter((line) => line !== "" && !line.startsWith("#"))
    .map((line) => {
      const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
      if (match === null) throw new Error(`not a sample line: ${line}`);
      const labels: Record<string, string> = {};
      for (const [, key, value] of (match[2] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[key] = value;
      return { name: match[1], labels, value: Number(match[3]) };
    });
}

/** The value of the one sample with this name whose labels include these. */
function sampleValue(samples: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  const found = samples.filter(
    (sample) => sample.name === name && Object.entries(labels).every(([key, value]) => sample.labels[key] === value),
  );
  if (found.length > 1) throw new Error(`${found.length} samples of ${name} match ${JSON.stringify(labels)}`);
  return found[0]?.value;
}

const log = createLogger("telemetry-test", { level: "silent" });

describe("metrics from Gantry's diagnostics channels, as Prometheus text", () => {
  let telemetry: Telemetry;
  let app: GantryApp | undefined;

  beforeEach(async () => {
    telemetry = await startTelemetry({ metricsExporter: "prometheus", tracesExporter: "none", log, env: {} });
  });

  afterEach(async () => {
    await app?.close();
    app = undefined;
    await telemetry.shutdown();
  });

  const collect = async () => parsePrometheus((await telemetry.prometheus?.collect()) ?? "");

  test("every call a server runs: its duration by method, transport and outcome, on the app's own port", async () => {
    app = createApp({
      services: [PingService],
      transports: [httpTransport({ port: 0, host: "127.0.0.1" })],
      logger: { level: "silent" },
    });
    await app.start({ env: {} });
    const url = `${app.endpoints[0].url}/telemetry.v1.PingService/Ping`;
    const ping = (name: string) =>
      fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ name }) });
    for (const name of ["a", "b", "c", "missing", "crash"]) await (await ping(name)).text();

    const scraped = await fetch(`${app.endpoints[0].url}/metrics`);
    expect(scraped.headers.get("content-type")).toBe(PROMETHEUS_CONTENT_TYPE);
    const samples = parsePrometheus(await scraped.text());
    const method = { rpc_method: "telemetry.v1.PingService/Ping", rpc_system_name: "gantry", gantry_transport: "http" };
    expect(sampleValue(samples, "rpc_server_call_duration_count", { ...method, rpc_status_code: "OK" })).toBe(3);
    expect(
      sampleValue(samples, "rpc_server_call_duration_count", {
        ...method,
        rpc_status_code: "NOT_FOUND",
        error_type: "NAME_NOT_FOUND",
      }),
    ).toBe(1);
    expect(
      sampleValue(samples, "rpc_server_call_duration_count", {
        ...method,
        rpc_status_code: "INTERNAL",
        error_type: "GANTRY_ERR_INTERNAL",
      }),
    ).toBe(1);
    const ok = { ...method, rpc_status_code: "OK" };
    expect(sampleValue(samples, "rpc_server_call_duration_bucket", { ...ok, le: "+Inf" })).toBe(3);
    expect(sampleValue(samples, "rpc_server_call_duration_sum", ok)).toBeGreaterThan(0);
    expect(sampleValue(samples, "rpc_server_call_duration_sum", ok)).toBeLessThan(5);
  });

  test("client attempts, retries, ejections and the throttle", async () => {
    const attempt = (message: Partial<AttemptMessage>) =>
      diagnostics.channel(clientChannels.attempt).publish({
        service: "hello.v1.HelloService",
        method: "SayHello",
        instance: "hello-1",
        transport: "grpc",
        attempt: 1,
        durationMs: 12,
        status: "OK",
        code: undefined,
        ...message,
      } satisfies AttemptMessage);
    attempt({});
    attempt({ status: "UNAVAILABLE", code: "GANTRY_ERR_CONNECT", durationMs: 1 });
    attempt({ attempt: 2, instance: "hello-2", durationMs: 30 });
    const unavailable = new GantryError("UNAVAILABLE", "refused", { code: "GANTRY_ERR_CONNECT" });
    diagnostics
      .channel("gantry:client:retry")
      .publish({ service: "hello.v1.HelloService", method: "SayHello", attempt: 2, error: unavailable });
    const ejection = (instance: string, state: string) =>
      diagnostics.channel("gantry:client:ejection").publish({
        service: "hello.v1.HelloService",
        instance,
        url: `grpc://127.0.0.1:5005${instance.at(-1)}`,
        state,
        untilMs: state === "ejected" ? Date.now() + 1000 : undefined,
      });
    ejection("hello-1", "ejected");
    ejection("hello-2", "ejected");
    ejection("hello-2", "half-open");
    ejection("hello-2", "restored");
    diagnostics.channel("gantry:client:throttle").publish({
      service: "hello.v1.HelloService",
      method: "SayHello",
      probability: 0.4,
      requests: 100,
      accepts: 40,
    });

    const samples = await collect();
    const method = { rpc_method: "hello.v1.HelloService/SayHello" };
    const grpc = { ...method, rpc_system_name: "grpc", gantry_transport: "grpc" };
    expect(sampleValue(samples, "rpc_client_call_duration_count", { ...grpc, rpc_status_code: "OK" })).toBe(2);
    expect(sampleValue(samples, "rpc_client_call_duration_sum", { ...grpc, rpc_status_code: "OK" })).toBeCloseTo(0.042);
    expect(
      sampleValue(samples, "rpc_client_call_duration_count", {
        ...grpc,
        rpc_status_code: "UNAVAILABLE",
        error_type: "GANTRY_ERR_CONNECT",
      }),
    ).toBe(1);
    expect(sampleValue(samples, "gantry_client_retries_total", { ...method, error_type: "GANTRY_ERR_CONNECT" })).toBe(
      1,
    );
    const service = { gantry_service: "hello.v1.HelloService" };
    expect(sampleValue(samples, "gantry_client_ejections_total", service)).toBe(2);
    expect(sampleValue(samples, "gantry_client_ejected_instances", service)).toBe(1);
    expect(sampleValue(samples, "gantry_client_throttled_total", method)).toBe(1);
    expect(sampleValue(samples, "gantry_client_throttle_probability", service)).toBe(0.4);
  });

  test("registry events by kind, and whether the instances are registered", async () => {
    const registry = diagnostics.channel("gantry:registry");
    const url = "etcd://127.0.0.1:2379/gantry";
    registry.publish({ type: "registered", url, instances: [] });
    registry.publish({ type: "changed", url, added: [], removed: [] });
    registry.publish({ type: "changed", url, added: [], removed: [] });
    registry.publish({ type: "lost", url, error: new Error("lease expired") });

    let samples = await collect();
    const at = { gantry_registry_url: url };
    expect(sampleValue(samples, "gantry_registry_events_total", { ...at, gantry_registry_event: "changed" })).toBe(2);
    expect(sampleValue(samples, "gantry_registry_events_total", { ...at, gantry_registry_event: "lost" })).toBe(1);
    expect(sampleValue(samples, "gantry_registry_registered", at)).toBe(0);

    registry.publish({ type: "registered", url, instances: [] });
    samples = await collect();
    expect(sampleValue(samples, "gantry_registry_registered", at)).toBe(1);
  });

  test("after shutdown nothing listens on the channels, and the collector gives nothing", async () => {
    expect(diagnostics.channel("gantry:registry").hasSubscribers).toBe(true);
    expect(diagnostics.tracingChannel("gantry:call").hasSubscribers).toBe(true);
    await telemetry.shutdown();
    for (const name of ["gantry:registry", ...Object.values<string>(clientChannels)]) {
      expect(diagnostics.channel(name).hasSubscribers, name).toBe(false);
    }
    expect(diagnostics.tracingChannel("gantry:call").hasSubscribers).toBe(false);
    expect(await telemetry.prometheus?.collect()).toBe("");
    expect(metricsSource()).toBeUndefined();
  });
});
