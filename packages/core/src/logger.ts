import { pino } from "pino";
import { createToken } from "./di/token.js";
import { traceFields } from "./telemetry/tracing.js";

/**
 * The structured logger (pino). Inside a call, `ctx.log` carries service, method and request id, and
 * every line written while a span is active (with an OpenTelemetry SDK registered) its trace_id and span_id.
 */
export type Logger = pino.Logger;

export type LogLevel = "fatal" | "error" | "warn" | "info" | "debug" | "trace" | "silent";

export interface LoggerOptions {
  level?: LogLevel;
  /** Where lines go; stdout by default. Anything with `write(line)` works, for tests. */
  destination?: pino.DestinationStream;
}

/** Inject the app's logger with `@Inject(LOGGER)`. */
export const LOGGER = createToken<Logger>("gantry.logger");

export function createLogger(app: string, options: LoggerOptions = {}): Logger {
  return pino(
    {
      level: options.level ?? "info",
      base: { app },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      serializers: { err: pino.stdSerializers.err },
      // Lines written inside a traced call carry its trace_id and span_id.
      mixin: traceFields,
    },
    options.destination ?? pino.destination({ dest: 1, sync: true }),
  );
}
