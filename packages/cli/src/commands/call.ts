import { config, createLogger, type MethodDescriptor, type ServiceDescriptor } from "@gantry/core";
import { ClientRuntime } from "@gantry/core/client";
import { openRegistry } from "@gantry/discovery";
import { httpClientTransport } from "@gantry/transport-http";
import type { Command, CommandInput } from "../command.js";
import { cliErrors } from "../errors.js";

/** `hello.v1.HelloService.SayHello` or `hello.v1.HelloService/SayHello`. */
const TARGET = /^([A-Za-z_][\w]*(?:\.[A-Za-z_][\w]*)+)[./]([A-Za-z_]\w*)$/;

export const call: Command = {
  name: "call",
  summary: "Call a method of a service found in the registry",
  help: `Usage: gantry call <service>.<method> ['<json>'] [options]

Finds the instances of <service> in the registry and calls <method> on one of them with
the JSON input (default {}), through the same client services use: discovery, the
balancer, outlier ejection and retries of calls that never ran. Prints the reply as JSON,
or the error with its canonical status and code. The call goes over HTTP (the uniform
POST /<service>/<method> route, with the input as proto3 JSON), so the instance must
offer an HTTP endpoint.

Options:
  -r, --registry <url>    The registry to read. Default: $GANTRY_REGISTRY, else local://
  -t, --timeout <time>    The call's deadline, such as 500ms, 5s. Default: 10s
  -m, --metadata <k=v>    Send call metadata (an HTTP header); repeatable
  --idempotent            The method is idempotent: failed attempts may be retried on another instance
  --verbose               Print stack traces with errors
  -h, --help              Show this help

Exit status: 0 with the reply, 1 when the call fails (the error and its code on stderr),
2 for a usage error.

Examples:
  gantry call hello.v1.HelloService.SayHello '{"name":"Ada","tone":"WARM"}'
  gantry call world.v1.WorldService/Greet '{"names":["Ada","Grace"]}' --timeout 2s
  GANTRY_REGISTRY=etcd://127.0.0.1:2379 gantry call hello.v1.HelloService.SayHello '{"name":"Ada"}' -m x-tenant=a`,
  options: {
    registry: { type: "string", short: "r" },
    timeout: { type: "string", short: "t" },
    metadata: { type: "string", short: "m", multiple: true },
    idempotent: { type: "boolean" },
  },
  async run({ positionals, values, io }: CommandInput): Promise<number> {
    const usage = (problem: string) => cliErrors.create("GANTRY_ERR_USAGE", { problem });
    if (positionals.length === 0 || positionals.length > 2) {
      throw usage('give the method and its JSON input: gantry call hello.v1.HelloService.SayHello \'{"name":"Ada"}\'');
    }
    const target = TARGET.exec(positionals[0]);
    if (target === null) {
      throw usage(
        `${JSON.stringify(positionals[0])} is not <package>.<Service>.<Method>, such as hello.v1.HelloService.SayHello`,
      );
    }
    const [, serviceName, methodName] = target;
    let input: unknown;
    try {
      input = JSON.parse(positionals[1] ?? "{}");
    } catch (error) {
      throw usage(`the input is not JSON: ${(error as Error).message}`);
    }
    if (typeof input !== "object" || input === null || Array.isArray(input)) {
      throw usage("the input must be a JSON object, the method's input message");
    }
    const timeoutMs = parseTimeout((values.timeout as string | undefined) ?? "10s", usage);
    const metadata = parseMetadata((values.metadata as string[] | undefined) ?? [], usage);
    const url = (values.registry as string | undefined) ?? io.env.GANTRY_REGISTRY ?? "local://";
    const log = createLogger("gantry-call", {
      level: "error",
      destination: { write: (line) => io.stderr.write(line) },
    });
    const registry = await openRegistry(url, { log });
    try {
      if (registry.resolver === undefined) throw usage(`${registry.url} cannot resolve services`);
      const { service, method } = describeRemote(serviceName, methodName, values.idempotent === true);
      const runtime = new ClientRuntime({
        service,
        resolver: registry.resolver,
        transports: [httpClientTransport({ rawJson: true })],
        log,
        policy: { transports: ["http"] },
      });
      try {
        const output = await runtime.call(method, input, { deadline: Date.now() + timeoutMs, metadata });
        io.stdout.write(`${JSON.stringify(output, null, 2)}\n`);
        return 0;
      } finally {
        await runtime.close();
      }
    } finally {
      await registry.close();
    }
  },
};

/**
 * A service and method known only by name: the call carries JSON as it is, so no message types are
 * needed (the callee checks the input, as it does for every caller).
 */
function describeRemote(
  fullName: string,
  name: string,
  idempotent: boolean,
): { service: ServiceDescriptor; method: MethodDescriptor } {
  const dot = fullName.lastIndexOf(".");
  const service = {
    name: fullName.slice(dot + 1),
    package: fullName.slice(0, dot),
    fullName,
    apiVersion: undefined,
    description: undefined,
    methods: [] as MethodDescriptor[],
  } as unknown as ServiceDescriptor;
  const method = {
    service,
    key: name,
    name,
    path: `/${fullName}/${name}`,
    stream: "unary",
    idempotent,
    timeoutMs: undefined,
    description: undefined,
    routes: [],
    guards: [],
    interceptors: [],
  } as unknown as MethodDescriptor;
  (service.methods as MethodDescriptor[]).push(method);
  return { service, method };
}

const timeoutField = config.duration({ min: 1 });

function parseTimeout(text: string, usage: (problem: string) => Error): number {
  try {
    return timeoutField.parse(text) as number;
  } catch (error) {
    throw usage(`--timeout ${(error as Error).message}`);
  }
}

function parseMetadata(pairs: readonly string[], usage: (problem: string) => Error): Record<string, string> {
  const metadata: Record<string, string> = {};
  for (const pair of pairs) {
    const equals = pair.indexOf("=");
    if (equals <= 0) throw usage(`--metadata takes key=value, not ${JSON.stringify(pair)}`);
    metadata[pair.slice(0, equals).trim().toLowerCase()] = pair.slice(equals + 1);
  }
  return metadata;
}
