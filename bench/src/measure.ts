/**
 * How every section takes and reports its figures: repetitions interleaved between the contenders
 * in a new random order each time, discarded runs taken again, medians with their spread, ratios
 * against targets, and the lines that say what was discarded and why.
 */
import { median, type Spread, shuffled, spread } from "./stats.js";
import { formatInteger, formatMs, formatPercent } from "./table.js";

/** How many times a discarded run is taken again (fresh processes, new order) before giving up on it. */
const ATTEMPTS = 4;

/** What a section's run records that the shared summary reads. */
export interface MeasuredRun {
  readonly contender: string;
  readonly rep: number;
  /** 1 for the first run of this repetition, 2 and more for runs taken again after a discarded one. */
  readonly attempt: number;
  /** Where the contender ran in its repetition's shuffled order (1 = first). */
  readonly position: number;
  readonly requestsPerSec: number;
  /**
   * The server's own CPU time per request (or call), in microseconds. Unlike the rate it does not
   * move when the host takes the core away for a while (time the server did not run is not counted).
   */
  readonly cpuMicrosPerRequest: number;
  readonly p99Ms: number;
  readonly cpu: { readonly server: number };
  readonly counted: boolean;
  readonly discardedBecause: readonly string[];
}

/** Where a run stands in the section's schedule. */
export interface Place {
  readonly rep: number;
  readonly attempt: number;
  readonly position: number;
}

/**
 * Runs every contender `reps` times, interleaved: each repetition in a new random order, and the
 * contenders whose run was discarded again (fresh processes, new order), a bounded number of times,
 * rather than leaving their medians to fewer runs.
 */
export async function interleaved<C, R extends MeasuredRun>(
  contenders: readonly C[],
  reps: number,
  run: (contender: C, place: Place) => Promise<R>,
): Promise<R[]> {
  const runs: R[] = [];
  for (let rep = 1; rep <= reps; rep++) {
    let pending = contenders;
    for (let attempt = 1; attempt <= ATTEMPTS && pending.length > 0; attempt++) {
      const discarded: C[] = [];
      for (const [index, contender] of shuffled(pending).entries()) {
        const taken = await run(contender, { rep, attempt, position: index + 1 });
        runs.push(taken);
        if (!taken.counted) discarded.push(contender);
      }
      pending = discarded;
    }
  }
  return runs;
}

export interface Summary {
  readonly contender: string;
  readonly label: string;
  /** Runs that counted, and runs taken but discarded. */
  readonly counted: number;
  readonly discarded: number;
  readonly requestsPerSec: Spread | undefined;
  readonly cpuMicrosPerRequest: Spread | undefined;
  readonly p99Ms: number;
  readonly cpu: number;
}

/** The medians and spreads of one contender's counted runs. */
export function summarize(
  contender: { readonly id: string; readonly label: string },
  runs: readonly MeasuredRun[],
): Summary {
  const mine = runs.filter((run) => run.contender === contender.id);
  const counted = mine.filter((run) => run.counted);
  return {
    contender: contender.id,
    label: contender.label,
    counted: counted.length,
    discarded: mine.length - counted.length,
    requestsPerSec: counted.length === 0 ? undefined : spread(counted.map((run) => run.requestsPerSec)),
    cpuMicrosPerRequest: counted.length === 0 ? undefined : spread(counted.map((run) => run.cpuMicrosPerRequest)),
    p99Ms: median(counted.map((run) => run.p99Ms)),
    cpu: median(counted.map((run) => run.cpu.server)),
  };
}

export interface Target {
  readonly name: string;
  readonly numerator: string;
  readonly denominator: string;
  readonly min: number;
}

export interface Ratio {
  readonly name: string;
  /** Of the median rates: the figure the target is held to. */
  readonly value: number;
  /** The same ratio from the median CPU time per request (inverted: less time is faster). */
  readonly byCpuTime: number;
  readonly min: number;
  readonly pass: boolean;
}

export function ratioOf(target: Target, summaries: readonly Summary[]): Ratio {
  const of = (id: string) => summaries.find((s) => s.contender === id);
  const rate = (id: string) => of(id)?.requestsPerSec?.median ?? Number.NaN;
  const time = (id: string) => of(id)?.cpuMicrosPerRequest?.median ?? Number.NaN;
  const value = rate(target.numerator) / rate(target.denominator);
  const byCpuTime = time(target.denominator) / time(target.numerator);
  return { name: target.name, value, byCpuTime, min: target.min, pass: value >= target.min };
}

/** A summary's cells, in the order every section's table starts with. */
export function summaryCells(summary: Summary, reps: number): string[] {
  const rate = summary.requestsPerSec;
  return [
    summary.label,
    formatInteger(rate?.median ?? Number.NaN),
    rate === undefined ? "n/a" : `${formatInteger(rate.min)}–${formatInteger(rate.max)}`,
    summary.cpuMicrosPerRequest === undefined ? "n/a" : summary.cpuMicrosPerRequest.median.toFixed(1),
    formatMs(summary.p99Ms),
    formatPercent(summary.cpu),
    `${summary.counted}/${reps}`,
    String(summary.discarded),
  ];
}

/** One ratio's line: its value against the target, and the same by CPU time per `unit`. */
export function ratioLine(ratio: Ratio, unit: string): string {
  const verdict = Number.isNaN(ratio.value) ? "NO DATA" : ratio.pass ? "PASS" : "FAIL";
  const value = Number.isNaN(ratio.value) ? "n/a" : ratio.value.toFixed(2);
  const byTime = Number.isNaN(ratio.byCpuTime) ? "n/a" : ratio.byCpuTime.toFixed(2);
  return (
    `${ratio.name.padEnd(28)} ${value.padStart(5)}  (target >= ${ratio.min.toFixed(2)})  ${verdict.padEnd(7)}` +
    `  by CPU time per ${unit}: ${byTime}`
  );
}

/** `rep 2/5`, with `(run 3)` for a run taken again. */
export function repLabel(run: MeasuredRun, reps: number): string {
  return `rep ${run.rep}/${reps}${run.attempt > 1 ? ` (run ${run.attempt})` : ""}`;
}

export function verdictOf(run: MeasuredRun): string {
  return run.counted ? "counted" : `DISCARDED: ${run.discardedBecause.join("; ")}`;
}

/** The discarded runs and why, or that there were none. */
export function printDiscarded(runs: readonly MeasuredRun[]): void {
  const discarded = runs.filter((run) => !run.counted);
  if (discarded.length === 0) console.log("discarded runs: none");
  for (const run of discarded) {
    const taken = run.attempt > 1 ? ` (run ${run.attempt})` : "";
    console.log(`discarded: ${run.contender} rep ${run.rep}${taken}: ${run.discardedBecause.join("; ")}`);
  }
}
