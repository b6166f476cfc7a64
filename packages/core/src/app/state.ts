/**
 * An app's lifecycle: `created` → `starting` → `ready` → `draining` → `closed`. Readiness is true
 * only in `ready`; liveness holds until `closed`.
 */
export type AppState = "created" | "starting" | "ready" | "draining" | "closed";
