/**
 * Test helpers for telemetry: an OTLP/HTTP receiver that stands in for a collector, keeping every
 * span it gets (or only counting them, for benchmarks).
 *
 * @example
 * await using receiver = await startOtlpReceiver();
 * const spans = await receiver.waitForSpans(2);
 */
export type {
  AttributeMap,
  AttributeValue,
  ReceivedSpan,
  SpanKindName,
  StatusCodeName,
} from "./otlp-decode.js";
export { type OtlpCounts, type OtlpReceiver, type OtlpReceiverOptions, startOtlpReceiver } from "./otlp-receiver.js";
