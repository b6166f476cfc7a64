import { describe, expect, test } from "vitest";
import {
  CallContext,
  Delete,
  describeMessage,
  describeService,
  Empty,
  Field,
  Get,
  Message,
  Method,
  Post,
  Put,
  routeKey,
  Service,
} from "../src/index.js";
import { createTestApp } from "../src/testing/index.js";
import { rejected, thrown } from "./helpers.js";

@Message()
class HelloRequest {
  @Field(1, { minLength: 1 }) name!: string;
  @Field(2, { type: "int32" }) times!: number;
}

@Message()
class HelloReply {
  @Field(1) message!: string;
}

describe("message descriptors", () => {
  test("describe fields with numbers, proto names and inferred types, sorted by number", () => {
    @Message({ name: "Greeting", description: "a greeting" })
    class Greeting {
      @Field(3) sentAt?: Date;
      @Field(1, { description: "who" }) toWhom!: string;
      @Field(2, { deprecated: true }) loud!: boolean;
    }
    const descriptor = describeMessage(Greeting);
    expect(descriptor.name).toBe("Greeting");
    expect(descriptor.description).toBe("a greeting");
    expect(descriptor.fields.map((f) => [f.number, f.key, f.protoName, f.value.kind, f.cardinality])).toEqual([
      [1, "toWhom", "to_whom", "scalar", "singular"],
      [2, "loud", "loud", "scalar", "singular"],
      [3, "sentAt", "sent_at", "timestamp", "singular"],
    ]);
    expect(descriptor.fields[0].description).toBe("who");
    expect(descriptor.fields[1].deprecated).toBe(true);
    expect(descriptor.fieldByName.get("to_whom")).toBe(descriptor.fields[0]);
    expect(describeMessage(Greeting)).toBe(descriptor);
  });

  test("a subclass inherits the fields of its base", () => {
    @Message()
    class Base {
      @Field(1) id!: string;
    }
    @Message()
    class Derived extends Base {
      @Field(2) extra!: string;
    }
    expect(describeMessage(Derived).fields.map((f) => f.key)).toEqual(["id", "extra"]);
  });

  test("GANTRY_ERR_DUPLICATE_FIELD names the message, the number and both fields", () => {
    @Message()
    class Twice {
      @Field(1) first!: string;
      @Field(1) second!: string;
    }
    const error = thrown(() => describeMessage(Twice));
    expect(error.code).toBe("GANTRY_ERR_DUPLICATE_FIELD");
    expect(error.status).toBe("FAILED_PRECONDITION");
    expect(error.message).toBe("Twice: @Field 1 is used twice, by first and second");
  });

  test.each([0, -1, 1.5, 19_000, 19_999, 536_870_912])("GANTRY_ERR_BAD_FIELD for field number %d", (number) => {
    @Message()
    class Numbered {
      @Field(number) value!: string;
    }
    const error = thrown(() => describeMessage(Numbered));
    expect(error.code).toBe("GANTRY_ERR_BAD_FIELD");
    expect(error.message).toBe(
      `Numbered.value: field number ${number} is not allowed (1 to 536870911, not 19000 to 19999)`,
    );
  });

  test("field numbers next to the reserved range are fine", () => {
    @Message()
    class Edges {
      @Field(18_999) a!: string;
      @Field(20_000) b!: string;
      @Field(536_870_911) c!: string;
    }
    expect(describeMessage(Edges).fields.map((f) => f.number)).toEqual([18_999, 20_000, 536_870_911]);
  });

  test("GANTRY_ERR_BAD_FIELD for an array without its element type", () => {
    @Message()
    class Listy {
      @Field(1) tags!: string[];
    }
    const error = thrown(() => describeMessage(Listy));
    expect(error.code).toBe("GANTRY_ERR_BAD_FIELD");
    expect(error.message).toBe(
      'Listy.tags: an array field needs its element type: @Field(n, { type: "string", repeated: true })',
    );
  });

  test("GANTRY_ERR_BAD_FIELD for a declared type the TypeScript type contradicts", () => {
    @Message()
    class Contradiction {
      @Field(1, { type: "int64" }) count!: number;
    }
    const error = thrown(() => describeMessage(Contradiction));
    expect(error.code).toBe("GANTRY_ERR_BAD_FIELD");
    expect(error.message).toBe(
      "Contradiction.count: declared int64, which is BigInt in TypeScript, but the property is Number",
    );

    @Message()
    class NotAString {
      @Field(1, { type: "string" }) flag!: boolean;
    }
    expect(thrown(() => describeMessage(NotAString)).message).toBe(
      "NotAString.flag: declared string, which is String in TypeScript, but the property is Boolean",
    );
  });

  test("GANTRY_ERR_BAD_FIELD for a type that cannot be inferred", () => {
    class Plain {}
    @Message()
    class Uninferable {
      @Field(1) plain!: Plain;
    }
    const error = thrown(() => describeMessage(Uninferable));
    expect(error.code).toBe("GANTRY_ERR_BAD_FIELD");
    expect(error.message).toMatch(/^Uninferable\.plain: its type cannot be inferred from TypeScript \(Plain\)/);
  });

  test("GANTRY_ERR_BAD_FIELD for a message type that is not a @Message class", () => {
    class Plain {}
    @Message()
    class Holder {
      @Field(1, { type: Plain }) plain!: Plain;
    }
    expect(thrown(() => describeMessage(Holder))).toMatchObject({
      code: "GANTRY_ERR_BAD_FIELD",
      message: "Holder.plain: Plain is not a @Message class",
    });
  });

  test("GANTRY_ERR_BAD_FIELD for an enum without a zero value", () => {
    enum Level {
      LOW = 1,
      HIGH = 2,
    }
    @Message()
    class Leveled {
      @Field(1, { enum: Level }) level!: Level;
    }
    const error = thrown(() => describeMessage(Leveled));
    expect(error.code).toBe("GANTRY_ERR_BAD_FIELD");
    expect(error.message).toBe("Leveled.level: the enum needs a value 0 (proto3 uses it as the default)");
  });

  test("GANTRY_ERR_BAD_FIELD for a string enum", () => {
    enum Mood {
      HAPPY = "happy",
    }
    @Message()
    class Moody {
      @Field(1, { enum: Mood as unknown as Record<string, number> }) mood!: string;
    }
    expect(thrown(() => describeMessage(Moody)).message).toBe(
      "Moody.mood: the enum has no numeric values (string enums cannot be sent as protobuf enums)",
    );
  });

  test("GANTRY_ERR_BAD_FIELD for rules on a field of another type", () => {
    @Message()
    class LengthOfNumber {
      @Field(1, { type: "int32", minLength: 1 }) count!: number;
    }
    expect(thrown(() => describeMessage(LengthOfNumber))).toMatchObject({
      code: "GANTRY_ERR_BAD_FIELD",
      message: "LengthOfNumber.count: minLength, maxLength and pattern apply to string fields",
    });

    @Message()
    class BoundsOfString {
      @Field(1, { max: 3 }) name!: string;
    }
    expect(thrown(() => describeMessage(BoundsOfString)).message).toBe(
      "BoundsOfString.name: min and max apply to numeric fields",
    );

    @Message()
    class ItemsOfScalar {
      @Field(1, { maxItems: 3 }) name!: string;
    }
    expect(thrown(() => describeMessage(ItemsOfScalar)).message).toBe(
      "ItemsOfScalar.name: minItems and maxItems apply to repeated and map fields",
    );
  });

  test("GANTRY_ERR_BAD_FIELD for impossible combinations", () => {
    @Message()
    class OptionalList {
      @Field(1, { type: "string", repeated: true, optional: true }) tags!: string[];
    }
    expect(thrown(() => describeMessage(OptionalList)).message).toBe(
      "OptionalList.tags: a repeated field cannot be optional",
    );

    @Message()
    class FloatKeys {
      @Field(1, { map: { key: "double" as "int32", value: "string" } }) byRatio!: Record<string, string>;
    }
    expect(thrown(() => describeMessage(FloatKeys)).message).toBe(
      "FloatKeys.byRatio: map key type double is not allowed (integers, bool or string)",
    );

    @Message()
    class OptionalMessage {
      @Field(1, { type: HelloReply, optional: true }) reply?: HelloReply;
    }
    expect(thrown(() => describeMessage(OptionalMessage)).message).toBe(
      "OptionalMessage.reply: message and timestamp fields always have presence; drop optional",
    );
  });

  test("GANTRY_ERR_NOT_A_MESSAGE names the class", () => {
    class Plain {}
    const error = thrown(() => describeMessage(Plain));
    expect(error.code).toBe("GANTRY_ERR_NOT_A_MESSAGE");
    expect(error.message).toBe("Plain: Plain is used as a message but has no @Message decorator");
  });

  test("a failed message is not cached: it fails again the same way", () => {
    @Message()
    class Broken {
      @Field(0) a!: string;
    }
    expect(thrown(() => describeMessage(Broken)).code).toBe("GANTRY_ERR_BAD_FIELD");
    expect(thrown(() => describeMessage(Broken)).code).toBe("GANTRY_ERR_BAD_FIELD");
  });
});

describe("service descriptors", () => {
  @Service({ package: "hello", version: "v1", description: "says hello" })
  class HelloService {
    @Get("/hello/:name")
    @Method({ output: HelloReply, idempotent: true, timeoutMs: 500, description: "greets" })
    async sayHello(req: HelloRequest): Promise<HelloReply> {
      return { message: `hello ${req.name}` };
    }

    @Method()
    ping(): HelloReply {
      return { message: "pong" };
    }

    @Method()
    whoAmI(ctx: CallContext): HelloReply {
      return { message: ctx.requestId };
    }

    @Method({ name: "Shout" })
    loud(req: HelloRequest): HelloReply {
      return { message: req.name.toUpperCase() };
    }

    @Method()
    nothing(): void {}

    notAMethod(): string {
      return "not served";
    }
  }

  test("name the service, its package and API version", () => {
    const service = describeService(HelloService);
    expect(service.name).toBe("HelloService");
    expect(service.package).toBe("hello.v1");
    expect(service.fullName).toBe("hello.v1.HelloService");
    expect(service.apiVersion).toBe("v1");
    expect(service.description).toBe("says hello");
    expect(service.methods.map((m) => m.key)).toEqual(["sayHello", "ping", "whoAmI", "loud", "nothing"]);
  });

  test("describe a method with its gRPC path, messages and options", () => {
    const method = describeService(HelloService).methods[0];
    expect(method.name).toBe("SayHello");
    expect(method.path).toBe("/hello.v1.HelloService/SayHello");
    expect(method.input).toBe(describeMessage(HelloRequest));
    expect(method.output).toBe(describeMessage(HelloReply));
    expect(method.stream).toBe("unary");
    expect(method.idempotent).toBe(true);
    expect(method.timeoutMs).toBe(500);
    expect(method.description).toBe("greets");
  });

  test("list the declared routes, then the uniform route", () => {
    const method = describeService(HelloService).methods[0];
    expect(method.routes).toEqual([
      {
        method: "GET",
        path: "/hello/:name",
        params: ["name"],
        body: undefined,
        headers: {},
        status: 200,
        uniform: false,
      },
      {
        method: "POST",
        path: "/hello.v1.HelloService/SayHello",
        params: [],
        body: "*",
        headers: {},
        status: 200,
        uniform: true,
      },
    ]);
    expect(routeKey(method.routes[0])).toBe("GET /hello/:");
  });

  test("a method with no parameters, or only the call context, takes Empty", () => {
    const [, ping, whoAmI, loud, nothing] = describeService(HelloService).methods;
    expect(ping.input).toBe(describeMessage(Empty));
    expect(ping.input.name).toBe("Empty");
    expect(ping.output).toBe(describeMessage(HelloReply));
    expect(whoAmI.input).toBe(describeMessage(Empty));
    expect(loud.name).toBe("Shout");
    expect(loud.path).toBe("/hello.v1.HelloService/Shout");
    expect(loud.input).toBe(describeMessage(HelloRequest));
    expect(nothing.output).toBe(describeMessage(Empty));
  });

  test("a package that already ends in a version, and a service name of its own", () => {
    @Service({ package: "shop.orders.v2beta1", name: "Orders" })
    class OrderService {
      @Method()
      list(): HelloReply {
        return { message: "" };
      }
    }
    const service = describeService(OrderService);
    expect(service.fullName).toBe("shop.orders.v2beta1.Orders");
    expect(service.apiVersion).toBe("v2beta1");
    expect(service.methods[0].path).toBe("/shop.orders.v2beta1.Orders/List");

    @Service({ package: "tools" })
    class Unversioned {}
    expect(describeService(Unversioned).apiVersion).toBeUndefined();
  });

  test("route options: body field, headers, status, trailing slash", () => {
    @Message()
    class UpdateRequest {
      @Field(1) id!: string;
      @Field(2) tenant!: string;
      @Field(3) reply?: HelloReply;
    }
    @Service({ package: "things", version: "v1" })
    class ThingService {
      @Put("/things/:id/", { body: "reply", headers: { tenant: "X-Tenant-ID" }, status: 202 })
      @Method()
      update(req: UpdateRequest): HelloReply {
        return { message: req.id };
      }
    }
    const [route] = describeService(ThingService).methods[0].routes;
    expect(route).toEqual({
      method: "PUT",
      path: "/things/:id",
      params: ["id"],
      body: "reply",
      headers: { tenant: "x-tenant-id" },
      status: 202,
      uniform: false,
    });
  });

  test("GANTRY_ERR_NOT_A_SERVICE names the class, also from createApp().start()", async () => {
    class Plain {}
    expect(thrown(() => describeService(Plain))).toMatchObject({
      code: "GANTRY_ERR_NOT_A_SERVICE",
      message: "Plain is listed in services but has no @Service decorator",
    });
    const error = await rejected(createTestApp({ services: [Plain] }));
    expect(error.code).toBe("GANTRY_ERR_NOT_A_SERVICE");
  });

  test("GANTRY_ERR_NO_HANDLER for @Method on a member that is not a function", () => {
    @Service({ package: "bad" })
    class PropertyService {
      @(Method() as unknown as PropertyDecorator) handler!: string;
    }
    expect(thrown(() => describeService(PropertyService))).toMatchObject({
      code: "GANTRY_ERR_NO_HANDLER",
      status: "FAILED_PRECONDITION",
      message: "PropertyService.handler: decorated as a method but has no function to handle it",
    });
  });

  test("GANTRY_ERR_METHOD_TYPE for an async method without its output", () => {
    @Service({ package: "bad" })
    class AsyncService {
      @Method()
      async sayHello(req: HelloRequest): Promise<HelloReply> {
        return { message: req.name };
      }
    }
    expect(thrown(() => describeService(AsyncService))).toMatchObject({
      code: "GANTRY_ERR_METHOD_TYPE",
      message:
        "AsyncService.sayHello: it is async, so TypeScript does not record what it returns; name the output: @Method({ output: X })",
    });
  });

  test("GANTRY_ERR_METHOD_TYPE for an input that is not a message", () => {
    @Service({ package: "bad" })
    class StringService {
      @Method({ output: HelloReply })
      async greet(name: string): Promise<HelloReply> {
        return { message: name };
      }
    }
    expect(thrown(() => describeService(StringService))).toMatchObject({
      code: "GANTRY_ERR_METHOD_TYPE",
      message:
        "StringService.greet: its first parameter is String, not a @Message class; name the input: @Method({ input: X })",
    });

    class Plain {}
    @Service({ package: "bad" })
    class ExplicitService {
      @Method({ input: Plain, output: HelloReply })
      async greet(): Promise<HelloReply> {
        return { message: "" };
      }
    }
    expect(thrown(() => describeService(ExplicitService)).message).toBe(
      "ExplicitService.greet: its input Plain is not a @Message class",
    );
  });

  test("GANTRY_ERR_METHOD_TYPE for bad method options and service names", () => {
    @Service({ package: "bad" })
    class TimeoutService {
      @Method({ timeoutMs: 0 })
      run(): HelloReply {
        return { message: "" };
      }
    }
    expect(thrown(() => describeService(TimeoutService)).message).toBe(
      "TimeoutService.run: timeoutMs must be a positive number, not 0",
    );

    @Service({ package: "bad pkg" })
    class BadPackage {}
    expect(thrown(() => describeService(BadPackage))).toMatchObject({
      code: "GANTRY_ERR_METHOD_TYPE",
      message: 'BadPackage.@Service: package "bad pkg" is not a valid proto package such as hello.v1',
    });
  });

  test("GANTRY_ERR_BAD_ROUTE for a :param that names no field", () => {
    @Service({ package: "bad" })
    class ParamService {
      @Get("/users/:id")
      @Method()
      find(req: HelloRequest): HelloReply {
        return { message: req.name };
      }
    }
    expect(thrown(() => describeService(ParamService))).toMatchObject({
      code: "GANTRY_ERR_BAD_ROUTE",
      message: "ParamService.find: route GET /users/:id: :id names no field of HelloRequest",
    });
  });

  test("GANTRY_ERR_BAD_ROUTE for a body on GET and DELETE", () => {
    @Service({ package: "bad" })
    class BodyService {
      @Get("/hello", { body: "*" })
      @Method()
      find(req: HelloRequest): HelloReply {
        return { message: req.name };
      }
    }
    expect(thrown(() => describeService(BodyService))).toMatchObject({
      code: "GANTRY_ERR_BAD_ROUTE",
      message: "BodyService.find: route GET /hello: GET takes no body",
    });

    @Service({ package: "bad" })
    class DeleteService {
      @Delete("/hello/:name", { body: "times" })
      @Method()
      remove(req: HelloRequest): HelloReply {
        return { message: req.name };
      }
    }
    expect(thrown(() => describeService(DeleteService)).message).toBe(
      "DeleteService.remove: route DELETE /hello/:name: DELETE takes no body",
    );
  });

  test("GANTRY_ERR_BAD_ROUTE for other route mistakes", () => {
    const routeError = (path: string, options = {}) => {
      @Service({ package: "bad" })
      class RouteService {
        @Post(path, options)
        @Method()
        run(req: HelloRequest): HelloReply {
          return { message: req.name };
        }
      }
      return thrown(() => describeService(RouteService)).message;
    };
    expect(routeError("hello")).toBe("RouteService.run: route POST hello: the path must start with /");
    expect(routeError("/a?b")).toBe("RouteService.run: route POST /a?b: the path cannot hold ?, # or spaces");
    expect(routeError("/a:name")).toBe(
      'RouteService.run: route POST /a:name: segment "a:name" mixes text and a parameter',
    );
    expect(routeError("/:name/:name")).toBe("RouteService.run: route POST /:name/:name: :name appears twice");
    expect(routeError("/x", { body: "nope" })).toBe(
      'RouteService.run: route POST /x: body "nope" names no field of HelloRequest',
    );
    expect(routeError("/x", { headers: { nope: "x-nope" } })).toBe(
      'RouteService.run: route POST /x: header x-nope binds "nope", which is no field of HelloRequest',
    );
    expect(routeError("/x", { status: 302 })).toBe("RouteService.run: route POST /x: status 302 is not a 2xx status");
  });

  test("GANTRY_ERR_DUPLICATE_METHOD names both members", () => {
    @Service({ package: "bad" })
    class TwiceService {
      @Method({ name: "Run" })
      first(): HelloReply {
        return { message: "" };
      }
      @Method({ name: "Run" })
      second(): HelloReply {
        return { message: "" };
      }
    }
    expect(thrown(() => describeService(TwiceService))).toMatchObject({
      code: "GANTRY_ERR_DUPLICATE_METHOD",
      message: "TwiceService: first and second both declare the method Run",
    });
  });

  test("GANTRY_ERR_DUPLICATE_ROUTE across two services, at start", async () => {
    @Service({ package: "users", version: "v1" })
    class Users {
      @Get("/items/:name")
      @Method()
      get(req: HelloRequest): HelloReply {
        return { message: req.name };
      }
    }
    @Service({ package: "items", version: "v1" })
    class Items {
      @Get("/items/:times")
      @Method()
      find(req: HelloRequest): HelloReply {
        return { message: req.name };
      }
    }
    const error = await rejected(createTestApp({ services: [Users, Items] }));
    expect(error.code).toBe("GANTRY_ERR_DUPLICATE_ROUTE");
    expect(error.message).toBe("GET /items/:times is declared by both Users.get and Items.find");
  });

  test("GANTRY_ERR_DUPLICATE_SERVICE for two classes with one full name", async () => {
    @Service({ package: "dup", version: "v1", name: "Same" })
    class First {}
    @Service({ package: "dup", version: "v1", name: "Same" })
    class Second {}
    const error = await rejected(createTestApp({ services: [First, Second] }));
    expect(error.code).toBe("GANTRY_ERR_DUPLICATE_SERVICE");
    expect(error.message).toBe("First and Second both declare the service dup.v1.Same");
  });

  test("the services of a started app are described once and found by class or name", async () => {
    await using t = await createTestApp({ services: [HelloService] });
    expect(t.app.services.map((s) => s.fullName)).toEqual(["hello.v1.HelloService"]);
    expect(t.app.method(HelloService, "sayHello")).toBe(t.app.method("hello.v1.HelloService", "SayHello"));
    expect(() => t.app.method(HelloService, "notAMethod")).toThrow(
      expect.objectContaining({ code: "GANTRY_ERR_UNKNOWN_METHOD", message: "unknown method HelloService.notAMethod" }),
    );
  });
});
