import { config, defineConfig } from "@gantry/core";

/** The example's own config keys: set them in gantry.config.json, as GREETING=..., or with --set greeting=... */
export const HelloConfig = defineConfig(
  {
    greeting: config.string({ default: "Hello", doc: "The word HelloService greets with" }),
  },
  { name: "hello" },
);
