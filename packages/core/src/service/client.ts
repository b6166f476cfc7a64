import type { ClientPolicy } from "../client/types.js";
import { Inject } from "../di/decorators.js";
import { createToken, type Token } from "../di/token.js";
import { GantryError } from "../errors/gantry-error.js";
import type { Constructor } from "../metadata.js";
import type { ServiceClient } from "./client-types.js";

/** A service an app calls, and how. */
export interface ClientSpec<S = unknown> {
  /** The service's class: its contract, or its implementation. */
  readonly service: Constructor<S>;
  readonly policy?: ClientPolicy;
}

const tokens = new WeakMap<Constructor, Token<unknown>>();

/** The DI token of the typed client of a service class (its contract). */
export function clientToken<S>(service: Constructor<S>): Token<ServiceClient<S>> {
  let token = tokens.get(service);
  if (token === undefined) {
    token = createToken(`the client of ${service.name} (list ${service.name} in the app's clients)`);
    tokens.set(service, token);
  }
  return token as Token<ServiceClient<S>>;
}

/**
 * Injects the typed client of a service: its methods take the input message and resolve to the
 * output message, and find the service through discovery (or call it in this process when it is
 * served here). List the service in the app's `clients`.
 *
 * @example
 * constructor(@InjectClient(HelloApi) private readonly hello: ServiceClient<HelloApi>) {}
 */
export function InjectClient(service: Constructor): ParameterDecorator {
  return Inject(clientToken(service));
}

/**
 * The body of a method in a contract class: a contract declares a service's methods (decorators,
 * message types) for its callers; the class that extends it implements them.
 *
 * @example
 * @Service({ package: "hello", version: "v1", name: "HelloService" })
 * export class HelloApi {
 *   @Method({ output: HelloReply })
 *   sayHello(req: HelloRequest): Promise<HelloReply> { return implementedElsewhere(); }
 * }
 */
export function implementedElsewhere(): never {
  throw new GantryError("UNIMPLEMENTED", "this method is declared by a contract and implemented by a service class");
}
