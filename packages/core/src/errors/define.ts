import { type FieldViolation, GantryError } from "./gantry-error.js";
import type { StatusName } from "./status.js";

/** One row of a package's error table. `message` may name parameters as `{name}`. */
export interface ErrorDefinition {
  readonly status: StatusName;
  readonly message: string;
  readonly httpStatus?: number;
  readonly retryable?: boolean;
}

export type ErrorParams = Readonly<Record<string, string | number | bigint | boolean>>;

export interface CreateErrorOptions {
  violations?: readonly FieldViolation[];
  details?: Readonly<Record<string, unknown>>;
  cause?: unknown;
}

/** A package's error table and the factory for its coded errors. */
export interface ErrorTable<T extends Record<string, ErrorDefinition>> {
  readonly definitions: T;
  create(code: keyof T & string, params?: ErrorParams, options?: CreateErrorOptions): GantryError;
}

/**
 * Declares the error table of a package: every specific code with its canonical status, message
 * template, HTTP override and retryability. docs/errors.md is kept in sync with these tables by a test.
 *
 * @example
 * const errors = defineErrors({
 *   GANTRY_ERR_BODY_TOO_LARGE: { status: "RESOURCE_EXHAUSTED", httpStatus: 413, message: "body over {limit} bytes" },
 * });
 * throw errors.create("GANTRY_ERR_BODY_TOO_LARGE", { limit: 1024 });
 */
export function defineErrors<const T extends Record<string, ErrorDefinition>>(definitions: T): ErrorTable<T> {
  return {
    definitions,
    create(code, params = {}, options = {}) {
      const definition = definitions[code];
      if (definition === undefined) throw new TypeError(`unknown error code ${code}`);
      return new GantryError(definition.status, formatMessage(definition.message, params), {
        code,
        httpStatus: definition.httpStatus,
        retryable: definition.retryable,
        violations: options.violations,
        details: options.details,
        cause: options.cause,
      });
    },
  };
}

function formatMessage(template: string, params: ErrorParams): string {
  return template.replace(/\{(\w+)\}/g, (whole, name: string) =>
    Object.hasOwn(params, name) ? String(params[name]) : whole,
  );
}
