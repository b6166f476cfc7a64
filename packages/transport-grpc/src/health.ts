import { describeMessage, Field, Message, registerEnum, toGantryError } from "@gantry/core";
import type { AppState, TransportHost } from "@gantry/core/transport";
import type {
  Server,
  ServerUnaryCall,
  ServerWritableStream,
  ServiceDefinition,
  sendUnaryData,
  UntypedServiceImplementation,
} from "@grpc/grpc-js";
import { decodeMessage, encodeMessage } from "./codec.js";
import { grpcErrors } from "./errors.js";
import { toStatusObject } from "./wire/status.js";

/** grpc.health.v1.HealthCheckResponse.ServingStatus */
export enum ServingStatus {
  UNKNOWN = 0,
  SERVING = 1,
  NOT_SERVING = 2,
  SERVICE_UNKNOWN = 3,
}
registerEnum(ServingStatus, "ServingStatus");

/** grpc.health.v1.HealthCheckRequest: the service to check by full name, or "" for the server. */
@Message({ name: "HealthCheckRequest" })
export class HealthCheckRequest {
  @Field(1) service!: string;
}

/** grpc.health.v1.HealthCheckResponse, for clients of the health service (probes, tests). */
@Message({ name: "HealthCheckResponse" })
export class HealthCheckResponse {
  @Field(1, { enum: ServingStatus }) status!: ServingStatus;
}

const requestDescriptor = describeMessage(HealthCheckRequest);
const responseDescriptor = describeMessage(HealthCheckResponse);

export const HEALTH_SERVICE = "grpc.health.v1.Health";

/**
 * grpc.health.v1.Health for the app: SERVING while the app is ready, NOT_SERVING while it starts
 * and drains; the same for the server as a whole (service "") and for each of its services by full
 * name; NOT_FOUND from Check (SERVICE_UNKNOWN from Watch) for any other name. Watch streams follow
 * the app's state and do not hold shutdown: they are ended when the transport closes.
 */
export class HealthService {
  readonly #host: TransportHost;
  readonly #services: ReadonlySet<string>;
  /** Open watches, each with whether it follows the app's state (false for an unknown service). */
  readonly #watches = new Map<ServerWritableStream<Buffer, Buffer>, boolean>();
  readonly #unsubscribe: () => void;

  constructor(host: TransportHost) {
    this.#host = host;
    this.#services = new Set(host.services.map((s) => s.fullName));
    this.#unsubscribe = host.onStateChange((state) => {
      for (const [call, follows] of this.#watches) if (follows) call.write(encodeStatus(servingStatus(state)));
    });
  }

  addTo(server: Server): void {
    const method = (name: string, responseStream: boolean) => ({
      path: `/${HEALTH_SERVICE}/${name}`,
      requestStream: false,
      responseStream,
      requestSerialize: (value: Buffer) => value,
      requestDeserialize: (value: Buffer) => value,
      responseSerialize: (value: Buffer) => value,
      responseDeserialize: (value: Buffer) => value,
    });
    const definition: ServiceDefinition = { Check: method("Check", false), Watch: method("Watch", true) };
    const implementation: UntypedServiceImplementation = {
      Check: (call: ServerUnaryCall<Buffer, Buffer>, callback: sendUnaryData<Buffer>) => this.#check(call, callback),
      Watch: (call: ServerWritableStream<Buffer, Buffer>) => this.#watch(call),
    };
    server.addService(definition, implementation);
  }

  /** Ends every watch (shutdown). */
  close(): void {
    this.#unsubscribe();
    for (const call of this.#watches.keys()) call.end();
    this.#watches.clear();
  }

  #check(call: ServerUnaryCall<Buffer, Buffer>, callback: sendUnaryData<Buffer>): void {
    try {
      const service = this.#serviceOf(call.request);
      if (service !== "" && !this.#services.has(service)) {
        callback(toStatusObject(grpcErrors.create("GANTRY_ERR_UNKNOWN_SERVICE", { service })));
        return;
      }
      callback(null, encodeStatus(servingStatus(this.#host.state)));
    } catch (error) {
      callback(toStatusObject(toGantryError(error)));
    }
  }

  #watch(call: ServerWritableStream<Buffer, Buffer>): void {
    let service: string;
    try {
      service = this.#serviceOf(call.request);
    } catch (error) {
      call.emit("error", toStatusObject(toGantryError(error)));
      return;
    }
    // A watch of an unknown service stays open, as the protocol says: the service may appear later.
    const known = service === "" || this.#services.has(service);
    call.write(encodeStatus(known ? servingStatus(this.#host.state) : ServingStatus.SERVICE_UNKNOWN));
    this.#watches.set(call, known);
    const forget = () => this.#watches.delete(call);
    call.once("cancelled", forget);
    call.once("close", forget);
  }

  #serviceOf(bytes: Buffer): string {
    return (decodeMessage(requestDescriptor, bytes).service as string | undefined) ?? "";
  }
}

function servingStatus(state: AppState): ServingStatus {
  return state === "ready" ? ServingStatus.SERVING : ServingStatus.NOT_SERVING;
}

function encodeStatus(status: ServingStatus): Buffer {
  return encodeMessage(responseDescriptor, { status });
}
