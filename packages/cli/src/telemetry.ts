import { readFileSync } from "node:fs";
import { config, coreErrors, type GantryApp } from "@gantry/core";
import { type AppIdentity, startTelemetry, type Telemetry } from "@gantry/telemetry";

/** The standard variables that, set, ask for telemetry without any Gantry setting. */
const OTEL_SIGNALS = [
  "OTEL_TRACES_EXPORTER",
  "OTEL_METRICS_EXPORTER",
  "OTEL_EXPORTER_OTLP_ENDPOINT",
  "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
  "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
] as const;

/** Where `gantry start` reads whether telemetry is on, highest precedence first. */
export interface TelemetrySwitches {
  readonly flag: boolean | undefined;
  readonly sets: Readonly<Record<string, string>>;
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly file: string | undefined;
}

/**
 * Whether `gantry start` sets up telemetry: `--telemetry`, else `telemetry.enabled` (`--set`, then
 * `GANTRY_TELEMETRY_ENABLED`, then the config file), else whether any standard `OTEL_*` exporter or endpoint
 * variable is set. `OTEL_SDK_DISABLED=true` still wins inside the SDK setup.
 */
export function telemetryWanted(switches: TelemetrySwitches): boolean {
  if (switches.flag !== undefined) return switches.flag;
  const set = switches.sets["telemetry.enabled"];
  if (set !== undefined) return bool(set, "--set telemetry.enabled");
  const env = switches.env.GANTRY_TELEMETRY_ENABLED;
  if (env !== undefined && env.trim() !== "") return bool(env, "environment variable GANTRY_TELEMETRY_ENABLED");
  const fromFile = fileSetting(switches.file);
  if (fromFile !== undefined) return fromFile;
  return OTEL_SIGNALS.some((name) => (switches.env[name] ?? "").trim() !== "");
}

/**
 * Starts telemetry before the app's module is imported (instrumentations patch what it imports); the
 * app's name, version and instance id reach the resource once `loaded` is given the app.
 */
export async function startEarly(env: Readonly<Record<string, string | undefined>>): Promise<{
  readonly telemetry: Telemetry;
  loaded(app: GantryApp | undefined): void;
}> {
  const identity = Promise.withResolvers<AppIdentity>();
  const telemetry = await startTelemetry({ env, app: identity.promise });
  return {
    telemetry,
    loaded(app) {
      if (app === undefined) identity.reject(new Error("the app did not load"));
      else identity.resolve({ name: app.name, version: app.version, instanceId: app.instanceId });
    },
  };
}

/** Read as core reads `telemetry.enabled` when the app loads its config: the same spellings, the same error. */
const enabledField = config.boolean({ default: false });

function bool(raw: unknown, source: string): boolean {
  try {
    return enabledField.parse(raw) as boolean;
  } catch (error) {
    throw coreErrors.create("GANTRY_ERR_CONFIG_INVALID", {
      key: "telemetry.enabled",
      problem: (error as Error).message,
      source,
    });
  }
}

/** `{ "telemetry": { "enabled": true } }` or `{ "telemetry.enabled": true }` in the config file. */
function fileSetting(file: string | undefined): boolean | undefined {
  if (file === undefined) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, "utf8"));
  } catch {
    // The app's own config loading reports an unreadable file, with its code.
    return undefined;
  }
  if (typeof parsed !== "object" || parsed === null) return undefined;
  const record = parsed as Record<string, unknown>;
  const nested = record.telemetry;
  const value =
    typeof nested === "object" && nested !== null
      ? (nested as Record<string, unknown>).enabled
      : record["telemetry.enabled"];
  if (value === undefined) return undefined;
  return bool(value, `config file ${file}`);
}
