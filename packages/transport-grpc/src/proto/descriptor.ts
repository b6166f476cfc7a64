import { describeMessage, Field, Message, type ServiceDescriptor } from "@gantry/core";
import { encodeMessage } from "../codec.js";
import {
  buildProtoModel,
  EMPTY_FILE,
  type ProtoEnum,
  type ProtoField,
  type ProtoFileModel,
  type ProtoMessage,
  type ProtoServiceModel,
  type ProtoType,
  TIMESTAMP_FILE,
} from "./model.js";

// The part of google/protobuf/descriptor.proto that describes generated files. descriptor.proto is
// proto2: a field set to its type's default (oneof_index 0, an enum value numbered 0) is still
// written, so every scalar here is declared optional, which writes it whenever it is set. Classes are
// declared before the classes that use them.

@Message({ name: "FileOptions" })
class FileOptions {
  @Field(1, { type: "string", optional: true }) javaPackage?: string;
  @Field(8, { type: "string", optional: true }) javaOuterClassname?: string;
  @Field(10, { type: "bool", optional: true }) javaMultipleFiles?: boolean;
  @Field(11, { type: "string", optional: true }) goPackage?: string;
  @Field(31, { type: "bool", optional: true }) ccEnableArenas?: boolean;
  @Field(36, { type: "string", optional: true }) objcClassPrefix?: string;
  @Field(37, { type: "string", optional: true }) csharpNamespace?: string;
}

@Message({ name: "MessageOptions" })
class MessageOptions {
  @Field(7, { type: "bool", optional: true }) mapEntry?: boolean;
}

@Message({ name: "FieldOptions" })
class FieldOptions {
  @Field(3, { type: "bool", optional: true }) deprecated?: boolean;
}

@Message({ name: "EnumOptions" })
class EnumOptions {
  @Field(2, { type: "bool", optional: true }) allowAlias?: boolean;
}

@Message({ name: "MethodOptions" })
class MethodOptions {
  /** MethodOptions.IdempotencyLevel: 1 NO_SIDE_EFFECTS, 2 IDEMPOTENT. */
  @Field(34, { type: "int32", optional: true }) idempotencyLevel?: number;
}

@Message({ name: "FieldDescriptorProto" })
class FieldDescriptorProto {
  @Field(1, { type: "string", optional: true }) name?: string;
  @Field(3, { type: "int32", optional: true }) number?: number;
  /** FieldDescriptorProto.Label. */
  @Field(4, { type: "int32", optional: true }) label?: number;
  /** FieldDescriptorProto.Type. */
  @Field(5, { type: "int32", optional: true }) type?: number;
  @Field(6, { type: "string", optional: true }) typeName?: string;
  @Field(8) options?: FieldOptions;
  @Field(9, { type: "int32", optional: true }) oneofIndex?: number;
  @Field(10, { type: "string", optional: true }) jsonName?: string;
  @Field(17, { type: "bool", optional: true }) proto3Optional?: boolean;
}

@Message({ name: "OneofDescriptorProto" })
class OneofDescriptorProto {
  @Field(1, { type: "string", optional: true }) name?: string;
}

@Message({ name: "DescriptorProto" })
class DescriptorProto {
  @Field(1, { type: "string", optional: true }) name?: string;
  @Field(2, { type: FieldDescriptorProto, repeated: true }) field?: FieldDescriptorProto[];
  @Field(3, { type: () => DescriptorProto, repeated: true }) nestedType?: DescriptorProto[];
  @Field(7) options?: MessageOptions;
  @Field(8, { type: OneofDescriptorProto, repeated: true }) oneofDecl?: OneofDescriptorProto[];
}

@Message({ name: "EnumValueDescriptorProto" })
class EnumValueDescriptorProto {
  @Field(1, { type: "string", optional: true }) name?: string;
  @Field(2, { type: "int32", optional: true }) number?: number;
}

@Message({ name: "EnumDescriptorProto" })
class EnumDescriptorProto {
  @Field(1, { type: "string", optional: true }) name?: string;
  @Field(2, { type: EnumValueDescriptorProto, repeated: true }) value?: EnumValueDescriptorProto[];
  @Field(3) options?: EnumOptions;
}

@Message({ name: "MethodDescriptorProto" })
class MethodDescriptorProto {
  @Field(1, { type: "string", optional: true }) name?: string;
  @Field(2, { type: "string", optional: true }) inputType?: string;
  @Field(3, { type: "string", optional: true }) outputType?: string;
  @Field(4) options?: MethodOptions;
  @Field(5, { type: "bool", optional: true }) clientStreaming?: boolean;
  @Field(6, { type: "bool", optional: true }) serverStreaming?: boolean;
}

@Message({ name: "ServiceDescriptorProto" })
class ServiceDescriptorProto {
  @Field(1, { type: "string", optional: true }) name?: string;
  @Field(2, { type: MethodDescriptorProto, repeated: true }) method?: MethodDescriptorProto[];
}

@Message({ name: "FileDescriptorProto" })
class FileDescriptorProto {
  @Field(1, { type: "string", optional: true }) name?: string;
  @Field(2, { type: "string", optional: true }) package?: string;
  @Field(3, { type: "string", repeated: true }) dependency?: string[];
  @Field(4, { type: DescriptorProto, repeated: true }) messageType?: DescriptorProto[];
  @Field(5, { type: EnumDescriptorProto, repeated: true }) enumType?: EnumDescriptorProto[];
  @Field(6, { type: ServiceDescriptorProto, repeated: true }) service?: ServiceDescriptorProto[];
  @Field(8) options?: FileOptions;
  @Field(12, { type: "string", optional: true }) syntax?: string;
}

const fileDescriptorProto = describeMessage(FileDescriptorProto);

const LABEL = { singular: 1, optional: 1, repeated: 3 } as const;
const TYPE_MESSAGE = 11;
const TYPE_ENUM = 14;
const SCALAR_TYPE = {
  double: 1,
  float: 2,
  int64: 3,
  uint64: 4,
  int32: 5,
  fixed64: 6,
  fixed32: 7,
  bool: 8,
  string: 9,
  bytes: 12,
  uint32: 13,
  sfixed32: 15,
  sfixed64: 16,
  sint32: 17,
  sint64: 18,
} as const;
const IDEMPOTENT = 2;

/** The options every well-known file of the protobuf distribution declares, as protoc reads them. */
function wellKnownOptions(outerClassname: string, goPackage: string): FileOptions {
  return {
    javaPackage: "com.google.protobuf",
    javaOuterClassname: outerClassname,
    javaMultipleFiles: true,
    goPackage,
    ccEnableArenas: true,
    objcClassPrefix: "GPB",
    csharpNamespace: "Google.Protobuf.WellKnownTypes",
  };
}

/** The well-known files generated files may import, exactly as protoc describes them. */
const WELL_KNOWN: ReadonlyMap<string, FileDescriptorProto> = new Map([
  [
    TIMESTAMP_FILE,
    {
      name: TIMESTAMP_FILE,
      package: "google.protobuf",
      messageType: [
        {
          name: "Timestamp",
          field: [
            { name: "seconds", number: 1, label: 1, type: SCALAR_TYPE.int64, jsonName: "seconds" },
            { name: "nanos", number: 2, label: 1, type: SCALAR_TYPE.int32, jsonName: "nanos" },
          ],
        },
      ],
      options: wellKnownOptions("TimestampProto", "google.golang.org/protobuf/types/known/timestamppb"),
      syntax: "proto3",
    },
  ],
  [
    EMPTY_FILE,
    {
      name: EMPTY_FILE,
      package: "google.protobuf",
      messageType: [{ name: "Empty" }],
      options: wellKnownOptions("EmptyProto", "google.golang.org/protobuf/types/known/emptypb"),
      syntax: "proto3",
    },
  ],
]);

/**
 * The generated files of an app as google.protobuf.FileDescriptorProto messages, for server
 * reflection: each file by its path, the files it depends on, and the file that defines each symbol.
 */
export interface DescriptorSet {
  /** Paths of every file: the generated ones, then the well-known files they import. */
  readonly paths: readonly string[];
  /** Full names of the services, without a leading dot. */
  readonly services: readonly string[];
  /** The serialized FileDescriptorProto of a file, or undefined when there is no such file. */
  file(path: string): Uint8Array | undefined;
  /** The file and every file it imports, directly or not (the file first), or undefined when there is no such file. */
  withDependencies(path: string): string[] | undefined;
  /**
   * The file that defines a symbol given by its full name without a leading dot: a service
   * (`hello.v1.HelloService`), a method (`hello.v1.HelloService.SayHello`), a message, a nested map
   * entry, a field, an enum or an enum value (`hello.v1.WARM`, in the package's scope as in protoc, or `hello.v1.Tone.WARM`).
   */
  fileOf(symbol: string): string | undefined;
}

/**
 * Describes the `.proto` files generated for a set of services (the same files as `generateProto`)
 * as serialized FileDescriptorProtos, the form gRPC server reflection sends, with the well-known files
 * they import, so a reflection client can resolve every type.
 *
 * @example
 * const set = descriptorSet(app.services);
 * set.withDependencies(set.fileOf("hello.v1.HelloService") ?? "")?.map((path) => set.file(path));
 */
export function descriptorSet(services: readonly ServiceDescriptor[]): DescriptorSet {
  const files = new Map<string, Uint8Array>();
  const imports = new Map<string, readonly string[]>();
  const symbols = new Map<string, string>();
  const model = buildProtoModel(services);
  for (const file of model) {
    files.set(file.path, encodeMessage(fileDescriptorProto, fileProto(file)));
    imports.set(file.path, file.imports);
    addSymbols(symbols, file.path, file.package, file.messages, file.enums, file.services);
  }
  const wellKnown = [...new Set(model.flatMap((file) => file.imports))].sort();
  for (const path of wellKnown) {
    const proto = WELL_KNOWN.get(path) as FileDescriptorProto;
    files.set(path, encodeMessage(fileDescriptorProto, proto));
    imports.set(path, []);
    for (const message of proto.messageType ?? []) {
      const name = `google.protobuf.${message.name}`;
      symbols.set(name, path);
      for (const field of message.field ?? []) symbols.set(`${name}.${field.name}`, path);
    }
  }
  return {
    paths: [...files.keys()],
    services: model.flatMap((file) => file.services.map((service) => service.fullName)),
    file: (path) => files.get(path),
    withDependencies(path) {
      if (!files.has(path)) return undefined;
      const seen = new Set<string>();
      const visit = (current: string) => {
        if (seen.has(current)) return;
        seen.add(current);
        for (const dependency of imports.get(current) ?? []) visit(dependency);
      };
      visit(path);
      return [...seen];
    },
    fileOf: (symbol) => symbols.get(symbol),
  };
}

/**
 * The serialized google.protobuf.FileDescriptorProto of every file `generateProto` generates for a set
 * of services, by path, with the well-known files they import (google/protobuf/timestamp.proto,
 * google/protobuf/empty.proto). protoc describes the generated text with the same messages.
 *
 * @example
 * const files = fileDescriptors([describeService(HelloService)]);
 * files.get("hello/v1/hello.proto"); // Uint8Array
 */
export function fileDescriptors(services: readonly ServiceDescriptor[]): Map<string, Uint8Array> {
  const set = descriptorSet(services);
  return new Map(set.paths.map((path) => [path, set.file(path) as Uint8Array]));
}

function addSymbols(
  symbols: Map<string, string>,
  path: string,
  pkg: string,
  messages: readonly ProtoMessage[],
  enums: readonly ProtoEnum[],
  services: readonly ProtoServiceModel[],
): void {
  const addMessage = (message: ProtoMessage) => {
    symbols.set(message.fullName, path);
    for (const field of message.fields) symbols.set(`${message.fullName}.${field.name}`, path);
    for (const oneof of message.oneofs) symbols.set(`${message.fullName}.${oneof}`, path);
    for (const entry of message.nested) addMessage(entry);
  };
  for (const message of messages) addMessage(message);
  for (const enumType of enums) {
    symbols.set(enumType.fullName, path);
    for (const value of enumType.values) {
      symbols.set(`${pkg}.${value.name}`, path);
      symbols.set(`${enumType.fullName}.${value.name}`, path);
    }
  }
  for (const service of services) {
    symbols.set(service.fullName, path);
    for (const method of service.methods) symbols.set(`${service.fullName}.${method.name}`, path);
  }
}

function fileProto(file: ProtoFileModel): FileDescriptorProto {
  return {
    name: file.path,
    package: file.package,
    dependency: [...file.imports],
    messageType: file.messages.map(messageProto),
    enumType: file.enums.map(enumProto),
    service: file.services.map((service) => ({
      name: service.name,
      method: service.methods.map((method) => ({
        name: method.name,
        inputType: `.${method.inputType}`,
        outputType: `.${method.outputType}`,
        options: method.idempotent ? { idempotencyLevel: IDEMPOTENT } : undefined,
        // protoc records streaming only when it is on.
        clientStreaming: method.clientStreaming ? true : undefined,
        serverStreaming: method.serverStreaming ? true : undefined,
      })),
    })),
    syntax: "proto3",
  };
}

function messageProto(message: ProtoMessage): DescriptorProto {
  return {
    name: message.name,
    field: message.fields.map(fieldProto),
    nestedType: message.nested.map(messageProto),
    options: message.mapEntry ? { mapEntry: true } : undefined,
    oneofDecl: message.oneofs.map((name) => ({ name })),
  };
}

function fieldProto(field: ProtoField): FieldDescriptorProto {
  return {
    name: field.name,
    number: field.number,
    label: LABEL[field.label],
    ...typeOf(field.type),
    options: field.deprecated ? { deprecated: true } : undefined,
    oneofIndex: field.oneofIndex,
    jsonName: field.jsonName,
    proto3Optional: field.label === "optional" ? true : undefined,
  };
}

function typeOf(type: ProtoType): Pick<FieldDescriptorProto, "type" | "typeName"> {
  if (type.kind === "scalar") return { type: SCALAR_TYPE[type.scalar] };
  return { type: type.kind === "message" ? TYPE_MESSAGE : TYPE_ENUM, typeName: `.${type.fullName}` };
}

function enumProto(enumType: ProtoEnum): EnumDescriptorProto {
  return {
    name: enumType.name,
    value: enumType.values.map((value) => ({ name: value.name, number: value.number })),
    options: enumType.allowAlias ? { allowAlias: true } : undefined,
  };
}
