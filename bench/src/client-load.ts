/**
 * The load generator of the client section, in a process of its own that the driver pins to the load
 * core: a fixed number of calls in flight to the section's server, made in one of these ways:
 *
 * - `raw`: a hand-written @grpc/grpc-js client, `Client.makeUnaryRequest` on one channel to the
 *   server's address, the request encoded and the reply decoded with Gantry's protobuf codec;
 * - `gantry`: the typed client of an app (`createApp({ clients: [GreeterApi], discovery })`), which
 *   finds the server in the registry and sends each call through the client runtime: deadline,
 *   retry budget, p2c balancer, outlier ejection, then the gRPC channel (the same codec, the same
 *   grpc-js underneath);
 * - `channel` (not a contender: for finding where the Gantry client's time goes): the gRPC transport's
 *   channel alone (`sendUnary(grpcClientTransport().channel(url), ...)`), without discovery or the runtime.
 *
 *   node dist/client-load.js '<LoadOptions as JSON>'
 *
 * It prints JSON lines: `{"event":"start"}` when the measured window begins, `{"event":"end",...}`
 * with the window's figures when it ends, and `{"event":"exit",...}` with the totals once every call
 * has ended and the client is closed.
 */
import { clientToken, createApp, describeMessage, describeService, type GantryApp } from "@gantry/core";
import { sendUnary } from "@gantry/core/client";
import { discovery } from "@gantry/discovery";
import { decodeMessage, encodeMessage, grpcClientTransport } from "@gantry/transport-grpc";
import { Client, credentials, Metadata, type ServiceError } from "@grpc/grpc-js";
import { report } from "./servers/baseline.js";
import { GreeterApi, HelloReply, HelloRequest } from "./servers/gantry-client-api.js";

export interface LoadOptions {
  readonly contender: "raw" | "gantry" | "channel";
  /** `127.0.0.1:port`: where the raw client calls. */
  readonly address: string;
  /** The registry the Gantry client finds the server in. */
  readonly registry: string;
  /** Calls in flight at every moment: one loop each, one call at a time. */
  readonly concurrency: number;
  readonly warmupS: number;
  readonly durationS: number;
  /** The deadline every call of both contenders carries. */
  readonly deadlineMs: number;
}

const PATH = "/bench.v1.Greeter/SayHello";
const NAME = "gantry";
const EXPECTED = `Hello, ${NAME}.`;
/** The most latencies kept (one 8-byte slot each): far more than a run makes. */
const MAX_SAMPLES = 4_000_000;

type Call = () => Promise<{ message: string }>;

interface Contender {
  readonly call: Call;
  close(): Promise<void>;
}

async function open(options: LoadOptions): Promise<Contender> {
  if (options.contender === "raw") return openRaw(options);
  if (options.contender === "channel") return openChannel(options);
  return openGantry(options);
}

/** The baseline: what a careful hand-written grpc-js caller does for each call. */
function openRaw(options: LoadOptions): Contender {
  const client = new Client(options.address, credentials.createInsecure());
  const input = describeMessage(HelloRequest);
  const output = describeMessage(HelloReply);
  const identity = (bytes: Buffer) => bytes;
  const call: Call = () =>
    new Promise((resolve, reject) => {
      const bytes = encodeMessage(input, { name: NAME }, PATH);
      client.makeUnaryRequest(
        PATH,
        identity,
        identity,
        bytes,
        new Metadata(),
        { deadline: Date.now() + options.deadlineMs },
        (error: ServiceError | null, reply?: Buffer) => {
          if (error !== null) reject(error);
          else resolve(decodeMessage(output, reply as Buffer) as { message: string });
        },
      );
    });
  return {
    call,
    async close() {
      client.close();
    },
  };
}

/** The gRPC transport's channel alone, through `sendUnary`: a deadline on each call, no runtime. */
function openChannel(options: LoadOptions): Contender {
  const channel = grpcClientTransport().channel(`grpc://${options.address}`);
  const method = describeService(GreeterApi).methods[0];
  const input = { name: NAME };
  return {
    call: () =>
      sendUnary(channel, { method, deadline: Date.now() + options.deadlineMs, metadata: {} }, input) as Promise<{
        message: string;
      }>,
    async close() {
      channel.close();
    },
  };
}

/** The contender: an app's typed client, through discovery and the client runtime. */
async function openGantry(options: LoadOptions): Promise<Contender> {
  const app: GantryApp = createApp({
    name: "bench-client",
    services: [],
    clients: [GreeterApi],
    clientTransports: [grpcClientTransport()],
    discovery: discovery(),
    logger: { level: "silent" },
  });
  await app.start({ env: { GANTRY_REGISTRY: options.registry } });
  const greeter = await app.get(clientToken(GreeterApi));
  const callOptions = { timeoutMs: options.deadlineMs };
  return {
    call: () => greeter.sayHello({ name: NAME }, callOptions),
    close: () => app.close(),
  };
}

async function main(): Promise<void> {
  const options = JSON.parse(process.argv[2] ?? "") as LoadOptions;
  const contender = await open(options);
  const latencies = new Float64Array(MAX_SAMPLES);
  let samples = 0;
  let ok = 0;
  let errors = 0;
  let firstError: string | undefined;
  let measuring = false;
  let stopped = false;

  const loop = async () => {
    while (!stopped) {
      const started = performance.now();
      try {
        const reply = await contender.call();
        if (reply.message !== EXPECTED) throw new Error(`replied ${JSON.stringify(reply)}`);
        ok++;
        if (measuring && samples < MAX_SAMPLES) latencies[samples++] = performance.now() - started;
      } catch (error) {
        errors++;
        firstError ??= error instanceof Error ? error.message : String(error);
        // A call that fails without touching the network (no instance left) settles in a microtask:
        // without a turn of the event loop, the timers that end the run would never fire.
        await new Promise((resolve) => setImmediate(resolve));
      }
    }
  };
  const loops = Array.from({ length: options.concurrency }, loop);

  await sleep(options.warmupS * 1000);
  const okBefore = ok;
  const errorsBefore = errors;
  const cpuBefore = process.cpuUsage();
  const startedAt = performance.now();
  measuring = true;
  report({ event: "start" });
  await sleep(options.durationS * 1000);
  measuring = false;
  const seconds = (performance.now() - startedAt) / 1000;
  const cpu = process.cpuUsage(cpuBefore);
  const calls = ok - okBefore;
  report({
    event: "end",
    calls,
    errors: errors - errorsBefore,
    seconds,
    callsPerSec: calls / seconds,
    cpuSeconds: (cpu.user + cpu.system) / 1e6,
    p50Ms: percentile(latencies.subarray(0, samples), 0.5),
    p99Ms: percentile(latencies.subarray(0, samples), 0.99),
  });

  stopped = true;
  await Promise.all(loops);
  await contender.close();
  report({ event: "exit", ok, errors, firstError });
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function percentile(values: Float64Array, p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = Float64Array.from(values).sort();
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
}

await main();
