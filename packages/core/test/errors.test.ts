import { describe, expect, test } from "vitest";
import {
  coreErrors,
  defineErrors,
  formatTimeout,
  GantryError,
  HTTP_STATUS_BY_STATUS,
  isGantryError,
  isStatusName,
  parseTimeout,
  Status,
  type StatusName,
  statusCode,
  statusFromCode,
  statusFromHttp,
  TIMEOUT_HEADER,
  toGantryError,
} from "../src/index.js";

const STATUSES = Object.keys(Status) as StatusName[];

/** The mapping of google.rpc.Code to HTTP, written out here so that a change to the table fails a test. */
const HTTP_BY_STATUS: [StatusName, number, number][] = [
  ["CANCELLED", 1, 499],
  ["UNKNOWN", 2, 500],
  ["INVALID_ARGUMENT", 3, 400],
  ["DEADLINE_EXCEEDED", 4, 504],
  ["NOT_FOUND", 5, 404],
  ["ALREADY_EXISTS", 6, 409],
  ["PERMISSION_DENIED", 7, 403],
  ["RESOURCE_EXHAUSTED", 8, 429],
  ["FAILED_PRECONDITION", 9, 400],
  ["ABORTED", 10, 409],
  ["OUT_OF_RANGE", 11, 400],
  ["UNIMPLEMENTED", 12, 501],
  ["INTERNAL", 13, 500],
  ["UNAVAILABLE", 14, 503],
  ["DATA_LOSS", 15, 500],
  ["UNAUTHENTICATED", 16, 401],
];

describe("GantryError", () => {
  test("takes its defaults from the status", () => {
    const error = new GantryError("NOT_FOUND", "no user 42");
    expect(error).toBeInstanceOf(Error);
    expect(error.name).toBe("GantryError");
    expect(error.message).toBe("no user 42");
    expect(error.status).toBe("NOT_FOUND");
    expect(error.code).toBe("NOT_FOUND");
    expect(error.httpStatus).toBe(404);
    expect(error.retryable).toBe(false);
    expect(error.violations).toEqual([]);
    expect(error.details).toEqual({});
    expect(error.cause).toBeUndefined();
    expect(Object.hasOwn(error, "cause")).toBe(false);
    expect(error.stack).toContain("no user 42");
  });

  test("keeps the options it is given", () => {
    const cause = new Error("db down");
    const error = new GantryError("UNAVAILABLE", "try later", {
      code: "DB_DOWN",
      httpStatus: 502,
      retryable: false,
      violations: [{ field: "a", description: "b" }],
      details: { shard: 3 },
      cause,
    });
    expect(error).toMatchObject({
      status: "UNAVAILABLE",
      code: "DB_DOWN",
      httpStatus: 502,
      retryable: false,
      violations: [{ field: "a", description: "b" }],
      details: { shard: 3 },
    });
    expect(error.cause).toBe(cause);
  });

  test.each(HTTP_BY_STATUS)("%s (gRPC %i) maps to HTTP %i", (status, code, http) => {
    expect(HTTP_STATUS_BY_STATUS[status]).toBe(http);
    expect(new GantryError(status, "x").httpStatus).toBe(http);
    expect(statusCode(status)).toBe(code);
    expect(statusFromCode(code)).toBe(status);
  });

  test("the table covers exactly the 16 canonical statuses", () => {
    expect(STATUSES).toEqual(HTTP_BY_STATUS.map(([status]) => status));
    expect(Object.keys(HTTP_STATUS_BY_STATUS).sort()).toEqual([...STATUSES].sort());
  });

  test("is retryable by default for UNAVAILABLE only", () => {
    const retryable = STATUSES.filter((status) => new GantryError(status, "x").retryable);
    expect(retryable).toEqual(["UNAVAILABLE"]);
  });

  test("rejects a status that is not canonical with a TypeError", () => {
    expect(() => new GantryError("OK" as StatusName, "x")).toThrow(TypeError);
    expect(() => new GantryError("NOT_FOUND_ISH" as StatusName, "x")).toThrow(
      "GantryError: NOT_FOUND_ISH is not a canonical status",
    );
    expect(() => new GantryError("toString" as StatusName, "x")).toThrow(TypeError);
  });

  test("instanceof holds for an error branded by another copy of @gantry/core", () => {
    // What a duplicate install produces: another class, the same global brand.
    class OtherCopyError extends Error {
      readonly status = "NOT_FOUND";
      readonly code = "USER_NOT_FOUND";
    }
    const foreign = new OtherCopyError("no user");
    Object.defineProperty(foreign, Symbol.for("gantry.error"), { value: true });
    expect(foreign instanceof GantryError).toBe(true);
    expect(isGantryError(foreign)).toBe(true);
    expect(toGantryError(foreign)).toBe(foreign);

    const branded = { [Symbol.for("gantry.error")]: true, status: "INTERNAL" };
    expect(branded instanceof GantryError).toBe(true);
  });

  test("instanceof is false for anything without the brand", () => {
    const lookalike = Object.assign(new Error("x"), { status: "NOT_FOUND", code: "NOT_FOUND" });
    for (const value of [lookalike, { [Symbol.for("gantry.error")]: "yes" }, {}, null, undefined, "GantryError", 1]) {
      expect(value instanceof GantryError).toBe(false);
      expect(isGantryError(value)).toBe(false);
    }
    // The brand is not enumerable and not copied by a spread.
    const copy = { ...new GantryError("INTERNAL", "x") };
    expect(copy instanceof GantryError).toBe(false);
  });

  test("subclasses keep the ordinary instanceof check", () => {
    class UserNotFound extends GantryError {
      constructor(id: number) {
        super("NOT_FOUND", `no user ${id}`, { code: "USER_NOT_FOUND" });
      }
    }
    class Other extends GantryError {}
    const error = new UserNotFound(7);
    expect(error instanceof UserNotFound).toBe(true);
    expect(error instanceof GantryError).toBe(true);
    expect(error instanceof Error).toBe(true);
    expect(error instanceof Other).toBe(false);
    expect(new GantryError("NOT_FOUND", "x") instanceof UserNotFound).toBe(false);
    expect({ [Symbol.for("gantry.error")]: true } instanceof UserNotFound).toBe(false);
    expect(error).toMatchObject({ status: "NOT_FOUND", code: "USER_NOT_FOUND", message: "no user 7" });
  });
});

describe("defineErrors", () => {
  const errors = defineErrors({
    USER_NOT_FOUND: { status: "NOT_FOUND", message: "no user {id} in {tenant}" },
    TOO_BIG: { status: "RESOURCE_EXHAUSTED", httpStatus: 413, message: "body over {limit} bytes" },
    BUSY: { status: "RESOURCE_EXHAUSTED", retryable: true, message: "busy" },
  });

  test("fills the message template from the parameters", () => {
    const error = errors.create("USER_NOT_FOUND", { id: 42n, tenant: "acme" });
    expect(error).toBeInstanceOf(GantryError);
    expect(error.message).toBe("no user 42 in acme");
    expect(error).toMatchObject({ status: "NOT_FOUND", code: "USER_NOT_FOUND", httpStatus: 404, retryable: false });
  });

  test("leaves a placeholder without a parameter as it is", () => {
    expect(errors.create("USER_NOT_FOUND", { id: false }).message).toBe("no user false in {tenant}");
    expect(errors.create("USER_NOT_FOUND").message).toBe("no user {id} in {tenant}");
  });

  test("applies the row's HTTP status and retryability", () => {
    expect(errors.create("TOO_BIG", { limit: 1024 })).toMatchObject({
      message: "body over 1024 bytes",
      httpStatus: 413,
      retryable: false,
    });
    expect(errors.create("BUSY")).toMatchObject({ httpStatus: 429, retryable: true });
  });

  test("passes violations, details and cause through", () => {
    const cause = new Error("root");
    const error = errors.create(
      "USER_NOT_FOUND",
      { id: 1, tenant: "t" },
      { violations: [{ field: "id", description: "unknown" }], details: { hint: "x" }, cause },
    );
    expect(error.violations).toEqual([{ field: "id", description: "unknown" }]);
    expect(error.details).toEqual({ hint: "x" });
    expect(error.cause).toBe(cause);
  });

  test("throws a TypeError for a code it does not define", () => {
    expect(() => errors.create("NOPE" as "BUSY")).toThrow(new TypeError("unknown error code NOPE"));
  });

  test("core's own table gives the documented statuses to shedding errors", () => {
    expect(coreErrors.create("GANTRY_ERR_OVERLOADED", { limit: 2 })).toMatchObject({
      status: "RESOURCE_EXHAUSTED",
      code: "GANTRY_ERR_OVERLOADED",
      httpStatus: 503,
      retryable: true,
      message: "server is at its limit of 2 concurrent calls",
    });
    expect(coreErrors.create("GANTRY_ERR_SHUTTING_DOWN")).toMatchObject({
      status: "UNAVAILABLE",
      httpStatus: 503,
      retryable: true,
    });
  });
});

describe("toGantryError", () => {
  test("returns a GantryError as it is", () => {
    const error = new GantryError("ABORTED", "x");
    expect(toGantryError(error)).toBe(error);
  });

  test.each([new Error("secret detail"), "a string", undefined, { message: "object" }])(
    "turns %s into INTERNAL without its message, keeping it as cause",
    (thrown) => {
      const error = toGantryError(thrown);
      expect(error).toMatchObject({ status: "INTERNAL", code: "GANTRY_ERR_INTERNAL", message: "internal error" });
      expect(error.cause).toBe(thrown);
    },
  );
});

describe("status helpers", () => {
  test.each([
    [400, "INVALID_ARGUMENT"],
    [401, "UNAUTHENTICATED"],
    [403, "PERMISSION_DENIED"],
    [404, "NOT_FOUND"],
    [409, "ABORTED"],
    [413, "RESOURCE_EXHAUSTED"],
    [429, "RESOURCE_EXHAUSTED"],
    [499, "CANCELLED"],
    [501, "UNIMPLEMENTED"],
    [502, "UNAVAILABLE"],
    [503, "UNAVAILABLE"],
    [504, "DEADLINE_EXCEEDED"],
    [405, "FAILED_PRECONDITION"],
    [418, "FAILED_PRECONDITION"],
    [500, "INTERNAL"],
    [505, "INTERNAL"],
    [302, "UNKNOWN"],
    [200, "UNKNOWN"],
  ] as const)("statusFromHttp(%i) is %s", (http, status) => {
    expect(statusFromHttp(http)).toBe(status);
  });

  test.each([0, 17, -1, 3.5])("statusFromCode(%d) is UNKNOWN", (code) => {
    expect(statusFromCode(code)).toBe("UNKNOWN");
  });

  test("isStatusName accepts only the canonical names", () => {
    expect(isStatusName("NOT_FOUND")).toBe(true);
    for (const value of ["OK", "not_found", "toString", "constructor", 5, undefined]) {
      expect(isStatusName(value)).toBe(false);
    }
  });
});

describe("grpc-timeout values", () => {
  test("the header is grpc-timeout", () => {
    expect(TIMEOUT_HEADER).toBe("grpc-timeout");
  });

  test.each([
    ["1H", 3_600_000],
    ["2M", 120_000],
    ["5S", 5000],
    ["100m", 100],
    ["1500u", 1.5],
    ["2000000n", 2],
    ["0m", 0],
    ["99999999m", 99_999_999],
  ])("parseTimeout(%s) is %d ms", (value, ms) => {
    expect(parseTimeout(value)).toBe(ms);
  });

  test.each(["10", "123456789m", "5x", "", "m", "-5m", "5 m", " 5m", "5mm", "1.5S", "5s", "5h"])(
    "parseTimeout(%j) is undefined",
    (value) => {
      expect(parseTimeout(value)).toBeUndefined();
    },
  );

  test.each([
    [0, "0u"],
    [0.5, "500u"],
    [100, "100000u"],
    [99_999, "99999000u"],
    [100_000, "100000m"],
    [86_400_000, "86400000m"],
    [1e12, "16666667M"],
    [1e15, "99999999H"],
    [-5, "0u"],
    [Number.POSITIVE_INFINITY, "99999999H"],
  ])("formatTimeout(%d) is %s", (ms, value) => {
    expect(formatTimeout(ms)).toBe(value);
  });

  test("formatTimeout writes at most 8 digits and never shortens a timeout it can express", () => {
    for (const ms of [1, 7, 250, 1234.5, 99_999_999, 123_456_789, 5e9, 3e14]) {
      const value = formatTimeout(ms);
      expect(value).toMatch(/^\d{1,8}[HMSmun]$/);
      expect(parseTimeout(value)).toBeGreaterThanOrEqual(ms);
    }
  });

  test("round trips whole milliseconds exactly", () => {
    for (const ms of [0, 1, 3, 7, 10, 100, 250, 999, 1000, 1234, 30_000, 99_999, 100_000, 3_600_000]) {
      expect(parseTimeout(formatTimeout(ms))).toBe(ms);
    }
  });
});
