import { request } from "node:http";
import { createLogger, describeMessage } from "@gantry/core";
import type { ServiceInstance } from "@gantry/core/registry";
import { openRegistry } from "@gantry/discovery";
import {
  decodeMessage,
  encodeMessage,
  HEALTH_SERVICE,
  HealthCheckRequest,
  HealthCheckResponse,
  ServingStatus,
} from "@gantry/transport-grpc";
import { Client, credentials, status } from "@grpc/grpc-js";
import type { Command, CommandInput } from "../command.js";
import { cliErrors } from "../errors.js";

/** How long one health probe may take. */
const PROBE_MS = 1000;

type Health = "serving" | "not serving" | "unreachable" | "unknown";

export const ls: Command = {
  name: "ls",
  summary: "List the services and instances in a registry",
  help: `Usage: gantry ls [service] [options]

Lists every service in the registry (or only <service>, such as hello.v1.HelloService)
with its instances: id, release version, API version, health, age and endpoints.
Health is asked of each instance now: GET /readyz on its HTTP endpoint, else
grpc.health.v1.Health/Check on its gRPC endpoint ("serving", "not serving",
"unreachable"; "unknown" with --no-health).

Options:
  -r, --registry <url>  The registry to read. Default: $GANTRY_REGISTRY, else local://
                        (local://<namespace>, etcd://host:2379[,host:2379], dns:///name:port,
                        static://host:port[,host:port])
  --json                Print the instances as JSON, one array
  --no-health           Do not probe the instances
  --verbose             Print stack traces with errors
  -h, --help            Show this help

Exit status: 0 when the registry could be read (and <service>, if given, has instances),
1 when it could not or <service> has none, 2 for a usage error.

Examples:
  gantry ls
  gantry ls hello.v1.HelloService
  GANTRY_REGISTRY=etcd://127.0.0.1:2379 gantry ls --json
  gantry ls hello.v1.HelloService --registry dns:///hello.default.svc.cluster.local`,
  options: {
    registry: { type: "string", short: "r" },
    json: { type: "boolean" },
    "no-health": { type: "boolean" },
  },
  async run({ positionals, values, io }: CommandInput): Promise<number> {
    if (positionals.length > 1) {
      throw cliErrors.create("GANTRY_ERR_USAGE", { problem: "give at most one service: gantry ls [service]" });
    }
    const service = positionals[0];
    const url = (values.registry as string | undefined) ?? io.env.GANTRY_REGISTRY ?? "local://";
    if (url === "") throw cliErrors.create("GANTRY_ERR_USAGE", { problem: "--registry needs a URL" });
    const registry = await openRegistry(url, {
      log: createLogger("gantry-ls", { level: "warn", destination: { write: (line: string) => warn(io, line) } }),
    });
    try {
      if (registry.resolver === undefined) {
        throw cliErrors.create("GANTRY_ERR_USAGE", { problem: `${registry.url} cannot list services` });
      }
      const instances = await registry.resolver.list(service);
      const probe = values["no-health"] !== true;
      const rows = await Promise.all(
        instances.map(async (instance) => ({ instance, health: probe ? await health(instance) : "unknown" })),
      );
      rows.sort(
        (a, b) => a.instance.service.localeCompare(b.instance.service) || a.instance.id.localeCompare(b.instance.id),
      );
      if (values.json === true) {
        const now = Date.now();
        const json = rows.map(({ instance, health }) => ({
          ...instance,
          health,
          ageMs: instance.registeredAt === undefined ? undefined : now - instance.registeredAt,
        }));
        io.stdout.write(`${JSON.stringify(json, null, 2)}\n`);
      } else if (rows.length > 0) {
        io.stdout.write(table(rows));
      }
      if (rows.length === 0) {
        io.stderr.write(
          `gantry ls: ${service === undefined ? "no services" : `no instances of ${service}`} in ${registry.url}\n`,
        );
        return service === undefined ? 0 : 1;
      }
      return 0;
    } finally {
      await registry.close();
    }
  },
};

/** A backend's warning (a malformed record skipped), as one readable line. */
function warn(io: CommandInput["io"], line: string): void {
  try {
    const { msg, reason, key, file } = JSON.parse(line) as Record<string, string | undefined>;
    io.stderr.write(`gantry ls: ${msg}${(file ?? key) ? ` (${file ?? key})` : ""}${reason ? `: ${reason}` : ""}\n`);
  } catch {
    io.stderr.write(line);
  }
}

function table(rows: readonly { instance: ServiceInstance; health: Health }[]): string {
  const now = Date.now();
  const cells = [
    ["SERVICE", "INSTANCE", "VERSION", "API", "HEALTH", "AGE", "ENDPOINTS"],
    ...rows.map(({ instance, health }) => [
      instance.service,
      instance.id.startsWith(`${instance.service}-`)
        ? instance.id.slice(instance.service.length + 1, instance.service.length + 9)
        : instance.id,
      instance.version || "-",
      instance.apiVersion ?? "-",
      health,
      instance.registeredAt === undefined ? "-" : age(now - instance.registeredAt),
      Object.values(instance.endpoints).join(" "),
    ]),
  ];
  const widths = cells[0].map((_, column) => Math.max(...cells.map((row) => row[column].length)));
  return cells
    .map((row) =>
      row.map((cell, column) => (column === row.length - 1 ? cell : cell.padEnd(widths[column]))).join("  "),
    )
    .join("\n")
    .concat("\n");
}

/** `42s`, `5m`, `3h`, `2d`. */
function age(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.floor(s / 60)}m`;
  if (s < 172_800) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86_400)}d`;
}

/** Asks the instance whether it serves: HTTP readiness if it has HTTP, else gRPC health. */
async function health(instance: ServiceInstance): Promise<Health> {
  const http = instance.endpoints.http;
  if (http !== undefined) return httpReady(http);
  const grpc = instance.endpoints.grpc ?? instance.endpoints.grpcs;
  if (grpc !== undefined) return grpcHealth(grpc, instance.service);
  return "unknown";
}

function httpReady(url: string): Promise<Health> {
  return new Promise((resolve) => {
    const target = URL.parse("/readyz", url);
    if (target === null) return resolve("unknown");
    const req = request(target, { timeout: PROBE_MS }, (res) => {
      res.resume();
      resolve(res.statusCode === 200 ? "serving" : "not serving");
    });
    req.on("timeout", () => req.destroy());
    req.on("error", () => resolve("unreachable"));
    req.end();
  });
}

const checkRequest = describeMessage(HealthCheckRequest);
const checkResponse = describeMessage(HealthCheckResponse);

function grpcHealth(url: string, service: string): Promise<Health> {
  const parsed = URL.parse(url);
  if (parsed === null) return Promise.resolve("unknown");
  const secure = parsed.protocol === "grpcs:";
  const client = new Client(parsed.host, secure ? credentials.createSsl() : credentials.createInsecure());
  return new Promise<Health>((resolve) => {
    client.makeUnaryRequest(
      `/${HEALTH_SERVICE}/Check`,
      (message: unknown) => encodeMessage(checkRequest, message),
      (bytes: Buffer) => decodeMessage(checkResponse, bytes),
      { service },
      { deadline: Date.now() + PROBE_MS },
      (error, reply) => {
        if (error !== null) resolve(error.code === status.NOT_FOUND ? "not serving" : "unreachable");
        else resolve((reply as { status?: number })?.status === ServingStatus.SERVING ? "serving" : "not serving");
      },
    );
  }).finally(() => client.close());
}
