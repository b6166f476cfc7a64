import type { CallContext } from "../context/call-context.js";
import type { Constructor } from "../metadata.js";
import type { CustomDecorator } from "../service/decorators.js";
import type { MethodDescriptor } from "../service/descriptor.js";

/** What guards and interceptors see of a call. */
export interface ExecutionContext {
  readonly method: MethodDescriptor;
  readonly call: CallContext;
  /** The service instance that will handle the call. */
  readonly instance: object;
  /**
   * The input: as received (not yet validated) in guards; the validated message in interceptors.
   */
  readonly input: unknown;
  /** A value recorded by a custom decorator on the method, or else on its service. */
  metadata<T>(decorator: CustomDecorator<T>): T | undefined;
}

/**
 * Decides whether a call may run. Runs before validation, so a caller that is not allowed learns
 * nothing about its input. Return false for PERMISSION_DENIED, or throw a GantryError of your own
 * (UNAUTHENTICATED, say).
 *
 * @example
 * @Injectable()
 * class RolesGuard implements Guard {
 *   canActivate(ctx: ExecutionContext) {
 *     const roles = ctx.metadata(Roles) ?? [];
 *     return roles.length === 0 || roles.includes(ctx.call.metadata.get("x-role") ?? "");
 *   }
 * }
 */
export interface Guard {
  canActivate(context: ExecutionContext): boolean | Promise<boolean>;
}

/**
 * Runs around a method, after guards and validation. Call `next()` to go on; its result is the
 * method's output, which the interceptor may replace.
 *
 * @example
 * class Timing implements Interceptor {
 *   async intercept(ctx: ExecutionContext, next: () => Promise<unknown>) {
 *     const start = performance.now();
 *     try { return await next(); } finally { ctx.call.log.info({ ms: performance.now() - start }); }
 *   }
 * }
 */
export interface Interceptor {
  intercept(context: ExecutionContext, next: () => Promise<unknown>): Promise<unknown>;
}

/** A guard instance, or a guard class that the app builds through DI. */
export type GuardRef = Guard | Constructor<Guard>;
/** An interceptor instance, or an interceptor class that the app builds through DI. */
export type InterceptorRef = Interceptor | Constructor<Interceptor>;
