/**
 * The diagnostics_channel names the client runtime publishes on. Telemetry subscribes to them;
 * nothing here costs anything while no one does.
 *
 * - `gantry:client:retry` with a {@link RetryMessage} before each retry.
 * - `gantry:client:ejection` with an {@link EjectionMessage} whenever an instance is ejected, becomes
 *   half-open (one probe call allowed) or is restored.
 * - `gantry:client:throttle` with a {@link ThrottleMessage} for each call the adaptive throttle rejects.
 * - `gantry:client:attempt` with an {@link AttemptMessage} when an attempt ends, however it ends.
 */
import diagnostics from "node:diagnostics_channel";
import type { GantryError } from "../errors/gantry-error.js";

export const clientChannels = {
  retry: "gantry:client:retry",
  ejection: "gantry:client:ejection",
  throttle: "gantry:client:throttle",
  attempt: "gantry:client:attempt",
} as const;

export interface RetryMessage {
  /** `hello.v1.HelloService` */
  readonly service: string;
  /** `SayHello` */
  readonly method: string;
  /** The attempt about to be made: 2 for the first retry. */
  readonly attempt: number;
  /** What the previous attempt failed with. */
  readonly error: GantryError;
}

export interface EjectionMessage {
  readonly service: string;
  /** The instance id. */
  readonly instance: string;
  /** The endpoint the runtime calls it at. */
  readonly url: string;
  readonly state: "ejected" | "half-open" | "restored";
  /** While ejected: when the ejection ends (ms since the epoch); undefined otherwise. */
  readonly untilMs: number | undefined;
}

export interface ThrottleMessage {
  readonly service: string;
  readonly method: string;
  /** The probability of rejection at the time of this call. */
  readonly probability: number;
  /** Requests and accepts in the throttle's window. */
  readonly requests: number;
  readonly accepts: number;
}

export interface AttemptMessage {
  readonly service: string;
  readonly method: string;
  /** The instance id. */
  readonly instance: string;
  /** The transport it went over: `grpc`, `http`. */
  readonly transport: string;
  /** 1 for the first attempt of a call. */
  readonly attempt: number;
  readonly durationMs: number;
  /** `OK`, or the canonical status it failed with. */
  readonly status: string;
  /** The specific code it failed with; undefined when it succeeded. */
  readonly code: string | undefined;
}

export const retryChannel = diagnostics.channel(clientChannels.retry);
export const ejectionChannel = diagnostics.channel(clientChannels.ejection);
export const throttleChannel = diagnostics.channel(clientChannels.throttle);
export const attemptChannel = diagnostics.channel(clientChannels.attempt);
