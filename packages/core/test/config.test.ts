import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import {
  type ConfigSources,
  config,
  createApp,
  defineConfig,
  envName,
  type GantryApp,
  GantryError,
  loadConfig,
} from "../src/index.js";
import { createTestApp } from "../src/testing/index.js";

const AppConfig = defineConfig(
  {
    http: {
      port: config.port({ default: 8080, doc: "Where HTTP listens" }),
      bodyLimit: config.bytes({ default: 1024 }),
    },
    timeout: config.duration({ default: 1000 }),
    tags: config.list({ default: [] }),
    mode: config.oneOf(["dev", "prod"])({ default: "dev" }),
    debug: config.boolean({ default: false }),
    optional: config.string(),
  },
  { name: "app", envPrefix: "GANTRY_" },
);

const Required = defineConfig({ database: { url: config.url({ required: true }) } }, { name: "db" });

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "gantry-config-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Writes a config file into the test's temp dir and returns its path. */
async function configFile(content: unknown, name = "gantry.json"): Promise<string> {
  const file = join(dir, name);
  await writeFile(file, typeof content === "string" ? content : JSON.stringify(content));
  return file;
}

/** The values of AppConfig from these sources. */
function appValues(sources: ConfigSources) {
  return loadConfig([AppConfig], sources).values.get(AppConfig) as {
    http: { port: number; bodyLimit: number };
    timeout: number;
    tags: string[];
    mode: string;
    debug: boolean;
    optional?: string;
  };
}

/** The coded error loadConfig throws for these sources. */
function loadError(sources: ConfigSources, schemas: Parameters<typeof loadConfig>[0] = [AppConfig]): GantryError {
  try {
    loadConfig(schemas, sources);
  } catch (error) {
    expect(error).toBeInstanceOf(GantryError);
    return error as GantryError;
  }
  throw new Error("loadConfig accepted the sources");
}

describe("precedence", () => {
  test("defaults < file < environment < flags, for one key set in all four places", async () => {
    const file = await configFile({ http: { port: 8081 } });
    const env = { GANTRY_HTTP_PORT: "8082" };
    const flags = { "http.port": "8083" };
    expect(appValues({}).http.port).toBe(8080);
    expect(appValues({ file }).http.port).toBe(8081);
    expect(appValues({ file, env }).http.port).toBe(8082);
    expect(appValues({ file, env, flags }).http.port).toBe(8083);
    expect(appValues({ env, flags }).http.port).toBe(8083);
    expect(appValues({ file, flags }).http.port).toBe(8083);
  });

  test("an empty environment variable counts as unset", async () => {
    const file = await configFile({ http: { port: 8081 } });
    expect(appValues({ file, env: { GANTRY_HTTP_PORT: "" } }).http.port).toBe(8081);
  });

  test("values are nested by key, with defaults for the keys no source sets", async () => {
    const file = await configFile({ $schema: "./gantry.schema.json", mode: "prod", tags: ["a", "b"] });
    expect(appValues({ file, env: { GANTRY_HTTP_BODY_LIMIT: "1mb" }, flags: { debug: "yes" } })).toEqual({
      http: { port: 8080, bodyLimit: 1_048_576 },
      timeout: 1000,
      tags: ["a", "b"],
      mode: "prod",
      debug: true,
      optional: undefined,
    });
  });

  test("an app resolves its config at start and DI injects it; the test app's flags win", async () => {
    const file = await configFile({ http: { port: 9000 }, timeout: "2s" });
    const app: GantryApp = createApp({ services: [], config: [AppConfig], logger: { level: "silent" } });
    try {
      await app.start({ file, env: { GANTRY_HTTP_PORT: "9001" }, flags: { mode: "prod" } });
      expect(app.config(AppConfig)).toMatchObject({ http: { port: 9001 }, timeout: 2000, mode: "prod" });
      expect(await app.get(AppConfig)).toBe(app.config(AppConfig));
    } finally {
      await app.close();
    }
    await using t = await createTestApp(
      { services: [], config: [AppConfig] },
      { env: { GANTRY_HTTP_PORT: "9001" }, config: { "http.port": "9002" } },
    );
    expect(t.app.config(AppConfig).http.port).toBe(9002);
    expect(() => t.app.config(Required)).toThrow(new TypeError("config schema db is not part of this app"));
  });

  test("a test app does not read the machine's environment", async () => {
    process.env.GANTRY_HTTP_PORT = "1234";
    try {
      await using t = await createTestApp({ services: [], config: [AppConfig] });
      expect(t.app.config(AppConfig).http.port).toBe(8080);
    } finally {
      delete process.env.GANTRY_HTTP_PORT;
    }
  });
});

describe("GANTRY_ERR_CONFIG_INVALID", () => {
  test("names the key and the environment variable it came from", () => {
    const error = loadError({ env: { GANTRY_HTTP_PORT: "http" } });
    expect(error.code).toBe("GANTRY_ERR_CONFIG_INVALID");
    expect(error.status).toBe("FAILED_PRECONDITION");
    expect(error.message).toBe(
      'config key http.port: must be a port number (0 to 65535), got "http" (from environment variable GANTRY_HTTP_PORT)',
    );
  });

  test("names the flag it came from", () => {
    expect(loadError({ flags: { "http.port": "70000" } }).message).toBe(
      'config key http.port: must be a port number (0 to 65535), got "70000" (from --set http.port)',
    );
  });

  test("names the config file it came from", async () => {
    const file = await configFile({ http: { bodyLimit: "lots" } });
    expect(loadError({ file }).message).toBe(
      `config key http.bodyLimit: must be a size such as 512kb or 1mb, got "lots" (from config file ${file})`,
    );
  });

  test("reports the source that won, not one it overrides", async () => {
    const file = await configFile({ mode: "staging" });
    expect(appValues({ file, flags: { mode: "prod" } }).mode).toBe("prod");
    expect(loadError({ file, env: { GANTRY_MODE: "test" } }).message).toBe(
      'config key mode: must be one of dev, prod, got "test" (from environment variable GANTRY_MODE)',
    );
  });

  test("stops the app's start", async () => {
    const app = createApp({ services: [], config: [AppConfig], logger: { level: "silent" } });
    try {
      await expect(app.start({ env: { GANTRY_DEBUG: "maybe" } })).rejects.toMatchObject({
        code: "GANTRY_ERR_CONFIG_INVALID",
        message: 'config key debug: must be true or false, got "maybe" (from environment variable GANTRY_DEBUG)',
      });
      expect(app.state).toBe("closed");
    } finally {
      await app.close();
    }
  });

  test("for a key that two schemas declare", () => {
    const Other = defineConfig({ http: { port: config.port({ default: 1 }) } }, { name: "other" });
    expect(loadError({}, [AppConfig, Other]).message).toBe(
      "config key http.port: declared by both the app and other schemas (from code)",
    );
  });
});

test("GANTRY_ERR_CONFIG_MISSING for a required key, naming its environment variable", () => {
  for (const env of [{}, { DATABASE_URL: "" }]) {
    const error = loadError({ env }, [Required]);
    expect(error.code).toBe("GANTRY_ERR_CONFIG_MISSING");
    expect(error.message).toBe("config key database.url is required; set it in the config file or with DATABASE_URL");
  }
  const values = loadConfig([Required], { env: { DATABASE_URL: "postgres://db/app" } }).values.get(Required);
  expect(values).toEqual({ database: { url: "postgres://db/app" } });
});

describe("GANTRY_ERR_CONFIG_UNKNOWN_KEY", () => {
  test("for a typo in the config file, with a suggestion", async () => {
    const file = await configFile({ http: { prot: 8080 } });
    const error = loadError({ file });
    expect(error.code).toBe("GANTRY_ERR_CONFIG_UNKNOWN_KEY");
    expect(error.message).toBe(`config key http.prot is not known (from config file ${file}); did you mean http.port?`);
  });

  test("for a typo in a flag, with a suggestion", () => {
    expect(loadError({ flags: { "http.bodyLimt": "1kb" } }).message).toBe(
      "config key http.bodyLimt is not known (from --set http.bodyLimt); did you mean http.bodyLimit?",
    );
  });

  test("without a suggestion when nothing is close", async () => {
    expect(loadError({ flags: { "completely.different": "1" } }).message).toBe(
      "config key completely.different is not known (from --set completely.different)",
    );
    const file = await configFile({ http: 8080 });
    expect(loadError({ file }).message).toBe(`config key http is not known (from config file ${file})`);
  });
});

describe("GANTRY_ERR_CONFIG_FILE", () => {
  test("for a file that does not exist", () => {
    const file = join(dir, "missing.json");
    const error = loadError({ file });
    expect(error.code).toBe("GANTRY_ERR_CONFIG_FILE");
    expect(error.message).toBe(`config file ${file}: not found`);
  });

  test("for a file that is not valid JSON", async () => {
    const file = await configFile("{ http: ", "broken.json");
    const error = loadError({ file });
    expect(error.code).toBe("GANTRY_ERR_CONFIG_FILE");
    expect(error.message).toMatch(new RegExp(`^config file ${file.replaceAll(".", "\\.")}: not valid JSON \\(.+\\)$`));
  });

  test.each([["[1, 2]"], ["null"], ['"text"'], ["42"]])("for a file holding %s instead of an object", async (text) => {
    const file = await configFile(text);
    expect(loadError({ file })).toMatchObject({
      code: "GANTRY_ERR_CONFIG_FILE",
      message: `config file ${file}: must hold a JSON object`,
    });
  });

  test("for a directory", () => {
    expect(loadError({ file: dir }).code).toBe("GANTRY_ERR_CONFIG_FILE");
  });
});

describe("builders", () => {
  const parse = <T>(field: { parse(raw: unknown): T }, raw: unknown) => field.parse(raw);

  test("port", () => {
    const port = config.port({ default: 0 });
    expect(parse(port, "8080")).toBe(8080);
    expect(parse(port, 443)).toBe(443);
    expect(parse(port, " 0 ")).toBe(0);
    for (const raw of ["-1", "65536", "80.5", "http", "", true]) {
      expect(() => parse(port, raw), String(raw)).toThrow(/^must be a port number \(0 to 65535\), got /);
    }
  });

  test('duration: "5s" and friends, in milliseconds', () => {
    const duration = config.duration({ default: 0, max: 3_600_000 });
    expect(parse(duration, "5s")).toBe(5000);
    expect(parse(duration, "250ms")).toBe(250);
    expect(parse(duration, "2m")).toBe(120_000);
    expect(parse(duration, "1h")).toBe(3_600_000);
    expect(parse(duration, "1.5s")).toBe(1500);
    expect(parse(duration, "300")).toBe(300);
    expect(parse(duration, 300)).toBe(300);
    for (const raw of ["5S", "-5s", "5 days", "s", "", -1]) {
      expect(() => parse(duration, raw), String(raw)).toThrow(/^must be a duration such as 500ms, 5s or 2m, got /);
    }
    expect(() => parse(duration, "2h")).toThrow("must be at most 3600000, got 7200000");
  });

  test('bytes: "1mb" and friends, in powers of 1024', () => {
    const bytes = config.bytes({ default: 0, min: 1 });
    expect(parse(bytes, "1mb")).toBe(1_048_576);
    expect(parse(bytes, "1MB")).toBe(1_048_576);
    expect(parse(bytes, "512kb")).toBe(524_288);
    expect(parse(bytes, "1KiB")).toBe(1024);
    expect(parse(bytes, "1.5kb")).toBe(1536);
    expect(parse(bytes, "2gb")).toBe(2 * 1024 ** 3);
    expect(parse(bytes, "10")).toBe(10);
    expect(parse(bytes, 2048)).toBe(2048);
    for (const raw of ["1tb", "lots", "-1kb", 1.5, ""]) {
      expect(() => parse(bytes, raw), String(raw)).toThrow(/^must be a size such as 512kb or 1mb, got /);
    }
    expect(() => parse(bytes, "0")).toThrow("must be at least 1, got 0");
  });

  test("list: comma-separated text or a JSON array of strings", () => {
    const list = config.list({ default: [] });
    expect(parse(list, "a, b,,c ")).toEqual(["a", "b", "c"]);
    expect(parse(list, "")).toEqual([]);
    expect(parse(list, ["x", "y"])).toEqual(["x", "y"]);
    expect(() => parse(list, [1])).toThrow("must be a list of strings, got 1");
    expect(() => parse(list, 5)).toThrow("must be a list of strings, got 5");
  });

  test("oneOf", () => {
    const level = config.oneOf(["debug", "info"])({ default: "info" });
    expect(level.kind).toBe("one of debug, info");
    expect(parse(level, "debug")).toBe("debug");
    expect(() => parse(level, "DEBUG")).toThrow('must be one of debug, info, got "DEBUG"');
    expect(() => parse(level, 1)).toThrow("must be one of debug, info, got 1");
  });

  test('boolean: "yes", "on", "1" and their opposites', () => {
    const flag = config.boolean({ default: false });
    for (const raw of ["yes", "YES", "on", "1", "true", " True ", true])
      expect(parse(flag, raw), String(raw)).toBe(true);
    for (const raw of ["no", "off", "0", "false", false]) expect(parse(flag, raw), String(raw)).toBe(false);
    for (const raw of ["maybe", "", 1, "y"]) {
      expect(() => parse(flag, raw), String(raw)).toThrow(/^must be true or false, got /);
    }
  });

  test("integer and number with bounds, string and url", () => {
    const integer = config.integer({ default: 1, min: 1, max: 10 });
    expect(parse(integer, "7")).toBe(7);
    expect(() => parse(integer, "7.5")).toThrow('must be an integer, got "7.5"');
    expect(() => parse(integer, "0")).toThrow("must be at least 1, got 0");
    expect(() => parse(integer, 11)).toThrow("must be at most 10, got 11");
    expect(parse(config.number({ default: 0 }), "-2.5e3")).toBe(-2500);
    expect(() => parse(config.number({ default: 0 }), "1,5")).toThrow('must be a number, got "1,5"');
    expect(parse(config.string({ default: "" }), "text")).toBe("text");
    expect(() => parse(config.string({ default: "" }), 5)).toThrow("must be a string, got 5");
    expect(parse(config.url({ default: "" }), "http://x:1/y")).toBe("http://x:1/y");
    expect(() => parse(config.url({ default: "" }), "not a url")).toThrow('must be a URL, got "not a url"');
  });

  test("long values are shortened in messages", () => {
    expect(() => parse(config.port({ default: 0 }), "x".repeat(100))).toThrow(
      `must be a port number (0 to 65535), got "${"x".repeat(56)}...`,
    );
  });
});

describe("environment variable names", () => {
  test("derive from the key in upper snake case, after the schema's prefix", () => {
    expect(envName("http.bodyLimit")).toBe("HTTP_BODY_LIMIT");
    expect(envName("shutdown.drainTimeout")).toBe("SHUTDOWN_DRAIN_TIMEOUT");
    expect(envName("a-b.c2D")).toBe("A_B_C2_D");
    expect(appValues({ env: { GANTRY_HTTP_BODY_LIMIT: "2kb", HTTP_BODY_LIMIT: "4kb" } }).http.bodyLimit).toBe(2048);
  });

  test("a field may name its own variable", () => {
    const Custom = defineConfig({ db: config.string({ env: "DATABASE_URL", default: "none" }) }, { envPrefix: "APP_" });
    expect(loadConfig([Custom], { env: { DATABASE_URL: "pg", APP_DB: "ignored" } }).values.get(Custom)).toEqual({
      db: "pg",
    });
  });

  test("an unknown GANTRY_* variable gives a warning with a suggestion", () => {
    const { warnings } = loadConfig([AppConfig], {
      env: {
        GANTRY_HTTP_PORTT: "1",
        GANTRY_SOMETHING_ELSE: "2",
        GANTRY_HTTP_PORT: "3",
        GANTRY_CONFIG: "gantry.json",
        GANTRY_REGISTRY: "local://",
        GANTRY_NAMESPACE: "dev",
        HTTP_PROT: "4",
      },
    });
    expect(warnings).toEqual([
      "environment variable GANTRY_HTTP_PORTT names no config key; did you mean GANTRY_HTTP_PORT?",
      "environment variable GANTRY_SOMETHING_ELSE names no config key",
    ]);
  });

  test("the app logs those warnings at start", async () => {
    const lines: Record<string, unknown>[] = [];
    await using t = await createTestApp(
      { services: [], config: [AppConfig] },
      {
        env: { GANTRY_HTTP_PROT: "1" },
        logger: { destination: { write: (line: string) => void lines.push(JSON.parse(line)) } },
      },
    );
    expect(t.app.state).toBe("ready");
    expect(lines.filter((line) => line.level === "warn").map((line) => line.msg)).toEqual([
      "environment variable GANTRY_HTTP_PROT names no config key; did you mean GANTRY_HTTP_PORT?",
    ]);
  });

  test("Gantry's own keys are read too: log level and shutdown timings", async () => {
    const lines: string[] = [];
    await using t = await createTestApp(
      { services: [] },
      {
        env: { GANTRY_LOG_LEVEL: "warn", GANTRY_SHUTDOWN_DRAIN_TIMEOUT: "5s" },
        logger: { destination: { write: (line: string) => void lines.push(line) } },
      },
    );
    expect(t.app.log.level).toBe("warn");
    expect(lines).toEqual([]);
    await expect(
      createTestApp({ services: [] }, { env: { GANTRY_SHUTDOWN_DRAIN_TIMEOUT: "soon" } }),
    ).rejects.toMatchObject({
      code: "GANTRY_ERR_CONFIG_INVALID",
      message:
        'config key shutdown.drainTimeout: must be a duration such as 500ms, 5s or 2m, got "soon" (from environment variable GANTRY_SHUTDOWN_DRAIN_TIMEOUT)',
    });
  });
});
