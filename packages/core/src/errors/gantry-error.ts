import { HTTP_STATUS_BY_STATUS, isRetryableStatus, isStatusName, type StatusName } from "./status.js";

const BRAND = Symbol.for("gantry.error");

/** One bad field of an input message, as google.rpc.BadRequest.FieldViolation carries it. */
export interface FieldViolation {
  /** Dotted path of the field in the message, with indexes and map keys: `items[2].name`. */
  readonly field: string;
  readonly description: string;
}

export interface GantryErrorOptions {
  /** The specific code, such as `GANTRY_ERR_BODY_TOO_LARGE` or `USER_NOT_FOUND`; defaults to the status. */
  code?: string;
  /** Overrides the HTTP status the canonical status maps to. */
  httpStatus?: number;
  /** Whether a client may retry the call; defaults to true for UNAVAILABLE only. */
  retryable?: boolean;
  /** The bad fields of an INVALID_ARGUMENT error. */
  violations?: readonly FieldViolation[];
  /** Extra safe values that travel with the error (HTTP problem members, gRPC details). */
  details?: Readonly<Record<string, unknown>>;
  cause?: unknown;
}

/**
 * The one error class of Gantry. `status` is a canonical code, `code` the specific one, and the
 * message is safe to send to callers: never put internals in it. Anything else thrown by a method
 * reaches the caller as INTERNAL with no message or stack (they go to the log).
 *
 * `instanceof GantryError` holds across duplicate installs of @gantry/core.
 *
 * @example
 * throw new GantryError("NOT_FOUND", `no user ${id}`, { code: "USER_NOT_FOUND" });
 */
export class GantryError extends Error {
  readonly status: StatusName;
  readonly code: string;
  readonly httpStatus: number;
  readonly retryable: boolean;
  readonly violations: readonly FieldViolation[];
  readonly details: Readonly<Record<string, unknown>>;
  declare readonly [BRAND]: true;

  constructor(status: StatusName, message: string, options: GantryErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    if (!isStatusName(status)) throw new TypeError(`GantryError: ${String(status)} is not a canonical status`);
    this.name = "GantryError";
    this.status = status;
    this.code = options.code ?? status;
    this.httpStatus = options.httpStatus ?? HTTP_STATUS_BY_STATUS[status];
    this.retryable = options.retryable ?? isRetryableStatus(status);
    this.violations = options.violations ?? [];
    this.details = options.details ?? {};
    Object.defineProperty(this, BRAND, { value: true });
  }

  static override [Symbol.hasInstance](value: unknown): boolean {
    // `this` is the class on the right of instanceof: subclasses keep the ordinary prototype check.
    // biome-ignore lint/complexity/noThisInStatic: the receiver decides which check applies
    if (this !== GantryError) return Function.prototype[Symbol.hasInstance].call(this, value);
    return typeof value === "object" && value !== null && (value as Record<symbol, unknown>)[BRAND] === true;
  }
}

/** True for a GantryError from any copy of @gantry/core. */
export function isGantryError(value: unknown): value is GantryError {
  return value instanceof GantryError;
}
