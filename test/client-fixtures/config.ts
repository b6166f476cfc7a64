import { config, defineConfig } from "@gantry/core";

/**
 * What makes one instance of the fixture misbehave, set per process with `--set`:
 * `--set fixture.delayMs=200` slows every Work call of that instance, `--set fixture.unavailable=true`
 * makes it answer Work with UNAVAILABLE.
 */
export const FixtureConfig = defineConfig(
  {
    fixture: {
      delayMs: config.duration({ default: 0, doc: "Extra latency of every Work call of this instance" }),
      unavailable: config.boolean({ default: false, doc: "Answer every Work call with UNAVAILABLE" }),
    },
  },
  { name: "fixture" },
);
