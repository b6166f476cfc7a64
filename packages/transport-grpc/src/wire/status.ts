import { describeMessage, Field, type GantryError, Message, Status } from "@gantry/core";
import { Metadata as GrpcMetadata, type StatusObject } from "@grpc/grpc-js";
import { encodeMessage } from "../codec.js";

/** google.protobuf.Any */
@Message({ name: "Any" })
class Any {
  @Field(1) typeUrl!: string;
  @Field(2) value!: Uint8Array;
}

/** google.rpc.Status: the rich status sent in the `grpc-status-details-bin` trailer. */
@Message({ name: "Status" })
class RpcStatus {
  @Field(1, { type: "int32" }) code!: number;
  @Field(2) message!: string;
  @Field(3, { type: Any, repeated: true }) details!: Any[];
}

/** google.rpc.ErrorInfo: the specific code (`reason`) of a Gantry error. */
@Message({ name: "ErrorInfo" })
class ErrorInfo {
  @Field(1) reason!: string;
  @Field(2) domain!: string;
  @Field(3, { map: { key: "string", value: "string" } }) metadata!: Record<string, string>;
}

@Message({ name: "FieldViolation" })
class FieldViolation {
  @Field(1) field!: string;
  @Field(2) description!: string;
}

/** google.rpc.BadRequest: the field violations of an INVALID_ARGUMENT. */
@Message({ name: "BadRequest" })
class BadRequest {
  @Field(1, { type: FieldViolation, repeated: true }) fieldViolations!: FieldViolation[];
}

/** The domain of the ErrorInfo detail Gantry sends with every error. */
export const ERROR_DOMAIN = "gantry";
export const STATUS_DETAILS_KEY = "grpc-status-details-bin";
const TYPE_PREFIX = "type.googleapis.com/google.rpc.";

const anyDescriptor = describeMessage(Any);
const statusDescriptor = describeMessage(RpcStatus);
const errorInfoDescriptor = describeMessage(ErrorInfo);
const badRequestDescriptor = describeMessage(BadRequest);

/**
 * A Gantry error as a gRPC status: the canonical code, the safe message, and in the trailers a
 * `google.rpc.Status` holding an ErrorInfo (the specific code, whether it is retryable) and, for
 * INVALID_ARGUMENT with field violations, a BadRequest. `trailers` (the call's response metadata) go along.
 */
export function toStatusObject(error: GantryError, trailers?: GrpcMetadata): StatusObject {
  const code = Status[error.status];
  const details: Any[] = [
    {
      typeUrl: `${TYPE_PREFIX}ErrorInfo`,
      value: encodeMessage(errorInfoDescriptor, {
        reason: error.code,
        domain: ERROR_DOMAIN,
        metadata: { retryable: String(error.retryable) },
      }),
    },
  ];
  if (error.violations.length > 0) {
    details.push({
      typeUrl: `${TYPE_PREFIX}BadRequest`,
      value: encodeMessage(badRequestDescriptor, { fieldViolations: error.violations }),
    });
  }
  const metadata = trailers ?? new GrpcMetadata();
  metadata.set(
    STATUS_DETAILS_KEY,
    Buffer.from(encodeMessage(statusDescriptor, { code, message: error.message, details })),
  );
  return { code, details: error.message, metadata };
}

/** @internal For tests and clients: the descriptors of the rich status messages. */
export const statusMessages = {
  any: anyDescriptor,
  status: statusDescriptor,
  errorInfo: errorInfoDescriptor,
  badRequest: badRequestDescriptor,
};
