import { defineErrors } from "@gantry/core";

/** Every error @gantry/telemetry raises. All of them come from `startTelemetry`, before anything is registered. */
export const telemetryErrors = defineErrors({
  GANTRY_ERR_TELEMETRY_CONFIG: {
    status: "FAILED_PRECONDITION",
    message: "telemetry: {source} {problem}",
  },
  GANTRY_ERR_TELEMETRY_EXPORTER: {
    status: "FAILED_PRECONDITION",
    message: "telemetry: {source} names an unknown {signal} exporter {name}; known: {known}",
  },
  GANTRY_ERR_TELEMETRY_PROTOCOL: {
    status: "FAILED_PRECONDITION",
    message: "telemetry: {source} names an unknown OTLP protocol {protocol}; known: {known}",
  },
  GANTRY_ERR_TELEMETRY_SAMPLER: {
    status: "FAILED_PRECONDITION",
    message: "telemetry: {source} {problem}",
  },
  GANTRY_ERR_TELEMETRY_INSTRUMENTATION: {
    status: "FAILED_PRECONDITION",
    message: "telemetry: unknown instrumentation {name}; known: {known}",
  },
  GANTRY_ERR_TELEMETRY_INSTRUMENTATION_REFUSED: {
    status: "FAILED_PRECONDITION",
    message: "telemetry: instrumentation {name} is refused: {reason}",
  },
  GANTRY_ERR_TELEMETRY_INSTRUMENTATION_MISSING: {
    status: "FAILED_PRECONDITION",
    message:
      "telemetry: instrumentation {name} needs the package {package}, which is not installed; add it: pnpm add {package}",
  },
  GANTRY_ERR_TELEMETRY_STARTED: {
    status: "FAILED_PRECONDITION",
    message: "telemetry: {problem}",
  },
});

export type TelemetryErrorCode = keyof typeof telemetryErrors.definitions;
