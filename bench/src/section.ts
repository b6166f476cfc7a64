import type { Tool } from "./tools.js";

/** How every section takes its figures; set from the command line of `pnpm bench`. */
export interface BenchOptions {
  /** Repetitions of each contender, interleaved between them. */
  readonly reps: number;
  /** Seconds of the measured load of each run. */
  readonly durationS: number;
  /** Seconds of load before the measured window, on the same server process. */
  readonly warmupS: number;
  /** The core the load generator runs on; servers get `serverCore`. */
  readonly loadCore: number;
  readonly serverCore: number;
}

/**
 * One part of `pnpm bench` (http and grpc now; client, telemetry and startup later). A section runs its
 * contenders, prints its table and returns its full results, which the driver writes to
 * `.bench/<name>.json`.
 */
export interface Section {
  readonly name: string;
  readonly description: string;
  /** Commands the section needs on PATH; the driver checks them all before running anything. */
  readonly tools: readonly Tool[];
  run(options: BenchOptions): Promise<unknown>;
}
