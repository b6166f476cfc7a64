/**
 * Deadlines cross the wire as a relative timeout in `grpc-timeout` form (at most 8 digits and a unit:
 * H, M, S, m, u, n), on gRPC and on HTTP alike, never as an absolute time: clocks differ.
 */
export const TIMEOUT_HEADER = "grpc-timeout";

const FORMAT = /^(\d{1,8})([HMSmun])$/;
const UNIT_MS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 0.001, n: 0.000_001 };

/** Milliseconds from a `grpc-timeout` value (`100m`, `5S`), or undefined when it is malformed. */
export function parseTimeout(value: string): number | undefined {
  const match = FORMAT.exec(value);
  return match === null ? undefined : Number(match[1]) * UNIT_MS[match[2]];
}

/** The `grpc-timeout` value for a number of milliseconds, in the finest unit that fits in 8 digits. */
export function formatTimeout(ms: number): string {
  const value = Math.max(0, ms);
  for (const [unit, factor] of [
    ["u", 1000],
    ["m", 1],
    ["S", 1 / 1000],
    ["M", 1 / 60_000],
    ["H", 1 / 3_600_000],
  ] as const) {
    const scaled = Math.ceil(value * factor);
    if (scaled < 100_000_000) return `${scaled}${unit}`;
  }
  return "99999999H";
}
