import { clientToken, createApp, formatTimeout, type GantryApp, isStatusName, TIMEOUT_HEADER } from "@gantry/core";
import {
  type ConformanceCallOptions,
  type ConformanceClient,
  type ConformanceFailure,
  ConformanceService,
  conformanceApp,
  conformanceCases,
  discoveryOf,
  fixedResolver,
  typedConformanceClient,
} from "@gantry/core/testing";
import { type HttpTransport, httpClientTransport, httpTransport } from "@gantry/transport-http";
import { afterAll, beforeAll, describe, test } from "vitest";

/** The conformance client over HTTP: the uniform route, JSON bodies, problem+json errors. */
function httpClient(base: string): ConformanceClient {
  return {
    async call(method: string, input: Record<string, unknown>, options: ConformanceCallOptions = {}) {
      const headers: Record<string, string> = { "content-type": "application/json", ...options.metadata };
      if (options.timeoutMs !== undefined) headers[TIMEOUT_HEADER] = formatTimeout(options.timeoutMs);
      const response = await fetch(`${base}/conformance.v1.ConformanceService/${method}`, {
        method: "POST",
        headers,
        body: JSON.stringify(input),
        signal: options.signal,
      });
      const body = (await response.json()) as Record<string, unknown>;
      if (!response.ok) {
        const status = body.canonicalStatus;
        const failure: ConformanceFailure = {
          status: isStatusName(status) ? status : "UNKNOWN",
          code: String(body.code),
          message: String(body.detail),
          violations: (body.violations as ConformanceFailure["violations"] | undefined) ?? [],
        };
        throw failure;
      }
      return { output: body, metadata: Object.fromEntries(response.headers) };
    },
  };
}

describe.each(["fast", "express"] as const)("HTTP transport conformance (%s path)", (path) => {
  let app: GantryApp;
  let client: ConformanceClient;

  beforeAll(async () => {
    const transport: HttpTransport = httpTransport({ port: 0, host: "127.0.0.1", path });
    app = createApp(conformanceApp(transport));
    await app.start({ env: {}, flags: { "log.level": "silent" } });
    client = httpClient(app.endpoints[0].url);
  });

  afterAll(() => app.close());

  for (const c of conformanceCases) test(c.name, () => c.run(client));
});

describe("a typed client over http, through the client runtime", () => {
  let server: GantryApp;
  let caller: GantryApp;
  let typed: ConformanceClient;

  beforeAll(async () => {
    server = createApp(conformanceApp(httpTransport({ port: 0, host: "127.0.0.1" })));
    await server.start({ env: {}, flags: { "log.level": "silent" } });
    caller = createApp({
      name: "caller",
      services: [],
      clients: [ConformanceService],
      clientTransports: [httpClientTransport()],
      discovery: discoveryOf({ resolver: fixedResolver([{ http: server.endpoints[0].url }]) }),
    });
    await caller.start({ env: {}, flags: { "log.level": "silent" } });
    typed = typedConformanceClient(await caller.get(clientToken(ConformanceService)));
  });

  afterAll(async () => {
    await caller.close();
    await server.close();
  });

  for (const c of conformanceCases) {
    if (c.needs !== undefined) test.skip(`${c.name} (skipped: a typed client has no ${c.needs})`, () => undefined);
    else test(c.name, () => c.run(typed));
  }
});
