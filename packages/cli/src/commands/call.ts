import {
  config,
  coreErrors,
  createLogger,
  type MethodDescriptor,
  readMessage,
  type ServiceDescriptor,
  writeMessage,
} from "@gantry/core";
import { ClientRuntime, type ClientTransport } from "@gantry/core/client";
import type { Resolver } from "@gantry/core/registry";
import { openRegistry } from "@gantry/discovery";
import { describeFromReflection, grpcClientTransport } from "@gantry/transport-grpc";
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
balancer, outlier ejection and retries of calls that never ran. Prints the reply as proto3
JSON, or the error and its code.

Each instance is called over gRPC when it offers a grpc:// endpoint, else over HTTP (the
uniform POST /<service>/<method> route). For gRPC the method's messages are learned from
an instance by server reflection, which every Gantry server serves; the input is then
read as proto3 JSON (int64 as strings, enums by name, bytes as base64, timestamps in RFC
3339) and a field of the wrong type fails before anything is sent. When no instance can
be described, instances that offer HTTP still take the JSON as it is.

Options:
  -r, --registry <url>    The registry to read. Default: $GANTRY_REGISTRY, else local://
  -t, --timeout <time>    The call's deadline, such as 500ms, 5s. Default: 10s
  -m, --metadata <k=v>    Send call metadata (a gRPC metadata entry or HTTP header); repeatable
  --transport <kind>      Call only over grpc or only over http. Default: grpc where offered, else http
  --idempotent            The method is idempotent: failed attempts may be retried on another instance
  --verbose               Print stack traces with errors
  -h, --help              Show this help

Exit status: 0 with the reply, 1 when the call fails (the error and its code on stderr),
2 for a usage error.

Examples:
  gantry call hello.v1.HelloService.SayHello '{"name":"Ada","tone":"WARM"}'
  gantry call world.v1.WorldService/Greet '{"names":["Ada","Grace"]}' --timeout 2s
  gantry call hello.v1.HelloService.SayHello '{"name":"Ada"}' --transport http
  GANTRY_REGISTRY=etcd://127.0.0.1:2379 gantry call hello.v1.HelloService.SayHello '{"name":"Ada"}' -m x-tenant=a`,
  options: {
    registry: { type: "string", short: "r" },
    timeout: { type: "string", short: "t" },
    metadata: { type: "string", short: "m", multiple: true },
    transport: { type: "string" },
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
    const transport = values.transport as string | undefined;
    if (transport !== undefined && transport !== "grpc" && transport !== "http") {
      throw usage(`--transport takes grpc or http, not ${JSON.stringify(transport)}`);
    }
    const deadline = Date.now() + timeoutMs;
    const url = (values.registry as string | undefined) ?? io.env.GANTRY_REGISTRY ?? "local://";
    const log = createLogger("gantry-call", {
      level: "error",
      destination: { write: (line) => io.stderr.write(line) },
    });
    const registry = await openRegistry(url, { log });
    try {
      const resolver = registry.resolver;
      if (resolver === undefined) throw usage(`${registry.url} cannot resolve services`);
      const plan = await planCall(resolver, serviceName, methodName, {
        transport,
        deadline,
        idempotent: values.idempotent === true,
        usage,
      });
      const runtime = new ClientRuntime({
        service: plan.method.service,
        resolver,
        transports: plan.transports,
        log,
        policy: { transports: plan.transports.map((t) => t.kind) },
      });
      try {
        const output = await runtime.call(plan.method, plan.input(input), { deadline, metadata });
        io.stdout.write(`${JSON.stringify(plan.output(output), null, 2)}\n`);
        return 0;
      } finally {
        await runtime.close();
      }
    } finally {
      await registry.close();
    }
  },
};

/** How the call goes out: its method, the client transports in order of preference, and its JSON both ways. */
interface Plan {
  readonly method: MethodDescriptor;
  readonly transports: readonly ClientTransport[];
  /** The JSON input as the transports take it. */
  input(json: object): unknown;
  /** The reply as JSON. */
  output(reply: unknown): unknown;
}

interface PlanOptions {
  readonly transport: "grpc" | "http" | undefined;
  readonly deadline: number;
  readonly idempotent: boolean;
  readonly usage: (problem: string) => Error;
}

/**
 * With the method's messages, learned by reflection from the first instance offering gRPC that
 * answers, every instance can be called: over gRPC, or over HTTP with the input read and written as
 * proto3 JSON. Without them only HTTP instances can, with the JSON sent as it is.
 */
async function planCall(resolver: Resolver, service: string, method: string, options: PlanOptions): Promise<Plan> {
  if (options.transport === "http") return rawPlan(service, method, options.idempotent);
  const instances = await resolver.list(service);
  const endpoints = instances.flatMap((instance) => instance.endpoints.grpc ?? []);
  if (endpoints.length === 0) {
    if (options.transport === undefined) return rawPlan(service, method, options.idempotent);
    const why = instances.length === 0 ? "" : ` (none of the ${instances.length} offers grpc)`;
    throw coreErrors.create("GANTRY_ERR_NO_INSTANCES", { service, why });
  }
  let failure: unknown;
  for (const endpoint of endpoints) {
    try {
      const described = await describeFromReflection(endpoint, service, { deadline: options.deadline, method });
      return typedPlan(described.methods.find((m) => m.name === method) as MethodDescriptor, options);
    } catch (error) {
      failure = error;
    }
  }
  const anyHttp = instances.some((instance) => instance.endpoints.http !== undefined);
  if (options.transport === undefined && anyHttp) return rawPlan(service, method, options.idempotent);
  throw failure;
}

function typedPlan(method: MethodDescriptor, options: PlanOptions): Plan {
  if (method.stream !== "unary") {
    throw options.usage(
      `${method.path.slice(1)} is a ${method.stream} streaming method; gantry call calls unary methods`,
    );
  }
  return {
    method: options.idempotent ? { ...method, idempotent: true } : method,
    transports: options.transport === "grpc" ? [grpcClientTransport()] : [grpcClientTransport(), httpClientTransport()],
    input: (json) => readMessage(method.input, json),
    output: (reply) => writeMessage(method.output, reply, method.path),
  };
}

function rawPlan(service: string, method: string, idempotent: boolean): Plan {
  return {
    method: describeRemote(service, method, idempotent),
    transports: [httpClientTransport({ rawJson: true })],
    input: (json) => json,
    output: (reply) => reply,
  };
}

/**
 * A method known only by name: the call carries JSON as it is, so no message types are needed (the
 * callee checks the input, as it does for every caller).
 */
function describeRemote(fullName: string, name: string, idempotent: boolean): MethodDescriptor {
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
  return method;
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
