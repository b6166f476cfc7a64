/**
 * OpenTelemetry for Gantry apps: the SDK set up from the standard `OTEL_*` variables (traces and
 * metrics over OTLP, the console, or Prometheus text on the app's own port), W3C trace-context and
 * baggage propagation, and metrics of every call, retry, ejection and registry event from core's
 * diagnostics channels. Test helpers (an OTLP receiver) are in `@gantry/telemetry/testing`.
 *
 * @example
 * const telemetry = await startTelemetry({ serviceName: "hello", metricsExporter: ["otlp", "prometheus"] });
 */
export type {
  MetricsExporterName,
  OtlpProtocol,
  SamplerName,
  TelemetryOptions,
  TracesExporterName,
} from "./config.js";
export { type TelemetryErrorCode, telemetryErrors } from "./errors.js";
export { instrumentationPackages, refusedInstrumentations } from "./instrumentations.js";
export { PROMETHEUS_CONTENT_TYPE } from "./prometheus.js";
export type { AppIdentity } from "./resource.js";
export { type PrometheusText, startTelemetry, type Telemetry } from "./telemetry.js";
