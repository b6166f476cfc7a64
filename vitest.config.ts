import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: [
      "packages/*/test/**/*.test.ts",
      "examples/*/test/**/*.test.ts",
      "bench/test/**/*.test.ts",
      "test/**/*.test.ts",
    ],
    testTimeout: 20_000,
    hookTimeout: 30_000,
    // Every server, child process and timer a test opens is closed by the test itself.
    teardownTimeout: 5_000,
  },
});
