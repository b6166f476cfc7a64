import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startOtlpReceiver } from "@gantry/telemetry/testing";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { telemetryWanted } from "../src/telemetry.js";
import { FIXTURES, gantry, runGantry } from "./gantry.js";

const LOOPBACK = ["--set", "http.host=127.0.0.1", "--set", "http.port=0"];

describe("whether gantry start sets up telemetry", () => {
  let dir: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "gantry-telemetry-switch-"));
  });

  afterAll(() => rm(dir, { recursive: true, force: true }));

  async function file(content: unknown): Promise<string> {
    const path = join(dir, `${Math.random().toString(36).slice(2)}.json`);
    await writeFile(path, JSON.stringify(content));
    return path;
  }

  const none = { flag: undefined, sets: {}, env: {}, file: undefined };

  test("off by default; on for any standard exporter or endpoint variable", () => {
    expect(telemetryWanted(none)).toBe(false);
    for (const name of ["OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT"]) {
      expect(telemetryWanted({ ...none, env: { [name]: "otlp" } })).toBe(true);
    }
    expect(telemetryWanted({ ...none, env: { OTEL_EXPORTER_OTLP_ENDPOINT: "  " } })).toBe(false);
  });

  test("--telemetry, then --set, then the environment, then the config file, as core reads its keys", async () => {
    const on = await file({ telemetry: { enabled: true } });
    const flatOff = await file({ "telemetry.enabled": "off" });
    expect(telemetryWanted({ ...none, file: on })).toBe(true);
    expect(telemetryWanted({ ...none, file: flatOff, env: { OTEL_TRACES_EXPORTER: "otlp" } })).toBe(false);
    expect(telemetryWanted({ ...none, file: on, env: { GANTRY_TELEMETRY_ENABLED: "no" } })).toBe(false);
    expect(
      telemetryWanted({ ...none, env: { GANTRY_TELEMETRY_ENABLED: "no" }, sets: { "telemetry.enabled": "yes" } }),
    ).toBe(true);
    expect(telemetryWanted({ ...none, flag: false, sets: { "telemetry.enabled": "true" } })).toBe(false);
  });

  test("a value that is not a boolean: GANTRY_ERR_CONFIG_INVALID naming the key and where it came from", async () => {
    expect(() => telemetryWanted({ ...none, env: { GANTRY_TELEMETRY_ENABLED: "maybe" } })).toThrow(
      'config key telemetry.enabled: must be true or false, got "maybe" (from environment variable GANTRY_TELEMETRY_ENABLED)',
    );
    const bad = await file({ telemetry: { enabled: 3 } });
    expect(() => telemetryWanted({ ...none, file: bad })).toThrow(
      /config key telemetry\.enabled: .*\(from config file /,
    );
  });
});

describe("gantry start with telemetry", () => {
  test("a bad OTEL_* value fails the start with its code, before the app loads", async () => {
    const result = await runGantry(["start", join(FIXTURES, "slow-app.js"), ...LOOPBACK], {
      OTEL_TRACES_EXPORTER: "jaeger",
    });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("OTEL_TRACES_EXPORTER=jaeger names an unknown traces exporter jaeger");
    expect(result.stderr).toContain("GANTRY_ERR_TELEMETRY_EXPORTER");
    expect(result.stderr).not.toMatch(/\n\s+at /);
  });

  test("spans of its calls reach the collector, named after the app, and are flushed at shutdown", async () => {
    await using receiver = await startOtlpReceiver();
    const process = gantry(["start", join(FIXTURES, "slow-app.js"), ...LOOPBACK, "--telemetry"], {
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
      OTEL_METRICS_EXPORTER: "none",
    });
    const [, url] = await process.waitFor(/^\s+http\s+(http:\/\/\S+)$/m);
    const response = await fetch(`${url}/slow`, {
      method: "POST",
      body: '{"ms":1,"id":"t"}',
      headers: { "content-type": "application/json" },
    });
    expect(response.status).toBe(200);
    // The default batch delay is 5 s: only the flush at shutdown can have sent it this soon.
    process.child.kill("SIGTERM");
    expect((await process.exited).code).toBe(0);
    const [span] = await receiver.waitForSpans(1, 5000);
    expect(span).toMatchObject({ name: "POST /slow", kind: "server" });
    expect(span.resource).toMatchObject({ "service.name": "slow-app", "service.version": "1.0.0" });
  });
});
