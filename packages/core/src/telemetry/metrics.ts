/**
 * Where an app's HTTP transport finds the metrics it serves at `/metrics`: the telemetry package sets
 * the source when it starts (Prometheus text of every OpenTelemetry metric) and clears it when it
 * stops. One per process, like OpenTelemetry's own global providers: every app in the process serves
 * the same metrics on its own HTTP port, so two local processes never fight over a fixed one.
 */
export interface MetricsSource {
  /** The Content-Type of what `collect` gives, such as `text/plain; version=0.0.4; charset=utf-8`. */
  readonly contentType: string;
  collect(): Promise<string>;
}

let source: MetricsSource | undefined;

/** Serves `next` at `/metrics` from now on; undefined stops serving it (404 again). */
export function serveMetrics(next: MetricsSource | undefined): void {
  source = next;
}

/** What `/metrics` serves now, if anything. */
export function metricsSource(): MetricsSource | undefined {
  return source;
}
