import type { PrometheusExporter } from "@opentelemetry/exporter-prometheus";
import { ConsoleMetricExporter, type IMetricReader, PeriodicExportingMetricReader } from "@opentelemetry/sdk-metrics";
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  BatchSpanProcessor,
  ConsoleSpanExporter,
  ParentBasedSampler,
  type Sampler,
  SimpleSpanProcessor,
  type SpanExporter,
  type SpanProcessor,
  TraceIdRatioBasedSampler,
} from "@opentelemetry/sdk-trace";
import type { OtlpTarget, SamplerConfig, TelemetryConfig } from "./config.js";

/**
 * One span processor per traces exporter: batched for OTLP, synchronous for the console (a debugging
 * aid, where order matters more than cost). Only the OTLP exporter of the chosen protocol is loaded.
 * Headers, compression, timeouts and TLS files come from `OTEL_EXPORTER_OTLP_*` in `process.env`,
 * read by the exporter itself.
 */
export async function spanProcessors(config: TelemetryConfig["traces"]): Promise<SpanProcessor[]> {
  const processors: SpanProcessor[] = [];
  for (const name of config.exporters) {
    if (name === "console") processors.push(new SimpleSpanProcessor({ exporter: new ConsoleSpanExporter() }));
    else processors.push(new BatchSpanProcessor({ exporter: await otlpSpanExporter(config.otlp), ...config.batch }));
  }
  return processors;
}

async function otlpSpanExporter(target: OtlpTarget): Promise<SpanExporter> {
  const options = { url: target.url };
  switch (target.protocol) {
    case "grpc":
      return new (await import("@opentelemetry/exporter-trace-otlp-grpc")).OTLPTraceExporter(options);
    case "http/json":
      return new (await import("@opentelemetry/exporter-trace-otlp-http")).OTLPTraceExporter(options);
    case "http/protobuf":
      return new (await import("@opentelemetry/exporter-trace-otlp-proto")).OTLPTraceExporter(options);
  }
}

export interface MetricReaders {
  readonly readers: IMetricReader[];
  /** The pull reader behind `/metrics`, when `prometheus` is among the exporters. */
  readonly prometheus: PrometheusExporter | undefined;
}

/** One reader per metrics exporter; the pushing ones export every `intervalMs`. */
export async function metricReaders(config: TelemetryConfig["metrics"]): Promise<MetricReaders> {
  const readers: IMetricReader[] = [];
  let prometheus: PrometheusExporter | undefined;
  const periodic = (exporter: ConstructorParameters<typeof PeriodicExportingMetricReader>[0]["exporter"]) =>
    new PeriodicExportingMetricReader({
      exporter,
      exportIntervalMillis: config.intervalMs,
      exportTimeoutMillis: config.timeoutMs,
    });
  for (const name of config.exporters) {
    if (name === "console") readers.push(periodic(new ConsoleMetricExporter()));
    else if (name === "otlp") readers.push(periodic(await otlpMetricExporter(config.otlp)));
    else {
      const { PrometheusExporter } = await import("@opentelemetry/exporter-prometheus");
      // The app serves the text on its own HTTP port: the exporter's server is never started.
      prometheus = new PrometheusExporter({ preventServerStart: true });
      readers.push(prometheus);
    }
  }
  return { readers, prometheus };
}

async function otlpMetricExporter(target: OtlpTarget) {
  const options = { url: target.url };
  switch (target.protocol) {
    case "grpc":
      return new (await import("@opentelemetry/exporter-metrics-otlp-grpc")).OTLPMetricExporter(options);
    case "http/json":
      return new (await import("@opentelemetry/exporter-metrics-otlp-http")).OTLPMetricExporter(options);
    case "http/protobuf":
      return new (await import("@opentelemetry/exporter-metrics-otlp-proto")).OTLPMetricExporter(options);
  }
}

/** The samplers `OTEL_TRACES_SAMPLER` names, as the specification defines them. */
export function createSampler(config: SamplerConfig): Sampler {
  switch (config.name) {
    case "always_on":
      return new AlwaysOnSampler();
    case "always_off":
      return new AlwaysOffSampler();
    case "traceidratio":
      return new TraceIdRatioBasedSampler(config.ratio);
    case "parentbased_always_on":
      return new ParentBasedSampler({ root: new AlwaysOnSampler() });
    case "parentbased_always_off":
      return new ParentBasedSampler({ root: new AlwaysOffSampler() });
    case "parentbased_traceidratio":
      return new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(config.ratio) });
  }
}
