/**
 * The registry contract, for discovery backends. An app registers one instance per service after its
 * transports listen, and deregisters first at shutdown.
 */

/** One running instance of a service, as it appears in the registry. */
export interface ServiceInstance {
  /** Unique per process and service. */
  readonly id: string;
  /** `hello.v1.HelloService` */
  readonly service: string;
  /** `v1`: the API version, from the proto package. */
  readonly apiVersion: string | undefined;
  /** `1.4.2`: the release version of the app, for selection. */
  readonly version: string;
  /** Transport → URL: `{ http: "http://10.0.0.5:8080" }`. */
  readonly endpoints: Readonly<Record<string, string>>;
  readonly metadata: Readonly<Record<string, string>>;
  readonly zone?: string;
}

/** A backend that can hold an app's instances: register, keep alive, deregister. */
export interface Registrar {
  /** Registers the instances and keeps them alive until deregistered; resolves once registered. */
  register(instances: readonly ServiceInstance[]): Promise<void>;
  /** Removes the instances; the first step of shutdown. */
  deregister(): Promise<void>;
  close(): Promise<void>;
}
