import { defineErrors } from "@gantry/core";

/** Every error the gRPC transport raises itself, at bootstrap or on the wire. */
export const grpcErrors = defineErrors({
  GANTRY_ERR_MALFORMED_PROTOBUF: {
    status: "INVALID_ARGUMENT",
    message: "the request message is not valid protobuf for {message}: {reason}",
  },
  GANTRY_ERR_UNKNOWN_SERVICE: {
    status: "NOT_FOUND",
    message: "unknown service {service}",
  },
  GANTRY_ERR_GRPC_PORT_IN_USE: {
    status: "FAILED_PRECONDITION",
    message:
      "grpc: port {port} on {host} is in use; choose another with GANTRY_GRPC_PORT or --set grpc.port=N (0 picks a free one)",
  },
  GANTRY_ERR_GRPC_LISTEN: {
    status: "FAILED_PRECONDITION",
    message: "grpc: cannot listen on {host}:{port}: {reason}",
  },
  GANTRY_ERR_GRPC_TLS: {
    status: "FAILED_PRECONDITION",
    message: "gRPC TLS is misconfigured: {reason}",
  },
  // Bootstrap: .proto generation.
  GANTRY_ERR_PROTO_NAME_CONFLICT: {
    status: "FAILED_PRECONDITION",
    message:
      "{scope}: {first} and {second} are both named {name} in the generated .proto; rename one (@Message({ name }), registerEnum or @Service({ name }))",
  },
  GANTRY_ERR_PROTO_ENUM_VALUE_CONFLICT: {
    status: "FAILED_PRECONDITION",
    message: "{scope}: enum value {first} collides with {second}: {reason}",
  },
  GANTRY_ERR_PROTO_BAD_NAME: {
    status: "FAILED_PRECONDITION",
    message: "{owner}: {name} cannot be used in a .proto: {reason}",
  },
  // Proto-first services: thrown by @ProtoService when the module that declares the class loads.
  GANTRY_ERR_PROTO_FILE: {
    status: "FAILED_PRECONDITION",
    message: "@ProtoService on {owner}: cannot load {file}: {reason}",
  },
  GANTRY_ERR_PROTO_NO_SERVICE: {
    status: "FAILED_PRECONDITION",
    message: "@ProtoService on {owner}: {file} declares no service {service}; it declares {services}",
  },
  GANTRY_ERR_PROTO_NO_HANDLER: {
    status: "FAILED_PRECONDITION",
    message:
      "{rpc} has no handler: {owner} has no member {candidates} (declare it as a method, not an arrow-function property)",
  },
  GANTRY_ERR_PROTO_NOT_A_METHOD: {
    status: "FAILED_PRECONDITION",
    message: "{rpc} has no handler: {owner}.{member} is {actual}, not a method",
  },
  GANTRY_ERR_PROTO_MISTYPED: {
    status: "FAILED_PRECONDITION",
    message: "{owner}.{member} declares {aspect} {declared}, but {rpc} in {file} has {expected}",
  },
  GANTRY_ERR_PROTO_NO_RPC: {
    status: "FAILED_PRECONDITION",
    message: "{owner}.{member} is decorated as a method, but {service} in {file} has no rpc {method}; its rpcs: {rpcs}",
  },
  GANTRY_ERR_PROTO_UNSUPPORTED: {
    status: "FAILED_PRECONDITION",
    message: "@ProtoService on {owner}: {element} in {file} uses {feature}, which Gantry does not serve{hint}",
  },
  // Describing a remote service by server reflection: describeFromReflection.
  GANTRY_ERR_REFLECTION_UNAVAILABLE: {
    status: "UNIMPLEMENTED",
    message:
      "{target} does not serve gRPC server reflection (grpc.reflection.v1 or v1alpha), so the messages of {service} cannot be learned from it",
  },
  GANTRY_ERR_REFLECTION_NO_SERVICE: {
    status: "NOT_FOUND",
    message: "{target} does not serve {service}; it serves {services}",
  },
  GANTRY_ERR_REFLECTION_NO_METHOD: {
    status: "NOT_FOUND",
    message: "{service} has no method {method}; its methods: {methods}",
  },
  GANTRY_ERR_REFLECTION_DESCRIPTOR: {
    status: "FAILED_PRECONDITION",
    message: "cannot use the descriptors {target} sent for {service}: {reason}",
  },
  GANTRY_ERR_REFLECTION_FAILED: {
    status: "UNAVAILABLE",
    message: "server reflection on {target} failed: {reason}",
  },
});
