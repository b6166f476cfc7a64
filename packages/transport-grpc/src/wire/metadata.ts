import { Metadata } from "@gantry/core";
import { Metadata as GrpcMetadata } from "@grpc/grpc-js";

/** Keys the gRPC protocol owns: a method's response metadata cannot set them. */
const RESERVED = /^(grpc-|:)|^(content-type|te|user-agent)$/;

/**
 * Incoming gRPC metadata as the call context's Metadata, the API a method also sees for HTTP
 * headers. Binary (`-bin`) values appear base64-encoded.
 */
export function fromGrpcMetadata(metadata: GrpcMetadata): Metadata {
  return new Metadata(metadata.toHttp2Headers() as Record<string, string | string[]>);
}

/**
 * A call's response metadata as gRPC metadata; `-bin` values are taken as base64. Entries in
 * `except` (`key\nvalue`, already sent as headers) are left out; keys or values gRPC cannot carry are
 * dropped rather than failing the call.
 */
export function toGrpcMetadata(
  metadata: Metadata,
  into = new GrpcMetadata(),
  except?: ReadonlySet<string>,
): GrpcMetadata {
  for (const [key, values] of metadata.entries()) {
    if (RESERVED.test(key)) continue;
    const binary = key.endsWith("-bin");
    for (const value of values) {
      if (except?.has(`${key}\n${value}`)) continue;
      try {
        into.add(key, binary ? Buffer.from(value, "base64") : value);
      } catch {
        // grpc-js refuses keys outside [0-9a-z_.-] and values that are not printable ASCII.
      }
    }
  }
  return into;
}
