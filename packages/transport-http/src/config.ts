import { type ConfigOf, config, defineConfig } from "@gantry/core";
import { defaultHost } from "@gantry/core/transport";
import type { HttpClientOptions } from "./client.js";

export type ServingPath = "auto" | "fast" | "express";

export interface CorsOptions {
  /** Allowed origins; `*` allows any. Empty (the default) turns CORS off. */
  origins?: string[];
  credentials?: boolean;
  /** How long browsers may cache a preflight answer, in seconds. */
  maxAge?: number;
  /** Response headers browsers may read besides the simple ones. */
  exposeHeaders?: string[];
}

/** Code defaults for the `http.*` config keys; config files, the environment and flags override them. */
export interface HttpTransportOptions {
  /** How the app's typed clients call other instances over HTTP (sockets, response size). */
  client?: HttpClientOptions;
  port?: number;
  host?: string;
  /** The largest request body taken, in bytes; 1 MiB by default. */
  bodyLimit?: number;
  /**
   * Which path serves Gantry routes: `auto` (the fast path unless middleware added with `use()`
   * applies), `fast` or `express` (forced, for tests and comparisons).
   */
  path?: ServingPath;
  /** Log one line per request. */
  accessLog?: boolean;
  cors?: CorsOptions;
  /** How long an idle kept-alive connection stays open. */
  keepAliveTimeoutMs?: number;
}

const PATHS = ["auto", "fast", "express"] as const;

export function httpConfigSchema(options: HttpTransportOptions) {
  return defineConfig(
    {
      http: {
        port: config.port({ default: options.port ?? 8080, doc: "Port to listen on; 0 picks a free one" }),
        host: config.string({
          default: options.host ?? defaultHost(),
          doc: "Address to listen on: 127.0.0.1 on a laptop, 0.0.0.0 in a container",
        }),
        bodyLimit: config.bytes({ default: options.bodyLimit ?? 1024 * 1024, min: 1, doc: "Largest request body" }),
        path: config.oneOf(PATHS)({ default: options.path ?? "auto", doc: "Which path serves Gantry routes" }),
        accessLog: config.boolean({ default: options.accessLog ?? false, doc: "Log one line per request" }),
        keepAliveTimeout: config.duration({
          default: options.keepAliveTimeoutMs ?? 5000,
          doc: "Idle keep-alive timeout",
        }),
        cors: {
          origins: config.list({ default: options.cors?.origins ?? [], doc: "Allowed CORS origins; * for any" }),
          credentials: config.boolean({ default: options.cors?.credentials ?? false }),
          maxAge: config.integer({ default: options.cors?.maxAge ?? 600, min: 0, doc: "Preflight cache, seconds" }),
          exposeHeaders: config.list({ default: options.cors?.exposeHeaders ?? ["x-request-id"] }),
        },
      },
    },
    { name: "http", envPrefix: "GANTRY_" },
  );
}

export type HttpConfig = ConfigOf<ReturnType<typeof httpConfigSchema>>["http"];
