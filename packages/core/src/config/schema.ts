import { createToken, type Token } from "../di/token.js";

/** A problem with one config value; the loader adds the key and where the value came from. */
export class ConfigProblem extends Error {}

/** One config key: its type, default, environment variable and documentation. */
export interface ConfigField<T> {
  readonly kind: string;
  readonly default: T | undefined;
  readonly required: boolean;
  /** The environment variable; by default the schema's prefix and the key in upper snake case. */
  readonly env: string | undefined;
  readonly doc: string | undefined;
  /** Turns a string (environment, flag) or a JSON value (config file) into the value, or throws a ConfigProblem. */
  parse(raw: unknown): T;
}

export interface FieldOptions<T> {
  default?: T;
  required?: boolean;
  env?: string;
  doc?: string;
}

interface FieldBuilder<T, O = object> {
  (options: FieldOptions<T> & O & ({ default: T } | { required: true })): ConfigField<T>;
  (options?: FieldOptions<T> & O): ConfigField<T | undefined>;
}

function builder<T, O = object>(kind: string, parse: (raw: unknown, options: O) => T): FieldBuilder<T, O> {
  return ((options: FieldOptions<T> & O = {} as FieldOptions<T> & O) => ({
    kind,
    default: options.default,
    required: options.required === true,
    env: options.env,
    doc: options.doc,
    parse: (raw: unknown) => parse(raw, options),
  })) as FieldBuilder<T, O>;
}

const DECIMAL = /^-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?$/;
const DURATION = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h)?$/;
const BYTES = /^(\d+(?:\.\d+)?)\s*(b|kb|kib|mb|mib|gb|gib)?$/i;
const DURATION_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
const BYTE_UNITS: Record<string, number> = {
  b: 1,
  kb: 1024,
  kib: 1024,
  mb: 1024 ** 2,
  mib: 1024 ** 2,
  gb: 1024 ** 3,
  gib: 1024 ** 3,
};

function toNumber(raw: unknown, what: string): number {
  if (typeof raw === "number" && Number.isFinite(raw)) return raw;
  if (typeof raw === "string" && DECIMAL.test(raw.trim())) return Number(raw.trim());
  throw new ConfigProblem(`must be ${what}, got ${show(raw)}`);
}

interface Bounds {
  min?: number;
  max?: number;
}

function bounded(value: number, { min, max }: Bounds): number {
  if (min !== undefined && value < min) throw new ConfigProblem(`must be at least ${min}, got ${value}`);
  if (max !== undefined && value > max) throw new ConfigProblem(`must be at most ${max}, got ${value}`);
  return value;
}

function show(raw: unknown): string {
  const text = typeof raw === "string" ? JSON.stringify(raw) : String(raw);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

/**
 * Builders of config keys.
 *
 * @example
 * export const AppConfig = defineConfig({
 *   greeting: config.string({ default: "Hello", doc: "What HelloService says" }),
 *   upstream: { url: config.url({ required: true }), timeout: config.duration({ default: 2000 }) },
 * });
 */
export const config = {
  string: builder<string>("string", (raw) => {
    if (typeof raw !== "string") throw new ConfigProblem(`must be a string, got ${show(raw)}`);
    return raw;
  }),
  number: builder<number, Bounds>("number", (raw, o) => bounded(toNumber(raw, "a number"), o)),
  integer: builder<number, Bounds>("integer", (raw, o) => {
    const value = toNumber(raw, "an integer");
    if (!Number.isInteger(value)) throw new ConfigProblem(`must be an integer, got ${show(raw)}`);
    return bounded(value, o);
  }),
  boolean: builder<boolean>("boolean", (raw) => {
    if (typeof raw === "boolean") return raw;
    const text = typeof raw === "string" ? raw.trim().toLowerCase() : undefined;
    if (text === "true" || text === "1" || text === "yes" || text === "on") return true;
    if (text === "false" || text === "0" || text === "no" || text === "off") return false;
    throw new ConfigProblem(`must be true or false, got ${show(raw)}`);
  }),
  port: builder<number>("port", (raw) => {
    const value = toNumber(raw, "a port number (0 to 65535)");
    if (!Number.isInteger(value) || value < 0 || value > 65535) {
      throw new ConfigProblem(`must be a port number (0 to 65535), got ${show(raw)}`);
    }
    return value;
  }),
  url: builder<string>("url", (raw) => {
    if (typeof raw !== "string" || !URL.canParse(raw)) throw new ConfigProblem(`must be a URL, got ${show(raw)}`);
    return raw;
  }),
  oneOf: <const V extends string>(values: readonly V[]) =>
    builder<V>(`one of ${values.join(", ")}`, (raw) => {
      if (typeof raw !== "string" || !values.includes(raw as V)) {
        throw new ConfigProblem(`must be one of ${values.join(", ")}, got ${show(raw)}`);
      }
      return raw as V;
    }),
  /** Milliseconds, from a number or text such as `250ms`, `5s`, `2m`, `1h`. */
  duration: builder<number, Bounds>("duration", (raw, o) => {
    if (typeof raw === "number" && Number.isFinite(raw) && raw >= 0) return bounded(raw, o);
    const match = typeof raw === "string" ? DURATION.exec(raw.trim()) : null;
    if (match === null) throw new ConfigProblem(`must be a duration such as 500ms, 5s or 2m, got ${show(raw)}`);
    return bounded(Number(match[1]) * DURATION_MS[match[2] ?? "ms"], o);
  }),
  /** Bytes, from a number or text such as `512kb`, `1mb` (powers of 1024). */
  bytes: builder<number, Bounds>("bytes", (raw, o) => {
    if (typeof raw === "number" && Number.isInteger(raw) && raw >= 0) return bounded(raw, o);
    const match = typeof raw === "string" ? BYTES.exec(raw.trim()) : null;
    if (match === null) throw new ConfigProblem(`must be a size such as 512kb or 1mb, got ${show(raw)}`);
    return bounded(Math.floor(Number(match[1]) * BYTE_UNITS[(match[2] ?? "b").toLowerCase()]), o);
  }),
  /** A list of strings, from a JSON array or comma-separated text. */
  list: builder<string[]>("list", (raw) => {
    if (Array.isArray(raw) && raw.every((item) => typeof item === "string")) return raw;
    if (typeof raw === "string")
      return raw
        .split(",")
        .map((item) => item.trim())
        .filter((item) => item !== "");
    throw new ConfigProblem(`must be a list of strings, got ${show(raw)}`);
  }),
  /** Names to strings, from a JSON object (in a file, or as JSON text in the environment or a flag). */
  record: builder<Record<string, string>>("record", (raw) => {
    let value = raw;
    if (typeof raw === "string") {
      try {
        value = JSON.parse(raw);
      } catch {
        throw new ConfigProblem(`must be a JSON object of strings, got ${show(raw)}`);
      }
    }
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      throw new ConfigProblem(`must be a JSON object of strings, got ${show(raw)}`);
    }
    for (const [key, item] of Object.entries(value)) {
      if (typeof item !== "string") throw new ConfigProblem(`${key} must be a string, got ${show(item)}`);
    }
    return { ...(value as Record<string, string>) };
  }),
};

export interface ConfigSpec {
  readonly [key: string]: ConfigField<unknown> | ConfigSpec;
}

export type ConfigValues<S extends ConfigSpec> = {
  readonly [K in keyof S]: S[K] extends ConfigField<infer T> ? T : S[K] extends ConfigSpec ? ConfigValues<S[K]> : never;
};

/** A set of config keys, and the DI token its values are injected by. */
export interface ConfigSchema<T> {
  readonly name: string;
  readonly spec: ConfigSpec;
  readonly envPrefix: string;
  readonly token: Token<T>;
}

/** The values of a config schema, for typing an injected config. */
export type ConfigOf<C> = C extends ConfigSchema<infer T> ? T : never;

export interface DefineConfigOptions {
  /** For messages and the DI token. */
  name?: string;
  /** Put before every derived environment variable name (`APP_` gives `APP_DB_URL`). */
  envPrefix?: string;
}

/**
 * Declares config keys: their types, defaults, environment variables and docs. Values come from, in
 * increasing precedence: the defaults, the config file, the environment, then `--set key=value` flags.
 * Every value is checked at start; an error names the key and where the value came from.
 *
 * @example
 * export const AppConfig = defineConfig({ greeting: config.string({ default: "Hello" }) });
 * constructor(@Inject(AppConfig) private config: ConfigOf<typeof AppConfig>) {}
 */
export function defineConfig<const S extends ConfigSpec>(
  spec: S,
  options: DefineConfigOptions = {},
): ConfigSchema<ConfigValues<S>> {
  const name = options.name ?? "config";
  return { name, spec, envPrefix: options.envPrefix ?? "", token: createToken(name) };
}

export function isConfigField(value: unknown): value is ConfigField<unknown> {
  return typeof value === "object" && value !== null && typeof (value as ConfigField<unknown>).parse === "function";
}

/** `http.bodyLimit` → `HTTP_BODY_LIMIT` */
export function envName(key: string): string {
  return key
    .replace(/([a-z0-9])([A-Z])/g, "$1_$2")
    .replace(/[.-]/g, "_")
    .toUpperCase();
}
