import {
  type Constructor,
  coreErrors,
  describeService,
  GantryError,
  implementedElsewhere,
  isGantryError,
  Method,
  type ServiceDescriptor,
  Status,
  statusFromCode,
} from "@gantry/core";
import { deadlineError } from "@gantry/core/client";
import { Client, type ClientDuplexStream, credentials, Metadata, type ServiceError } from "@grpc/grpc-js";
import protobuf from "protobufjs";
import descriptor from "protobufjs/ext/descriptor.js";
import { parseTarget } from "./client.js";
import { decodeMessage, encodeMessage } from "./codec.js";
import { grpcErrors } from "./errors.js";
import { bindDescribedService } from "./proto-first.js";
import { REFLECTION_SERVICES, requestDescriptor, responseDescriptor } from "./reflection.js";

export interface DescribeOptions {
  /** When to give up, in ms since the epoch; 10 s from now by default. */
  deadline?: number;
  /** Also check that the service has this method (its name on the wire: `SayHello`). */
  method?: string;
}

const DEFAULT_TIMEOUT_MS = 10_000;

const CHANNEL_OPTIONS = {
  // Its own connection, so that closing the client really closes it (the shared pool would keep it).
  "grpc.use_local_subchannel_pool": 1,
  "grpc.service_config_disable_resolution": 1,
};

/**
 * Describes a service of a remote gRPC server from the server's reflection service
 * (`grpc.reflection.v1`, else `v1alpha`), which every Gantry server serves: the file that declares
 * the service, then the files it imports, turned into a ServiceDescriptor whose methods carry the
 * real messages, as a `@ProtoService` class would have them. So a caller that knows only the
 * service's name can read proto3 JSON input with `readMessage`, and call the service with
 * `grpcClientTransport()` or with the HTTP client.
 *
 * `url` is an instance's `grpc://` or `grpcs://` endpoint (`grpcs://` trusts the system's root CAs).
 * Fails with GANTRY_ERR_REFLECTION_UNAVAILABLE when the server serves no reflection,
 * GANTRY_ERR_REFLECTION_NO_SERVICE or `_NO_METHOD` (listing what exists), `_DESCRIPTOR` when the
 * descriptors cannot be used, GANTRY_ERR_CONNECT, or GANTRY_ERR_DEADLINE_EXCEEDED past the deadline.
 * The connection is closed before it settles.
 *
 * @example
 * const service = await describeFromReflection("grpc://127.0.0.1:50051", "hello.v1.HelloService");
 * const method = service.methods.find((m) => m.name === "SayHello");
 * const input = readMessage(method.input, { name: "Ada", tone: "WARM" });
 */
export async function describeFromReflection(
  url: string,
  service: string,
  options: DescribeOptions = {},
): Promise<ServiceDescriptor> {
  const started = Date.now();
  const deadline = options.deadline ?? started + DEFAULT_TIMEOUT_MS;
  const target = parseTarget(url);
  if (target instanceof GantryError) throw target;
  const client = new Client(
    target.address,
    target.secure ? credentials.createSsl() : credentials.createInsecure(),
    CHANNEL_OPTIONS,
  );
  try {
    const files = await fetchFiles(client, url, service, deadline);
    const described = describe(files, url, service);
    if (options.method !== undefined && !described.methods.some((m) => m.name === options.method)) {
      throw grpcErrors.create("GANTRY_ERR_REFLECTION_NO_METHOD", {
        service,
        method: options.method,
        methods: described.methods.map((m) => m.name).join(", ") || "none",
      });
    }
    return described;
  } catch (error) {
    throw isServiceError(error) ? streamError(error, url, started, deadline) : error;
  } finally {
    client.close();
  }
}

type FileDescriptorProto = protobuf.Message & { name?: string; dependency?: string[] };

interface ReflectionResponse {
  fileDescriptorResponse?: { fileDescriptorProto?: Uint8Array[] };
  listServicesResponse?: { service?: { name?: string }[] };
  errorResponse?: { errorCode?: number; errorMessage?: string };
}

/** The file that declares the service and every file it imports, from the first reflection service the server has. */
async function fetchFiles(
  client: Client,
  url: string,
  service: string,
  deadline: number,
): Promise<FileDescriptorProto[]> {
  for (const name of REFLECTION_SERVICES) {
    const session = new Session(client, `/${name}/ServerReflectionInfo`, deadline, url);
    try {
      return await closure(session, url, service);
    } catch (error) {
      if (!isServiceError(error) || statusFromCode(error.code) !== "UNIMPLEMENTED") throw error;
    } finally {
      session.close();
    }
  }
  throw grpcErrors.create("GANTRY_ERR_REFLECTION_UNAVAILABLE", { target: url, service });
}

async function closure(session: Session, url: string, service: string): Promise<FileDescriptorProto[]> {
  const first = await session.ask({ fileContainingSymbol: service });
  if (first.errorResponse?.errorCode === Status.NOT_FOUND) {
    const listed = await session.ask({ listServices: "" });
    const services = (listed.listServicesResponse?.service ?? []).map((s) => s.name).filter((n) => n !== undefined);
    throw grpcErrors.create("GANTRY_ERR_REFLECTION_NO_SERVICE", {
      target: url,
      service,
      services: services.join(", ") || "nothing",
    });
  }
  const files = new Map<string, FileDescriptorProto>();
  const add = (response: ReflectionResponse, asked: string) => {
    if (response.errorResponse !== undefined) {
      const { errorCode = 0, errorMessage = "" } = response.errorResponse;
      throw grpcErrors.create("GANTRY_ERR_REFLECTION_FAILED", {
        target: url,
        reason: `${asked}: ${statusFromCode(errorCode)}: ${errorMessage}`,
      });
    }
    // A server may answer with the file's imports too (Gantry's do), or with the file alone.
    for (const bytes of response.fileDescriptorResponse?.fileDescriptorProto ?? []) {
      const file = decodeFile(bytes, url, service);
      files.set(file.name ?? "", file);
    }
  };
  add(first, `symbol ${service}`);
  for (let missing = missingImports(files); missing.length > 0; missing = missingImports(files)) {
    for (const path of missing) {
      add(await session.ask({ fileByFilename: path }), `file ${path}`);
      if (!files.has(path)) {
        const reason = `it sent no file ${path}, which ${service} needs`;
        throw grpcErrors.create("GANTRY_ERR_REFLECTION_DESCRIPTOR", { target: url, service, reason });
      }
    }
  }
  return [...files.values()];
}

function missingImports(files: ReadonlyMap<string, FileDescriptorProto>): string[] {
  const missing = new Set<string>();
  for (const file of files.values()) for (const path of file.dependency ?? []) if (!files.has(path)) missing.add(path);
  return [...missing];
}

function decodeFile(bytes: Uint8Array, url: string, service: string): FileDescriptorProto {
  try {
    return descriptor.FileDescriptorProto.decode(bytes) as FileDescriptorProto;
  } catch (error) {
    const reason = `a FileDescriptorProto does not decode: ${(error as Error).message}`;
    throw grpcErrors.create("GANTRY_ERR_REFLECTION_DESCRIPTOR", { target: url, service, reason }, { cause: error });
  }
}

/**
 * The files as a protobufjs root, and the service as a class bound to it the way `@ProtoService`
 * binds one: each rpc a member that only a remote instance implements.
 */
function describe(files: FileDescriptorProto[], url: string, name: string): ServiceDescriptor {
  const unusable = (reason: string, cause?: unknown) =>
    grpcErrors.create("GANTRY_ERR_REFLECTION_DESCRIPTOR", { target: url, service: name, reason }, { cause });
  let root: protobuf.Root;
  try {
    root = protobuf.Root.fromDescriptor({ file: files });
  } catch (error) {
    throw unusable((error as Error).message, error);
  }
  const found = root.lookup(name);
  if (!(found instanceof protobuf.Service) || found.fullName !== `.${name}`) {
    throw grpcErrors.create("GANTRY_ERR_REFLECTION_NO_SERVICE", {
      target: url,
      service: name,
      services: servicesOf(root).join(", ") || "nothing",
    });
  }
  const type = class {} as Constructor;
  Object.defineProperty(type, "name", { value: found.name });
  for (const rpc of found.methodsArray) {
    const member = { value: implementedElsewhere, writable: true, configurable: true };
    Object.defineProperty(type.prototype, rpc.name, member);
    // Named explicitly, so that each rpc binds to its own member whatever the case of its name.
    Method({ name: rpc.name })(type.prototype, rpc.name, member);
  }
  try {
    bindDescribedService(type, found, url);
    return describeService(type);
  } catch (error) {
    throw isGantryError(error) ? unusable(error.message, error) : error;
  }
}

function servicesOf(namespace: protobuf.NamespaceBase): string[] {
  return namespace.nestedArray.flatMap((nested) => {
    if (nested instanceof protobuf.Service) return [nested.fullName.slice(1)];
    return nested instanceof protobuf.Namespace ? servicesOf(nested) : [];
  });
}

/**
 * One ServerReflectionInfo stream. Requests go one at a time, each after the answer to the last, so
 * at most one is waiting; a failed stream fails it, and every later one.
 */
class Session {
  readonly #call: ClientDuplexStream<Buffer, Buffer>;
  #waiting: { resolve(bytes: Buffer): void; reject(error: Error): void } | undefined;
  #failure: Error | undefined;

  constructor(client: Client, path: string, deadline: number, url: string) {
    this.#call = client.makeBidiStreamRequest(path, identity, identity, new Metadata(), { deadline });
    this.#call.on("data", (bytes: Buffer) => {
      const waiting = this.#waiting;
      this.#waiting = undefined;
      waiting?.resolve(bytes);
    });
    // Listened to for as long as the call lives: the status of a cancelled call comes as an error too.
    this.#call.on("error", (error: Error) => this.#fail(error));
    this.#call.on("end", () =>
      this.#fail(grpcErrors.create("GANTRY_ERR_REFLECTION_FAILED", { target: url, reason: "it ended the stream" })),
    );
  }

  ask(request: Record<string, unknown>): Promise<ReflectionResponse> {
    if (this.#failure !== undefined) return Promise.reject(this.#failure);
    return new Promise<Buffer>((resolve, reject) => {
      this.#waiting = { resolve, reject };
      this.#call.write(Buffer.from(encodeMessage(requestDescriptor, request)));
    }).then((bytes) => decodeMessage(responseDescriptor, bytes) as ReflectionResponse);
  }

  close(): void {
    this.#call.cancel();
  }

  #fail(error: Error): void {
    this.#failure ??= error;
    const waiting = this.#waiting;
    this.#waiting = undefined;
    waiting?.reject(this.#failure);
  }
}

function identity<T>(value: T): T {
  return value;
}

function isServiceError(error: unknown): error is ServiceError {
  return error instanceof Error && typeof (error as Partial<ServiceError>).code === "number";
}

/** A failed reflection stream as a coded error: whoever cannot be reached or answer in time, or refuses. */
function streamError(error: ServiceError, url: string, started: number, deadline: number): GantryError {
  switch (statusFromCode(error.code)) {
    case "UNAVAILABLE":
      return coreErrors.create("GANTRY_ERR_CONNECT", { target: url, reason: error.details }, { cause: error });
    case "DEADLINE_EXCEEDED":
      return deadlineError(started, deadline, error);
    default:
      return grpcErrors.create(
        "GANTRY_ERR_REFLECTION_FAILED",
        { target: url, reason: `${statusFromCode(error.code)}: ${error.details}` },
        { cause: error },
      );
  }
}
