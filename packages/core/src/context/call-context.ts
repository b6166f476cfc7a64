import { AsyncLocalStorage } from "node:async_hooks";
import { randomUUID } from "node:crypto";
import type { GantryError } from "../errors/gantry-error.js";
import { coreErrors } from "../errors/table.js";
import type { Logger } from "../logger.js";
import type { MethodDescriptor } from "../service/descriptor.js";
import type { ServerSpanInfo } from "../telemetry/tracing.js";
import { Metadata } from "./metadata.js";

export interface CallInit {
  readonly method: MethodDescriptor;
  /** `http`, `grpc` or `direct` (an in-process call). */
  readonly transport: string;
  /** The request's metadata, or a function that builds it when a method first reads `ctx.metadata`. */
  readonly metadata?: Metadata | (() => Metadata);
  /** Absolute deadline, in epoch milliseconds. */
  readonly deadline?: number;
  readonly requestId?: string;
  /** Made in this process by a call that is running (admitted while the app drains). */
  readonly nested?: boolean;
  /** The caller's address, when the transport knows it; a function is asked only when `peer` is read. */
  readonly peer?: string | (() => string | undefined);
  /**
   * Called once, when the method first asks for `signal`: the transport then starts watching for the
   * caller going away (and calls `abort`). Calls whose methods never look at the signal cost nothing.
   */
  readonly watch?: (call: CallContext) => void;
  /** What the transport knows of the request, for the call's span: asked only when calls are traced. */
  readonly span?: () => ServerSpanInfo;
}

/**
 * Everything about the call in progress: who it is for, its deadline, metadata in and out, an abort
 * signal, a request id and a logger that carries them. A method receives it as its second parameter,
 * and `currentCall()` finds it anywhere below.
 *
 * @example
 * async sayHello(req: HelloRequest, ctx: CallContext) {
 *   ctx.log.info({ name: req.name }, "greeting");
 *   await db.query(sql, { signal: ctx.signal });
 * }
 */
export class CallContext {
  /** Lets the service model recognise a parameter of this type. */
  static readonly isCallContext = true;

  readonly method: MethodDescriptor;
  readonly transport: string;
  readonly startedAt: number;
  /** @internal Made in this process by a call that is running. */
  readonly nested: boolean;
  /** @internal Where the pipeline keeps this call among those in flight; -1 when it is not. */
  slot = -1;
  #metadata: Metadata | (() => Metadata) | undefined;
  #requestId: string | undefined;
  #peer: string | (() => string | undefined) | undefined;
  #deadline: number | undefined;
  #appLog: Logger;
  #watch: ((call: CallContext) => void) | undefined;
  #span: (() => ServerSpanInfo) | undefined;
  #onAbort: ((reason: GantryError) => void) | undefined;
  #log: Logger | undefined;
  #controller: AbortController | undefined;
  #abortReason: GantryError | undefined;
  #responseMetadata: Metadata | undefined;

  /** @param log The app's logger; `ctx.log` is a child of it. */
  constructor(init: CallInit, log: Logger) {
    this.method = init.method;
    this.transport = init.transport;
    this.#metadata = init.metadata;
    this.#deadline = init.deadline;
    this.#requestId = init.requestId;
    this.#peer = init.peer;
    this.startedAt = Date.now();
    this.nested = init.nested === true;
    this.#appLog = log;
    this.#watch = init.watch;
    this.#span = init.span;
  }

  /** @internal What the transport tells of the request, for the call's span. */
  spanInfo(): ServerSpanInfo | undefined {
    return this.#span?.();
  }

  /**
   * When the call must be done, in epoch milliseconds: the caller's deadline or the method's own
   * `timeoutMs`, whichever comes first. Undefined when neither is set.
   */
  get deadline(): number | undefined {
    return this.#deadline;
  }

  /** The request's metadata: HTTP headers, gRPC metadata. */
  get metadata(): Metadata {
    let metadata = this.#metadata;
    if (metadata === undefined) metadata = new Metadata();
    else if (typeof metadata === "function") metadata = metadata();
    this.#metadata = metadata;
    return metadata;
  }

  /** The caller's request id (`x-request-id`), or one made for the call when it is first read. */
  get requestId(): string {
    this.#requestId ??= randomUUID();
    return this.#requestId;
  }

  /** The caller's address, when the transport knows it. */
  get peer(): string | undefined {
    if (typeof this.#peer === "function") this.#peer = this.#peer();
    return this.#peer;
  }

  /** `hello.v1.HelloService` */
  get service(): string {
    return this.method.service.fullName;
  }

  /** Aborted when the caller cancels or disconnects, the deadline passes, or the server gives up on the call. */
  get signal(): AbortSignal {
    if (this.#controller === undefined) {
      this.#controller = new AbortController();
      if (this.#abortReason !== undefined) this.#controller.abort(this.#abortReason);
      else this.#watch?.(this);
    }
    return this.#controller.signal;
  }

  /** Why the call was aborted, once it was. */
  get abortReason(): GantryError | undefined {
    return this.#abortReason;
  }

  /** A logger whose lines carry the service, method and request id. */
  get log(): Logger {
    this.#log ??= this.#appLog.child({
      service: this.method.service.fullName,
      method: this.method.name,
      requestId: this.requestId,
    });
    return this.#log;
  }

  /** Metadata sent back to the caller: HTTP response headers, gRPC response metadata. */
  get responseMetadata(): Metadata {
    this.#responseMetadata ??= new Metadata();
    return this.#responseMetadata;
  }

  /** @internal Whether the method set any response metadata, without creating it. */
  get hasResponseMetadata(): boolean {
    return this.#responseMetadata !== undefined && this.#responseMetadata.size > 0;
  }

  /** Milliseconds left before the deadline; Infinity without one. */
  timeRemaining(): number {
    return this.#deadline === undefined ? Number.POSITIVE_INFINITY : this.#deadline - Date.now();
  }

  /** @internal Brings the deadline forward to `deadline` if that is sooner. */
  capDeadline(deadline: number): void {
    if (this.#deadline === undefined || deadline < this.#deadline) this.#deadline = deadline;
  }

  /** @internal The pipeline's one listener for the abort, set while the call runs. */
  setAbortListener(listener: ((reason: GantryError) => void) | undefined): void {
    this.#onAbort = listener;
  }

  /**
   * @internal Aborts the call's signal with this reason; later reasons are ignored. A cancellation
   * that arrives at the deadline is the deadline: the caller gave up because its time ran out, and its
   * cancel (a closed connection, an RST_STREAM) merely raced the server's own timer.
   */
  abort(reason: GantryError): void {
    if (this.#abortReason !== undefined) return;
    if (
      reason.status === "CANCELLED" &&
      this.#deadline !== undefined &&
      Date.now() >= this.#deadline - DEADLINE_SLACK_MS
    ) {
      reason = coreErrors.create("GANTRY_ERR_DEADLINE_EXCEEDED", {
        timeoutMs: Math.max(0, this.#deadline - this.startedAt),
      });
    }
    this.#abortReason = reason;
    this.#controller?.abort(reason);
    this.#onAbort?.(reason);
  }
}

/** A cancel this close to the deadline (clocks and timers differ a little between processes) is the deadline. */
const DEADLINE_SLACK_MS = 20;

const storage = new AsyncLocalStorage<CallContext>();

/** The call in progress, anywhere below a method; undefined outside a call. */
export function currentCall(): CallContext | undefined {
  return storage.getStore();
}

/** @internal Runs fn(...args) with `call` as the current call. */
export function runInCall<A extends unknown[], T>(call: CallContext, fn: (...args: A) => T, ...args: A): T {
  return storage.run(call, fn, ...args);
}
