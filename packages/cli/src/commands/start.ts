import { existsSync } from "node:fs";
import { resolve } from "node:path";
import type { GantryApp } from "@gantry/core";
import type { Command, CommandInput } from "../command.js";
import { cliErrors } from "../errors.js";
import { loadApp } from "../load-app.js";
import { startEarly, telemetryWanted } from "../telemetry.js";

const SIGNALS = ["SIGTERM", "SIGINT"] as const;

export const start: Command = {
  name: "start",
  summary: "Start an app from its compiled entry module",
  help: `Usage: gantry start <entry> [options]

Loads the compiled module <entry> (its default export is the app made by createApp),
starts it, prints where it listens and the registry its services registered in (an app
with discovery(): $GANTRY_REGISTRY, else local://; see them with gantry ls), and serves
until SIGTERM or SIGINT. Then it shuts down in order: readiness fails, it deregisters,
waits the propagation delay, lets calls in flight finish (up to shutdown.drainTimeout),
closes transports, clients and hooks, and exits 0. A second signal exits at once with 1.

Options:
  --config <file>     Config file (JSON). Default: $GANTRY_CONFIG, else ./gantry.config.json if present
  --set <key=value>   Set a config key; repeatable. Beats the environment, which beats the file
  --telemetry         Set up OpenTelemetry before the app loads (telemetry.enabled,
                      GANTRY_TELEMETRY_ENABLED); on by itself when OTEL_TRACES_EXPORTER,
                      OTEL_METRICS_EXPORTER or OTEL_EXPORTER_OTLP_ENDPOINT is set
  --verbose           Print stack traces with errors
  -h, --help          Show this help

Config precedence, lowest first: defaults in code < config file < environment < --set.
Gantry's own keys include http.port (GANTRY_HTTP_PORT), http.host, http.bodyLimit,
log.level, limits.maxConcurrentCalls, shutdown.propagationDelay, shutdown.drainTimeout,
registry.url (GANTRY_REGISTRY), advertise.host (GANTRY_ADVERTISE_HOST), zone.

Telemetry (@gantry/telemetry) reads the standard OTEL_* variables: spans and metrics go
over OTLP (OTEL_EXPORTER_OTLP_ENDPOINT, default http://localhost:4318), metrics also as
Prometheus text at GET /metrics on the app's HTTP port with OTEL_METRICS_EXPORTER=prometheus.
service.name, service.version and service.instance.id come from the app unless set.
It is flushed after the app has closed.

Exit status: 0 after a clean shutdown, 1 when the app fails, 2 for a usage error.

Examples:
  gantry start dist/main.js
  gantry start dist/main.js --set http.port=0 --set log.level=debug
  GANTRY_HTTP_PORT=9000 gantry start dist/main.js --config prod.json
  GANTRY_REGISTRY=etcd://10.0.0.5:2379 GANTRY_ADVERTISE_HOST=10.0.0.7 gantry start dist/main.js
  OTEL_EXPORTER_OTLP_ENDPOINT=http://collector:4318 gantry start dist/main.js`,
  options: {
    config: { type: "string" },
    set: { type: "string", multiple: true },
    telemetry: { type: "boolean" },
  },
  async run({ positionals, values, io }: CommandInput): Promise<number> {
    if (positionals.length !== 1) {
      throw cliErrors.create("GANTRY_ERR_USAGE", {
        problem:
          positionals.length === 0 ? "give the entry module: gantry start dist/main.js" : "give one entry module",
      });
    }
    const flags = parseSets((values.set as string[] | undefined) ?? []);
    const file = configFile(values.config as string | undefined, io.env, io.cwd);
    const wanted = telemetryWanted({
      flag: values.telemetry as boolean | undefined,
      sets: flags,
      env: io.env,
      file,
    });
    const early = wanted ? await startEarly(io.env) : undefined;
    let app: GantryApp;
    try {
      app = await loadApp(positionals[0], io.cwd);
    } catch (error) {
      early?.loaded(undefined);
      await early?.telemetry.shutdown();
      throw error;
    }
    early?.loaded(app);
    const telemetry = early?.telemetry;
    // Flushed last, after the app closed its transports, clients and hooks (their spans included).
    if (telemetry !== undefined) app.onShutdown("telemetry", () => telemetry.shutdown());

    let signalled = false;
    const stopped = new Promise<number>((resolveExit) => {
      const onSignal = (signal: NodeJS.Signals) => {
        if (signalled) {
          io.stderr.write(`gantry: ${signal} again, exiting now\n`);
          resolveExit(1);
          return;
        }
        signalled = true;
        io.stderr.write(`gantry: ${signal}, shutting down\n`);
        app.close().then(
          () => resolveExit(0),
          (error: unknown) => {
            io.stderr.write(`gantry: shutdown failed: ${(error as Error).message}\n`);
            resolveExit(1);
          },
        );
      };
      for (const signal of SIGNALS) process.on(signal, onSignal);
    });

    try {
      await app.start({ file, flags, env: io.env });
    } catch (error) {
      await telemetry?.shutdown();
      throw error;
    }
    if (!signalled) {
      const lines = [`${app.name} ${app.version} ready`];
      for (const endpoint of app.endpoints) lines.push(`  ${endpoint.transport.padEnd(5)} ${endpoint.url}`);
      if (app.registry?.registrar !== undefined) lines.push(`  registered in ${app.registry.url}`);
      for (const service of app.services) {
        lines.push(`  service ${service.fullName}`);
        for (const method of service.methods) {
          const routes = method.routes.map((r) => `${r.method} ${r.path}`).join(", ");
          lines.push(`    ${method.name}  ${routes}`);
        }
      }
      io.stdout.write(`${lines.join("\n")}\n`);
    }
    return stopped;
  },
};

/** `--set a.b=1` → `{ "a.b": "1" }` */
function parseSets(sets: readonly string[]): Record<string, string> {
  const flags: Record<string, string> = {};
  for (const set of sets) {
    const at = set.indexOf("=");
    if (at <= 0)
      throw cliErrors.create("GANTRY_ERR_USAGE", {
        problem: `--set ${set}: write it as key=value, such as --set http.port=0`,
      });
    flags[set.slice(0, at).trim()] = set.slice(at + 1);
  }
  return flags;
}

function configFile(
  option: string | undefined,
  env: Readonly<Record<string, string | undefined>>,
  cwd: string,
): string | undefined {
  const given = option ?? env.GANTRY_CONFIG;
  if (given !== undefined && given !== "") return resolve(cwd, given);
  const local = resolve(cwd, "gantry.config.json");
  return existsSync(local) ? local : undefined;
}
