export { decodeMessage, encodeMessage } from "./codec.js";
export { type GrpcTlsOptions, type GrpcTransportOptions, grpcConfigSchema } from "./config.js";
export { grpcErrors } from "./errors.js";
export { HEALTH_SERVICE, HealthCheckRequest, HealthCheckResponse, ServingStatus } from "./health.js";
export { type DescriptorSet, descriptorSet, fileDescriptors } from "./proto/descriptor.js";
export { generateProto, type ProtoFile } from "./proto/generate.js";
export { protoFilePath } from "./proto/model.js";
export { ProtoService, type ProtoServiceOptions } from "./proto-first.js";
export { type GrpcStats, GrpcTransport, grpcTransport } from "./transport.js";
