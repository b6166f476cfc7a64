import type { Logger } from "@gantry/core";
import { type PrometheusExporter, PrometheusSerializer } from "@opentelemetry/exporter-prometheus";
import type { PrometheusText } from "./telemetry.js";

/** The Content-Type of the Prometheus text exposition format. */
export const PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/**
 * Renders what the Prometheus reader collects, on demand. The exporter's own HTTP server is never
 * started: the app answers `/metrics` on the port it already serves.
 */
export function prometheusText(reader: PrometheusExporter, log: Logger, isOpen: () => boolean): PrometheusText {
  const serializer = new PrometheusSerializer();
  return {
    contentType: PROMETHEUS_CONTENT_TYPE,
    async collect() {
      // The reader refuses to collect once it is shut down; there is nothing left to report.
      if (!isOpen()) return "";
      const { resourceMetrics, errors } = await reader.collect();
      if (errors.length > 0) log.warn({ details: errors.map(String) }, "telemetry: some metrics failed to collect");
      return serializer.serialize(resourceMetrics);
    },
  };
}
