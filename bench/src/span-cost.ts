/**
 * What the OpenTelemetry SDK itself costs per span, for the telemetry section: spans of one shape
 * (a server call's span as Gantry makes it: its name, kind, attributes at start and at end) made
 * directly with the SDK, in a process of its own that the driver pins to the server core and runs
 * with the traced server's variables (`node --env-file`), so that `startTelemetry` sets up the
 * same tracer provider, sampler, batch span processor and OTLP exporter as `gantry start` does.
 * The spans are made at the rate the traced server made them: the batch processor then holds each
 * span as long and exports batches as large as it does in the server, and both change what a span
 * costs (here, about 13 µs a span at full speed, 18 µs at 20k spans/s).
 *
 *   node --env-file=<otel.env> dist/span-cost.js '<SpanCostOptions as JSON>'
 *
 * It prints one JSON line, `{"spans":N,"cpuMicros":N}`: the process's CPU time (every thread, user
 * and system) from the first measured span to the end of the shutdown that exports the last one,
 * so the batching, the protobuf encoding and the export requests are all in it.
 */

import { startTelemetry } from "@gantry/telemetry";
import { type Attributes, context, ProxyTracerProvider, SpanKind, trace } from "@opentelemetry/api";
import { report } from "./servers/baseline.js";

/** A span as the traced server made it, split the way core sets its attributes. */
export interface SpanShape {
  readonly name: string;
  /** Given to `startSpan`, as core's `startServerSpan` does. */
  readonly startAttributes: Attributes;
  /** Set one by one with `setAttribute` before `end()`, as core's `ServerSpan.end` does. */
  readonly endAttributes: Attributes;
}

export interface SpanCostOptions {
  readonly shape: SpanShape;
  /** Spans made (as fast as it can) and exported before the measured ones, so that the JIT has done its work. */
  readonly warmupSpans: number;
  /** Spans measured, made at `spansPerSecond`. */
  readonly spans: number;
  readonly spansPerSecond: number;
}

/**
 * Spans made per turn of the event loop: about as many as a loaded server ends per turn (wrk keeps 64
 * requests in flight), so that the batch processor's timer and the exports run between them as they
 * do in a server.
 */
const SPANS_PER_TURN = 64;

/** The tracer core makes its spans with. */
const TRACER_NAME = "@gantry/core";

async function makeSpans(shape: SpanShape, count: number, perSecond: number): Promise<void> {
  const tracer = trace.getTracer(TRACER_NAME);
  const started = performance.now();
  const options = { kind: SpanKind.SERVER, attributes: shape.startAttributes };
  const ending = Object.entries(shape.endAttributes);
  for (let made = 0; made < count; ) {
    const turn = Math.min(SPANS_PER_TURN, count - made);
    for (let i = 0; i < turn; i++) {
      // The root context, as a call without a caller's trace context has for its parent.
      const span = tracer.startSpan(shape.name, options, context.active());
      for (const [key, value] of ending) if (value !== undefined) span.setAttribute(key, value);
      span.end();
    }
    made += turn;
    // Ahead of the rate: wait until the server would have made as many.
    const ahead = (made / perSecond) * 1000 - (performance.now() - started);
    await new Promise((resolve) => (ahead >= 1 ? setTimeout(resolve, ahead) : setImmediate(resolve)));
  }
}

/** Exports every span ended so far: the registered SDK's provider, behind the API's proxy. */
async function flush(): Promise<void> {
  const provider = trace.getTracerProvider();
  const sdk = (provider instanceof ProxyTracerProvider ? provider.getDelegate() : provider) as {
    forceFlush?: () => Promise<void>;
  };
  if (sdk.forceFlush === undefined) throw new Error("no OpenTelemetry SDK is registered: is OTEL_* set?");
  await sdk.forceFlush();
}

const options = JSON.parse(process.argv[2] ?? "{}") as SpanCostOptions;
const telemetry = await startTelemetry({ serviceName: "bench-span-cost" });
await makeSpans(options.shape, options.warmupSpans, Number.POSITIVE_INFINITY);
await flush();
const before = process.cpuUsage();
await makeSpans(options.shape, options.spans, options.spansPerSecond);
await telemetry.shutdown();
const used = process.cpuUsage(before);
report({ spans: options.spans, cpuMicros: used.user + used.system });
