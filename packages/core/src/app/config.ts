import { type ConfigOf, ConfigProblem, config, defineConfig } from "../config/schema.js";
import type { AppOptions } from "./app.js";

const LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;

/** Gantry's own config keys; the app's options give their defaults. */
export function coreConfigSchema(options: AppOptions) {
  return defineConfig(
    {
      log: {
        level: config.oneOf(LEVELS)({ default: options.logger?.level ?? "info", doc: "Lowest level logged" }),
      },
      limits: {
        maxConcurrentCalls: config.integer({
          default: options.maxConcurrentCalls ?? 1000,
          min: 1,
          doc: "Calls run at once, over every transport; more are shed with RESOURCE_EXHAUSTED",
        }),
      },
      advertise: {
        host: advertiseHost({
          doc: "The address registered for callers (the pod IP in Kubernetes); by default the listening host, or the first external IPv4 address when it listens on every interface",
        }),
      },
      zone: config.string({ doc: "The zone registered with every instance, for zone-aware balancing" }),
      clients: {
        direct: config.boolean({
          default: options.clientsDirect ?? true,
          doc: "Calls to a service served in this process run here, through the pipeline, without the network",
        }),
        forwardMetadata: config.list({
          default: [],
          doc: "Inbound metadata keys copied onto every outbound call (the request id always is)",
        }),
      },
      telemetry: {
        enabled: config.boolean({
          default: false,
          doc: "`gantry start` sets up OpenTelemetry (@gantry/telemetry) before the app loads; also on when an OTEL_*_EXPORTER or OTLP endpoint variable is set",
        }),
      },
      registration: {
        timeout: config.duration({
          default: 30_000,
          min: 1,
          doc: "Longest wait at start for the first registration; the app is not ready until then",
        }),
      },
      shutdown: {
        propagationDelay: config.duration({
          // With a registry, callers need a moment to see the deregistration before connections close.
          default: options.shutdown?.propagationDelayMs ?? (options.discovery === undefined ? 0 : 1000),
          doc: "Wait after deregistering, for clients to see it, before draining (1 s with discovery, else 0)",
        }),
        deregisterTimeout: config.duration({
          default: 5000,
          min: 1,
          doc: "Longest wait for the registry to confirm the deregistration, and to close; then shutdown goes on (the TTL removes the records)",
        }),
        drainTimeout: config.duration({
          default: options.shutdown?.drainTimeoutMs ?? 10_000,
          doc: "Longest wait for calls in flight at shutdown; then they are aborted",
        }),
      },
    },
    { name: "gantry", envPrefix: "GANTRY_" },
  );
}

/** A host to advertise: never a wildcard, which no caller can reach. */
function advertiseHost(options: { doc: string }) {
  const field = config.string(options);
  return {
    ...field,
    parse(raw: unknown): string | undefined {
      const host = field.parse(raw)?.trim();
      if (host === "" || host === "0.0.0.0" || host === "::" || host === "[::]") {
        throw new ConfigProblem(`must be an address callers can reach, not ${JSON.stringify(host)}`);
      }
      return host;
    },
  };
}

export type CoreConfigValues = ConfigOf<ReturnType<typeof coreConfigSchema>>;
