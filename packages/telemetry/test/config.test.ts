import { readFileSync } from "node:fs";
import { HTTP_STATUS_BY_STATUS, isRetryableStatus } from "@gantry/core";
import { describe, expect, test } from "vitest";
import { resolveConfig } from "../src/config.js";
import { telemetryErrors } from "../src/errors.js";
import { checkInstrumentations, loadInstrumentations } from "../src/instrumentations.js";
import { resourceAttributes } from "../src/resource.js";

describe("configuration", () => {
  test("with nothing set: OTLP over http/protobuf to localhost, parent-based always-on sampling", () => {
    const config = resolveConfig({ env: {} });
    expect(config.disabled).toBe(false);
    expect(config.traces.exporters).toEqual(["otlp"]);
    expect(config.traces.otlp).toEqual({ protocol: "http/protobuf", url: "http://localhost:4318/v1/traces" });
    expect(config.metrics.exporters).toEqual(["otlp"]);
    expect(config.metrics.otlp).toEqual({ protocol: "http/protobuf", url: "http://localhost:4318/v1/metrics" });
    expect(config.metrics.intervalMs).toBe(60_000);
    expect(config.sampler).toEqual({ name: "parentbased_always_on" });
    expect(config.instrumentations).toEqual([]);
  });

  test("the environment wins over the options, which are code defaults", () => {
    const config = resolveConfig({
      tracesExporter: "console",
      metricsExporter: ["prometheus"],
      protocol: "http/json",
      endpoint: "http://collector:4318",
      instrumentations: ["pg"],
      env: {
        OTEL_TRACES_EXPORTER: "otlp,console",
        OTEL_METRICS_EXPORTER: "otlp , prometheus",
        OTEL_EXPORTER_OTLP_METRICS_PROTOCOL: "grpc",
        OTEL_EXPORTER_OTLP_ENDPOINT: "http://otel:4318/base/",
        OTEL_EXPORTER_OTLP_METRICS_ENDPOINT: "http://metrics:4317",
        GANTRY_TELEMETRY_INSTRUMENTATIONS: "undici,redis",
      },
    });
    expect(config.traces.exporters).toEqual(["otlp", "console"]);
    expect(config.traces.otlp).toEqual({ protocol: "http/json", url: "http://otel:4318/base/v1/traces" });
    expect(config.metrics.exporters).toEqual(["otlp", "prometheus"]);
    // A signal's own endpoint is used as it is, whatever the protocol.
    expect(config.metrics.otlp).toEqual({ protocol: "grpc", url: "http://metrics:4317" });
    expect(config.instrumentations).toEqual(["undici", "redis"]);
  });

  test("over grpc the base endpoint is used as it is, and defaults to port 4317", () => {
    expect(resolveConfig({ env: { OTEL_EXPORTER_OTLP_PROTOCOL: "grpc" } }).traces.otlp.url).toBe(
      "http://localhost:4317",
    );
    expect(resolveConfig({ protocol: "grpc", endpoint: "https://otel:4317", env: {} }).traces.otlp.url).toBe(
      "https://otel:4317",
    );
  });

  test('"none" turns a signal off, whatever else is listed', () => {
    const config = resolveConfig({ env: { OTEL_TRACES_EXPORTER: "none,otlp", OTEL_METRICS_EXPORTER: "none" } });
    expect(config.traces.exporters).toEqual([]);
    expect(config.metrics.exporters).toEqual([]);
  });

  test("samplers: by name, with a ratio, and a ratio given in code alone", () => {
    expect(
      resolveConfig({ env: { OTEL_TRACES_SAMPLER: "parentbased_traceidratio", OTEL_TRACES_SAMPLER_ARG: "0.25" } })
        .sampler,
    ).toEqual({ name: "parentbased_traceidratio", ratio: 0.25 });
    expect(resolveConfig({ env: { OTEL_TRACES_SAMPLER: "traceidratio" } }).sampler).toEqual({
      name: "traceidratio",
      ratio: 1,
    });
    expect(resolveConfig({ samplerRatio: 0.1, env: {} }).sampler).toEqual({
      name: "parentbased_traceidratio",
      ratio: 0.1,
    });
    // The specification: OTEL_TRACES_SAMPLER_ARG alone changes nothing.
    expect(resolveConfig({ env: { OTEL_TRACES_SAMPLER_ARG: "0.5" } }).sampler).toEqual({
      name: "parentbased_always_on",
    });
    expect(resolveConfig({ env: { OTEL_TRACES_SAMPLER: "always_off" } }).sampler).toEqual({ name: "always_off" });
  });

  test("intervals and batch sizes; the export timeout never exceeds the interval", () => {
    const config = resolveConfig({
      metricExportIntervalMs: 2000,
      env: { OTEL_BSP_SCHEDULE_DELAY: "100", OTEL_BSP_MAX_EXPORT_BATCH_SIZE: "64" },
    });
    expect(config.metrics).toMatchObject({ intervalMs: 2000, timeoutMs: 2000 });
    expect(config.traces.batch).toMatchObject({ scheduledDelayMillis: 100, maxExportBatchSize: 64 });
    expect(resolveConfig({ env: { OTEL_SDK_DISABLED: "TRUE" } }).disabled).toBe(true);
  });

  test.each([
    [
      { OTEL_TRACES_EXPORTER: "zipkin" },
      "GANTRY_ERR_TELEMETRY_EXPORTER",
      "OTEL_TRACES_EXPORTER=zipkin names an unknown traces exporter zipkin; known: otlp, console, none",
    ],
    [
      { OTEL_METRICS_EXPORTER: "otlp,statsd" },
      "GANTRY_ERR_TELEMETRY_EXPORTER",
      "unknown metrics exporter statsd; known: otlp, console, prometheus, none",
    ],
    [
      { OTEL_EXPORTER_OTLP_PROTOCOL: "http" },
      "GANTRY_ERR_TELEMETRY_PROTOCOL",
      "OTEL_EXPORTER_OTLP_PROTOCOL=http names an unknown OTLP protocol http; known: http/protobuf, http/json, grpc",
    ],
    [
      { OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: "thrift" },
      "GANTRY_ERR_TELEMETRY_PROTOCOL",
      "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=thrift",
    ],
    [{ OTEL_TRACES_SAMPLER: "sometimes" }, "GANTRY_ERR_TELEMETRY_SAMPLER", "names an unknown sampler sometimes"],
    [
      { OTEL_TRACES_SAMPLER: "traceidratio", OTEL_TRACES_SAMPLER_ARG: "1.5" },
      "GANTRY_ERR_TELEMETRY_SAMPLER",
      "OTEL_TRACES_SAMPLER_ARG=1.5 must be a sampling ratio from 0 to 1",
    ],
    [
      { OTEL_TRACES_SAMPLER: "parentbased_traceidratio", OTEL_TRACES_SAMPLER_ARG: "half" },
      "GANTRY_ERR_TELEMETRY_SAMPLER",
      "must be a sampling ratio",
    ],
    [
      { OTEL_EXPORTER_OTLP_ENDPOINT: "collector:4318" },
      "GANTRY_ERR_TELEMETRY_CONFIG",
      "must be an http:// or https:// URL",
    ],
    [
      { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "not a url" },
      "GANTRY_ERR_TELEMETRY_CONFIG",
      "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=not a url is not a URL",
    ],
    [
      { OTEL_METRIC_EXPORT_INTERVAL: "-5" },
      "GANTRY_ERR_TELEMETRY_CONFIG",
      "OTEL_METRIC_EXPORT_INTERVAL=-5 must be a whole number",
    ],
  ])("%o is %s", (env, code, message) => {
    expect(() => resolveConfig({ env })).toThrowError(
      expect.objectContaining({ code, message: expect.stringContaining(message) }),
    );
  });

  test("a bad option names the option", () => {
    expect(() => resolveConfig({ env: {}, tracesExporter: "jaeger" as "otlp" })).toThrowError(
      expect.objectContaining({
        code: "GANTRY_ERR_TELEMETRY_EXPORTER",
        message: expect.stringContaining("options.tracesExporter"),
      }),
    );
    expect(() => resolveConfig({ env: {}, samplerRatio: -1 })).toThrowError(
      expect.objectContaining({
        code: "GANTRY_ERR_TELEMETRY_SAMPLER",
        message: expect.stringContaining("options.samplerRatio"),
      }),
    );
  });
});

describe("instrumentations", () => {
  test.each(["http", "express", "grpc"])("%s is refused: Gantry's transports make those spans", (name) => {
    expect(() => checkInstrumentations(["pg", name])).toThrowError(
      expect.objectContaining({
        code: "GANTRY_ERR_TELEMETRY_INSTRUMENTATION_REFUSED",
        message: expect.stringContaining(`instrumentation ${name} is refused: Gantry's`),
      }),
    );
  });

  test("an unknown name lists the known ones", () => {
    expect(() => checkInstrumentations(["mongodb"])).toThrowError(
      expect.objectContaining({
        code: "GANTRY_ERR_TELEMETRY_INSTRUMENTATION",
        message: "telemetry: unknown instrumentation mongodb; known: pg, redis, undici",
      }),
    );
  });

  test("a listed instrumentation whose package is not installed names the package to add", async () => {
    const notInstalled = async (specifier: string) => {
      throw Object.assign(new Error(`Cannot find package '${specifier}' imported from /app`), {
        code: "ERR_MODULE_NOT_FOUND",
      });
    };
    await expect(loadInstrumentations(["redis"], notInstalled)).rejects.toMatchObject({
      code: "GANTRY_ERR_TELEMETRY_INSTRUMENTATION_MISSING",
      message: expect.stringContaining("pnpm add @opentelemetry/instrumentation-redis"),
    });
  });

  test("an installed instrumentation loads, to be made once the SDK is registered", async () => {
    const [make] = await loadInstrumentations(["undici"]);
    const undici = make();
    expect(undici.constructor.name).toBe("UndiciInstrumentation");
    undici.disable();
  });
});

describe("resource attributes", () => {
  const options = { serviceName: "hello", serviceVersion: "1.4.2", instanceId: "hello-7f3a" };

  test("service name, version and instance id from the options", () => {
    expect(resourceAttributes(options, {})).toEqual({
      "service.name": "hello",
      "service.version": "1.4.2",
      "service.instance.id": "hello-7f3a",
    });
  });

  test("OTEL_RESOURCE_ATTRIBUTES (percent-decoded) over the options, and OTEL_SERVICE_NAME over both", () => {
    const env = {
      OTEL_RESOURCE_ATTRIBUTES: "service.name=from-attrs,deployment.environment.name=prod,team=a%2Cb%20c",
      OTEL_SERVICE_NAME: "from-env",
    };
    expect(resourceAttributes(options, env)).toEqual({
      "service.name": "from-env",
      "service.version": "1.4.2",
      "service.instance.id": "hello-7f3a",
      "deployment.environment.name": "prod",
      team: "a,b c",
    });
  });

  test("on Kubernetes: the pod, namespace and node from the downward API variables", () => {
    const env = {
      KUBERNETES_SERVICE_HOST: "10.96.0.1",
      HOSTNAME: "hello-5d8c7-abcde",
      POD_NAMESPACE: "shop",
      NODE_NAME: "node-3",
    };
    expect(resourceAttributes({}, env)).toEqual({
      "k8s.pod.name": "hello-5d8c7-abcde",
      "k8s.namespace.name": "shop",
      "k8s.node.name": "node-3",
    });
    expect(resourceAttributes({}, { ...env, POD_NAME: "hello-0" })["k8s.pod.name"]).toBe("hello-0");
  });

  test("off Kubernetes, POD_NAME, HOSTNAME and the rest are not read", () => {
    expect(resourceAttributes({}, { HOSTNAME: "laptop", POD_NAME: "x", NODE_NAME: "n" })).toEqual({});
  });

  test.each([
    ["service.name", '"service.name" is not key=value'],
    ["=x", '"=x" is not key=value'],
    ["team=%E0%A4%A", "the value of team is not percent-encoded"],
  ])("OTEL_RESOURCE_ATTRIBUTES=%s is GANTRY_ERR_TELEMETRY_CONFIG", (raw, problem) => {
    expect(() => resourceAttributes({}, { OTEL_RESOURCE_ATTRIBUTES: raw })).toThrowError(
      expect.objectContaining({
        code: "GANTRY_ERR_TELEMETRY_CONFIG",
        message: `telemetry: OTEL_RESOURCE_ATTRIBUTES ${problem}`,
      }),
    );
  });
});

describe("README.md", () => {
  test("lists every error code exactly as the code defines it", () => {
    const readme = readFileSync(new URL("../README.md", import.meta.url), "utf8");
    for (const [code, definition] of Object.entries(telemetryErrors.definitions)) {
      const row = [
        `\`${code}\``,
        definition.status,
        String(HTTP_STATUS_BY_STATUS[definition.status]),
        isRetryableStatus(definition.status) ? "yes" : "no",
        definition.message,
      ];
      expect(readme).toMatch(new RegExp(`\\| ${row.map(escapeRegExp).join(" +\\| ")} +\\|`));
    }
  });
});

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
