import { describe, expect, test } from "vitest";
import { Metadata } from "../src/index.js";

describe("Metadata", () => {
  test("is empty without a source", () => {
    const metadata = new Metadata();
    expect(metadata.get("x-a")).toBeUndefined();
    expect(metadata.getAll("x-a")).toEqual([]);
    expect(metadata.has("x-a")).toBe(false);
    expect(metadata.size).toBe(0);
    expect(metadata.toJSON()).toEqual({});
  });

  test("reads a transport's header object case-insensitively", () => {
    const metadata = new Metadata({ "x-tenant-id": "acme", "x-multi": ["a", "b"], "x-none": undefined });
    expect(metadata.get("X-Tenant-ID")).toBe("acme");
    expect(metadata.get("x-multi")).toBe("a");
    expect(metadata.getAll("X-MULTI")).toEqual(["a", "b"]);
    expect(metadata.getAll("x-tenant-id")).toEqual(["acme"]);
    expect(metadata.has("x-tenant-id")).toBe(true);
    expect(metadata.has("x-none")).toBe(false);
    expect(metadata.getAll("x-none")).toEqual([]);
    expect([...metadata.entries()]).toEqual([
      ["x-tenant-id", ["acme"]],
      ["x-multi", ["a", "b"]],
    ]);
  });

  test("counts only keys with values, before and after a change", () => {
    const metadata = new Metadata({ "x-a": "1", "x-none": undefined });
    expect(metadata.size).toBe(1);
    metadata.set("x-b", "2");
    expect(metadata.size).toBe(2);
  });

  test("getAll returns a copy", () => {
    const source = { "x-multi": ["a", "b"] };
    const metadata = new Metadata(source);
    metadata.getAll("x-multi").push("c");
    expect(metadata.getAll("x-multi")).toEqual(["a", "b"]);
    metadata.append("x-other", "1");
    metadata.getAll("x-multi").push("c");
    expect(metadata.getAll("x-multi")).toEqual(["a", "b"]);
    expect(source["x-multi"]).toEqual(["a", "b"]);
  });

  test("set, append and delete copy the source instead of changing it", () => {
    const source = Object.freeze({ "x-a": "1", "x-b": Object.freeze(["2", "3"]), "x-c": "4" });
    const metadata = new Metadata(source);
    expect(metadata.set("X-A", "one")).toBe(metadata);
    expect(metadata.append("x-b", "5")).toBe(metadata);
    expect(metadata.delete("X-C")).toBe(metadata);
    expect(metadata.get("x-a")).toBe("one");
    expect(metadata.getAll("x-b")).toEqual(["2", "3", "5"]);
    expect(metadata.has("x-c")).toBe(false);
    expect(metadata.toJSON()).toEqual({ "x-a": ["one"], "x-b": ["2", "3", "5"] });
    expect(source).toEqual({ "x-a": "1", "x-b": ["2", "3"], "x-c": "4" });
  });

  test("set replaces every value; append adds one", () => {
    const metadata = new Metadata([
      ["X-Trace", "1"],
      ["x-trace", "2"],
    ]);
    expect(metadata.getAll("x-trace")).toEqual(["1", "2"]);
    metadata.set("x-trace", "3");
    expect(metadata.getAll("x-trace")).toEqual(["3"]);
    metadata.append("X-Trace", "4");
    expect(metadata.getAll("x-trace")).toEqual(["3", "4"]);
    expect(metadata.get("x-trace")).toBe("3");
  });

  test("entries yields copies of the value lists", () => {
    const metadata = new Metadata([["x-a", "1"]]);
    for (const [, values] of metadata.entries()) values.push("changed");
    expect(metadata.getAll("x-a")).toEqual(["1"]);
  });

  test.each(["bad header", "x:y", "", "x-é", "x\ny"])("rejects the header name %j with a TypeError", (name) => {
    const metadata = new Metadata();
    expect(() => metadata.set(name, "v")).toThrow(TypeError);
    expect(() => metadata.append(name, "v")).toThrow(/is not a valid header name/);
    expect(() => new Metadata([[name, "v"]])).toThrow(TypeError);
    expect(metadata.size).toBe(0);
  });

  test.each(["line\nbreak", "carriage\rreturn", "nul\0byte"])("rejects the value %j with a TypeError", (value) => {
    const metadata = new Metadata();
    expect(() => metadata.set("x-a", value)).toThrow(TypeError);
    expect(() => metadata.append("x-a", value)).toThrow("metadata x-a: value must be a string without line breaks");
    expect(metadata.has("x-a")).toBe(false);
  });

  test("rejects a value that is not a string", () => {
    expect(() => new Metadata().set("x-a", 5 as unknown as string)).toThrow(TypeError);
  });
});
