import diagnostics from "node:diagnostics_channel";
import { type CallMessage, channels, isGantryError } from "@gantry/core";
import {
  type AttemptMessage,
  clientChannels,
  type EjectionMessage,
  type RetryMessage,
  type ThrottleMessage,
} from "@gantry/core/client";
import { type RegistryEvent, registryChannel } from "@gantry/core/registry";
import type { Attributes, Meter, ObservableCallback } from "@opentelemetry/api";
import {
  ATTR_ERROR_TYPE,
  ATTR_RPC_METHOD,
  ATTR_RPC_STATUS_CODE,
  ATTR_RPC_SYSTEM_NAME,
  METRIC_RPC_CLIENT_CALL_DURATION,
  METRIC_RPC_SERVER_CALL_DURATION,
  RPC_SYSTEM_NAME_VALUE_GRPC,
} from "@opentelemetry/semantic-conventions";

/** Gantry's own attributes, where the semantic conventions have none. */
export const ATTR_GANTRY_TRANSPORT = "gantry.transport";
export const ATTR_GANTRY_SERVICE = "gantry.service";
export const ATTR_GANTRY_REGISTRY_URL = "gantry.registry.url";
export const ATTR_GANTRY_REGISTRY_EVENT = "gantry.registry.event";

/** The RPC system of Gantry's own HTTP/JSON protocol and of in-process calls. */
const RPC_SYSTEM_GANTRY = "gantry";

/** The bucket boundaries the semantic conventions advise for RPC durations, in seconds. */
const DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10];

/** How long the throttle's last reported probability stands: the window the throttle counts over. */
const THROTTLE_WINDOW_MS = 60_000;

/** Where a call's start time is kept on its diagnostics message (one object per call). */
const STARTED_AT = Symbol("gantry.telemetry.startedAt");

type TimedCallMessage = CallMessage & { [STARTED_AT]?: number };

/**
 * Subscribes to core's diagnostics channels and records the metrics they describe; returns the
 * function that unsubscribes. Nothing is subscribed until this is called, so an app without telemetry
 * pays nothing (core publishes only while someone listens).
 */
export function recordGantryMetrics(meter: Meter): () => void {
  const undo: (() => void)[] = [];
  const subscribe = <T>(name: string, listener: (message: T) => void) => {
    const onMessage = listener as (message: unknown) => void;
    diagnostics.subscribe(name, onMessage);
    undo.push(() => diagnostics.unsubscribe(name, onMessage));
  };
  const observe = (name: string, description: string, unit: string, callback: ObservableCallback) => {
    const gauge = meter.createObservableGauge(name, { description, unit });
    gauge.addCallback(callback);
    undo.push(() => gauge.removeCallback(callback));
  };

  undo.push(recordServerCalls(meter));
  recordClientCalls(meter, subscribe, observe);
  recordRegistry(meter, subscribe, observe);
  return () => {
    for (const step of undo) step();
  };
}

/** `rpc.server.call.duration` from the `gantry:call` tracing channel, start to asyncEnd. */
function recordServerCalls(meter: Meter): () => void {
  const duration = meter.createHistogram(METRIC_RPC_SERVER_CALL_DURATION, {
    description: "Duration of the calls this server ran, by method, transport and outcome.",
    unit: "s",
    advice: { explicitBucketBoundaries: DURATION_BUCKETS },
  });
  const start = (message: unknown) => {
    (message as TimedCallMessage)[STARTED_AT] = performance.now();
  };
  // Core traces every call with tracePromise, so asyncEnd ends each one, failed or not.
  const asyncEnd = (message: unknown) => {
    const { call, error, [STARTED_AT]: startedAt } = message as TimedCallMessage;
    if (startedAt === undefined) return;
    const attributes: Attributes = {
      [ATTR_RPC_SYSTEM_NAME]: rpcSystem(call.transport),
      [ATTR_RPC_METHOD]: call.method.path.slice(1),
      [ATTR_GANTRY_TRANSPORT]: call.transport,
      [ATTR_RPC_STATUS_CODE]: "OK",
    };
    if (error !== undefined) {
      // Anything but a GantryError reaches the caller as INTERNAL.
      const fault = isGantryError(error) ? error : { status: "INTERNAL", code: "GANTRY_ERR_INTERNAL" };
      attributes[ATTR_RPC_STATUS_CODE] = fault.status;
      attributes[ATTR_ERROR_TYPE] = fault.code;
    }
    duration.record((performance.now() - startedAt) / 1000, attributes);
  };
  const channel = diagnostics.tracingChannel(channels.call);
  channel.start.subscribe(start);
  channel.asyncEnd.subscribe(asyncEnd);
  return () => {
    channel.start.unsubscribe(start);
    channel.asyncEnd.unsubscribe(asyncEnd);
  };
}

type Subscribe = <T>(name: string, listener: (message: T) => void) => void;
type Observe = (name: string, description: string, unit: string, callback: ObservableCallback) => void;

/** Attempts, retries, ejections and the adaptive throttle of the client runtime. */
function recordClientCalls(meter: Meter, subscribe: Subscribe, observe: Observe): void {
  const duration = meter.createHistogram(METRIC_RPC_CLIENT_CALL_DURATION, {
    description: "Duration of each attempt of the outbound calls, by method, transport and outcome.",
    unit: "s",
    advice: { explicitBucketBoundaries: DURATION_BUCKETS },
  });
  subscribe<AttemptMessage>(clientChannels.attempt, (attempt) => {
    const attributes: Attributes = {
      [ATTR_RPC_SYSTEM_NAME]: rpcSystem(attempt.transport),
      [ATTR_RPC_METHOD]: `${attempt.service}/${attempt.method}`,
      [ATTR_GANTRY_TRANSPORT]: attempt.transport,
      [ATTR_RPC_STATUS_CODE]: attempt.status,
    };
    if (attempt.status !== "OK") attributes[ATTR_ERROR_TYPE] = attempt.code ?? attempt.status;
    duration.record(attempt.durationMs / 1000, attributes);
  });

  const retries = meter.createCounter("gantry.client.retries", {
    description: "Retries of outbound calls, by method and the code the previous attempt failed with.",
    unit: "{retry}",
  });
  subscribe<RetryMessage>(clientChannels.retry, (retry) => {
    retries.add(1, { [ATTR_RPC_METHOD]: `${retry.service}/${retry.method}`, [ATTR_ERROR_TYPE]: retry.error.code });
  });

  const ejections = meter.createCounter("gantry.client.ejections", {
    description: "Instances ejected by outlier detection, by service.",
    unit: "{ejection}",
  });
  // Instances ejected or half-open (allowed one probe), by service, until restored.
  const ejected = new Map<string, Set<string>>();
  subscribe<EjectionMessage>(clientChannels.ejection, (event) => {
    const instances = ejected.get(event.service) ?? new Set<string>();
    ejected.set(event.service, instances);
    if (event.state === "restored") instances.delete(event.instance);
    else instances.add(event.instance);
    if (event.state === "ejected") ejections.add(1, { [ATTR_GANTRY_SERVICE]: event.service });
  });
  observe(
    "gantry.client.ejected_instances",
    "Instances of each service that outlier detection keeps out (ejected or half-open).",
    "{instance}",
    (result) => {
      for (const [service, instances] of ejected) result.observe(instances.size, { [ATTR_GANTRY_SERVICE]: service });
    },
  );

  const throttled = meter.createCounter("gantry.client.throttled", {
    description: "Outbound calls the adaptive throttle rejected, by method.",
    unit: "{call}",
  });
  const lastThrottle = new Map<string, { probability: number; at: number }>();
  subscribe<ThrottleMessage>(clientChannels.throttle, (event) => {
    throttled.add(1, { [ATTR_RPC_METHOD]: `${event.service}/${event.method}` });
    lastThrottle.set(event.service, { probability: event.probability, at: performance.now() });
  });
  observe(
    "gantry.client.throttle.probability",
    "The adaptive throttle's probability of rejecting a call, as of its last rejection in the last minute (else 0).",
    "1",
    (result) => {
      const now = performance.now();
      for (const [service, last] of lastThrottle) {
        const probability = now - last.at <= THROTTLE_WINDOW_MS ? last.probability : 0;
        result.observe(probability, { [ATTR_GANTRY_SERVICE]: service });
      }
    },
  );
}

/** Registry events by kind, and whether this app's instances are registered. */
function recordRegistry(meter: Meter, subscribe: Subscribe, observe: Observe): void {
  const events = meter.createCounter("gantry.registry.events", {
    description: "Registry events: registered, deregistered, lost, changed, skipped.",
    unit: "{event}",
  });
  const registered = new Map<string, number>();
  subscribe<RegistryEvent>(registryChannel.name as string, (event) => {
    events.add(1, { [ATTR_GANTRY_REGISTRY_EVENT]: event.type, [ATTR_GANTRY_REGISTRY_URL]: event.url });
    if (event.type === "registered") registered.set(event.url, 1);
    else if (event.type === "lost" || event.type === "deregistered") registered.set(event.url, 0);
  });
  observe(
    "gantry.registry.registered",
    "1 while this app's instances are registered in the registry, 0 after a lost lease or deregistration.",
    "1",
    (result) => {
      for (const [url, value] of registered) result.observe(value, { [ATTR_GANTRY_REGISTRY_URL]: url });
    },
  );
}

function rpcSystem(transport: string): string {
  return transport === "grpc" ? RPC_SYSTEM_NAME_VALUE_GRPC : RPC_SYSTEM_GANTRY;
}
