import { type ConfigOf, config, defineConfig } from "@gantry/core";
import { defaultHost } from "@gantry/core/transport";
import type { GrpcClientOptions } from "./client.js";

/** TLS from PEM files. With `ca` set, clients must present a certificate it signed (mutual TLS). */
export interface GrpcTlsOptions {
  cert?: string;
  key?: string;
  /** The CA that signs client certificates: set it to require them (mutual TLS). */
  ca?: string;
}

/** Code defaults for the `grpc.*` config keys; config files, the environment and flags override them. */
export interface GrpcTransportOptions {
  /** How the app's typed clients call other instances over gRPC (TLS, keepalive, sizes). */
  client?: GrpcClientOptions;
  port?: number;
  host?: string;
  /** The largest message received, in bytes; 4 MiB by default. */
  maxReceiveMessageSize?: number;
  /** The largest message sent, in bytes; 4 MiB by default. */
  maxSendMessageSize?: number;
  /** How often to ping an idle connection to find dead clients; 2 hours by default. */
  keepaliveTimeMs?: number;
  /** How long a keepalive ping waits for its answer before the connection is closed; 20 s by default. */
  keepaliveTimeoutMs?: number;
  /** Close connections idle this long; 0 (the default) never does. */
  maxConnectionIdleMs?: number;
  /** Close connections this old (after a grace period), to spread clients over new instances; 0 never does. */
  maxConnectionAgeMs?: number;
  tls?: GrpcTlsOptions;
  /** Serve grpc.health.v1.Health; true by default. */
  health?: boolean;
  /** Serve server reflection (v1 and v1alpha); true by default. */
  reflection?: boolean;
}

const MiB = 1024 * 1024;

export function grpcConfigSchema(options: GrpcTransportOptions) {
  return defineConfig(
    {
      grpc: {
        port: config.port({ default: options.port ?? 50051, doc: "Port to listen on; 0 picks a free one" }),
        host: config.string({
          default: options.host ?? defaultHost(),
          doc: "Address to listen on: 127.0.0.1 on a laptop, 0.0.0.0 in a container",
        }),
        maxReceiveMessageSize: config.bytes({
          default: options.maxReceiveMessageSize ?? 4 * MiB,
          min: 1,
          doc: "Largest message received",
        }),
        maxSendMessageSize: config.bytes({
          default: options.maxSendMessageSize ?? 4 * MiB,
          min: 1,
          doc: "Largest message sent",
        }),
        keepalive: {
          time: config.duration({
            default: options.keepaliveTimeMs ?? 2 * 60 * 60 * 1000,
            min: 1000,
            doc: "Ping idle connections this often",
          }),
          timeout: config.duration({
            default: options.keepaliveTimeoutMs ?? 20_000,
            min: 1,
            doc: "Close a connection whose ping goes unanswered this long",
          }),
        },
        maxConnectionIdle: config.duration({
          default: options.maxConnectionIdleMs ?? 0,
          doc: "Close connections idle this long; 0 never",
        }),
        maxConnectionAge: config.duration({
          default: options.maxConnectionAgeMs ?? 0,
          doc: "Close connections this old; 0 never",
        }),
        tls: {
          cert: config.string({ default: options.tls?.cert ?? "", doc: "Server certificate chain (PEM file)" }),
          key: config.string({ default: options.tls?.key ?? "", doc: "Server private key (PEM file)" }),
          ca: config.string({
            default: options.tls?.ca ?? "",
            doc: "CA for client certificates (PEM file); set to require them",
          }),
        },
        health: config.boolean({ default: options.health ?? true, doc: "Serve grpc.health.v1.Health" }),
        reflection: config.boolean({ default: options.reflection ?? true, doc: "Serve server reflection" }),
      },
    },
    { name: "grpc", envPrefix: "GANTRY_" },
  );
}

export type GrpcConfig = ConfigOf<ReturnType<typeof grpcConfigSchema>>["grpc"];
