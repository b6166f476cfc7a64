/**
 * The canonical status codes: the 16 gRPC status codes other than OK. Every Gantry error carries one
 * of them as `status`, on every transport.
 */
export const Status = {
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;

export type StatusName = keyof typeof Status;

/**
 * The one table from canonical status to HTTP status (the mapping of google.rpc.Code). A specific
 * error may override it with its own `httpStatus` (413, 405 and 415 for transport-level faults).
 */
export const HTTP_STATUS_BY_STATUS: Readonly<Record<StatusName, number>> = {
  CANCELLED: 499,
  UNKNOWN: 500,
  INVALID_ARGUMENT: 400,
  DEADLINE_EXCEEDED: 504,
  NOT_FOUND: 404,
  ALREADY_EXISTS: 409,
  PERMISSION_DENIED: 403,
  RESOURCE_EXHAUSTED: 429,
  FAILED_PRECONDITION: 400,
  ABORTED: 409,
  OUT_OF_RANGE: 400,
  UNIMPLEMENTED: 501,
  INTERNAL: 500,
  UNAVAILABLE: 503,
  DATA_LOSS: 500,
  UNAUTHENTICATED: 401,
};

/** Statuses a client may retry by default: the call did not run, or ran nowhere that matters. */
const RETRYABLE_BY_DEFAULT: ReadonlySet<StatusName> = new Set<StatusName>(["UNAVAILABLE"]);

export function isStatusName(value: unknown): value is StatusName {
  return typeof value === "string" && Object.hasOwn(Status, value);
}

/** The gRPC numeric code of a canonical status. */
export function statusCode(status: StatusName): number {
  return Status[status];
}

/** The canonical status of a gRPC numeric code; OK (0) and unknown numbers give UNKNOWN. */
export function statusFromCode(code: number): StatusName {
  for (const name of Object.keys(Status) as StatusName[]) {
    if (Status[name] === code) return name;
  }
  return "UNKNOWN";
}

export function isRetryableStatus(status: StatusName): boolean {
  return RETRYABLE_BY_DEFAULT.has(status);
}

/**
 * The canonical status an HTTP status stands for, for errors that arrive as bare HTTP statuses (from
 * express middleware, or from servers that are not Gantry's).
 */
export function statusFromHttp(httpStatus: number): StatusName {
  switch (httpStatus) {
    case 400:
      return "INVALID_ARGUMENT";
    case 401:
      return "UNAUTHENTICATED";
    case 403:
      return "PERMISSION_DENIED";
    case 404:
      return "NOT_FOUND";
    case 409:
      return "ABORTED";
    case 413:
    case 429:
      return "RESOURCE_EXHAUSTED";
    case 499:
      return "CANCELLED";
    case 501:
      return "UNIMPLEMENTED";
    case 502:
    case 503:
      return "UNAVAILABLE";
    case 504:
      return "DEADLINE_EXCEEDED";
  }
  if (httpStatus >= 400 && httpStatus < 500) return "FAILED_PRECONDITION";
  return httpStatus >= 500 ? "INTERNAL" : "UNKNOWN";
}
