import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { type GantryApp, isGantryError } from "@gantry/core";
import { cliErrors } from "./errors.js";

/**
 * Loads an app from a compiled module: its default export (or an export named `app`), which may also
 * be a function returning the app.
 */
export async function loadApp(entry: string, cwd: string): Promise<GantryApp> {
  const path = resolve(cwd, entry);
  if (!existsSync(path)) {
    const hint = /\.[cm]?tsx?$/.test(entry)
      ? "; gantry runs compiled JavaScript: build first (tsc -b) and give the .js file"
      : "; build the app first (tsc -b), and check the path";
    throw cliErrors.create("GANTRY_ERR_ENTRY_NOT_FOUND", { entry, hint });
  }
  let module: Record<string, unknown>;
  try {
    module = (await import(pathToFileURL(path).href)) as Record<string, unknown>;
  } catch (error) {
    // A coded error from the app's own declarations (a proto binding, say) already names what is wrong.
    if (isGantryError(error)) throw error;
    throw cliErrors.create(
      "GANTRY_ERR_ENTRY_LOAD",
      { entry, reason: (error as Error)?.message ?? String(error) },
      { cause: error },
    );
  }
  let candidate = module.default ?? module.app;
  if (typeof candidate === "function" && !isApp(candidate)) {
    try {
      candidate = await (candidate as () => unknown)();
    } catch (error) {
      throw cliErrors.create(
        "GANTRY_ERR_ENTRY_LOAD",
        { entry, reason: (error as Error)?.message ?? String(error) },
        { cause: error },
      );
    }
  }
  if (!isApp(candidate)) throw cliErrors.create("GANTRY_ERR_NO_APP", { entry });
  return candidate;
}

/** An app from any copy of @gantry/core. */
function isApp(value: unknown): value is GantryApp {
  const app = value as Partial<GantryApp> | null;
  return (
    typeof app === "object" &&
    app !== null &&
    typeof app.start === "function" &&
    typeof app.close === "function" &&
    Array.isArray(app.options?.services)
  );
}
