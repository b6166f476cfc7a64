import { defineErrors } from "@gantry/core";

/** Every error the HTTP transport raises itself. Each reaches the caller as application/problem+json. */
export const httpErrors = defineErrors({
  GANTRY_ERR_MALFORMED_JSON: {
    status: "INVALID_ARGUMENT",
    message: "the request body is not valid JSON: {reason}",
  },
  GANTRY_ERR_BODY_NOT_UTF8: {
    status: "INVALID_ARGUMENT",
    message: "the request body is not valid UTF-8",
  },
  GANTRY_ERR_PROTO_POISONING: {
    status: "INVALID_ARGUMENT",
    message: "the request body holds a forbidden {key} key",
  },
  GANTRY_ERR_BODY_TOO_LARGE: {
    status: "RESOURCE_EXHAUSTED",
    httpStatus: 413,
    message: "the request body is larger than the limit of {limit} bytes",
  },
  GANTRY_ERR_UNSUPPORTED_MEDIA_TYPE: {
    status: "INVALID_ARGUMENT",
    httpStatus: 415,
    message: "the request body must be application/json (UTF-8), not {type}",
  },
  GANTRY_ERR_UNSUPPORTED_ENCODING: {
    status: "INVALID_ARGUMENT",
    httpStatus: 415,
    message: "content encoding {encoding} is not supported; send the body uncompressed",
  },
  GANTRY_ERR_BAD_TIMEOUT: {
    status: "INVALID_ARGUMENT",
    message: "grpc-timeout {value} is malformed: give up to 8 digits and a unit (H, M, S, m, u, n), such as 500m",
  },
  GANTRY_ERR_BAD_PATH: {
    status: "INVALID_ARGUMENT",
    message: "the request path is not validly percent-encoded",
  },
  GANTRY_ERR_BAD_REQUEST: {
    status: "INVALID_ARGUMENT",
    message: "malformed HTTP request: {reason}",
  },
  GANTRY_ERR_HEADERS_TOO_LARGE: {
    status: "RESOURCE_EXHAUSTED",
    httpStatus: 431,
    message: "the request headers are too large",
  },
  GANTRY_ERR_ROUTE_NOT_FOUND: {
    status: "UNIMPLEMENTED",
    httpStatus: 404,
    message: "no route for {method} {path}",
  },
  GANTRY_ERR_METHOD_NOT_ALLOWED: {
    status: "UNIMPLEMENTED",
    httpStatus: 405,
    message: "{method} is not allowed on {path}; allowed: {allowed}",
  },
  GANTRY_ERR_STREAMING_OVER_HTTP: {
    status: "UNIMPLEMENTED",
    message: "{method} is a streaming method; call it over gRPC",
  },
  GANTRY_ERR_PORT_IN_USE: {
    status: "FAILED_PRECONDITION",
    message:
      "http: port {port} on {host} is in use; choose another with GANTRY_HTTP_PORT or --set http.port=N (0 picks a free one)",
  },
  GANTRY_ERR_LISTEN: {
    status: "FAILED_PRECONDITION",
    message: "http: cannot listen on {host}:{port}: {reason}",
  },
  GANTRY_ERR_FAST_PATH_MIDDLEWARE: {
    status: "FAILED_PRECONDITION",
    message: "http.path is fast, but middleware was added with use() for {prefix}; it would be skipped",
  },
});
