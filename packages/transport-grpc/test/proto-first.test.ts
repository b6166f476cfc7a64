import {
  type Constructor,
  describeService,
  Empty,
  type FieldDescriptor,
  GantryError,
  Get,
  Message,
  type MessageDescriptor,
  Method,
  type ServiceDescriptor,
} from "@gantry/core";
import { createTestApp } from "@gantry/core/testing";
import { describe, expect, test } from "vitest";
import { ProtoService } from "../src/proto-first.js";

const PROTO = new URL("./fixtures/proto/", import.meta.url);
const RICH = new URL("rich.proto", PROTO);
const LEGACY = new URL("legacy.proto", PROTO);
const INCLUDE = [new URL("include/", PROTO)];

/** The TypeScript side of rich.proto, written by hand as a proto-first user would. */
interface Money {
  currencyCode: string;
  units: bigint;
  nanos: number;
}

interface OrderLine {
  sku: string;
  quantity: number;
  price?: Money;
  replaces?: OrderLine;
}

interface Order {
  id: string;
  status: number;
  tags: string[];
  lines: OrderLine[];
  counts: Record<string, bigint>;
  linesByNumber: Record<number, OrderLine>;
  note?: string;
  cardToken?: string;
  voucher?: Money;
  createdAt?: Date;
  priority: number;
  previousStatus?: number;
  scalars?: { anInt64: bigint; aUint64: bigint; someBytes: Uint8Array };
}

interface GetOrderRequest {
  id: string;
}

@ProtoService({ file: RICH, service: "gantry.test.v1.OrderService", includeDirs: INCLUDE })
class Orders {
  @Get("/orders/:id")
  @Method({ timeoutMs: 500 })
  async getOrder(request: GetOrderRequest): Promise<Partial<Order>> {
    return { id: request.id, status: 1, counts: { total: 2n }, createdAt: new Date(0) };
  }

  async *listOrders(): AsyncIterable<Partial<Order>> {
    yield { id: "o-1" };
  }

  async importOrders(orders: AsyncIterable<Order>): Promise<Record<string, never>> {
    const ids: string[] = [];
    for await (const order of orders) ids.push(order.id);
    return {};
  }

  /** Bound by its name as written in the proto, not in lowerCamelCase. */
  async *SyncOrders(orders: AsyncIterable<Order>): AsyncIterable<Order> {
    yield* orders;
  }
}

@ProtoService({ file: RICH, service: "gantry.test.v1.AuditService", includeDirs: INCLUDE })
class Audit {
  readonly recorded: Order[] = [];

  async record(order: Order): Promise<Record<string, never>> {
    this.recorded.push(order);
    return {};
  }
}

/** One line per field: number, key, proto name, cardinality (with the map key), value type. */
function shape(field: FieldDescriptor): string {
  const value = field.value;
  let type: string;
  if (value.kind === "scalar") type = value.scalar;
  else if (value.kind === "enum") type = `enum ${value.enum.name}`;
  else if (value.kind === "message") type = `message ${value.message.name}`;
  else type = "timestamp";
  const cardinality = field.mapKey === undefined ? field.cardinality : `map<${field.mapKey}>`;
  return `${field.number} ${field.key} ${field.protoName} ${cardinality} ${type}`;
}

function fieldOf(message: MessageDescriptor, key: string): FieldDescriptor {
  const field = message.fieldByName.get(key);
  if (field === undefined) throw new Error(`${message.name} has no field ${key}`);
  return field;
}

function nestedMessage(message: MessageDescriptor, key: string): MessageDescriptor {
  const value = fieldOf(message, key).value;
  if (value.kind !== "message") throw new Error(`${message.name}.${key} is not a message`);
  return value.message;
}

/** The coded error a class declaration throws when @ProtoService runs. */
function thrown(declare: () => Constructor): GantryError {
  try {
    declare();
  } catch (error) {
    expect(error).toBeInstanceOf(GantryError);
    return error as GantryError;
  }
  throw new Error("expected @ProtoService to throw a GantryError");
}

describe("a proto-first service's descriptor", () => {
  const service: ServiceDescriptor = describeService(Orders);
  const method = (key: string) => {
    const found = service.methods.find((m) => m.key === key);
    if (found === undefined) throw new Error(`no method ${key}`);
    return found;
  };
  const order = method("getOrder").output;

  test("names the service, its package and API version as the proto does, with its comment", () => {
    expect(service.name).toBe("OrderService");
    expect(service.package).toBe("gantry.test.v1");
    expect(service.fullName).toBe("gantry.test.v1.OrderService");
    expect(service.apiVersion).toBe("v1");
    expect(service.description).toBe("Orders, with all four stream kinds.");
  });

  test("binds every rpc to its member, with its messages, stream kind and idempotency level", () => {
    expect(
      service.methods.map((m) => [m.key, m.name, m.path, m.stream, m.idempotent, m.input.name, m.output.name]),
    ).toEqual([
      ["getOrder", "GetOrder", "/gantry.test.v1.OrderService/GetOrder", "unary", true, "GetOrderRequest", "Order"],
      ["listOrders", "ListOrders", "/gantry.test.v1.OrderService/ListOrders", "server", false, "Empty", "Order"],
      ["importOrders", "ImportOrders", "/gantry.test.v1.OrderService/ImportOrders", "client", true, "Order", "Empty"],
      ["SyncOrders", "SyncOrders", "/gantry.test.v1.OrderService/SyncOrders", "bidi", false, "Order", "Order"],
    ]);
    expect(method("listOrders").input.type).toBe(Empty);
    expect(method("importOrders").output.type).toBe(Empty);
    expect(method("importOrders").input).toBe(order);
  });

  test("keeps what the member declares itself: timeoutMs, routes; takes descriptions from comments", () => {
    const getOrder = method("getOrder");
    expect(getOrder.timeoutMs).toBe(500);
    expect(getOrder.description).toBe("Reads one order.");
    expect(getOrder.routes.map((r) => `${r.method} ${r.path}`)).toEqual([
      "GET /orders/:id",
      "POST /gantry.test.v1.OrderService/GetOrder",
    ]);
    expect(method("listOrders").description).toBeUndefined();
  });

  test("maps every field shape: scalars, enums, nested, repeated, maps, optional, oneof, well-known types", () => {
    expect(order.name).toBe("Order");
    expect(order.description).toBe("An order, with every shape of field.");
    expect(order.fields.map(shape)).toEqual([
      "1 id id singular string",
      "2 scalars scalars singular message Scalars",
      "3 status status singular enum Order_Status",
      "4 tags tags repeated string",
      "5 lines lines repeated message Order_Line",
      "6 counts counts map<string> int64",
      "7 linesByNumber lines_by_number map<int32> message Order_Line",
      "8 note note optional string",
      "9 cardToken card_token optional string",
      "10 voucher voucher singular message Money",
      "11 createdAt created_at singular timestamp",
      "12 nothing nothing singular message Empty",
      "13 priority priority singular enum Priority",
      "14 history history repeated timestamp",
      "15 previousStatus previous_status optional enum Order_Status",
      "16 legacyCode legacy_code singular string",
      "17 statusByRegion status_by_region map<string> enum Order_Status",
    ]);
    expect(fieldOf(order, "id").description).toBe("The order's id.");
    expect(fieldOf(order, "legacyCode").deprecated).toBe(true);
    expect(fieldOf(order, "id").deprecated).toBe(false);
    expect(nestedMessage(order, "nothing").type).toBe(Empty);
  });

  test("maps every scalar type, 64-bit integers included", () => {
    expect(nestedMessage(order, "scalars").fields.map(shape)).toEqual([
      "1 aDouble a_double singular double",
      "2 aFloat a_float singular float",
      "3 anInt32 an_int32 singular int32",
      "4 anInt64 an_int64 singular int64",
      "5 aUint32 a_uint32 singular uint32",
      "6 aUint64 a_uint64 singular uint64",
      "7 aSint32 a_sint32 singular sint32",
      "8 aSint64 a_sint64 singular sint64",
      "9 aFixed32 a_fixed32 singular fixed32",
      "10 aFixed64 a_fixed64 singular fixed64",
      "11 anSfixed32 an_sfixed32 singular sfixed32",
      "12 anSfixed64 an_sfixed64 singular sfixed64",
      "13 aBool a_bool singular bool",
      "14 aString a_string singular string",
      "15 someBytes some_bytes singular bytes",
    ]);
  });

  test("nests messages (recursive ones too) and takes imported ones from the include path", () => {
    const line = nestedMessage(order, "lines");
    expect(line.description).toBe("One line of an order.");
    expect(line.fields.map(shape)).toEqual([
      "1 sku sku singular string",
      "2 quantity quantity singular uint32",
      "3 price price singular message Money",
      "4 replaces replaces singular message Order_Line",
    ]);
    expect(nestedMessage(line, "replaces")).toBe(line);
    expect(nestedMessage(order, "linesByNumber")).toBe(line);
    const money = nestedMessage(line, "price");
    expect(money).toBe(nestedMessage(order, "voucher"));
    expect(money.description).toBe("An amount of money in a currency.");
    expect(money.fields.map(shape)).toEqual([
      "1 currencyCode currency_code singular string",
      "2 units units singular int64",
      "3 nanos nanos singular int32",
    ]);
  });

  test("turns enums, nested and imported, into frozen enum objects named as in the proto", () => {
    const status = fieldOf(order, "status").value;
    const priority = fieldOf(order, "priority").value;
    if (status.kind !== "enum" || priority.kind !== "enum") throw new Error("not enums");
    expect(status.enum.object).toEqual({ STATUS_UNSPECIFIED: 0, OPEN: 1, SHIPPED: 2 });
    expect(Object.isFrozen(status.enum.object)).toBe(true);
    expect(priority.enum.name).toBe("Priority");
    expect(priority.enum.values.map((v) => `${v.name}=${v.number}`)).toEqual([
      "PRIORITY_UNSPECIFIED=0",
      "LOW=1",
      "HIGH=2",
    ]);
    const again = fieldOf(order, "previousStatus").value;
    expect(again.kind === "enum" && again.enum.object).toBe(status.enum.object);
  });

  test("creates one class per proto message, shared by every service that uses it", () => {
    @ProtoService({
      file: new URL("billing.proto", PROTO),
      service: "gantry.test.billing.Billing",
      includeDirs: INCLUDE,
    })
    class Billing {
      async charge(money: Money): Promise<Money> {
        return money;
      }
    }
    const charge = describeService(Billing).methods[0];
    expect(charge.input.type).toBe(nestedMessage(nestedMessage(order, "lines"), "price").type);
    expect(charge.output).toBe(charge.input);
    expect(describeService(Audit).methods[0].input).toBe(order);
    expect(describeService(Audit).methods[0].input.type).toBe(order.type);
  });

  test("serves proto2 files: optional fields have presence", () => {
    @ProtoService({ file: LEGACY, service: "gantry.test.legacy.Proto2" })
    class Proto2 {
      async call(request: object): Promise<object> {
        return request;
      }
    }
    expect(describeService(Proto2).methods[0].input.fields.map(shape)).toEqual([
      "1 name name optional string",
      "2 count count optional int64",
      "3 values values repeated int32",
    ]);
  });

  test("binds a member by the rpc name its own @Method gives, and keeps what it says about idempotency", () => {
    @ProtoService({ file: RICH, service: "gantry.test.v1.OrderService", includeDirs: INCLUDE })
    class Renamed {
      @Method({ name: "GetOrder", idempotent: false, description: "Finds an order by id." })
      async find(request: GetOrderRequest): Promise<Partial<Order>> {
        return { id: request.id };
      }
      async listOrders() {}
      async importOrders() {}
      async syncOrders() {}
    }
    const find = describeService(Renamed).methods.find((m) => m.key === "find");
    expect(find).toMatchObject({ name: "GetOrder", idempotent: false, description: "Finds an order by id." });
  });
});

describe("a proto-first service in the pipeline", () => {
  test("reads JSON input by the proto3 JSON mapping, validates it and runs the method", async () => {
    await using t = await createTestApp({ services: [Orders, Audit] });
    const record = t.app.method(Audit, "record");
    const json = JSON.parse(`{
      "id": "o-1",
      "status": "OPEN",
      "counts": { "boxes": "12" },
      "lines_by_number": { "1": { "sku": "x-1", "quantity": 2, "price": { "currencyCode": "EUR", "units": "3" } } },
      "note": "gift",
      "cardToken": "tok_1",
      "createdAt": "2024-05-01T10:00:00Z",
      "priority": "HIGH",
      "scalars": { "anInt64": "-5", "aUint64": "18446744073709551615", "someBytes": "AQI=" },
      "unknownField": true
    }`);
    expect(await t.app.call(record, json)).toEqual({});
    const [order] = (await t.app.get(Audit)).recorded;
    expect(order).toMatchObject({
      id: "o-1",
      status: 1,
      counts: { boxes: 12n },
      note: "gift",
      cardToken: "tok_1",
      createdAt: new Date("2024-05-01T10:00:00Z"),
      priority: 2,
      tags: [],
      scalars: { anInt64: -5n, aUint64: 18446744073709551615n, someBytes: new Uint8Array([1, 2]) },
    });
    expect(order.linesByNumber[1]).toMatchObject({
      sku: "x-1",
      quantity: 2,
      price: { currencyCode: "EUR", units: 3n },
    });
    expect(order.previousStatus).toBeUndefined();
    expect(order.voucher).toBeUndefined();

    const bad = JSON.parse(`{ "status": "LOST", "counts": { "boxes": "many" }, "scalars": { "anInt32": 1.5 } }`);
    const error = await t.app.call(record, bad).then(
      () => undefined,
      (caught: unknown) => caught as GantryError,
    );
    expect(error).toBeInstanceOf(GantryError);
    expect(error?.status).toBe("INVALID_ARGUMENT");
    expect(error?.violations.map((v) => v.field)).toEqual(["scalars.anInt32", "status", 'counts["boxes"]']);
    expect((await t.app.get(Audit)).recorded).toHaveLength(1);
  });

  test("answers through a typed client, writing the output by its proto message", async () => {
    await using t = await createTestApp({ services: [Orders] });
    const reply = await t.client(Orders).getOrder({ id: "o-9" });
    expect(reply).toMatchObject({ id: "o-9", status: 1, counts: { total: 2n }, createdAt: new Date(0), tags: [] });
  });
});

describe("@ProtoService errors, thrown when the class is declared", () => {
  test("a file that cannot be read", () => {
    const error = thrown(() => {
      @ProtoService({ file: new URL("nope.proto", PROTO), service: "gantry.test.v1.OrderService" })
      class Missing {}
      return Missing;
    });
    expect(error.code).toBe("GANTRY_ERR_PROTO_FILE");
    expect(error.status).toBe("FAILED_PRECONDITION");
    expect(error.message).toMatch(/^@ProtoService on Missing: cannot load \S*nope\.proto: ENOENT/);
  });

  test("a file that does not parse, with the line", () => {
    const error = thrown(() => {
      @ProtoService({ file: new URL("broken.proto", PROTO), service: "gantry.test.broken.Service" })
      class Broken {}
      return Broken;
    });
    expect(error.code).toBe("GANTRY_ERR_PROTO_FILE");
    expect(error.message).toMatch(/^@ProtoService on Broken: cannot load \S*broken\.proto: illegal .*line 6/);
  });

  test("an import found nowhere, with where it was looked for", () => {
    const error = thrown(() => {
      @ProtoService({ file: new URL("missing-import.proto", PROTO), service: "gantry.test.missing.Lost" })
      class Lost {}
      return Lost;
    });
    expect(error.code).toBe("GANTRY_ERR_PROTO_FILE");
    expect(error.message).toMatch(/^@ProtoService on Lost: cannot load \S*missing-import\.proto: /);
    expect(error.message).toMatch(/missing-import\.proto imports "nowhere\/gone\.proto", found in none of \S*proto$/);
  });

  test("a service the file does not declare, listing those it does", () => {
    const error = thrown(() => {
      @ProtoService({ file: RICH, service: "gantry.test.v1.Orders", includeDirs: INCLUDE })
      class Unknown {}
      return Unknown;
    });
    expect(error.code).toBe("GANTRY_ERR_PROTO_NO_SERVICE");
    expect(error.message).toMatch(
      /^@ProtoService on Unknown: \S*rich\.proto declares no service gantry\.test\.v1\.Orders; it declares gantry\.test\.v1\.OrderService, gantry\.test\.v1\.AuditService$/,
    );
  });

  test("an rpc with no member (an arrow-function property is no member)", () => {
    const error = thrown(() => {
      @ProtoService({ file: RICH, service: "gantry.test.v1.OrderService", includeDirs: INCLUDE })
      class Partial {
        async getOrder() {}
        async listOrders() {}
        importOrders = async () => ({});
      }
      return Partial;
    });
    expect(error.code).toBe("GANTRY_ERR_PROTO_NO_HANDLER");
    expect(error.message).toBe(
      "gantry.test.v1.OrderService/ImportOrders has no handler: Partial has no member importOrders or ImportOrders (declare it as a method, not an arrow-function property)",
    );
  });

  test("a member that is not a function", () => {
    const error = thrown(() => {
      @ProtoService({ file: RICH, service: "gantry.test.v1.AuditService", includeDirs: INCLUDE })
      class Accessor {
        get record() {
          return async () => ({});
        }
      }
      return Accessor;
    });
    expect(error.code).toBe("GANTRY_ERR_PROTO_NOT_A_METHOD");
    expect(error.message).toBe(
      "gantry.test.v1.AuditService/Record has no handler: Accessor.record is an accessor, not a method",
    );
  });

  test.each([
    ["stream", { stream: "server" }, "declares stream server, but gantry.test.v1.AuditService/Record in", "has unary"],
    [
      "input",
      { input: Empty },
      "declares input Empty, but gantry.test.v1.AuditService/Record in",
      "has gantry.test.v1.Order",
    ],
    [
      "output",
      { output: () => Orders },
      "declares output Orders, but gantry.test.v1.AuditService/Record in",
      "has google.protobuf.Empty",
    ],
  ] as const)("a member whose @Method declares another %s than the proto", (_aspect, options, said, expected) => {
    const error = thrown(() => {
      @ProtoService({ file: RICH, service: "gantry.test.v1.AuditService", includeDirs: INCLUDE })
      class Mistyped {
        @Method(options)
        async record() {}
      }
      return Mistyped;
    });
    expect(error.code).toBe("GANTRY_ERR_PROTO_MISTYPED");
    expect(error.message).toMatch(
      new RegExp(`^Mistyped\\.record ${literal(said)} \\S*rich\\.proto ${literal(expected)}$`),
    );
  });

  test("a member whose @Method agrees with the proto keeps it; the proto's message classes are used", () => {
    @Message({ name: "Order" })
    class CodeFirstOrder {}
    @ProtoService({ file: RICH, service: "gantry.test.v1.AuditService", includeDirs: INCLUDE })
    class Agreeing {
      @Method({ stream: "unary", input: CodeFirstOrder, output: Empty, name: "Record", timeoutMs: 50 })
      async record() {}
    }
    const [record] = describeService(Agreeing).methods;
    expect(record).toMatchObject({ name: "Record", stream: "unary", timeoutMs: 50 });
    expect(record.input).toBe(describeService(Audit).methods[0].input);
  });

  test("a decorated member with no rpc in the proto", () => {
    const error = thrown(() => {
      @ProtoService({ file: RICH, service: "gantry.test.v1.AuditService", includeDirs: INCLUDE })
      class Extra {
        async record() {}
        @Method()
        async purge() {}
      }
      return Extra;
    });
    expect(error.code).toBe("GANTRY_ERR_PROTO_NO_RPC");
    expect(error.message).toMatch(
      /^Extra\.purge is decorated as a method, but gantry\.test\.v1\.AuditService in \S*rich\.proto has no rpc Purge; its rpcs: Record$/,
    );
  });

  test.each([
    ["Required", "gantry.test.legacy.WithRequired.name", "proto2 required fields", "; make it optional"],
    ["Defaults", "gantry.test.legacy.WithDefault.retries", "proto2 default values", "; drop [default = ...]"],
    ["Groups", "gantry.test.legacy.WithGroup.result", "groups (delimited encoding)", "; use a nested message"],
    ["Extensions", "gantry.test.legacy.Extensible", "extension ranges", ""],
    ["ClosedEnums", "gantry.test.legacy.Closed", "an enum without a value 0", "; proto3 and Gantry use 0"],
  ])("a proto2 feature: service %s", (name, element, feature, hint) => {
    const error = thrown(() => {
      @ProtoService({ file: LEGACY, service: `gantry.test.legacy.${name}` })
      class Legacy {
        async call() {}
      }
      return Legacy;
    });
    expect(error.code).toBe("GANTRY_ERR_PROTO_UNSUPPORTED");
    expect(error.message).toMatch(
      new RegExp(
        `^@ProtoService on Legacy: ${literal(element)} in \\S*legacy\\.proto uses ${literal(feature)}, which Gantry does not serve${literal(hint)}`,
      ),
    );
  });

  test("well-known types other than Timestamp and Empty", () => {
    const field = thrown(() => {
      @ProtoService({ file: new URL("well-known.proto", PROTO), service: "gantry.test.wkt.Timer" })
      class Timer {
        async wait() {}
      }
      return Timer;
    });
    expect(field.code).toBe("GANTRY_ERR_PROTO_UNSUPPORTED");
    expect(field.message).toMatch(
      /^@ProtoService on Timer: gantry\.test\.wkt\.Delay\.wait in \S*well-known\.proto uses google\.protobuf\.Duration, which Gantry does not serve \(of the well-known types, google\.protobuf\.Timestamp and Empty are\)$/,
    );
    const output = thrown(() => {
      @ProtoService({ file: new URL("well-known.proto", PROTO), service: "gantry.test.wkt.Clock" })
      class Clock {
        async now() {}
      }
      return Clock;
    });
    expect(output.message).toMatch(
      /^@ProtoService on Clock: gantry\.test\.wkt\.Clock\/Now output in \S*well-known\.proto uses google\.protobuf\.Timestamp as an rpc input or output, which Gantry does not serve; wrap it in a message of your own/,
    );
  });

  test("a service outside any package", () => {
    const error = thrown(() => {
      @ProtoService({ file: new URL("no-package.proto", PROTO), service: "Pinger" })
      class Pinger {
        async ping() {}
      }
      return Pinger;
    });
    expect(error.code).toBe("GANTRY_ERR_PROTO_UNSUPPORTED");
    expect(error.message).toMatch(
      /^@ProtoService on Pinger: Pinger in \S*no-package\.proto uses a service outside any package, which Gantry does not serve; declare a package in the file$/,
    );
  });
});

function literal(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
}
