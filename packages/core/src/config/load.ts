import { readFileSync } from "node:fs";
import { coreErrors } from "../errors/table.js";
import {
  type ConfigField,
  ConfigProblem,
  type ConfigSchema,
  type ConfigSpec,
  envName,
  isConfigField,
} from "./schema.js";

/** Where config values come from. Later sources win: defaults, file, environment, flags. */
export interface ConfigSources {
  /** A JSON file whose nesting follows the keys: `{ "http": { "port": 8080 } }`. */
  file?: string;
  env?: Readonly<Record<string, string | undefined>>;
  /** Values by dotted key, as `gantry start --set http.port=8080` gives them. */
  flags?: Readonly<Record<string, string>>;
}

export interface LoadedConfig {
  readonly values: ReadonlyMap<ConfigSchema<unknown>, unknown>;
  /** Environment variables that look like Gantry's (`GANTRY_*`) but name no key: likely typos. */
  readonly warnings: readonly string[];
}

interface Entry {
  readonly key: string;
  readonly path: readonly string[];
  readonly field: ConfigField<unknown>;
  readonly schema: ConfigSchema<unknown>;
  readonly env: string;
}

/** Resolves every key of these schemas from the sources, checking each value. */
export function loadConfig(schemas: readonly ConfigSchema<unknown>[], sources: ConfigSources = {}): LoadedConfig {
  const entries = new Map<string, Entry>();
  for (const schema of schemas) {
    for (const entry of flatten(schema, schema.spec, [])) {
      const previous = entries.get(entry.key);
      if (previous !== undefined && previous.schema !== schema) {
        throw coreErrors.create("GANTRY_ERR_CONFIG_INVALID", {
          key: entry.key,
          problem: `declared by both the ${previous.schema.name} and ${schema.name} schemas`,
          source: "code",
        });
      }
      entries.set(entry.key, entry);
    }
  }
  const file = sources.file === undefined ? new Map<string, unknown>() : readConfigFile(sources.file, entries);
  const env = sources.env ?? {};
  const flags = sources.flags ?? {};
  for (const key of Object.keys(flags)) {
    if (!entries.has(key)) {
      throw coreErrors.create("GANTRY_ERR_CONFIG_UNKNOWN_KEY", {
        key,
        source: `--set ${key}`,
        hint: suggest(key, entries.keys()),
      });
    }
  }

  const values = new Map<ConfigSchema<unknown>, unknown>(schemas.map((schema) => [schema, {}]));
  for (const entry of entries.values()) {
    let raw: unknown;
    let source: string;
    const fromEnv = env[entry.env];
    if (Object.hasOwn(flags, entry.key)) {
      raw = flags[entry.key];
      source = `--set ${entry.key}`;
    } else if (fromEnv !== undefined && fromEnv !== "") {
      raw = fromEnv;
      source = `environment variable ${entry.env}`;
    } else if (file.has(entry.key)) {
      raw = file.get(entry.key);
      source = `config file ${sources.file}`;
    } else {
      raw = undefined;
      source = "default";
    }
    let value: unknown;
    if (raw === undefined) {
      if (entry.field.required)
        throw coreErrors.create("GANTRY_ERR_CONFIG_MISSING", { key: entry.key, env: entry.env });
      value = entry.field.default;
    } else {
      try {
        value = entry.field.parse(raw);
      } catch (error) {
        if (!(error instanceof ConfigProblem)) throw error;
        throw coreErrors.create("GANTRY_ERR_CONFIG_INVALID", { key: entry.key, problem: error.message, source });
      }
    }
    assign(values.get(entry.schema) as Record<string, unknown>, entry.path, value);
  }

  const knownEnv = new Set([...entries.values()].map((entry) => entry.env));
  const warnings = Object.keys(env)
    .filter((name) => name.startsWith("GANTRY_") && !knownEnv.has(name) && !IGNORED_ENV.has(name))
    .map((name) => `environment variable ${name} names no config key${suggest(name, knownEnv)}`);
  return { values, warnings };
}

/** Gantry's own variables that are not config keys. */
const IGNORED_ENV = new Set(["GANTRY_CONFIG", "GANTRY_REGISTRY", "GANTRY_NAMESPACE"]);

function* flatten(schema: ConfigSchema<unknown>, spec: ConfigSpec, path: string[]): Generator<Entry> {
  for (const [name, value] of Object.entries(spec)) {
    const here = [...path, name];
    if (isConfigField(value)) {
      const key = here.join(".");
      yield { key, path: here, field: value, schema, env: value.env ?? schema.envPrefix + envName(key) };
    } else {
      yield* flatten(schema, value, here);
    }
  }
}

function readConfigFile(file: string, entries: ReadonlyMap<string, Entry>): Map<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (error) {
    throw coreErrors.create("GANTRY_ERR_CONFIG_FILE", {
      file,
      problem: (error as NodeJS.ErrnoException).code === "ENOENT" ? "not found" : (error as Error).message,
    });
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw coreErrors.create("GANTRY_ERR_CONFIG_FILE", {
      file,
      problem: `not valid JSON (${(error as Error).message})`,
    });
  }
  if (!isPlainObject(parsed))
    throw coreErrors.create("GANTRY_ERR_CONFIG_FILE", { file, problem: "must hold a JSON object" });
  const values = new Map<string, unknown>();
  const walk = (object: Record<string, unknown>, prefix: string) => {
    for (const [name, value] of Object.entries(object)) {
      if (prefix === "" && name === "$schema") continue;
      const key = prefix + name;
      if (entries.has(key)) {
        values.set(key, value);
      } else if (isPlainObject(value) && [...entries.keys()].some((known) => known.startsWith(`${key}.`))) {
        walk(value, `${key}.`);
      } else {
        throw coreErrors.create("GANTRY_ERR_CONFIG_UNKNOWN_KEY", {
          key,
          source: `config file ${file}`,
          hint: suggest(key, entries.keys()),
        });
      }
    }
  };
  walk(parsed, "");
  return values;
}

function assign(target: Record<string, unknown>, path: readonly string[], value: unknown): void {
  let node = target;
  for (const name of path.slice(0, -1)) {
    node[name] ??= {};
    node = node[name] as Record<string, unknown>;
  }
  node[path[path.length - 1]] = value;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** "; did you mean X?" for the closest known name, or nothing. */
function suggest(name: string, known: Iterable<string>): string {
  const best = closest(name, [...known]);
  return best === undefined ? "" : `; did you mean ${best}?`;
}

function closest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Math.max(2, Math.floor(word.length / 4)) + 1;
  for (const candidate of candidates) {
    const distance = editDistance(word.toLowerCase(), candidate.toLowerCase());
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    previous = current;
  }
  return previous[b.length];
}
