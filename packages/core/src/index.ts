/**
 * @gantry/core: decorators, the service model, DI bootstrap, the app lifecycle, the call context, the
 * error model and the pipeline every call runs through. Contracts for transport and registry authors
 * are in the `@gantry/core/transport` and `@gantry/core/registry` subpaths; test helpers in
 * `@gantry/core/testing`.
 */
export { type AppOptions, createApp, GantryApp, type ShutdownStep, type StartOptions } from "./app/app.js";
export { type CoreConfigValues, coreConfigSchema } from "./app/config.js";
export type { AppState } from "./app/state.js";
export { type ConfigSources, loadConfig } from "./config/load.js";
export {
  type ConfigField,
  type ConfigOf,
  type ConfigSchema,
  type ConfigSpec,
  type ConfigValues,
  config,
  type DefineConfigOptions,
  defineConfig,
  envName,
  isConfigField,
} from "./config/schema.js";
export { CallContext, type CallInit, currentCall } from "./context/call-context.js";
export { Metadata } from "./context/metadata.js";
export { formatTimeout, parseTimeout, TIMEOUT_HEADER } from "./context/timeout.js";
export type {
  Built,
  ClassProvider,
  ExistingProvider,
  FactoryProvider,
  Provider,
  ValueProvider,
} from "./di/container.js";
export { Inject, Injectable, type InjectionTarget, Optional } from "./di/decorators.js";
export { createToken, type Token } from "./di/token.js";
export { type CallMessage, callChannel, channels } from "./diagnostics.js";
export {
  type CreateErrorOptions,
  defineErrors,
  type ErrorDefinition,
  type ErrorParams,
  type ErrorTable,
} from "./errors/define.js";
export { type FieldViolation, GantryError, type GantryErrorOptions, isGantryError } from "./errors/gantry-error.js";
export {
  HTTP_STATUS_BY_STATUS,
  isRetryableStatus,
  isStatusName,
  Status,
  type StatusName,
  statusCode,
  statusFromCode,
  statusFromHttp,
} from "./errors/status.js";
export { type CoreErrorCode, coreErrors, toGantryError } from "./errors/table.js";
export { createLogger, LOGGER, type Logger, type LoggerOptions, type LogLevel } from "./logger.js";
export {
  type EnumObject,
  Field,
  type FieldOptions,
  type FieldRules,
  type MapKeyType,
  Message,
  type MessageOptions,
  type MessageRef,
  registerEnum,
  type ScalarType,
  type TypeRef,
} from "./message/decorators.js";
export {
  type Cardinality,
  describeMessage,
  type EnumDescriptor,
  type EnumValue,
  type FieldDescriptor,
  isMessageClass,
  type MessageDescriptor,
  type ValueType,
} from "./message/descriptor.js";
export { type ReadOptions, readMessage, validationError, writeMessage } from "./message/json.js";
export { Empty } from "./message/well-known.js";
export type { Constructor } from "./metadata.js";
export { CallStream } from "./pipeline/streams.js";
export type { ExecutionContext, Guard, GuardRef, Interceptor, InterceptorRef } from "./pipeline/types.js";
export { type ClientSpec, clientToken, InjectClient, implementedElsewhere } from "./service/client.js";
export type { ClientCallOptions, MessageInit, ServiceClient } from "./service/client-types.js";
export {
  type CustomDecorator,
  createDecorator,
  Delete,
  declaredMethods,
  Get,
  type HttpMethod,
  Method,
  type MethodOptions,
  Patch,
  Post,
  Put,
  type RouteOptions,
  Service,
  type ServiceOptions,
  type StreamKind,
  UseGuards,
  UseInterceptors,
} from "./service/decorators.js";
export {
  describeService,
  type HttpRoute,
  type MethodDescriptor,
  routeKey,
  type ServiceDescriptor,
} from "./service/descriptor.js";
export { type MetricsSource, metricsSource, serveMetrics } from "./telemetry/metrics.js";
