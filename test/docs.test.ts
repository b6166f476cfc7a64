import { readFileSync } from "node:fs";
import { cliErrors } from "@gantry/cli";
import {
  type ConfigSpec,
  coreConfigSchema,
  coreErrors,
  type ErrorDefinition,
  type ErrorTable,
  envName,
  HTTP_STATUS_BY_STATUS,
  isConfigField,
  isRetryableStatus,
  Status,
  type StatusName,
} from "@gantry/core";
import { discoveryConfigSchema, discoveryErrors } from "@gantry/discovery";
import { telemetryErrors } from "@gantry/telemetry";
import { grpcConfigSchema, grpcErrors } from "@gantry/transport-grpc";
import { httpConfigSchema, httpErrors } from "@gantry/transport-http";
import { describe, expect, test } from "vitest";

/** docs/errors.md lists every error table of every package; this keeps the page and the code in step. */
const page = readFileSync(new URL("../docs/errors.md", import.meta.url), "utf8");

/** The rows of the table under a `## heading`, as arrays of cell texts. */
function tableRows(heading: string): string[][] {
  const start = page.indexOf(`\n## ${heading}\n`);
  expect(start, `docs/errors.md has a "## ${heading}" section`).toBeGreaterThan(-1);
  const rest = page.slice(start + heading.length + 5);
  const end = rest.indexOf("\n## ");
  return (end === -1 ? rest : rest.slice(0, end))
    .split("\n")
    .filter(
      (line) =>
        line.startsWith("|") && !line.startsWith("| ---") && !line.startsWith("| Code") && !line.startsWith("| Status"),
    )
    .map((line) =>
      line
        .slice(1, -1)
        .split(/(?<!\\)\|/)
        .map((cell) => cell.trim().replaceAll("\\|", "|")),
    );
}

describe("docs/errors.md", () => {
  test("lists the canonical statuses with their gRPC codes, HTTP statuses and retryability", () => {
    const expected = (Object.keys(Status) as StatusName[]).map((name) => [
      name,
      String(Status[name]),
      String(HTTP_STATUS_BY_STATUS[name]),
      isRetryableStatus(name) ? "yes" : "no",
    ]);
    expect(tableRows("Canonical statuses")).toEqual(expected);
  });

  test.each([
    ["@gantry/core", coreErrors],
    ["@gantry/transport-http", httpErrors],
    ["@gantry/transport-grpc", grpcErrors],
    ["@gantry/discovery", discoveryErrors],
    ["@gantry/cli", cliErrors],
    ["@gantry/telemetry", telemetryErrors],
  ] as [string, ErrorTable<Record<string, ErrorDefinition>>][])(
    "lists every error of %s exactly as the code defines it",
    (heading, table) => {
      const expected = Object.entries(table.definitions).map(([code, definition]) => [
        `\`${code}\``,
        definition.status,
        String(definition.httpStatus ?? HTTP_STATUS_BY_STATUS[definition.status]),
        (definition.retryable ?? isRetryableStatus(definition.status)) ? "yes" : "no",
        definition.message,
      ]);
      expect(tableRows(heading)).toEqual(expected);
    },
  );

  test("gives every specific code once across all packages", () => {
    const codes = [coreErrors, httpErrors, grpcErrors, discoveryErrors, cliErrors, telemetryErrors].flatMap((table) =>
      Object.keys(table.definitions),
    );
    expect(new Set(codes).size).toBe(codes.length);
  });
});

describe("README.md", () => {
  test("shows the quick start exactly as test/quick-start.ts, which tsc compiles", () => {
    const readme = readFileSync(new URL("../README.md", import.meta.url), "utf8");
    const quickStart = readFileSync(new URL("./quick-start.ts", import.meta.url), "utf8");
    expect(readme).toContain(`## Quick start\n\n\`\`\`ts\n${quickStart}\`\`\``);
  });
});

describe("config keys in the package READMEs", () => {
  test.each([
    ["packages/core/README.md", coreConfigSchema({ services: [] })],
    ["packages/transport-http/README.md", httpConfigSchema({})],
    ["packages/transport-grpc/README.md", grpcConfigSchema({})],
    ["packages/discovery/README.md", discoveryConfigSchema({})],
  ] as const)("%s lists every key with its environment variable", (file, schema) => {
    const readme = readFileSync(new URL(`../${file}`, import.meta.url), "utf8");
    const keys: [key: string, env: string][] = [];
    const walk = (spec: ConfigSpec, prefix: string) => {
      for (const [name, node] of Object.entries(spec)) {
        if (isConfigField(node)) keys.push([prefix + name, node.env ?? `${schema.envPrefix}${envName(prefix + name)}`]);
        else walk(node, `${prefix}${name}.`);
      }
    };
    walk(schema.spec, "");
    expect(keys.length).toBeGreaterThan(1);
    for (const [key, env] of keys) expect(readme).toMatch(new RegExp(`\\| \`${key}\` +\\| \`${env}\``));
  });
});
