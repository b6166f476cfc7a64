import { defineErrors } from "./define.js";
import { GantryError } from "./gantry-error.js";

/**
 * Every error @gantry/core raises. Call-time errors reach callers; bootstrap and configuration errors
 * stop `app.start()` and name the class, member or key at fault.
 */
export const coreErrors = defineErrors({
  // Call time.
  GANTRY_ERR_VALIDATION: {
    status: "INVALID_ARGUMENT",
    message: "invalid {message}: {summary}",
  },
  GANTRY_ERR_INTERNAL: {
    status: "INTERNAL",
    message: "internal error",
  },
  GANTRY_ERR_BAD_OUTPUT: {
    status: "INTERNAL",
    message: "{method} returned an invalid {message}",
  },
  GANTRY_ERR_DEADLINE_EXCEEDED: {
    status: "DEADLINE_EXCEEDED",
    message: "deadline exceeded after {timeoutMs} ms",
  },
  GANTRY_ERR_CANCELLED: {
    status: "CANCELLED",
    message: "the call was cancelled by the caller",
  },
  GANTRY_ERR_PERMISSION_DENIED: {
    status: "PERMISSION_DENIED",
    message: "not allowed to call {method}",
  },
  GANTRY_ERR_OVERLOADED: {
    status: "RESOURCE_EXHAUSTED",
    httpStatus: 503,
    retryable: true,
    message: "server is at its limit of {limit} concurrent calls",
  },
  GANTRY_ERR_SHUTTING_DOWN: {
    status: "UNAVAILABLE",
    retryable: true,
    message: "server is shutting down",
  },
  GANTRY_ERR_DRAIN_TIMEOUT: {
    status: "UNAVAILABLE",
    retryable: true,
    message: "server is shutting down and the call did not finish within {timeoutMs} ms",
  },
  GANTRY_ERR_UNKNOWN_METHOD: {
    status: "UNIMPLEMENTED",
    message: "unknown method {method}",
  },
  GANTRY_ERR_NOT_STARTED: {
    status: "UNAVAILABLE",
    retryable: true,
    message: "the app is {state}, not serving",
  },
  // Outbound calls (the client runtime and the transports' client sides).
  GANTRY_ERR_CONNECT: {
    status: "UNAVAILABLE",
    retryable: true,
    message: "could not reach {target}: {reason}",
  },
  GANTRY_ERR_NO_INSTANCES: {
    status: "UNAVAILABLE",
    retryable: true,
    message: "no instance of {service} is available{why}",
  },
  GANTRY_ERR_THROTTLED: {
    status: "UNAVAILABLE",
    retryable: true,
    message: "{service} is failing; the client throttles calls to it",
  },
  GANTRY_ERR_BULKHEAD_FULL: {
    status: "RESOURCE_EXHAUSTED",
    retryable: false,
    message: "{service} already has {limit} calls in flight from this client",
  },
  GANTRY_ERR_UPSTREAM: {
    status: "UNAVAILABLE",
    retryable: true,
    message: "a call this method made failed: {reason}",
  },
  GANTRY_ERR_BAD_RESPONSE: {
    status: "INTERNAL",
    message: "{target} answered {method} with something that is not a valid reply: {reason}",
  },
  // Bootstrap: decorators and DI.
  GANTRY_ERR_NOT_A_SERVICE: {
    status: "FAILED_PRECONDITION",
    message: "{name} is listed in services but has no @Service decorator",
  },
  GANTRY_ERR_DUPLICATE_SERVICE: {
    status: "FAILED_PRECONDITION",
    message: "{first} and {second} both declare the service {service}",
  },
  GANTRY_ERR_DUPLICATE_METHOD: {
    status: "FAILED_PRECONDITION",
    message: "{service}: {first} and {second} both declare the method {method}",
  },
  GANTRY_ERR_NO_HANDLER: {
    status: "FAILED_PRECONDITION",
    message: "{service}.{member}: decorated as a method but has no function to handle it",
  },
  GANTRY_ERR_METHOD_TYPE: {
    status: "FAILED_PRECONDITION",
    message: "{service}.{member}: {problem}",
  },
  GANTRY_ERR_DUPLICATE_ROUTE: {
    status: "FAILED_PRECONDITION",
    message: "{route} is declared by both {first} and {second}",
  },
  GANTRY_ERR_BAD_ROUTE: {
    status: "FAILED_PRECONDITION",
    message: "{service}.{member}: route {route}: {problem}",
  },
  GANTRY_ERR_NOT_A_MESSAGE: {
    status: "FAILED_PRECONDITION",
    message: "{owner}: {name} is used as a message but has no @Message decorator",
  },
  GANTRY_ERR_DUPLICATE_FIELD: {
    status: "FAILED_PRECONDITION",
    message: "{message}: @Field {number} is used twice, by {first} and {second}",
  },
  GANTRY_ERR_BAD_FIELD: {
    status: "FAILED_PRECONDITION",
    message: "{message}.{field}: {problem}",
  },
  GANTRY_ERR_MISSING_PROVIDER: {
    status: "FAILED_PRECONDITION",
    message: "{owner}: constructor parameter #{index} ({dependency}) has no provider; {hint}",
  },
  GANTRY_ERR_PROVIDER_FAILED: {
    status: "FAILED_PRECONDITION",
    message: "{owner} could not be built: {reason}",
  },
  GANTRY_ERR_BAD_PROVIDER: {
    status: "FAILED_PRECONDITION",
    message: "providers[{index}]: {problem}",
  },
  // Configuration.
  GANTRY_ERR_CONFIG_INVALID: {
    status: "FAILED_PRECONDITION",
    message: "config key {key}: {problem} (from {source})",
  },
  GANTRY_ERR_CONFIG_MISSING: {
    status: "FAILED_PRECONDITION",
    message: "config key {key} is required; set it in the config file or with {env}",
  },
  GANTRY_ERR_CONFIG_UNKNOWN_KEY: {
    status: "FAILED_PRECONDITION",
    message: "config key {key} is not known (from {source}){hint}",
  },
  GANTRY_ERR_CONFIG_FILE: {
    status: "FAILED_PRECONDITION",
    message: "config file {file}: {problem}",
  },
  // Lifecycle.
  GANTRY_ERR_APP_STATE: {
    status: "FAILED_PRECONDITION",
    message: "cannot {action} an app that is {state}",
  },
  GANTRY_ERR_REGISTRATION_TIMEOUT: {
    status: "UNAVAILABLE",
    retryable: true,
    message: "could not register with {url} within {timeoutMs} ms",
  },
  GANTRY_ERR_HOOK_FAILED: {
    status: "FAILED_PRECONDITION",
    message: "{owner}.{hook} failed: {reason}",
  },
});

export type CoreErrorCode = keyof typeof coreErrors.definitions;

/**
 * The error a caller sees for anything a method throws: a GantryError as it is, anything else as
 * INTERNAL with the original kept only as `cause` (for the log, never the wire).
 */
export function toGantryError(error: unknown): GantryError {
  if (error instanceof GantryError) return error;
  return coreErrors.create("GANTRY_ERR_INTERNAL", {}, { cause: error });
}
