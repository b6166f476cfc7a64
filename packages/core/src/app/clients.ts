import { intercepted, type ResolvedPolicy, resolvePolicy, timeoutOf } from "../client/policy.js";
import { ClientRuntime } from "../client/runtime.js";
import type { ClientTransport } from "../client/types.js";
import { currentCall } from "../context/call-context.js";
import { coreErrors } from "../errors/table.js";
import type { Logger } from "../logger.js";
import type { Constructor } from "../metadata.js";
import type { Registry } from "../registry/index.js";
import type { ClientSpec } from "../service/client.js";
import type { ClientCallOptions } from "../service/client-types.js";
import { describeService, type MethodDescriptor, type ServiceDescriptor } from "../service/descriptor.js";

const NO_METADATA: Readonly<Record<string, string>> = Object.freeze({});

export interface AppClientsOptions {
  readonly registry: Registry | undefined;
  readonly transports: readonly ClientTransport[];
  readonly log: Logger;
  /** Inbound metadata keys copied onto every outbound call (`clients.forwardMetadata`). */
  readonly forward: readonly string[];
  /** The method of a service served in this process, when calls to it go direct. */
  readonly local: (method: MethodDescriptor) => MethodDescriptor | undefined;
  /** Runs a method in this process through the pipeline, as `app.call` does. */
  readonly direct: (method: MethodDescriptor, input: unknown, options: ClientCallOptions) => Promise<unknown>;
}

/**
 * The typed clients of an app: one per service it calls. A call goes direct when the service is
 * served in this process, else through the client runtime (discovery, balancer, retries, breakers)
 * on a transport's client side. Either way the remaining inbound deadline and the forwarded
 * metadata go with it.
 */
export class AppClients {
  readonly #options: AppClientsOptions;
  readonly #runtimes = new Map<string, ClientRuntime>();
  #closed = false;

  constructor(options: AppClientsOptions) {
    this.#options = options;
  }

  /** The typed client object of a service: one function per method, by member name. */
  client(
    spec: Constructor | ClientSpec,
  ): Record<string, (input: unknown, options?: ClientCallOptions) => Promise<unknown>> {
    const { service, policy } = typeof spec === "function" ? { service: spec, policy: undefined } : spec;
    const descriptor = describeService(service);
    // Checked now: a bad policy fails the app's start, not its first call.
    const resolved = resolvePolicy(policy ?? {}, descriptor.fullName);
    const client: Record<string, (input: unknown, options?: ClientCallOptions) => Promise<unknown>> = {};
    for (const method of descriptor.methods) {
      client[method.key] = (input, options = {}) => this.#call(descriptor, method, input, options, policy, resolved);
    }
    return client;
  }

  async close(): Promise<void> {
    this.#closed = true;
    const runtimes = [...this.#runtimes.values()];
    this.#runtimes.clear();
    await Promise.allSettled(runtimes.map((runtime) => runtime.close()));
  }

  #call(
    service: ServiceDescriptor,
    method: MethodDescriptor,
    input: unknown,
    options: ClientCallOptions,
    policy: ClientSpec["policy"],
    resolved: ResolvedPolicy,
  ): Promise<unknown> {
    const parent = currentCall();
    // Always an object of the call's own: a retry may be sent after its caller has changed its own.
    let metadata: Readonly<Record<string, string>> = NO_METADATA;
    if (parent !== undefined) {
      const merged: Record<string, string> = { "x-request-id": parent.requestId };
      for (const key of this.#options.forward) {
        const value = parent.metadata.get(key);
        if (value !== undefined) merged[key] = value;
      }
      metadata = Object.assign(merged, options.metadata);
    } else if (options.metadata !== undefined) {
      metadata = { ...options.metadata };
    }
    const local = this.#options.local(method);
    if (local !== undefined) {
      // The same policy as a call that goes out: interceptors, fallback, timeouts.
      const timeoutMs = timeoutOf(resolved, method, options.timeoutMs);
      return intercepted(resolved, method, input, metadata, (sent) =>
        this.#options.direct(local, input, { ...options, timeoutMs, metadata: sent }),
      );
    }
    let runtime: ClientRuntime;
    try {
      runtime = this.#runtime(service, policy);
    } catch (error) {
      return Promise.reject(error);
    }
    // One signal where there is one (AbortSignal.any costs microseconds and memory per call).
    const own = options.signal;
    const inbound = parent?.signal;
    const signal =
      own === undefined || own === inbound ? inbound : inbound === undefined ? own : AbortSignal.any([own, inbound]);
    const runtimeOptions = { deadline: parent?.deadline, timeoutMs: options.timeoutMs, metadata, signal };
    return method.stream === "unary"
      ? runtime.call(method, input, runtimeOptions)
      : runtime.stream(method, input, runtimeOptions);
  }

  #runtime(service: ServiceDescriptor, policy: ClientSpec["policy"]): ClientRuntime {
    let runtime = this.#runtimes.get(service.fullName);
    if (runtime !== undefined) return runtime;
    if (this.#closed) throw coreErrors.create("GANTRY_ERR_SHUTTING_DOWN");
    const resolver = this.#options.registry?.resolver;
    if (resolver === undefined) {
      throw coreErrors.create("GANTRY_ERR_NO_INSTANCES", {
        service: service.fullName,
        why:
          this.#options.registry === undefined
            ? " (the app has no discovery to find it)"
            : ` (${this.#options.registry.url} cannot resolve)`,
      });
    }
    runtime = new ClientRuntime({
      service,
      resolver,
      transports: this.#options.transports,
      log: this.#options.log,
      policy,
    });
    this.#runtimes.set(service.fullName, runtime);
    return runtime;
  }
}
