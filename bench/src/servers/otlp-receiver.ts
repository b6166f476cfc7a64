/**
 * The collector of the telemetry section: `@gantry/telemetry/testing`'s OTLP/HTTP receiver in a
 * process of its own, which the driver pins to the load core so that counting spans never takes
 * time from the server it counts for. It only counts (reads the protobuf framing, decodes nothing).
 *
 *   node dist/servers/otlp-receiver.js
 *
 * Like the benchmark servers, it prints `{"port":N}` once it listens and, on SIGTERM, closes and
 * prints what it counted: `{"requests":N,"spans":N,"metrics":N,"logRecords":N}`.
 */
import { startOtlpReceiver } from "@gantry/telemetry/testing";
import { report } from "./baseline.js";

const receiver = await startOtlpReceiver({ keep: false });
report({ port: Number(new URL(receiver.url).port) });

process.once("SIGTERM", () => {
  const counts = receiver.counts();
  receiver.close().then(() => report(counts));
});
