/**
 * `pnpm bench`: runs the benchmark sections and writes their full results to `.bench/<section>.json`.
 *
 *   pnpm bench                                  every section, 3 repetitions of 5 s
 *   pnpm bench --only http --reps 5 --duration 10
 *   pnpm bench --only grpc
 *   pnpm bench --only discovery
 *   pnpm bench --only telemetry
 */

import { mkdir, writeFile } from "node:fs/promises";
import { availableParallelism } from "node:os";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { clientSection } from "./client.js";
import { discoverySection } from "./discovery.js";
import { grpcSection } from "./grpc.js";
import { httpSection } from "./http.js";
import type { BenchOptions, Section } from "./section.js";
import { telemetrySection } from "./telemetry.js";
import { missingTools } from "./tools.js";

/** Every section, in the order they run. Startup joins here. */
const SECTIONS: readonly Section[] = [httpSection, grpcSection, clientSection, telemetrySection, discoverySection];

const RESULTS_DIR = fileURLToPath(new URL("../../.bench/", import.meta.url));

const USAGE = `usage: pnpm bench [--only ${SECTIONS.map((s) => s.name).join(",")}] [--reps N] [--duration S]`;

const FLAGS = {
  only: { type: "string" },
  reps: { type: "string", default: "3" },
  duration: { type: "string", default: "5" },
  help: { type: "boolean", default: false },
} as const;

function readOptions(): { options: BenchOptions; sections: Section[] } {
  let values: ReturnType<typeof parseArgs<{ options: typeof FLAGS }>>["values"];
  try {
    ({ values } = parseArgs({ options: FLAGS }));
  } catch (error) {
    exit(`${(error as Error).message}\n${USAGE}`);
  }
  if (values.help) {
    console.log(USAGE);
    for (const section of SECTIONS) console.log(`  ${section.name.padEnd(10)} ${section.description}`);
    process.exit(0);
  }
  const reps = positiveInteger(values.reps, "--reps");
  const durationS = positiveInteger(values.duration, "--duration");
  const names = values.only === undefined ? SECTIONS.map((s) => s.name) : values.only.split(",");
  const sections = names.map((name) => {
    const section = SECTIONS.find((s) => s.name === name.trim());
    if (section === undefined) exit(`unknown section "${name}"\n${USAGE}`);
    return section;
  });
  // The load generator gets core 0 and the server core 1, so that they never compete for a core.
  return { options: { reps, durationS, warmupS: 2, loadCore: 0, serverCore: 1 }, sections };
}

function positiveInteger(text: string, flag: string): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value < 1) exit(`${flag} takes a whole number of at least 1, not "${text}"`);
  return value;
}

function exit(message: string): never {
  console.error(message);
  process.exit(1);
}

function checkMachine(sections: readonly Section[]): void {
  const missing = missingTools(sections.flatMap((s) => s.tools));
  if (missing.length > 0) {
    const packages = [...new Set(missing.map((tool) => tool.debianPackage))];
    exit(
      `missing ${missing.map((tool) => tool.command).join(", ")}: install the Debian package` +
        `${packages.length > 1 ? "s" : ""} (apt-get install ${packages.join(" ")})`,
    );
  }
  if (availableParallelism() < 2) exit("the benchmark pins the load generator and the server to two different cores");
}

async function main(): Promise<void> {
  const { options, sections } = readOptions();
  checkMachine(sections);
  await mkdir(RESULTS_DIR, { recursive: true });
  for (const section of sections) {
    const results = await section.run(options);
    const file = `${RESULTS_DIR}${section.name}.json`;
    await writeFile(file, `${JSON.stringify(results, null, 2)}\n`);
    console.log(`\nfull results: ${file}`);
  }
}

await main();
