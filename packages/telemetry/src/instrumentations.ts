import { telemetryErrors } from "./errors.js";

/** What telemetry needs of an OpenTelemetry instrumentation: one made enabled, with the global providers. */
export interface Instrumentation {
  disable(): void;
}

/** The libraries telemetry can instrument, by the name `instrumentations` takes. */
export const instrumentationPackages: Readonly<Record<string, { readonly package: string; readonly export: string }>> =
  {
    pg: { package: "@opentelemetry/instrumentation-pg", export: "PgInstrumentation" },
    redis: { package: "@opentelemetry/instrumentation-redis", export: "RedisInstrumentation" },
    undici: { package: "@opentelemetry/instrumentation-undici", export: "UndiciInstrumentation" },
  };

/** Instrumentations that would trace Gantry's own traffic a second time, beside the spans its transports make. */
export const refusedInstrumentations: Readonly<Record<string, string>> = {
  http: "Gantry's HTTP transport makes the server and client spans of its calls (and node:http is its client)",
  express: "Gantry's HTTP transport makes the spans of its routes",
  grpc: "Gantry's gRPC transport makes the server and client spans of its calls",
};

/** Throws the coded error for the first name that is refused or unknown. */
export function checkInstrumentations(names: readonly string[]): void {
  for (const name of names) {
    const reason = refusedInstrumentations[name];
    if (reason !== undefined) {
      throw telemetryErrors.create("GANTRY_ERR_TELEMETRY_INSTRUMENTATION_REFUSED", { name, reason });
    }
    if (instrumentationPackages[name] === undefined) {
      throw telemetryErrors.create("GANTRY_ERR_TELEMETRY_INSTRUMENTATION", {
        name,
        known: Object.keys(instrumentationPackages).join(", "),
      });
    }
  }
}

/**
 * Loads the packages of the instrumentations named, and gives a factory for each: made once the SDK
 * is registered, an instrumentation enables itself with the global providers (some check their
 * `enabled` setting on every use, so they cannot be made disabled and enabled later). Only the
 * packages listed are imported, so an app pays nothing for the others.
 */
export async function loadInstrumentations(
  names: readonly string[],
  load: (specifier: string) => Promise<Record<string, unknown>> = (specifier) => import(specifier),
): Promise<(() => Instrumentation)[]> {
  const loaded: (() => Instrumentation)[] = [];
  for (const name of new Set(names)) {
    const entry = instrumentationPackages[name];
    let module: Record<string, unknown>;
    try {
      module = await load(entry.package);
    } catch (error) {
      // A package that is there but fails to load is a different fault: let it show as it is.
      const missing = (error as { code?: string }).code === "ERR_MODULE_NOT_FOUND";
      if (!missing || !String((error as Error).message).includes(entry.package)) throw error;
      throw telemetryErrors.create("GANTRY_ERR_TELEMETRY_INSTRUMENTATION_MISSING", { name, package: entry.package });
    }
    const Class = module[entry.export] as new () => Instrumentation;
    loaded.push(() => new Class());
  }
  return loaded;
}
