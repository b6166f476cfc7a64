import type { Logger } from "@gantry/core";
import {
  checkInstance,
  publishRegistryEvent,
  type Resolver,
  type ServiceInstance,
  type Watch,
  type WatchEvent,
} from "@gantry/core/registry";
import type { Etcd3, IKeyValue, IRangeResponse } from "etcd3";
import { WatchHub } from "../hub.js";
import { backoff, pause } from "../retry.js";
import { closedError, describe, etcdError, unlessAborted } from "./client.js";
import { type EtcdSettings, retryCeiling } from "./options.js";

/** A watch that stayed up this long was healthy: the next failure starts the backoff over. */
const HEALTHY_MS = 1000;
/** Longest wait at close for etcd to confirm that the watch is cancelled. */
const CANCEL_TIMEOUT_MS = 1000;

/** How a watch stream ended. */
type WatchEnd =
  | { readonly kind: "stopped"; readonly cancelled: Promise<void> }
  | { readonly kind: "disconnected"; readonly error: Error; readonly upMs: number }
  /** etcd cancelled the watch: its start revision was compacted, or it was refused. */
  | { readonly kind: "cancelled"; readonly error: Error; readonly upMs: number };

/** The one prefix watch of a registry, while anyone watches. */
interface Following {
  readonly hub: WatchHub;
  readonly controller: AbortController;
  readonly done: Promise<void>;
}

/**
 * Lists and watches the records under `<prefix>/services/`. All watchers of a registry share one
 * etcd watch through a WatchHub: it starts with the first watcher and stops after the last. Every
 * (re)connection lists the records at a revision R, sends every watcher a snapshot, then watches from
 * R + 1, so no change is missed or seen twice, whether etcd restarted, lost its data (its revisions
 * start over) or compacted the revision a watch asked for.
 */
export class EtcdResolver implements Resolver {
  readonly #client: Etcd3;
  readonly #settings: EtcdSettings;
  readonly #log: Logger;
  readonly #isClosed: () => boolean;
  /** `<prefix>/services/` */
  readonly #root: string;
  #following: Following | undefined;
  /** Watches stopping: close waits for them before it closes the client. */
  readonly #retiring = new Set<Promise<void>>();

  constructor(client: Etcd3, settings: EtcdSettings, log: Logger, isClosed: () => boolean) {
    this.#client = client;
    this.#settings = settings;
    this.#log = log;
    this.#isClosed = isClosed;
    this.#root = `${settings.prefix}/services/`;
  }

  /** The key of an instance's record. */
  keyOf(instance: ServiceInstance): string {
    return `${this.#root}${instance.service}/${instance.id}`;
  }

  async list(service?: string): Promise<ServiceInstance[]> {
    if (this.#isClosed()) throw closedError(this.#settings.url);
    try {
      return (await this.#range(service)).instances;
    } catch (error) {
      throw etcdError(this.#settings.url, error);
    }
  }

  watch(service: string | undefined, listener: (event: WatchEvent) => void): Watch {
    if (this.#isClosed()) throw closedError(this.#settings.url);
    if (this.#following === undefined) this.#following = this.#follow();
    const following = this.#following;
    return following.hub.watch(service, listener, () => {
      if (following.hub.size > 0 || this.#following !== following) return;
      this.#following = undefined;
      this.#retire(following);
    });
  }

  /** Stops the watch, and waits until etcd let it go; for the registry's close. */
  async stop(): Promise<void> {
    if (this.#following !== undefined) this.#retire(this.#following);
    this.#following = undefined;
    await Promise.all(this.#retiring);
  }

  #retire(following: Following): void {
    following.controller.abort();
    following.hub.close();
    this.#retiring.add(following.done);
    void following.done.then(() => this.#retiring.delete(following.done));
  }

  #follow(): Following {
    // A new hub each time: one left from an earlier watch would send a stale snapshot first.
    const hub = new WatchHub(this.#settings.url);
    const controller = new AbortController();
    const done = this.#loop(hub, controller.signal).catch((error: unknown) => {
      this.#log.error({ err: error }, `etcd ${this.#settings.url}: watching stopped`);
    });
    return { hub, controller, done };
  }

  /** List, snapshot, watch; again after every disconnection or cancellation, until `signal` aborts. */
  async #loop(hub: WatchHub, signal: AbortSignal): Promise<void> {
    const url = this.#settings.url;
    const maxDelay = retryCeiling(this.#settings);
    let failures = 0;
    while (!signal.aborted) {
      let listed: { instances: ServiceInstance[]; revision: bigint };
      try {
        // Raced against the stop, so that a close need not wait out the call's deadline.
        listed = await unlessAborted(this.#range(undefined), signal);
      } catch (error) {
        if (signal.aborted) return;
        const delay = backoff(failures++, 100, maxDelay);
        this.#log.warn(
          `etcd ${url}: listing the instances to watch failed, trying again in ${delay} ms: ${describe(error)}`,
        );
        hub.error(etcdError(url, error));
        await pause(delay, signal);
        continue;
      }
      if (signal.aborted) return;
      hub.resync(listed.instances);
      const end = await this.#watch(hub, listed.revision + 1n, signal);
      if (end.kind === "stopped") {
        const timeout = new AbortController();
        await Promise.race([end.cancelled, pause(CANCEL_TIMEOUT_MS, timeout.signal)]);
        timeout.abort();
        return;
      }
      if (end.upMs >= HEALTHY_MS) failures = 0;
      if (end.kind === "disconnected") {
        this.#log.warn(`etcd ${url}: the watch lost its connection: ${describe(end.error)}`);
        hub.error(etcdError(url, end.error));
      } else if (end.error.message.trim().endsWith(":")) {
        // etcd gives no reason when the start revision was compacted: list again, from now.
        this.#log.info(`etcd ${url}: the watch's start revision was compacted; listing again`);
        if (failures === 0) {
          failures++;
          continue;
        }
      } else {
        this.#log.warn(`etcd ${url}: etcd cancelled the watch: ${describe(end.error)}`);
        hub.error(etcdError(url, end.error));
      }
      await pause(backoff(failures++, 100, maxDelay), signal);
    }
  }

  /** Watches the records from `revision` on, feeding the hub, until the watch ends. */
  #watch(hub: WatchHub, revision: bigint, signal: AbortSignal): Promise<WatchEnd> {
    const watcher = this.#client.watch().prefix(this.#root).startRevision(revision.toString()).watcher();
    return new Promise<WatchEnd>((resolve) => {
      let done = false;
      let connectedAt: number | undefined;
      const upMs = () => (connectedAt === undefined ? 0 : Date.now() - connectedAt);
      const finish = (end: WatchEnd) => {
        if (done) return;
        done = true;
        signal.removeEventListener("abort", stop);
        resolve(end);
      };
      const stop = () => {
        // etcd3 forgets a watcher that etcd cancelled, and cancelling it again would confuse it.
        if (!done) finish({ kind: "stopped", cancelled: watcher.cancel().catch(() => undefined) });
      };
      watcher.on("connected", () => {
        connectedAt ??= Date.now();
      });
      watcher.on("put", (kv) => {
        if (!done) this.#put(hub, kv);
      });
      watcher.on("delete", (kv) => {
        if (done) return;
        const id = this.#idOf(kv.key.toString());
        if (id !== undefined) hub.delete(id);
      });
      watcher.on("disconnected", (error) => {
        // Cancelled now, while etcd3 holds it idle, so that it does not resume on its own from its
        // last revision: the next watch starts after a fresh list.
        void watcher.cancel().catch(() => undefined);
        finish({ kind: "disconnected", error, upMs: upMs() });
      });
      watcher.on("error", (error) => finish({ kind: "cancelled", error, upMs: upMs() }));
      signal.addEventListener("abort", stop, { once: true });
      if (signal.aborted) stop();
    });
  }

  #put(hub: WatchHub, kv: IKeyValue): void {
    const instance = this.#parse(kv);
    if (instance !== undefined) {
      hub.put(instance);
      return;
    }
    // A record that turned bad no longer stands for the instance it was.
    const id = this.#idOf(kv.key.toString());
    if (id !== undefined) hub.delete(id);
  }

  /** The valid instances under the prefix (or one service's), and the revision they were read at. */
  async #range(service: string | undefined): Promise<{ instances: ServiceInstance[]; revision: bigint }> {
    const prefix = service === undefined ? this.#root : `${this.#root}${service}/`;
    const response: IRangeResponse = await this.#client.getAll().prefix(prefix).exec();
    const instances: ServiceInstance[] = [];
    for (const kv of response.kvs) {
      const instance = this.#parse(kv);
      if (instance !== undefined) instances.push(instance);
    }
    return { instances, revision: BigInt(response.header.revision) };
  }

  /** The instance a record holds; a record that is not one is skipped, with a warning. */
  #parse(kv: IKeyValue): ServiceInstance | undefined {
    const key = kv.key.toString();
    const rest = key.slice(this.#root.length);
    const slash = rest.indexOf("/");
    if (slash <= 0 || slash === rest.length - 1) {
      return this.#skip(key, `the key is not ${this.#root}<service>/<id>`);
    }
    let value: unknown;
    try {
      value = JSON.parse(kv.value.toString());
    } catch {
      return this.#skip(key, "the value is not JSON");
    }
    const checked = checkInstance(value);
    if (typeof checked === "string") return this.#skip(key, checked);
    if (checked.service !== rest.slice(0, slash)) {
      return this.#skip(key, `its service ${checked.service} is not the one in its key`);
    }
    if (checked.id !== rest.slice(slash + 1)) return this.#skip(key, `its id ${checked.id} is not the one in its key`);
    return checked;
  }

  #idOf(key: string): string | undefined {
    const rest = key.slice(this.#root.length);
    const slash = rest.indexOf("/");
    return slash <= 0 || slash === rest.length - 1 ? undefined : rest.slice(slash + 1);
  }

  #skip(key: string, reason: string): undefined {
    const url = this.#settings.url;
    this.#log.warn({ key, reason }, `etcd ${url}: skipped the record at ${key}: ${reason}`);
    publishRegistryEvent({ type: "skipped", url, key, reason });
    return undefined;
  }
}
