import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { gunzipSync } from "node:zlib";
import {
  countJsonItems,
  countProtobufItems,
  decodeJsonSpans,
  decodeProtobufSpans,
  type ReceivedSpan,
} from "./otlp-decode.js";

export interface OtlpReceiverOptions {
  /**
   * Keep every span, decoded (the default), or only count them: counting reads the protobuf framing
   * and nothing else, cheap enough for a benchmark's load.
   */
  keep?: boolean;
}

export interface OtlpCounts {
  /** Export requests accepted, of every signal. */
  readonly requests: number;
  readonly spans: number;
  readonly metrics: number;
  readonly logRecords: number;
}

/** A collector stand-in for tests and benchmarks: OTLP/HTTP on a loopback port. */
export interface OtlpReceiver {
  /** The base endpoint, as `OTEL_EXPORTER_OTLP_ENDPOINT` takes it: `http://127.0.0.1:<port>`. */
  readonly url: string;
  /** Every span kept so far, in arrival order (none when counting only). */
  spans(): ReceivedSpan[];
  counts(): OtlpCounts;
  /**
   * Resolves with the spans kept once `count` spans have arrived in all (counted, when counting only);
   * rejects after `timeoutMs` (default 10 s) saying how many did.
   */
  waitForSpans(count: number, timeoutMs?: number): Promise<ReceivedSpan[]>;
  /** Stops listening and drops open connections; pending waits reject. */
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

const SIGNALS = {
  "/v1/traces": "Spans",
  "/v1/metrics": "Metrics",
  "/v1/logs": "Logs",
} as const;

type Signal = (typeof SIGNALS)[keyof typeof SIGNALS];

interface Waiter {
  readonly count: number;
  resolve(spans: ReceivedSpan[]): void;
  reject(error: Error): void;
  readonly timer: NodeJS.Timeout;
}

/**
 * Starts an OTLP/HTTP receiver on 127.0.0.1 and a free port. It accepts `POST /v1/traces`,
 * `/v1/metrics` and `/v1/logs` as `application/x-protobuf` or `application/json`, gzipped or not,
 * answers each with an empty success response, keeps the spans and counts everything.
 *
 * @example
 * await using receiver = await startOtlpReceiver();
 * const telemetry = await startTelemetry({ endpoint: receiver.url, env: {} });
 * // ... make spans, then:
 * const [span] = await receiver.waitForSpans(1);
 */
export async function startOtlpReceiver(options: OtlpReceiverOptions = {}): Promise<OtlpReceiver> {
  const keep = options.keep ?? true;
  const kept: ReceivedSpan[] = [];
  const counts = { requests: 0, spans: 0, metrics: 0, logRecords: 0 };
  let waiters: Waiter[] = [];

  const settleWaiters = () => {
    waiters = waiters.filter((waiter) => {
      if (counts.spans < waiter.count) return true;
      clearTimeout(waiter.timer);
      waiter.resolve(kept.slice());
      return false;
    });
  };

  const accept = (signal: Signal, json: boolean, body: Buffer) => {
    let items: number;
    if (json) {
      const request = JSON.parse(body.toString("utf8"));
      if (signal === "Spans" && keep) {
        const spans = decodeJsonSpans(request);
        kept.push(...spans);
        items = spans.length;
      } else items = countJsonItems(request, signal);
    } else if (signal === "Spans" && keep) {
      const spans = decodeProtobufSpans(body);
      kept.push(...spans);
      items = spans.length;
    } else items = countProtobufItems(body);
    counts.requests++;
    if (signal === "Spans") counts.spans += items;
    else if (signal === "Metrics") counts.metrics += items;
    else counts.logRecords += items;
    if (signal === "Spans") settleWaiters();
  };

  const server = createServer((req, res) => {
    const signal = SIGNALS[(req.url ?? "").split("?")[0] as keyof typeof SIGNALS];
    if (signal === undefined) return answer(res, 404, "not an OTLP path");
    if (req.method !== "POST") return answer(res, 405, "POST only");
    const type = (req.headers["content-type"] ?? "").split(";")[0].trim();
    if (type !== "application/x-protobuf" && type !== "application/json") {
      return answer(res, 415, "application/x-protobuf or application/json only");
    }
    readBody(req).then(
      (raw) => {
        try {
          const body = req.headers["content-encoding"] === "gzip" ? gunzipSync(raw) : raw;
          accept(signal, type === "application/json", body);
        } catch (error) {
          return answer(res, 400, `undecodable ${signal.toLowerCase()} request: ${(error as Error).message}`);
        }
        // An empty Export*ServiceResponse: full success.
        if (type === "application/json") answer(res, 200, "{}", "application/json");
        else answer(res, 200, "", "application/x-protobuf");
      },
      () => res.destroy(),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;

  let closing: Promise<void> | undefined;
  const close = () => {
    closing ??= new Promise<void>((resolve) => {
      for (const waiter of waiters) {
        clearTimeout(waiter.timer);
        waiter.reject(new Error(`the OTLP receiver closed with ${counts.spans} of ${waiter.count} spans`));
      }
      waiters = [];
      server.close(() => resolve());
      server.closeAllConnections();
    });
    return closing;
  };

  return {
    url: `http://127.0.0.1:${port}`,
    spans: () => kept.slice(),
    counts: () => ({ ...counts }),
    waitForSpans(count, timeoutMs = 10_000) {
      if (counts.spans >= count) return Promise.resolve(kept.slice());
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters = waiters.filter((waiter) => waiter.timer !== timer);
          reject(new Error(`${counts.spans} of ${count} spans arrived within ${timeoutMs} ms`));
        }, timeoutMs);
        waiters.push({ count, resolve, reject, timer });
      });
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => resolve(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks)));
    req.on("error", reject);
  });
}

function answer(res: ServerResponse, status: number, body: string, type = "text/plain; charset=utf-8"): void {
  res.writeHead(status, { "content-type": type, "content-length": Buffer.byteLength(body) });
  res.end(body);
}
