import { describeMessage, Field, Message, type ServiceDescriptor, toGantryError } from "@gantry/core";
import type { Server, ServerDuplexStream, ServiceDefinition, UntypedServiceImplementation } from "@grpc/grpc-js";
import { decodeMessage, encodeMessage } from "./codec.js";
import { HEALTH_SERVICE } from "./health.js";
import { type DescriptorSet, descriptorSet } from "./proto/descriptor.js";
import { toStatusObject } from "./wire/status.js";
import { writable } from "./wire/streams.js";

@Message({ name: "ExtensionRequest" })
class ExtensionRequest {
  @Field(1) containingType!: string;
  @Field(2, { type: "int32" }) extensionNumber!: number;
}

/** ServerReflectionRequest; the members of its `message_request` oneof are optional fields. */
@Message({ name: "ServerReflectionRequest" })
class ServerReflectionRequest {
  @Field(1) host!: string;
  @Field(3, { optional: true }) fileByFilename?: string;
  @Field(4, { optional: true }) fileContainingSymbol?: string;
  @Field(5) fileContainingExtension?: ExtensionRequest;
  @Field(6, { optional: true }) allExtensionNumbersOfType?: string;
  @Field(7, { optional: true }) listServices?: string;
}

@Message({ name: "FileDescriptorResponse" })
class FileDescriptorResponse {
  @Field(1, { type: "bytes", repeated: true }) fileDescriptorProto!: Uint8Array[];
}

@Message({ name: "ExtensionNumberResponse" })
class ExtensionNumberResponse {
  @Field(1) baseTypeName!: string;
  @Field(2, { type: "int32", repeated: true }) extensionNumber!: number[];
}

@Message({ name: "ServiceResponse" })
class ServiceResponse {
  @Field(1) name!: string;
}

@Message({ name: "ListServiceResponse" })
class ListServiceResponse {
  @Field(1, { type: ServiceResponse, repeated: true }) service!: ServiceResponse[];
}

@Message({ name: "ErrorResponse" })
class ErrorResponse {
  @Field(1, { type: "int32" }) errorCode!: number;
  @Field(2) errorMessage!: string;
}

@Message({ name: "ServerReflectionResponse" })
class ServerReflectionResponse {
  @Field(1) validHost!: string;
  @Field(2) originalRequest?: ServerReflectionRequest;
  @Field(4) fileDescriptorResponse?: FileDescriptorResponse;
  @Field(5) allExtensionNumbersResponse?: ExtensionNumberResponse;
  @Field(6) listServicesResponse?: ListServiceResponse;
  @Field(7) errorResponse?: ErrorResponse;
}

/** The messages of ServerReflectionInfo, for the server here and the client in reflection-client.ts. */
export const requestDescriptor = describeMessage(ServerReflectionRequest);
export const responseDescriptor = describeMessage(ServerReflectionResponse);
const NOT_FOUND = 5;
const UNIMPLEMENTED = 12;

/** The same service under its two names, newest first. */
export const REFLECTION_SERVICES = ["grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"];

/** A `.proto` file that Gantry serves as it is, not generated from a service class. */
interface FixedFile {
  readonly path: string;
  readonly package: string;
  /** Its top-level messages, enums and services: a symbol is in the file when it is one of them or nested in one. */
  readonly names: readonly string[];
  /** The serialized FileDescriptorProto, base64 (whitespace ignored). */
  readonly descriptor: string;
}

export interface ReflectionOptions {
  /** Whether the server serves grpc.health.v1.Health, to list and describe. Default true. */
  health?: boolean;
}

/**
 * Server reflection, v1 and v1alpha (the same messages under two names), so that grpcurl, Postman
 * and other standard tools can list the services, describe them and call them: list_services,
 * file_by_filename and file_containing_symbol, answered from the `.proto` files generated for the
 * app's services (each file with the files it depends on), and for health and reflection themselves
 * from their standard files. Extensions do not exist in proto3 services: those requests get an empty
 * answer.
 */
export function addReflection(
  server: Server,
  services: readonly ServiceDescriptor[],
  options: ReflectionOptions = {},
): void {
  const fixed = options.health === false ? REFLECTION_FILES : [HEALTH_FILE, ...REFLECTION_FILES];
  const files = catalog(descriptorSet(services), fixed);
  const listed = [
    ...services.map((s) => s.fullName),
    ...(options.health === false ? [] : [HEALTH_SERVICE]),
    ...REFLECTION_SERVICES,
  ];
  for (const name of REFLECTION_SERVICES) {
    const definition: ServiceDefinition = {
      ServerReflectionInfo: {
        path: `/${name}/ServerReflectionInfo`,
        requestStream: true,
        responseStream: true,
        requestSerialize: (value: Buffer) => value,
        requestDeserialize: (value: Buffer) => value,
        responseSerialize: (value: Buffer) => value,
        responseDeserialize: (value: Buffer) => value,
      },
    };
    const implementation: UntypedServiceImplementation = {
      ServerReflectionInfo: (call: ServerDuplexStream<Buffer, Buffer>) => serve(call, files, listed),
    };
    server.addService(definition, implementation);
  }
}

/** What reflection answers from: the app's generated files and the fixed ones. */
interface Catalog {
  /** A file with every file it imports (the file first), serialized; undefined when there is no such file. */
  withDependencies(path: string): Uint8Array[] | undefined;
  /** The file that defines a symbol (a full name without a leading dot). */
  fileOf(symbol: string): string | undefined;
}

function catalog(set: DescriptorSet, fixed: readonly FixedFile[]): Catalog {
  const bytes = new Map(
    fixed.map((file) => [file.path, new Uint8Array(Buffer.from(file.descriptor.replace(/\s/g, ""), "base64"))]),
  );
  return {
    withDependencies(path) {
      const own = bytes.get(path);
      // The fixed files import nothing.
      if (own !== undefined) return [own];
      return set.withDependencies(path)?.map((name) => set.file(name) as Uint8Array);
    },
    fileOf(symbol) {
      const file = fixed.find((f) =>
        f.names.some((name) => symbol === `${f.package}.${name}` || symbol.startsWith(`${f.package}.${name}.`)),
      );
      return file?.path ?? set.fileOf(symbol);
    },
  };
}

async function serve(call: ServerDuplexStream<Buffer, Buffer>, files: Catalog, listed: readonly string[]) {
  try {
    // Not destroyed when the client's half ends: the answers still have to go out.
    for await (const bytes of call.iterator({ destroyOnReturn: false }) as AsyncIterable<Buffer>) {
      const request = decodeMessage(requestDescriptor, bytes) as Partial<ServerReflectionRequest>;
      const response = answer(request, files, listed);
      if (!call.write(encodeMessage(responseDescriptor, response))) await writable(call);
      if (call.cancelled || call.destroyed) return;
    }
    call.end();
  } catch (error) {
    if (!call.cancelled) call.emit("error", toStatusObject(toGantryError(error)));
  }
}

function answer(
  request: Partial<ServerReflectionRequest>,
  known: Catalog,
  listed: readonly string[],
): ServerReflectionResponse {
  const base = { validHost: request.host ?? "", originalRequest: request as ServerReflectionRequest };
  const files = (path: string | undefined, what: string) => {
    const found = path === undefined ? undefined : known.withDependencies(path);
    return found === undefined
      ? { ...base, errorResponse: { errorCode: NOT_FOUND, errorMessage: `${what} not found` } }
      : { ...base, fileDescriptorResponse: { fileDescriptorProto: found } };
  };
  if (request.listServices !== undefined) {
    return { ...base, listServicesResponse: { service: listed.map((name) => ({ name })) } };
  }
  if (request.fileByFilename !== undefined) {
    return files(request.fileByFilename, `file ${request.fileByFilename}`);
  }
  if (request.fileContainingSymbol !== undefined) {
    const symbol = request.fileContainingSymbol.replace(/^\./, "");
    return files(known.fileOf(symbol), `symbol ${symbol}`);
  }
  if (request.fileContainingExtension !== undefined) {
    const { containingType } = request.fileContainingExtension;
    return { ...base, errorResponse: { errorCode: NOT_FOUND, errorMessage: `no extensions of ${containingType}` } };
  }
  if (request.allExtensionNumbersOfType !== undefined) {
    return {
      ...base,
      allExtensionNumbersResponse: { baseTypeName: request.allExtensionNumbersOfType, extensionNumber: [] },
    };
  }
  return { ...base, errorResponse: { errorCode: UNIMPLEMENTED, errorMessage: "unknown reflection request" } };
}

// The files of the services every server adds beside the app's, as protoc describes the copies in
// Debian's grpc-proto package (`protoc -I/usr/share/grpc-proto --descriptor_set_out=out.pb <path>`,
// the one file of the set, base64). test/interop.test.ts checks them against the stubs protoc
// generates from those files.
const HEALTH_FILE: FixedFile = {
  path: "grpc/health/v1/health.proto",
  package: "grpc.health.v1",
  names: ["HealthCheckRequest", "HealthCheckResponse", "Health"],
  descriptor: `
    ChtncnBjL2hlYWx0aC92MS9oZWFsdGgucHJvdG8SDmdycGMuaGVhbHRoLnYxIi4KEkhlYWx0aENoZWNrUmVxdWVzdBIYCgdzZXJ2
    aWNlGAEgASgJUgdzZXJ2aWNlIrEBChNIZWFsdGhDaGVja1Jlc3BvbnNlEkkKBnN0YXR1cxgBIAEoDjIxLmdycGMuaGVhbHRoLnYx
    LkhlYWx0aENoZWNrUmVzcG9uc2UuU2VydmluZ1N0YXR1c1IGc3RhdHVzIk8KDVNlcnZpbmdTdGF0dXMSCwoHVU5LTk9XThAAEgsK
    B1NFUlZJTkcQARIPCgtOT1RfU0VSVklORxACEhMKD1NFUlZJQ0VfVU5LTk9XThADMq4BCgZIZWFsdGgSUAoFQ2hlY2sSIi5ncnBj
    LmhlYWx0aC52MS5IZWFsdGhDaGVja1JlcXVlc3QaIy5ncnBjLmhlYWx0aC52MS5IZWFsdGhDaGVja1Jlc3BvbnNlElIKBVdhdGNo
    EiIuZ3JwYy5oZWFsdGgudjEuSGVhbHRoQ2hlY2tSZXF1ZXN0GiMuZ3JwYy5oZWFsdGgudjEuSGVhbHRoQ2hlY2tSZXNwb25zZTAB
    QmEKEWlvLmdycGMuaGVhbHRoLnYxQgtIZWFsdGhQcm90b1ABWixnb29nbGUuZ29sYW5nLm9yZy9ncnBjL2hlYWx0aC9ncnBjX2hl
    YWx0aF92MaoCDkdycGMuSGVhbHRoLlYxYgZwcm90bzM=
  `,
};
const REFLECTION_NAMES = [
  "ServerReflectionRequest",
  "ExtensionRequest",
  "ServerReflectionResponse",
  "FileDescriptorResponse",
  "ExtensionNumberResponse",
  "ListServiceResponse",
  "ServiceResponse",
  "ErrorResponse",
  "ServerReflection",
];
const REFLECTION_FILES: readonly FixedFile[] = [
  {
    path: "grpc/reflection/v1/reflection.proto",
    package: "grpc.reflection.v1",
    names: REFLECTION_NAMES,
    descriptor: `
      CiNncnBjL3JlZmxlY3Rpb24vdjEvcmVmbGVjdGlvbi5wcm90bxISZ3JwYy5yZWZsZWN0aW9uLnYxIvMCChdTZXJ2ZXJSZWZsZWN0
      aW9uUmVxdWVzdBISCgRob3N0GAEgASgJUgRob3N0EioKEGZpbGVfYnlfZmlsZW5hbWUYAyABKAlIAFIOZmlsZUJ5RmlsZW5hbWUS
      NgoWZmlsZV9jb250YWluaW5nX3N5bWJvbBgEIAEoCUgAUhRmaWxlQ29udGFpbmluZ1N5bWJvbBJiChlmaWxlX2NvbnRhaW5pbmdf
      ZXh0ZW5zaW9uGAUgASgLMiQuZ3JwYy5yZWZsZWN0aW9uLnYxLkV4dGVuc2lvblJlcXVlc3RIAFIXZmlsZUNvbnRhaW5pbmdFeHRl
      bnNpb24SQgodYWxsX2V4dGVuc2lvbl9udW1iZXJzX29mX3R5cGUYBiABKAlIAFIZYWxsRXh0ZW5zaW9uTnVtYmVyc09mVHlwZRIl
      Cg1saXN0X3NlcnZpY2VzGAcgASgJSABSDGxpc3RTZXJ2aWNlc0IRCg9tZXNzYWdlX3JlcXVlc3QiZgoQRXh0ZW5zaW9uUmVxdWVz
      dBInCg9jb250YWluaW5nX3R5cGUYASABKAlSDmNvbnRhaW5pbmdUeXBlEikKEGV4dGVuc2lvbl9udW1iZXIYAiABKAVSD2V4dGVu
      c2lvbk51bWJlciKuBAoYU2VydmVyUmVmbGVjdGlvblJlc3BvbnNlEh0KCnZhbGlkX2hvc3QYASABKAlSCXZhbGlkSG9zdBJWChBv
      cmlnaW5hbF9yZXF1ZXN0GAIgASgLMisuZ3JwYy5yZWZsZWN0aW9uLnYxLlNlcnZlclJlZmxlY3Rpb25SZXF1ZXN0Ug9vcmlnaW5h
      bFJlcXVlc3QSZgoYZmlsZV9kZXNjcmlwdG9yX3Jlc3BvbnNlGAQgASgLMiouZ3JwYy5yZWZsZWN0aW9uLnYxLkZpbGVEZXNjcmlw
      dG9yUmVzcG9uc2VIAFIWZmlsZURlc2NyaXB0b3JSZXNwb25zZRJyCh5hbGxfZXh0ZW5zaW9uX251bWJlcnNfcmVzcG9uc2UYBSAB
      KAsyKy5ncnBjLnJlZmxlY3Rpb24udjEuRXh0ZW5zaW9uTnVtYmVyUmVzcG9uc2VIAFIbYWxsRXh0ZW5zaW9uTnVtYmVyc1Jlc3Bv
      bnNlEl8KFmxpc3Rfc2VydmljZXNfcmVzcG9uc2UYBiABKAsyJy5ncnBjLnJlZmxlY3Rpb24udjEuTGlzdFNlcnZpY2VSZXNwb25z
      ZUgAUhRsaXN0U2VydmljZXNSZXNwb25zZRJKCg5lcnJvcl9yZXNwb25zZRgHIAEoCzIhLmdycGMucmVmbGVjdGlvbi52MS5FcnJv
      clJlc3BvbnNlSABSDWVycm9yUmVzcG9uc2VCEgoQbWVzc2FnZV9yZXNwb25zZSJMChZGaWxlRGVzY3JpcHRvclJlc3BvbnNlEjIK
      FWZpbGVfZGVzY3JpcHRvcl9wcm90bxgBIAMoDFITZmlsZURlc2NyaXB0b3JQcm90byJqChdFeHRlbnNpb25OdW1iZXJSZXNwb25z
      ZRIkCg5iYXNlX3R5cGVfbmFtZRgBIAEoCVIMYmFzZVR5cGVOYW1lEikKEGV4dGVuc2lvbl9udW1iZXIYAiADKAVSD2V4dGVuc2lv
      bk51bWJlciJUChNMaXN0U2VydmljZVJlc3BvbnNlEj0KB3NlcnZpY2UYASADKAsyIy5ncnBjLnJlZmxlY3Rpb24udjEuU2Vydmlj
      ZVJlc3BvbnNlUgdzZXJ2aWNlIiUKD1NlcnZpY2VSZXNwb25zZRISCgRuYW1lGAEgASgJUgRuYW1lIlMKDUVycm9yUmVzcG9uc2US
      HQoKZXJyb3JfY29kZRgBIAEoBVIJZXJyb3JDb2RlEiMKDWVycm9yX21lc3NhZ2UYAiABKAlSDGVycm9yTWVzc2FnZTKJAQoQU2Vy
      dmVyUmVmbGVjdGlvbhJ1ChRTZXJ2ZXJSZWZsZWN0aW9uSW5mbxIrLmdycGMucmVmbGVjdGlvbi52MS5TZXJ2ZXJSZWZsZWN0aW9u
      UmVxdWVzdBosLmdycGMucmVmbGVjdGlvbi52MS5TZXJ2ZXJSZWZsZWN0aW9uUmVzcG9uc2UoATABQmYKFWlvLmdycGMucmVmbGVj
      dGlvbi52MUIVU2VydmVyUmVmbGVjdGlvblByb3RvUAFaNGdvb2dsZS5nb2xhbmcub3JnL2dycGMvcmVmbGVjdGlvbi9ncnBjX3Jl
      ZmxlY3Rpb25fdjFiBnByb3RvMw==
    `,
  },
  {
    path: "grpc/reflection/v1alpha/reflection.proto",
    package: "grpc.reflection.v1alpha",
    names: REFLECTION_NAMES,
    descriptor: `
      CihncnBjL3JlZmxlY3Rpb24vdjFhbHBoYS9yZWZsZWN0aW9uLnByb3RvEhdncnBjLnJlZmxlY3Rpb24udjFhbHBoYSL4AgoXU2Vy
      dmVyUmVmbGVjdGlvblJlcXVlc3QSEgoEaG9zdBgBIAEoCVIEaG9zdBIqChBmaWxlX2J5X2ZpbGVuYW1lGAMgASgJSABSDmZpbGVC
      eUZpbGVuYW1lEjYKFmZpbGVfY29udGFpbmluZ19zeW1ib2wYBCABKAlIAFIUZmlsZUNvbnRhaW5pbmdTeW1ib2wSZwoZZmlsZV9j
      b250YWluaW5nX2V4dGVuc2lvbhgFIAEoCzIpLmdycGMucmVmbGVjdGlvbi52MWFscGhhLkV4dGVuc2lvblJlcXVlc3RIAFIXZmls
      ZUNvbnRhaW5pbmdFeHRlbnNpb24SQgodYWxsX2V4dGVuc2lvbl9udW1iZXJzX29mX3R5cGUYBiABKAlIAFIZYWxsRXh0ZW5zaW9u
      TnVtYmVyc09mVHlwZRIlCg1saXN0X3NlcnZpY2VzGAcgASgJSABSDGxpc3RTZXJ2aWNlc0IRCg9tZXNzYWdlX3JlcXVlc3QiZgoQ
      RXh0ZW5zaW9uUmVxdWVzdBInCg9jb250YWluaW5nX3R5cGUYASABKAlSDmNvbnRhaW5pbmdUeXBlEikKEGV4dGVuc2lvbl9udW1i
      ZXIYAiABKAVSD2V4dGVuc2lvbk51bWJlciLHBAoYU2VydmVyUmVmbGVjdGlvblJlc3BvbnNlEh0KCnZhbGlkX2hvc3QYASABKAlS
      CXZhbGlkSG9zdBJbChBvcmlnaW5hbF9yZXF1ZXN0GAIgASgLMjAuZ3JwYy5yZWZsZWN0aW9uLnYxYWxwaGEuU2VydmVyUmVmbGVj
      dGlvblJlcXVlc3RSD29yaWdpbmFsUmVxdWVzdBJrChhmaWxlX2Rlc2NyaXB0b3JfcmVzcG9uc2UYBCABKAsyLy5ncnBjLnJlZmxl
      Y3Rpb24udjFhbHBoYS5GaWxlRGVzY3JpcHRvclJlc3BvbnNlSABSFmZpbGVEZXNjcmlwdG9yUmVzcG9uc2USdwoeYWxsX2V4dGVu
      c2lvbl9udW1iZXJzX3Jlc3BvbnNlGAUgASgLMjAuZ3JwYy5yZWZsZWN0aW9uLnYxYWxwaGEuRXh0ZW5zaW9uTnVtYmVyUmVzcG9u
      c2VIAFIbYWxsRXh0ZW5zaW9uTnVtYmVyc1Jlc3BvbnNlEmQKFmxpc3Rfc2VydmljZXNfcmVzcG9uc2UYBiABKAsyLC5ncnBjLnJl
      ZmxlY3Rpb24udjFhbHBoYS5MaXN0U2VydmljZVJlc3BvbnNlSABSFGxpc3RTZXJ2aWNlc1Jlc3BvbnNlEk8KDmVycm9yX3Jlc3Bv
      bnNlGAcgASgLMiYuZ3JwYy5yZWZsZWN0aW9uLnYxYWxwaGEuRXJyb3JSZXNwb25zZUgAUg1lcnJvclJlc3BvbnNlQhIKEG1lc3Nh
      Z2VfcmVzcG9uc2UiTAoWRmlsZURlc2NyaXB0b3JSZXNwb25zZRIyChVmaWxlX2Rlc2NyaXB0b3JfcHJvdG8YASADKAxSE2ZpbGVE
      ZXNjcmlwdG9yUHJvdG8iagoXRXh0ZW5zaW9uTnVtYmVyUmVzcG9uc2USJAoOYmFzZV90eXBlX25hbWUYASABKAlSDGJhc2VUeXBl
      TmFtZRIpChBleHRlbnNpb25fbnVtYmVyGAIgAygFUg9leHRlbnNpb25OdW1iZXIiWQoTTGlzdFNlcnZpY2VSZXNwb25zZRJCCgdz
      ZXJ2aWNlGAEgAygLMiguZ3JwYy5yZWZsZWN0aW9uLnYxYWxwaGEuU2VydmljZVJlc3BvbnNlUgdzZXJ2aWNlIiUKD1NlcnZpY2VS
      ZXNwb25zZRISCgRuYW1lGAEgASgJUgRuYW1lIlMKDUVycm9yUmVzcG9uc2USHQoKZXJyb3JfY29kZRgBIAEoBVIJZXJyb3JDb2Rl
      EiMKDWVycm9yX21lc3NhZ2UYAiABKAlSDGVycm9yTWVzc2FnZTKTAQoQU2VydmVyUmVmbGVjdGlvbhJ/ChRTZXJ2ZXJSZWZsZWN0
      aW9uSW5mbxIwLmdycGMucmVmbGVjdGlvbi52MWFscGhhLlNlcnZlclJlZmxlY3Rpb25SZXF1ZXN0GjEuZ3JwYy5yZWZsZWN0aW9u
      LnYxYWxwaGEuU2VydmVyUmVmbGVjdGlvblJlc3BvbnNlKAEwAUJzChppby5ncnBjLnJlZmxlY3Rpb24udjFhbHBoYUIVU2VydmVy
      UmVmbGVjdGlvblByb3RvUAFaOWdvb2dsZS5nb2xhbmcub3JnL2dycGMvcmVmbGVjdGlvbi9ncnBjX3JlZmxlY3Rpb25fdjFhbHBo
      YbgBAWIGcHJvdG8z
    `,
  },
];
