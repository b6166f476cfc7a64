/**
 * Decoding of OTLP export requests: the protobuf wire format read directly (only the fields a test
 * looks at; the rest is skipped), and the OTLP/JSON mapping. Every request of the three signals nests
 * the same way — resource groups (field 1), scope groups (field 2), items (field 2) — so one walk
 * counts spans, metrics and log records without decoding them.
 */

export type AttributeValue = string | number | boolean | Uint8Array | AttributeValue[] | AttributeMap | undefined;
export interface AttributeMap {
  [key: string]: AttributeValue;
}

export type SpanKindName = "unspecified" | "internal" | "server" | "client" | "producer" | "consumer";
export type StatusCodeName = "unset" | "ok" | "error";

/** One span as the receiver got it. Ids are lower-case hex; times are nanoseconds since the epoch. */
export interface ReceivedSpan {
  readonly traceId: string;
  readonly spanId: string;
  /** Undefined for a root span. */
  readonly parentSpanId: string | undefined;
  readonly name: string;
  readonly kind: SpanKindName;
  readonly startTimeUnixNano: bigint;
  readonly endTimeUnixNano: bigint;
  readonly attributes: AttributeMap;
  readonly status: { readonly code: StatusCodeName; readonly message: string };
  /** The attributes of the resource that sent it: `service.name` and the rest. */
  readonly resource: AttributeMap;
  /** The instrumentation scope (tracer) name. */
  readonly scope: string;
}

const KINDS: readonly SpanKindName[] = ["unspecified", "internal", "server", "client", "producer", "consumer"];
const STATUS_CODES: readonly StatusCodeName[] = ["unset", "ok", "error"];

const WIRE_VARINT = 0;
const WIRE_FIXED64 = 1;
const WIRE_BYTES = 2;
const WIRE_FIXED32 = 5;

class Reader {
  pos: number;

  constructor(
    readonly buf: Uint8Array,
    start = 0,
    readonly end = buf.length,
  ) {
    this.pos = start;
  }

  get done(): boolean {
    return this.pos >= this.end;
  }

  /** A varint as a BigInt: int64 and uint64 fields may not fit a number. */
  bigVarint(): bigint {
    let value = 0n;
    let shift = 0n;
    for (;;) {
      if (this.pos >= this.end) throw new Error("truncated varint");
      const byte = this.buf[this.pos++];
      value |= BigInt(byte & 0x7f) << shift;
      if (byte < 0x80) return value;
      shift += 7n;
    }
  }

  /** A varint that fits a number: tags, lengths, enums, bools. */
  varint(): number {
    let value = 0;
    let factor = 1;
    for (;;) {
      if (this.pos >= this.end) throw new Error("truncated varint");
      const byte = this.buf[this.pos++];
      value += (byte & 0x7f) * factor;
      if (byte < 0x80) return value;
      factor *= 128;
    }
  }

  fixed64(): bigint {
    if (this.pos + 8 > this.end) throw new Error("truncated fixed64");
    const value = new DataView(this.buf.buffer, this.buf.byteOffset + this.pos, 8).getBigUint64(0, true);
    this.pos += 8;
    return value;
  }

  double(): number {
    if (this.pos + 8 > this.end) throw new Error("truncated double");
    const value = new DataView(this.buf.buffer, this.buf.byteOffset + this.pos, 8).getFloat64(0, true);
    this.pos += 8;
    return value;
  }

  /** The extent of a length-delimited field: a reader over it, and this one moved past it. */
  sub(): Reader {
    const length = this.varint();
    const start = this.pos;
    if (start + length > this.end) throw new Error("truncated field");
    this.pos += length;
    return new Reader(this.buf, start, start + length);
  }

  bytes(): Uint8Array {
    const sub = this.sub();
    return this.buf.subarray(sub.pos, sub.end);
  }

  string(): string {
    const sub = this.sub();
    return Buffer.from(this.buf.buffer, this.buf.byteOffset + sub.pos, sub.end - sub.pos).toString("utf8");
  }

  skip(wire: number): void {
    if (wire === WIRE_VARINT) this.varint();
    else if (wire === WIRE_FIXED64) this.pos += 8;
    else if (wire === WIRE_BYTES) this.sub();
    else if (wire === WIRE_FIXED32) this.pos += 4;
    else throw new Error(`unsupported wire type ${wire}`);
  }

  /** Calls `field` for each field until the end; a field it does not read is skipped. */
  fields(field: (number: number, wire: number) => boolean): void {
    while (!this.done) {
      const tag = this.varint();
      const number = Math.floor(tag / 8);
      const wire = tag & 7;
      if (!field(number, wire)) this.skip(wire);
    }
  }
}

/** Counts the items (spans, metrics or log records) of a protobuf export request without decoding them. */
export function countProtobufItems(body: Uint8Array): number {
  let count = 0;
  eachNested(new Reader(body), 1, (group) =>
    eachNested(group, 2, (scope) =>
      eachNested(scope, 2, () => {
        count++;
      }),
    ),
  );
  return count;
}

/** Calls `visit` with a reader over each length-delimited field `number` of the message. */
function eachNested(message: Reader, number: number, visit: (field: Reader) => void): void {
  message.fields((field, wire) => {
    if (field !== number || wire !== WIRE_BYTES) return false;
    visit(message.sub());
    return true;
  });
}

/** The spans of a protobuf ExportTraceServiceRequest. */
export function decodeProtobufSpans(body: Uint8Array): ReceivedSpan[] {
  const spans: ReceivedSpan[] = [];
  eachNested(new Reader(body), 1, (group) => {
    let resource: AttributeMap = {};
    const scopes: Reader[] = [];
    group.fields((field, wire) => {
      if (wire !== WIRE_BYTES) return false;
      if (field === 1) resource = protobufResource(group.sub());
      else if (field === 2) scopes.push(group.sub());
      else return false;
      return true;
    });
    // Fields may come in any order: the resource and the scope's name are read before the spans.
    for (const scope of scopes) {
      let name = "";
      const items: Reader[] = [];
      scope.fields((field, wire) => {
        if (wire !== WIRE_BYTES) return false;
        if (field === 1) name = protobufScopeName(scope.sub());
        else if (field === 2) items.push(scope.sub());
        else return false;
        return true;
      });
      for (const item of items) spans.push(protobufSpan(item, resource, name));
    }
  });
  return spans;
}

function protobufResource(reader: Reader): AttributeMap {
  const attributes: AttributeMap = {};
  reader.fields((field, wire) => {
    if (field !== 1 || wire !== WIRE_BYTES) return false;
    protobufKeyValue(reader.sub(), attributes);
    return true;
  });
  return attributes;
}

function protobufScopeName(reader: Reader): string {
  let name = "";
  reader.fields((field, wire) => {
    if (field !== 1 || wire !== WIRE_BYTES) return false;
    name = reader.string();
    return true;
  });
  return name;
}

interface MutableSpan {
  traceId: string;
  spanId: string;
  parentSpanId: string | undefined;
  name: string;
  kind: SpanKindName;
  startTimeUnixNano: bigint;
  endTimeUnixNano: bigint;
  attributes: AttributeMap;
  status: { code: StatusCodeName; message: string };
  resource: AttributeMap;
  scope: string;
}

function protobufSpan(reader: Reader, resource: AttributeMap, scope: string): ReceivedSpan {
  const span: MutableSpan = {
    traceId: "",
    spanId: "",
    parentSpanId: undefined,
    name: "",
    kind: "unspecified",
    startTimeUnixNano: 0n,
    endTimeUnixNano: 0n,
    attributes: {},
    status: { code: "unset", message: "" },
    resource,
    scope,
  };
  reader.fields((field) => {
    switch (field) {
      case 1:
        span.traceId = hex(reader.bytes());
        return true;
      case 2:
        span.spanId = hex(reader.bytes());
        return true;
      case 4: {
        const parent = reader.bytes();
        span.parentSpanId = parent.length === 0 ? undefined : hex(parent);
        return true;
      }
      case 5:
        span.name = reader.string();
        return true;
      case 6:
        span.kind = KINDS[reader.varint()] ?? "unspecified";
        return true;
      case 7:
        span.startTimeUnixNano = reader.fixed64();
        return true;
      case 8:
        span.endTimeUnixNano = reader.fixed64();
        return true;
      case 9:
        protobufKeyValue(reader.sub(), span.attributes);
        return true;
      case 15:
        span.status = protobufStatus(reader.sub());
        return true;
      default:
        return false;
    }
  });
  return span;
}

function protobufStatus(reader: Reader): { code: StatusCodeName; message: string } {
  const status = { code: "unset" as StatusCodeName, message: "" };
  reader.fields((field, wire) => {
    if (field === 2 && wire === WIRE_BYTES) status.message = reader.string();
    else if (field === 3 && wire === WIRE_VARINT) status.code = STATUS_CODES[reader.varint()] ?? "unset";
    else return false;
    return true;
  });
  return status;
}

function protobufKeyValue(reader: Reader, into: AttributeMap): void {
  let key = "";
  let value: AttributeValue;
  reader.fields((field, wire) => {
    if (wire !== WIRE_BYTES) return false;
    if (field === 1) key = reader.string();
    else if (field === 2) value = protobufAnyValue(reader.sub());
    else return false;
    return true;
  });
  into[key] = value;
}

function protobufAnyValue(reader: Reader): AttributeValue {
  let value: AttributeValue;
  reader.fields((field) => {
    switch (field) {
      case 1:
        value = reader.string();
        return true;
      case 2:
        value = reader.varint() !== 0;
        return true;
      case 3:
        value = int64(reader.bigVarint());
        return true;
      case 4:
        value = reader.double();
        return true;
      case 5: {
        const array = reader.sub();
        const values: AttributeValue[] = [];
        array.fields((item, wire) => {
          if (item !== 1 || wire !== WIRE_BYTES) return false;
          values.push(protobufAnyValue(array.sub()));
          return true;
        });
        value = values;
        return true;
      }
      case 6: {
        const list = reader.sub();
        const map: AttributeMap = {};
        list.fields((item, wire) => {
          if (item !== 1 || wire !== WIRE_BYTES) return false;
          protobufKeyValue(list.sub(), map);
          return true;
        });
        value = map;
        return true;
      }
      case 7:
        value = reader.bytes().slice();
        return true;
      default:
        return false;
    }
  });
  return value;
}

/** A two's complement int64 as a number (attribute values that matter to a test fit one). */
function int64(raw: bigint): number {
  return Number(BigInt.asIntN(64, raw));
}

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString("hex");
}

// OTLP/JSON: the same messages with lowerCamelCase keys, ids in hex, 64-bit integers as strings or numbers.

interface JsonKeyValue {
  key: string;
  value?: JsonAnyValue;
}
interface JsonAnyValue {
  stringValue?: string;
  boolValue?: boolean;
  intValue?: string | number;
  doubleValue?: number;
  arrayValue?: { values?: JsonAnyValue[] };
  kvlistValue?: { values?: JsonKeyValue[] };
  bytesValue?: string;
}
interface JsonSpan {
  traceId?: string;
  spanId?: string;
  parentSpanId?: string;
  name?: string;
  kind?: number;
  startTimeUnixNano?: string | number;
  endTimeUnixNano?: string | number;
  attributes?: JsonKeyValue[];
  status?: { code?: number; message?: string };
}
interface JsonRequest {
  [group: string]: { resource?: { attributes?: JsonKeyValue[] }; [scopes: string]: unknown }[] | undefined;
}

/** Counts the items of an OTLP/JSON export request: `resourceSpans[].scopeSpans[].spans[]` and the like. */
export function countJsonItems(request: JsonRequest, signal: "Spans" | "Metrics" | "Logs"): number {
  const item = signal === "Logs" ? "logRecords" : signal.toLowerCase();
  let count = 0;
  for (const group of request[`resource${signal}`] ?? []) {
    for (const scope of (group[`scope${signal}`] ?? []) as Record<string, unknown[] | undefined>[]) {
      count += scope[item]?.length ?? 0;
    }
  }
  return count;
}

/** The spans of an OTLP/JSON ExportTraceServiceRequest. */
export function decodeJsonSpans(request: JsonRequest): ReceivedSpan[] {
  const spans: ReceivedSpan[] = [];
  for (const group of request.resourceSpans ?? []) {
    const resource = jsonAttributes(group.resource?.attributes);
    for (const scope of (group.scopeSpans ?? []) as { scope?: { name?: string }; spans?: JsonSpan[] }[]) {
      for (const span of scope.spans ?? []) {
        spans.push({
          traceId: (span.traceId ?? "").toLowerCase(),
          spanId: (span.spanId ?? "").toLowerCase(),
          parentSpanId: span.parentSpanId ? span.parentSpanId.toLowerCase() : undefined,
          name: span.name ?? "",
          kind: KINDS[span.kind ?? 0] ?? "unspecified",
          startTimeUnixNano: BigInt(span.startTimeUnixNano ?? 0),
          endTimeUnixNano: BigInt(span.endTimeUnixNano ?? 0),
          attributes: jsonAttributes(span.attributes),
          status: { code: STATUS_CODES[span.status?.code ?? 0] ?? "unset", message: span.status?.message ?? "" },
          resource,
          scope: scope.scope?.name ?? "",
        });
      }
    }
  }
  return spans;
}

function jsonAttributes(list: JsonKeyValue[] | undefined): AttributeMap {
  const attributes: AttributeMap = {};
  for (const { key, value } of list ?? []) attributes[key] = jsonAnyValue(value);
  return attributes;
}

function jsonAnyValue(value: JsonAnyValue | undefined): AttributeValue {
  if (value === undefined) return undefined;
  if (value.stringValue !== undefined) return value.stringValue;
  if (value.boolValue !== undefined) return value.boolValue;
  if (value.intValue !== undefined) return Number(value.intValue);
  if (value.doubleValue !== undefined) return value.doubleValue;
  if (value.arrayValue !== undefined) return (value.arrayValue.values ?? []).map(jsonAnyValue);
  if (value.kvlistValue !== undefined) return jsonAttributes(value.kvlistValue.values);
  if (value.bytesValue !== undefined) return new Uint8Array(Buffer.from(value.bytesValue, "base64"));
  return undefined;
}
