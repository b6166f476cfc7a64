/**
 * The load generator of the client section, in a process of its own that the driver pins to the load
 * core. It holds both contenders, each with its own connection to the section's server, and measures
 * them in turns: pairs of blocks, one block of each contender, a fixed number of calls per block with
 * a fixed number in flight, the order inside a pair alternating (AB, BA, AB…). Two blocks of a pair run
 * within a second of each other, so what the host does to the machine over minutes (other tenants,
 * clock speed) moves both alike, and the pair's ratio cancels it.
 *
 * - `raw`: a hand-written @grpc/grpc-js client, `Client.makeUnaryRequest` on one channel to the
 *   server's address, the request encoded and the reply decoded with Gantry's protobuf codec;
 * - `gantry`: the typed client of an app (`createApp({ clients: [GreeterApi], discovery })`), which
 *   finds the server in the registry and sends each call through the client runtime: deadline,
 *   retry budget, throttle, p2c balancer, outlier ejection, then the gRPC channel (the same codec, the
 *   same grpc-js underneath);
 * - `channel` (not one of the section's contenders: named in `contenders` by hand, for finding where
 *   the Gantry client's time goes): the gRPC transport's channel alone, through `sendUnary`, without
 *   discovery or the runtime.
 *
 *   node dist/client-load.js '<LoadOptions as JSON>'
 *
 * It prints JSON lines: `{"event":"block",...}` as each measured block ends, with its figures and who
 * used the two cores meanwhile, then `{"event":"exit",...}` with the totals once every call has ended
 * and the clients are closed.
 */
import { clientToken, createApp, describeMessage, describeService } from "@gantry/core";
import { sendUnary } from "@gantry/core/client";
import { discovery } from "@gantry/discovery";
import { decodeMessage, encodeMessage, grpcClientTransport } from "@gantry/transport-grpc";
import { Client, credentials, Metadata, type ServiceError } from "@grpc/grpc-js";
import { clockTicks, coreTicks, processTicks } from "./proc-cpu.js";
import { report } from "./servers/baseline.js";
import { GreeterApi, HelloReply, HelloRequest } from "./servers/gantry-client-api.js";

export type LoadContender = "raw" | "gantry" | "channel";

export interface LoadOptions {
  /** In the order of the first pair; the next pair runs them in reverse, and so on. */
  readonly contenders: readonly LoadContender[];
  /** `127.0.0.1:port`: where the raw client and the channel call. */
  readonly address: string;
  /** The registry the Gantry client finds the server in. */
  readonly registry: string;
  /** Calls in flight at every moment: one loop each, one call at a time. */
  readonly concurrency: number;
  /** Seconds of load for each contender before the first block. */
  readonly warmupS: number;
  /** Measured pairs of blocks. */
  readonly pairs: number;
  /** About how long a block lasts: its number of calls is the warm-up's fastest rate times this. */
  readonly blockS: number;
  /** The deadline every call of every contender carries. */
  readonly deadlineMs: number;
  /** For the CPU shares of each block: the server's process, and the two cores. */
  readonly serverPid: number;
  readonly loadCore: number;
  readonly serverCore: number;
}

/** One measured block, as printed. */
export interface BlockFigures {
  readonly pair: number;
  readonly contender: LoadContender;
  readonly calls: number;
  readonly errors: number;
  readonly seconds: number;
  readonly callsPerSec: number;
  /** This process's CPU time over the block (process.cpuUsage: every thread, user and system). */
  readonly cpuSeconds: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  /** Shares of one core over the block (1 = fully busy), from /proc. */
  readonly cpu: {
    readonly client: number;
    readonly server: number;
    readonly otherOnLoadCore: number;
    readonly otherOnServerCore: number;
  };
}

/** What it prints once every call has ended and its clients are closed. */
export interface LoadTotals {
  /** OK replies over the whole run, every contender, warm-up included. */
  readonly ok: number;
  readonly errors: number;
  readonly firstError?: string;
}

const PATH = "/bench.v1.Greeter/SayHello";
const NAME = "gantry";
const EXPECTED = `Hello, ${NAME}.`;
/** Blocks are never shorter than this many calls, however slow the warm-up. */
const MIN_BLOCK_CALLS = 500;

type Call = () => Promise<{ message: string }>;

interface Contender {
  readonly call: Call;
  close(): Promise<void>;
}

function open(contender: LoadContender, options: LoadOptions): Promise<Contender> | Contender {
  if (contender === "raw") return openRaw(options);
  if (contender === "channel") return openChannel(options);
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
  const app = createApp({
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

/** Every call's outcome, across contenders and blocks. */
const totals = { ok: 0, errors: 0, firstError: undefined as string | undefined };

/**
 * Keeps `concurrency` calls in flight until `calls` have been made (or, without a count, until
 * `seconds` have passed); returns the latencies of the calls that succeeded and how many failed.
 */
async function load(
  contender: Contender,
  concurrency: number,
  limit: { readonly calls?: number; readonly seconds?: number },
): Promise<{ latencies: Float64Array; ok: number; errors: number }> {
  const latencies = new Float64Array(limit.calls ?? 0);
  let left = limit.calls ?? Number.POSITIVE_INFINITY;
  const until = limit.seconds === undefined ? Number.POSITIVE_INFINITY : performance.now() + limit.seconds * 1000;
  let ok = 0;
  let errors = 0;
  const loop = async () => {
    while (left > 0 && performance.now() < until) {
      left--;
      const started = performance.now();
      try {
        const reply = await contender.call();
        if (reply.message !== EXPECTED) throw new Error(`replied ${JSON.stringify(reply)}`);
        if (ok < latencies.length) latencies[ok] = performance.now() - started;
        ok++;
      } catch (error) {
        errors++;
        totals.firstError ??= error instanceof Error ? error.message : String(error);
        // A call that fails without touching the network (no instance left) settles in a microtask:
        // without a turn of the event loop, nothing else (timers, the other loops' replies) would run.
        await new Promise((resolve) => setImmediate(resolve));
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, loop));
  totals.ok += ok;
  totals.errors += errors;
  return { latencies: latencies.subarray(0, Math.min(ok, latencies.length)), ok, errors };
}

interface Ticks {
  readonly at: number;
  readonly client: number;
  readonly server: number;
  readonly loadCore: number;
  readonly serverCore: number;
}

function ticks(options: LoadOptions): Ticks {
  return {
    at: performance.now(),
    client: processTicks(process.pid),
    server: processTicks(options.serverPid),
    loadCore: coreTicks(options.loadCore),
    serverCore: coreTicks(options.serverCore),
  };
}

/** One measured block of `calls` calls of one contender. */
async function block(
  name: LoadContender,
  contender: Contender,
  calls: number,
  pair: number,
  options: LoadOptions,
): Promise<BlockFigures> {
  const before = ticks(options);
  const cpuBefore = process.cpuUsage();
  const startedAt = performance.now();
  const { latencies, ok, errors } = await load(contender, options.concurrency, { calls });
  const seconds = (performance.now() - startedAt) / 1000;
  const cpu = process.cpuUsage(cpuBefore);
  const after = ticks(options);
  const elapsed = ((after.at - before.at) / 1000) * clockTicks();
  const client = (after.client - before.client) / elapsed;
  const server = (after.server - before.server) / elapsed;
  return {
    pair,
    contender: name,
    calls: ok,
    errors,
    seconds,
    callsPerSec: ok / seconds,
    cpuSeconds: (cpu.user + cpu.system) / 1e6,
    p50Ms: percentile(latencies, 0.5),
    p99Ms: percentile(latencies, 0.99),
    cpu: {
      client,
      server,
      otherOnLoadCore: Math.max(0, (after.loadCore - before.loadCore) / elapsed - client),
      otherOnServerCore: Math.max(0, (after.serverCore - before.serverCore) / elapsed - server),
    },
  };
}

async function main(): Promise<void> {
  const options = JSON.parse(process.argv[2] ?? "") as LoadOptions;
  const contenders = new Map<LoadContender, Contender>();
  for (const name of options.contenders) contenders.set(name, await open(name, options));
  let fastest = 0;
  for (const [, contender] of contenders) {
    const { ok } = await load(contender, options.concurrency, { seconds: options.warmupS });
    fastest = Math.max(fastest, ok / options.warmupS);
  }
  const calls = Math.max(MIN_BLOCK_CALLS, Math.round(fastest * options.blockS));
  const order = [...contenders];
  for (let pair = 1; pair <= options.pairs; pair++) {
    for (const [name, contender] of order)
      report({ event: "block", ...(await block(name, contender, calls, pair, options)) });
    order.reverse();
  }
  for (const [, contender] of contenders) await contender.close();
  report({ event: "exit", ok: totals.ok, errors: totals.errors, firstError: totals.firstError });
}

function percentile(values: Float64Array, p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = Float64Array.from(values).sort();
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
}

await main();
