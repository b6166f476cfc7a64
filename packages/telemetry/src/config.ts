import type { Logger } from "@gantry/core";
import { telemetryErrors } from "./errors.js";
import type { AppIdentity } from "./resource.js";

export type TracesExporterName = "otlp" | "console" | "none";
export type MetricsExporterName = "otlp" | "console" | "prometheus" | "none";
export type OtlpProtocol = "http/protobuf" | "http/json" | "grpc";
export type SamplerName =
  | "always_on"
  | "always_off"
  | "traceidratio"
  | "parentbased_always_on"
  | "parentbased_always_off"
  | "parentbased_traceidratio";

/**
 * How telemetry is set up. Every option is a default given in code: the standard environment
 * variable named beside it, when set, wins (as for every Gantry setting).
 */
export interface TelemetryOptions {
  /** `service.name`; `OTEL_SERVICE_NAME`, else `service.name` in `OTEL_RESOURCE_ATTRIBUTES`. Default `unknown_service:node`. */
  serviceName?: string;
  /** `service.version` (the app's release version); `service.version` in `OTEL_RESOURCE_ATTRIBUTES`. */
  serviceVersion?: string;
  /** `service.instance.id` (Gantry's instance id); `service.instance.id` in `OTEL_RESOURCE_ATTRIBUTES`. */
  instanceId?: string;
  /**
   * The app, once it is loaded: for telemetry started before the app's module is imported (so that
   * instrumentations can patch what it imports), its name, version and instance id fill in
   * `service.name`, `service.version` and `service.instance.id` where nothing above sets them.
   * Exporters wait for it; a rejected promise leaves the SDK's defaults.
   */
  app?: Promise<AppIdentity>;
  /** Where `OTEL_*` and `GANTRY_TELEMETRY_*` are read; `process.env` by default. */
  env?: Readonly<Record<string, string | undefined>>;
  /** `OTEL_TRACES_EXPORTER` (a comma-separated list). Default `otlp`. */
  tracesExporter?: TracesExporterName | readonly TracesExporterName[];
  /** `OTEL_METRICS_EXPORTER` (a comma-separated list). Default `otlp`. */
  metricsExporter?: MetricsExporterName | readonly MetricsExporterName[];
  /** `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL` / `_METRICS_PROTOCOL`, else `OTEL_EXPORTER_OTLP_PROTOCOL`. Default `http/protobuf`. */
  protocol?: OtlpProtocol;
  /**
   * The collector's base URL, as `OTEL_EXPORTER_OTLP_ENDPOINT`: over HTTP, `/v1/traces` and
   * `/v1/metrics` are appended. `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` / `_METRICS_ENDPOINT` are used
   * as they are. Default `http://localhost:4318` (`http://localhost:4317` for grpc).
   */
  endpoint?: string;
  /** `OTEL_TRACES_SAMPLER`. Default `parentbased_always_on`. */
  sampler?: SamplerName;
  /** The ratio of the `traceidratio` samplers, 0 to 1; `OTEL_TRACES_SAMPLER_ARG`. Default 1. */
  samplerRatio?: number;
  /** `OTEL_METRIC_EXPORT_INTERVAL`, for the pushing (otlp, console) metrics exporters. Default 60000. */
  metricExportIntervalMs?: number;
  /**
   * Other libraries to instrument: `pg`, `redis`, `undici`; `GANTRY_TELEMETRY_INSTRUMENTATIONS`.
   * Each needs its `@opentelemetry/instrumentation-*` package installed. `http`, `express` and
   * `grpc` are refused: Gantry's transports make those spans themselves.
   */
  instrumentations?: readonly string[];
  /** Where the SDK's own warnings go (failed exports); `OTEL_LOG_LEVEL` sets their level. */
  log?: Logger;
}

export interface OtlpTarget {
  readonly protocol: OtlpProtocol;
  readonly url: string;
}

export type SamplerConfig =
  | { readonly name: "always_on" | "always_off" | "parentbased_always_on" | "parentbased_always_off" }
  | { readonly name: "traceidratio" | "parentbased_traceidratio"; readonly ratio: number };

export interface BatchConfig {
  readonly scheduledDelayMillis?: number;
  readonly maxQueueSize?: number;
  readonly maxExportBatchSize?: number;
  readonly exportTimeoutMillis?: number;
}

/** The options and the environment, checked and merged. */
export interface TelemetryConfig {
  /** `OTEL_SDK_DISABLED=true`: nothing is set up. */
  readonly disabled: boolean;
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly traces: {
    readonly exporters: readonly ("otlp" | "console")[];
    readonly otlp: OtlpTarget;
    readonly batch: BatchConfig;
  };
  readonly metrics: {
    readonly exporters: readonly ("otlp" | "console" | "prometheus")[];
    readonly otlp: OtlpTarget;
    readonly intervalMs: number;
    readonly timeoutMs: number;
  };
  readonly sampler: SamplerConfig;
  readonly instrumentations: readonly string[];
  readonly logLevel: string | undefined;
  readonly app: Promise<AppIdentity> | undefined;
}

const TRACES_EXPORTERS = ["otlp", "console", "none"] as const;
const METRICS_EXPORTERS = ["otlp", "console", "prometheus", "none"] as const;
const PROTOCOLS = ["http/protobuf", "http/json", "grpc"] as const;
const SAMPLERS = [
  "always_on",
  "always_off",
  "traceidratio",
  "parentbased_always_on",
  "parentbased_always_off",
  "parentbased_traceidratio",
] as const;

/** A value and where it came from, so an error can name the variable or option at fault. */
interface Sourced<T> {
  readonly value: T;
  readonly source: string;
}

/** Reads the options and the environment; throws a coded error naming the first bad setting. */
export function resolveConfig(options: TelemetryOptions = {}): TelemetryConfig {
  const env = options.env ?? process.env;
  const read = (name: string): Sourced<string> | undefined => {
    const value = env[name]?.trim();
    return value === undefined || value === "" ? undefined : { value, source: `${name}=${value}` };
  };
  const option = <T>(name: string, value: T | undefined): Sourced<T> | undefined =>
    value === undefined ? undefined : { value, source: `options.${name}` };

  const tracesExporters = exporterList(
    read("OTEL_TRACES_EXPORTER") ?? option("tracesExporter", options.tracesExporter),
    "traces",
    TRACES_EXPORTERS,
  );
  const metricsExporters = exporterList(
    read("OTEL_METRICS_EXPORTER") ?? option("metricsExporter", options.metricsExporter),
    "metrics",
    METRICS_EXPORTERS,
  );
  const target = (signal: "TRACES" | "METRICS"): OtlpTarget => {
    const protocol = oneOf(
      read(`OTEL_EXPORTER_OTLP_${signal}_PROTOCOL`) ??
        read("OTEL_EXPORTER_OTLP_PROTOCOL") ??
        option("protocol", options.protocol) ?? { value: "http/protobuf", source: "default" },
      PROTOCOLS,
      (given) => telemetryErrors.create("GANTRY_ERR_TELEMETRY_PROTOCOL", { ...given, known: PROTOCOLS.join(", ") }),
    );
    const path = `v1/${signal.toLowerCase()}`;
    const specific = read(`OTEL_EXPORTER_OTLP_${signal}_ENDPOINT`);
    const url =
      specific !== undefined
        ? checkUrl(specific)
        : otlpUrl(read("OTEL_EXPORTER_OTLP_ENDPOINT") ?? option("endpoint", options.endpoint), protocol, path);
    return { protocol, url };
  };
  const intervalMs =
    positive(read("OTEL_METRIC_EXPORT_INTERVAL") ?? option("metricExportIntervalMs", options.metricExportIntervalMs)) ??
    60_000;
  return {
    disabled: read("OTEL_SDK_DISABLED")?.value.toLowerCase() === "true",
    env,
    traces: {
      exporters: tracesExporters as ("otlp" | "console")[],
      otlp: target("TRACES"),
      batch: {
        scheduledDelayMillis: positive(read("OTEL_BSP_SCHEDULE_DELAY")),
        maxQueueSize: positive(read("OTEL_BSP_MAX_QUEUE_SIZE")),
        maxExportBatchSize: positive(read("OTEL_BSP_MAX_EXPORT_BATCH_SIZE")),
        exportTimeoutMillis: positive(read("OTEL_BSP_EXPORT_TIMEOUT")),
      },
    },
    metrics: {
      exporters: metricsExporters as ("otlp" | "console" | "prometheus")[],
      otlp: target("METRICS"),
      intervalMs,
      // The reader refuses a timeout longer than its interval.
      timeoutMs: Math.min(positive(read("OTEL_METRIC_EXPORT_TIMEOUT")) ?? 30_000, intervalMs),
    },
    sampler: sampler(
      read("OTEL_TRACES_SAMPLER") ?? option("sampler", options.sampler),
      read("OTEL_TRACES_SAMPLER_ARG") ?? option("samplerRatio", options.samplerRatio),
    ),
    instrumentations:
      listOf(read("GANTRY_TELEMETRY_INSTRUMENTATIONS") ?? option("instrumentations", options.instrumentations))
        ?.value ?? [],
    logLevel: read("OTEL_LOG_LEVEL")?.value,
    app: options.app,
  };
}

/** A list given as an array or as a comma-separated string; blanks dropped. */
function listOf(given: Sourced<string | readonly string[]> | undefined): Sourced<string[]> | undefined {
  if (given === undefined) return undefined;
  const items = typeof given.value === "string" ? given.value.split(",") : given.value;
  return { value: items.map((item) => item.trim()).filter((item) => item !== ""), source: given.source };
}

function exporterList(
  given: Sourced<string | readonly string[]> | undefined,
  signal: "traces" | "metrics",
  known: readonly string[],
): string[] {
  const list = listOf(given);
  const names = list === undefined || list.value.length === 0 ? ["otlp"] : [...new Set(list.value)];
  for (const name of names) {
    if (!known.includes(name)) {
      throw telemetryErrors.create("GANTRY_ERR_TELEMETRY_EXPORTER", {
        source: list?.source ?? "default",
        signal,
        name,
        known: known.join(", "),
      });
    }
  }
  // As the specification says: "none" means no exporter, whatever else the list holds.
  return names.includes("none") ? [] : names;
}

function oneOf<const T extends string>(
  given: Sourced<string>,
  known: readonly T[],
  fault: (given: { source: string; protocol: string }) => Error,
): T {
  if (!(known as readonly string[]).includes(given.value)) throw fault({ source: given.source, protocol: given.value });
  return given.value as T;
}

function otlpUrl(base: Sourced<string> | undefined, protocol: OtlpProtocol, path: string): string {
  if (protocol === "grpc") return base === undefined ? "http://localhost:4317" : checkUrl(base);
  if (base === undefined) return `http://localhost:4318/${path}`;
  const url = checkUrl(base);
  return url.endsWith("/") ? `${url}${path}` : `${url}/${path}`;
}

function checkUrl(given: Sourced<string>): string {
  let url: URL;
  try {
    url = new URL(given.value);
  } catch {
    throw telemetryErrors.create("GANTRY_ERR_TELEMETRY_CONFIG", { source: given.source, problem: "is not a URL" });
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw telemetryErrors.create("GANTRY_ERR_TELEMETRY_CONFIG", {
      source: given.source,
      problem: "must be an http:// or https:// URL",
    });
  }
  // The URL as written: `new URL` would add a trailing slash to a bare origin.
  return given.value;
}

function positive(given: Sourced<string | number> | undefined): number | undefined {
  if (given === undefined) return undefined;
  const value = typeof given.value === "number" ? given.value : Number(given.value);
  if (!Number.isInteger(value) || value <= 0) {
    throw telemetryErrors.create("GANTRY_ERR_TELEMETRY_CONFIG", {
      source: given.source,
      problem: "must be a whole number of milliseconds or items above 0",
    });
  }
  return value;
}

function sampler(name: Sourced<string> | undefined, ratio: Sourced<string | number> | undefined): SamplerConfig {
  // A ratio given in code alone asks for ratio sampling; OTEL_TRACES_SAMPLER_ARG alone does not (the specification).
  const implied = ratio?.source.startsWith("options.") ? "parentbased_traceidratio" : "parentbased_always_on";
  const chosen = name?.value ?? implied;
  if (!(SAMPLERS as readonly string[]).includes(chosen)) {
    throw telemetryErrors.create("GANTRY_ERR_TELEMETRY_SAMPLER", {
      source: name?.source ?? "default",
      problem: `names an unknown sampler ${chosen}; known: ${SAMPLERS.join(", ")}`,
    });
  }
  if (chosen !== "traceidratio" && chosen !== "parentbased_traceidratio") {
    return { name: chosen as "always_on" | "always_off" | "parentbased_always_on" | "parentbased_always_off" };
  }
  if (ratio === undefined) return { name: chosen, ratio: 1 };
  const value = typeof ratio.value === "number" ? ratio.value : Number(ratio.value);
  if (!Number.isFinite(value) || value < 0 || value > 1) {
    throw telemetryErrors.create("GANTRY_ERR_TELEMETRY_SAMPLER", {
      source: ratio.source,
      problem: "must be a sampling ratio from 0 to 1",
    });
  }
  return { name: chosen, ratio: value };
}
