/**
 * The `.proto` view of an app's services: one file per proto package, each defining every message and
 * enum its services reach. The text generator and the FileDescriptorProto builder both read this one
 * model, so the two cannot disagree.
 */
import {
  type Constructor,
  Empty,
  type EnumDescriptor,
  type EnumObject,
  type FieldDescriptor,
  type MapKeyType,
  type MessageDescriptor,
  type ScalarType,
  type ServiceDescriptor,
  type ValueType,
} from "@gantry/core";
import { grpcErrors } from "../errors.js";

/** The well-known file that defines google.protobuf.Timestamp. */
export const TIMESTAMP_FILE = "google/protobuf/timestamp.proto";
/** The well-known file that defines google.protobuf.Empty. */
export const EMPTY_FILE = "google/protobuf/empty.proto";
/** The full name of the Timestamp message, which every `timestamp` field uses. */
export const TIMESTAMP_TYPE = "google.protobuf.Timestamp";
/** The full name of the Empty message, which core's `Empty` class stands for. */
export const EMPTY_TYPE = "google.protobuf.Empty";

/** The type of a field's value in a `.proto`: a scalar, or a message or enum by its full name (no leading dot). */
export type ProtoType =
  | { readonly kind: "scalar"; readonly scalar: ScalarType }
  | { readonly kind: "message" | "enum"; readonly fullName: string };

/** One field of a message, with everything protoc records for it. */
export interface ProtoField {
  /** The snake_case name. */
  readonly name: string;
  readonly number: number;
  /** `optional` is proto3 `optional` (explicit presence); map fields are `repeated` entries. */
  readonly label: "singular" | "optional" | "repeated";
  /** The value type; for a map field, its entry message. */
  readonly type: ProtoType;
  /** Set on map fields: the key and value types the text spells as `map<key, value>`. */
  readonly map?: { readonly key: MapKeyType; readonly value: ProtoType };
  /** The JSON name: the TypeScript property, which is the name Gantry's JSON mapping uses. */
  readonly jsonName: string;
  /** Whether the text states `json_name`, because protoc's default (lowerCamelCase of the name) differs. */
  readonly explicitJsonName: boolean;
  /** The index of the synthetic oneof of a proto3 `optional` field. */
  readonly oneofIndex?: number;
  readonly deprecated: boolean;
  readonly description?: string;
}

/** A message: top-level, or the nested entry message of a map field. */
export interface ProtoMessage {
  readonly name: string;
  readonly fullName: string;
  readonly description?: string;
  /** In field-number order. */
  readonly fields: readonly ProtoField[];
  /** The entry messages of its map fields, in field order. */
  readonly nested: readonly ProtoMessage[];
  /** The synthetic oneofs protoc adds for proto3 `optional` fields (`_nickname`). */
  readonly oneofs: readonly string[];
  readonly mapEntry: boolean;
}

export interface ProtoEnumValue {
  readonly name: string;
  readonly number: number;
}

export interface ProtoEnum {
  readonly name: string;
  readonly fullName: string;
  /** The zero value first (proto3 requires it), then the others in declaration order. */
  readonly values: readonly ProtoEnumValue[];
  /** Two names share a number, which needs `option allow_alias = true`. */
  readonly allowAlias: boolean;
}

export interface ProtoMethodModel {
  readonly name: string;
  readonly description?: string;
  /** Full names of the input and output messages. */
  readonly inputType: string;
  readonly outputType: string;
  readonly clientStreaming: boolean;
  readonly serverStreaming: boolean;
  /** Declared `idempotent`: written as `option idempotency_level = IDEMPOTENT`. */
  readonly idempotent: boolean;
}

export interface ProtoServiceModel {
  readonly name: string;
  readonly fullName: string;
  readonly description?: string;
  readonly methods: readonly ProtoMethodModel[];
}

/** One generated `.proto` file: one proto package. */
export interface ProtoFileModel {
  /** See {@link protoFilePath}. */
  readonly path: string;
  readonly package: string;
  /** Well-known files it imports, sorted. */
  readonly imports: readonly string[];
  readonly services: readonly ProtoServiceModel[];
  /** Top-level messages, in order of first use (depth first from the services' methods). */
  readonly messages: readonly ProtoMessage[];
  /** Top-level enums, in order of first use. */
  readonly enums: readonly ProtoEnum[];
}

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/;
const API_VERSION = /^v\d+((alpha|beta)\d*)?$/;

/**
 * The path of the file generated for a proto package: its parts as directories, then the last part
 * that is not an API version, as the file name. It depends on the package alone, so it stays the same
 * as services come and go.
 *
 * @example
 * protoFilePath("hello.v1"); // "hello/v1/hello.proto"
 * protoFilePath("acme.billing.v2beta1"); // "acme/billing/v2beta1/billing.proto"
 * protoFilePath("inventory"); // "inventory/inventory.proto"
 */
export function protoFilePath(pkg: string): string {
  const parts = pkg.split(".");
  const base = parts.findLast((part) => !API_VERSION.test(part)) ?? parts[parts.length - 1];
  return `${parts.join("/")}/${base}.proto`;
}

/**
 * Builds the `.proto` model of a set of services: one file per package, sorted by path. Throws a coded
 * error when two things would take one name in a package (GANTRY_ERR_PROTO_NAME_CONFLICT), when
 * enum values collide (GANTRY_ERR_PROTO_ENUM_VALUE_CONFLICT), or when a name is not a valid `.proto`
 * identifier (GANTRY_ERR_PROTO_BAD_NAME).
 *
 * @example
 * const [file] = buildProtoModel([describeService(HelloService)]);
 * file.path; // "hello/v1/hello.proto"
 */
export function buildProtoModel(services: readonly ServiceDescriptor[]): ProtoFileModel[] {
  const byPackage = new Map<string, ServiceDescriptor[]>();
  for (const service of services) {
    const list = byPackage.get(service.package) ?? [];
    if (!list.some((s) => s.type === service.type)) list.push(service);
    byPackage.set(service.package, list);
  }
  const files = [...byPackage].map(([pkg, list]) => new PackageBuilder(pkg).build(list));
  return files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

/** Who holds a name in a package's scope, described for errors. */
interface Claim {
  readonly description: string;
  readonly enumValue: boolean;
}

class PackageBuilder {
  readonly #package: string;
  /** Every name in the package scope: services, messages, enums, and enum values (which proto3 puts there too). */
  readonly #scope = new Map<string, Claim>();
  readonly #messages = new Map<Constructor, string>();
  readonly #messageList: ProtoMessage[] = [];
  readonly #enums = new Map<EnumObject, string>();
  readonly #enumList: ProtoEnum[] = [];
  readonly #imports = new Set<string>();

  constructor(pkg: string) {
    this.#package = pkg;
  }

  build(services: readonly ServiceDescriptor[]): ProtoFileModel {
    const protoServices = services.map((service) => this.#service(service));
    return {
      path: protoFilePath(this.#package),
      package: this.#package,
      imports: [...this.#imports].sort(),
      services: protoServices,
      messages: this.#messageList,
      enums: this.#enumList,
    };
  }

  #service(service: ServiceDescriptor): ProtoServiceModel {
    this.#claim(service.name, { description: `service class ${service.type.name}`, enumValue: false });
    return {
      name: service.name,
      fullName: service.fullName,
      description: service.description,
      methods: service.methods.map((method) => {
        const origin = `${service.type.name}.${method.key}`;
        return {
          name: method.name,
          description: method.description,
          inputType: this.#message(method.input, origin),
          outputType: this.#message(method.output, origin),
          clientStreaming: method.stream === "client" || method.stream === "bidi",
          serverStreaming: method.stream === "server" || method.stream === "bidi",
          idempotent: method.idempotent,
        };
      }),
    };
  }

  /** Defines a message (once) and the messages and enums it reaches; returns its full name. */
  #message(message: MessageDescriptor, origin: string): string {
    if (message.type === Empty) {
      this.#imports.add(EMPTY_FILE);
      return EMPTY_TYPE;
    }
    const known = this.#messages.get(message.type);
    if (known !== undefined) return known;
    const description = `message class ${message.type.name} (used by ${origin})`;
    checkIdentifier(message.name, description, "a message name");
    this.#claim(message.name, { description, enumValue: false });
    const fullName = `${this.#package}.${message.name}`;
    this.#messages.set(message.type, fullName);
    const fields: ProtoField[] = [];
    const nested: ProtoMessage[] = [];
    const oneofs: string[] = [];
    // Listed before its fields are visited: the list reads in order of first use, and a recursive
    // message finds itself already known.
    this.#messageList.push({
      name: message.name,
      fullName,
      description: message.description,
      fields,
      nested,
      oneofs,
      mapEntry: false,
    });
    const names = new MessageScope(message);
    for (const field of message.fields) {
      const origin = `${message.type.name}.${field.key}`;
      checkIdentifier(field.protoName, `field ${origin}`, "a field name");
      names.addField(field);
      const value = this.#value(field.value, origin);
      const common = {
        name: field.protoName,
        number: field.number,
        jsonName: field.key,
        explicitJsonName: jsonName(field.protoName) !== field.key,
        deprecated: field.deprecated,
        description: field.description,
      };
      if (field.cardinality === "map") {
        const key = field.mapKey ?? "string";
        const entryName = mapEntryName(field.protoName);
        names.addNested(entryName, field);
        const entry = mapEntry(`${fullName}.${entryName}`, entryName, key, value);
        nested.push(entry);
        fields.push({
          ...common,
          label: "repeated",
          type: { kind: "message", fullName: entry.fullName },
          map: { key, value },
        });
      } else {
        fields.push({ ...common, label: field.cardinality, type: value });
      }
    }
    addSyntheticOneofs(fields, oneofs);
    return fullName;
  }

  #value(value: ValueType, origin: string): ProtoType {
    switch (value.kind) {
      case "scalar":
        return { kind: "scalar", scalar: value.scalar };
      case "timestamp":
        this.#imports.add(TIMESTAMP_FILE);
        return { kind: "message", fullName: TIMESTAMP_TYPE };
      case "message":
        return { kind: "message", fullName: this.#message(value.message, origin) };
      case "enum":
        return { kind: "enum", fullName: this.#enum(value.enum, origin) };
    }
  }

  /**
   * Defines an enum once per TypeScript enum object, named as at its first use: an unregistered enum
   * takes its name from the first field that uses it.
   */
  #enum(descriptor: EnumDescriptor, origin: string): string {
    const known = this.#enums.get(descriptor.object);
    if (known !== undefined) return known;
    const name = descriptor.name;
    const description = `enum ${name} (used by ${origin})`;
    checkIdentifier(name, description, "an enum name");
    this.#claim(name, { description, enumValue: false });
    const zero = descriptor.values.findIndex((v) => v.number === 0);
    const values = [descriptor.values[zero], ...descriptor.values.filter((_, i) => i !== zero)];
    const stripped = new Map<string, ProtoEnumValue>();
    for (const value of values) {
      const valueDescription = `${value.name} of ${description}`;
      checkIdentifier(value.name, valueDescription, "an enum value");
      if (value.name === "option" || value.name === "reserved") {
        throw grpcErrors.create("GANTRY_ERR_PROTO_BAD_NAME", {
          owner: valueDescription,
          name: value.name,
          reason: "protoc reads it as a keyword in an enum; rename the value",
        });
      }
      const key = enumValueToPascalCase(removeEnumPrefix(name, value.name));
      const other = stripped.get(key);
      if (other !== undefined && other.number !== value.number) {
        throw grpcErrors.create("GANTRY_ERR_PROTO_ENUM_VALUE_CONFLICT", {
          scope: this.#package,
          first: `${other.name} of ${description}`,
          second: value.name,
          reason: `protoc rejects values that are equal once case and the ${name} prefix are ignored; rename one, or give both the same number`,
        });
      }
      if (other === undefined) stripped.set(key, value);
      this.#claim(value.name, { description: valueDescription, enumValue: true });
    }
    const fullName = `${this.#package}.${name}`;
    this.#enums.set(descriptor.object, fullName);
    this.#enumList.push({
      name,
      fullName,
      values: values.map((v) => ({ name: v.name, number: v.number })),
      allowAlias: new Set(values.map((v) => v.number)).size < values.length,
    });
    return fullName;
  }

  /** Takes a name in the package's scope; each declaration claims its names once. */
  #claim(name: string, claim: Claim): void {
    const previous = this.#scope.get(name);
    if (previous === undefined) {
      this.#scope.set(name, claim);
      return;
    }
    if (previous.enumValue && claim.enumValue) {
      throw grpcErrors.create("GANTRY_ERR_PROTO_ENUM_VALUE_CONFLICT", {
        scope: this.#package,
        first: previous.description,
        second: claim.description,
        reason:
          "proto3 enum values share their package's scope; prefix each value with its enum's name (COLOR_RED, SIZE_SMALL)",
      });
    }
    throw grpcErrors.create("GANTRY_ERR_PROTO_NAME_CONFLICT", {
      scope: this.#package,
      first: previous.description,
      second: claim.description,
      name,
    });
  }
}

/** The names inside one message: fields and nested entry messages, as protoc checks them. */
class MessageScope {
  readonly #message: MessageDescriptor;
  readonly #names = new Map<string, string>();
  /** proto3 rejects two fields whose names are equal once lower-cased without underscores. */
  readonly #folded = new Map<string, string>();

  constructor(message: MessageDescriptor) {
    this.#message = message;
  }

  addField(field: FieldDescriptor): void {
    const description = `field ${this.#message.type.name}.${field.key}`;
    this.#add(field.protoName, description);
    const folded = field.protoName.replaceAll("_", "").toLowerCase();
    const previous = this.#folded.get(folded);
    if (previous !== undefined) this.#conflict(previous, description, field.protoName);
    this.#folded.set(folded, description);
  }

  addNested(name: string, field: FieldDescriptor): void {
    this.#add(name, `the map entry of field ${this.#message.type.name}.${field.key}`);
  }

  #add(name: string, description: string): void {
    const previous = this.#names.get(name);
    if (previous !== undefined) this.#conflict(previous, description, name);
    this.#names.set(name, description);
  }

  #conflict(first: string, second: string, name: string): never {
    throw grpcErrors.create("GANTRY_ERR_PROTO_NAME_CONFLICT", {
      scope: `message class ${this.#message.type.name}`,
      first,
      second,
      name,
    });
  }
}

function mapEntry(fullName: string, name: string, key: MapKeyType, value: ProtoType): ProtoMessage {
  return {
    name,
    fullName,
    fields: [
      {
        name: "key",
        number: 1,
        label: "singular",
        type: { kind: "scalar", scalar: key },
        jsonName: "key",
        explicitJsonName: false,
        deprecated: false,
      },
      {
        name: "value",
        number: 2,
        label: "singular",
        type: value,
        jsonName: "value",
        explicitJsonName: false,
        deprecated: false,
      },
    ],
    nested: [],
    oneofs: [],
    mapEntry: true,
  };
}

/**
 * Adds the synthetic oneofs protoc adds for proto3 `optional` fields, named as protoc names them: `_`
 * and the field name, with `X` prepended until the name is free.
 */
function addSyntheticOneofs(fields: ProtoField[], oneofs: string[]): void {
  const taken = new Set(fields.map((f) => f.name));
  for (const [i, field] of fields.entries()) {
    if (field.label !== "optional") continue;
    let name = field.name.startsWith("_") ? field.name : `_${field.name}`;
    while (taken.has(name)) name = `X${name}`;
    taken.add(name);
    fields[i] = { ...field, oneofIndex: oneofs.length };
    oneofs.push(name);
  }
}

function checkIdentifier(name: string, owner: string, what: string): void {
  if (!IDENTIFIER.test(name)) {
    throw grpcErrors.create("GANTRY_ERR_PROTO_BAD_NAME", {
      owner,
      name: JSON.stringify(name),
      reason: `${what} must be a letter or _ followed by letters, digits or _`,
    });
  }
}

/** protoc's default JSON name of a field: lowerCamelCase of its name (`greeted_at` → `greetedAt`). */
export function jsonName(fieldName: string): string {
  let result = "";
  let upper = false;
  for (const c of fieldName) {
    if (c === "_") upper = true;
    else {
      result += upper ? c.toUpperCase() : c;
      upper = false;
    }
  }
  return result;
}

/** protoc's name for the entry message of a map field: PascalCase of the field name, then `Entry`. */
export function mapEntryName(fieldName: string): string {
  let result = "";
  let upper = true;
  for (const c of fieldName) {
    if (c === "_") upper = true;
    else {
      result += upper ? c.toUpperCase() : c;
      upper = false;
    }
  }
  return `${result}Entry`;
}

/** protoc's check of enum values: strips the enum's name (case and underscores ignored) from the front. */
function removeEnumPrefix(enumName: string, value: string): string {
  const prefix = enumName.replaceAll("_", "").toLowerCase();
  let i = 0;
  let j = 0;
  for (; i < value.length && j < prefix.length; i++) {
    if (value[i] === "_") continue;
    if (value[i].toLowerCase() !== prefix[j++]) return value;
  }
  if (j < prefix.length) return value;
  while (i < value.length && value[i] === "_") i++;
  return i === value.length ? value : value.slice(i);
}

function enumValueToPascalCase(value: string): string {
  let result = "";
  let upper = true;
  for (const c of value) {
    if (c === "_") upper = true;
    else {
      result += upper ? c.toUpperCase() : c.toLowerCase();
      upper = false;
    }
  }
  return result;
}
