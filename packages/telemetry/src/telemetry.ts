import { createLogger, type Logger, metricsSource, serveMetrics } from "@gantry/core";
import { context, DiagLogLevel, diag, metrics, propagation, trace } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import {
  CompositePropagator,
  diagLogLevelFromString,
  W3CBaggagePropagator,
  W3CTraceContextPropagator,
} from "@opentelemetry/core";
import { MeterProvider } from "@opentelemetry/sdk-metrics";
import { TracerProvider } from "@opentelemetry/sdk-trace";
import { ATTR_SERVICE_NAME } from "@opentelemetry/semantic-conventions";
import { resolveConfig, type TelemetryConfig, type TelemetryOptions } from "./config.js";
import { telemetryErrors } from "./errors.js";
import { createSampler, metricReaders, spanProcessors } from "./exporters.js";
import { checkInstrumentations, type Instrumentation, loadInstrumentations } from "./instrumentations.js";
import { recordGantryMetrics } from "./metrics.js";
import { prometheusText } from "./prometheus.js";
import { buildResource, resourceAttributes } from "./resource.js";

/** The Prometheus text exposition of every metric, for a route the app serves on its own port. */
export interface PrometheusText {
  /** The Content-Type to answer with: the text format, version 0.0.4. */
  readonly contentType: string;
  /** Collects every metric now and renders it; `""` once telemetry is shut down. */
  collect(): Promise<string>;
}

/** Telemetry that is running: the OpenTelemetry SDK registered for the whole process. */
export interface Telemetry {
  /**
   * Set when `prometheus` is among the metrics exporters. The HTTP transport serves it at
   * `GET /metrics` on the app's own port while telemetry runs.
   */
  readonly prometheus: PrometheusText | undefined;
  /**
   * Flushes every exporter and stops them, then unregisters the SDK. Waits at most `timeoutMs`
   * (default 5000) for the exporters, never throws (failures are logged), and does it once: later
   * calls return the same promise.
   */
  shutdown(timeoutMs?: number): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

const SHUTDOWN_TIMEOUT_MS = 5000;

/** Whether an SDK started here is registered: the globals it sets are per process. */
let running = false;

/**
 * Sets up OpenTelemetry for the process from the options and the standard `OTEL_*` variables: a
 * tracer provider and a meter provider with their exporters, the W3C trace-context and baggage
 * propagators, the AsyncLocalStorage context manager, the listed instrumentations, and metrics of
 * every call, retry, ejection and registry event from Gantry's diagnostics channels. Call it before
 * the app starts and shut it down after the app closed. Bad configuration fails here, with a coded
 * error, before anything is registered.
 *
 * @example
 * const telemetry = await startTelemetry({ serviceName: "hello", serviceVersion: "1.4.2", metricsExporter: "prometheus" });
 * await app.start();
 * // ... on SIGTERM:
 * await app.close();
 * await telemetry.shutdown();
 */
export async function startTelemetry(options: TelemetryOptions = {}): Promise<Telemetry> {
  const config = resolveConfig(options);
  checkInstrumentations(config.instrumentations);
  const attributes = resourceAttributes(options, config.env);
  if (config.disabled) return disabled;
  if (running) {
    throw telemetryErrors.create("GANTRY_ERR_TELEMETRY_STARTED", {
      problem: "it is already started in this process; shut it down before starting it again",
    });
  }
  running = true;
  try {
    return await start(config, attributes, options.log ?? createLogger(attributes[ATTR_SERVICE_NAME] ?? "telemetry"));
  } catch (error) {
    running = false;
    throw error;
  }
}

async function start(config: TelemetryConfig, attributes: Record<string, string>, log: Logger): Promise<Telemetry> {
  const resource = buildResource(attributes, config.app);
  const instrumentationFactories = await loadInstrumentations(config.instrumentations);
  const processors = await spanProcessors(config.traces);
  const { readers, prometheus } = await metricReaders(config.metrics);
  const tracerProvider =
    processors.length === 0
      ? undefined
      : new TracerProvider({ resource, spanProcessors: processors, sampler: createSampler(config.sampler) });
  const meterProvider = readers.length === 0 ? undefined : new MeterProvider({ resource, readers });

  let instrumentations: Instrumentation[];
  try {
    register(tracerProvider, meterProvider, config.logLevel, log);
    try {
      // Made after the providers are registered: they take the global ones when made.
      instrumentations = instrumentationFactories.map((make) => make());
    } catch (error) {
      unregister();
      throw error;
    }
  } catch (error) {
    // The meter provider's readers already run their timers: stop them before failing.
    await within(Promise.allSettled([tracerProvider?.shutdown(), meterProvider?.shutdown()]), SHUTDOWN_TIMEOUT_MS);
    throw error;
  }
  const unsubscribe =
    meterProvider === undefined ? () => {} : recordGantryMetrics(meterProvider.getMeter("@gantry/telemetry"));

  let closing: Promise<void> | undefined;
  const text = prometheus === undefined ? undefined : prometheusText(prometheus, log, () => closing === undefined);
  // The HTTP transport answers GET /metrics on the app's own port from this source.
  if (text !== undefined) serveMetrics(text);
  const close = async (timeoutMs: number) => {
    try {
      if (text !== undefined && metricsSource() === text) serveMetrics(undefined);
      unsubscribe();
      for (const instrumentation of instrumentations) {
        try {
          instrumentation.disable();
        } catch (error) {
          log.warn({ err: error }, "telemetry: an instrumentation failed to stop");
        }
      }
      const settled = await within(
        Promise.allSettled([tracerProvider?.shutdown(), meterProvider?.shutdown()]),
        timeoutMs,
      );
      if (settled === undefined) log.warn(`telemetry: the exporters did not finish within ${timeoutMs} ms`);
      for (const result of settled ?? []) {
        if (result.status === "rejected") log.warn({ err: result.reason }, "telemetry: an exporter failed to flush");
      }
    } catch (error) {
      log.warn({ err: error }, "telemetry: shutting down failed");
    } finally {
      unregister();
    }
  };
  const shutdown = (timeoutMs = SHUTDOWN_TIMEOUT_MS) => {
    closing ??= close(timeoutMs);
    return closing;
  };
  return {
    prometheus: text,
    shutdown,
    [Symbol.asyncDispose]: () => shutdown(),
  };
}

/** Sets the process-wide globals; if another SDK holds one, undoes its own and fails. */
function register(
  tracerProvider: TracerProvider | undefined,
  meterProvider: MeterProvider | undefined,
  logLevel: string | undefined,
  log: Logger,
): void {
  const taken: string[] = [];
  const undo: (() => void)[] = [];
  const claim = (what: string, registered: boolean, disable: () => void) => {
    if (registered) undo.push(disable);
    else taken.push(what);
  };
  claim("context manager", context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable()), () =>
    context.disable(),
  );
  const propagator = new CompositePropagator({
    propagators: [new W3CTraceContextPropagator(), new W3CBaggagePropagator()],
  });
  claim("propagator", propagation.setGlobalPropagator(propagator), () => propagation.disable());
  if (tracerProvider !== undefined) {
    claim("tracer provider", trace.setGlobalTracerProvider(tracerProvider), () => trace.disable());
  }
  if (meterProvider !== undefined) {
    claim("meter provider", metrics.setGlobalMeterProvider(meterProvider), () => metrics.disable());
  }
  if (taken.length > 0) {
    for (const step of undo) step();
    throw telemetryErrors.create("GANTRY_ERR_TELEMETRY_STARTED", {
      problem: `another OpenTelemetry SDK already registered the global ${taken.join(", ")} of this process`,
    });
  }
  diag.setLogger(diagLogger(log), {
    logLevel: diagLogLevelFromString(logLevel) ?? DiagLogLevel.WARN,
    suppressOverrideMessage: true,
  });
}

function unregister(): void {
  trace.disable();
  metrics.disable();
  propagation.disable();
  context.disable();
  diag.disable();
  running = false;
}

/** The SDK's own messages (a failed export, a dropped span) as log lines. */
function diagLogger(log: Logger) {
  const line =
    (level: "error" | "warn" | "info" | "debug" | "trace") =>
    (message: string, ...args: unknown[]) => {
      if (args.length === 0) log[level](`opentelemetry: ${message}`);
      else
        log[level](
          { details: args.map((arg) => (arg instanceof Error ? arg.message : arg)) },
          `opentelemetry: ${message}`,
        );
    };
  return { error: line("error"), warn: line("warn"), info: line("info"), debug: line("debug"), verbose: line("trace") };
}

/** The promise's value, or undefined if it takes longer than `ms`. */
async function within<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

const disabled: Telemetry = {
  prometheus: undefined,
  shutdown: async () => {},
  [Symbol.asyncDispose]: async () => {},
};
