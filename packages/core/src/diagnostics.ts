import diagnostics from "node:diagnostics_channel";
import type { CallContext } from "./context/call-context.js";

/**
 * The diagnostics_channel names Gantry publishes on. Telemetry subscribes to them; nothing here
 * costs anything while no one does.
 *
 * - `gantry:call` (a TracingChannel: start, end, asyncStart, asyncEnd, error) for every call a server
 *   runs, with `{ call }` as its context.
 * - `gantry:app:state` with `{ app, state }` whenever an app changes state.
 */
export const channels = {
  call: "gantry:call",
  appState: "gantry:app:state",
} as const;

export interface CallMessage {
  readonly call: CallContext;
  error?: unknown;
  result?: unknown;
}

export const callChannel = diagnostics.tracingChannel<object, CallMessage>(channels.call);
export const appStateChannel = diagnostics.channel(channels.appState);
