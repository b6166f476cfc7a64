import { type ConfigOf, config, defineConfig } from "../config/schema.js";
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
      shutdown: {
        propagationDelay: config.duration({
          default: options.shutdown?.propagationDelayMs ?? 0,
          doc: "Wait after deregistering, for clients to see it, before draining",
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

export type CoreConfigValues = ConfigOf<ReturnType<typeof coreConfigSchema>>;
