import { publishRegistryEvent, type ServiceInstance, type Watch, type WatchEvent } from "@gantry/core/registry";

interface Watcher {
  readonly service: string | undefined;
  readonly listener: (event: WatchEvent) => void;
  /** Until its snapshot is sent, a watcher gets no changes (they are in the snapshot). */
  awaitingSnapshot: boolean;
  closed: boolean;
}

/**
 * The instances a resolver knows, and its watchers. A backend feeds it (`resync` after every
 * (re)connect, `reconcile` after a rescan, `put`/`delete` for single changes); the hub turns that into
 * each watcher's events: a snapshot first, then changes, a new snapshot after every resync.
 */
export class WatchHub {
  readonly #url: string;
  readonly #known = new Map<string, ServiceInstance>();
  readonly #watchers = new Set<Watcher>();
  #synced = false;

  constructor(url: string) {
    this.#url = url;
  }

  /** True once the backend delivered its first full set. */
  get synced(): boolean {
    return this.#synced;
  }

  get size(): number {
    return this.#watchers.size;
  }

  instances(service?: string): ServiceInstance[] {
    return [...this.#known.values()].filter((instance) => service === undefined || instance.service === service);
  }

  /** Adds a watcher; it gets a snapshot now if the hub has synced, else at the first sync. */
  watch(service: string | undefined, listener: (event: WatchEvent) => void, onClose?: () => void): Watch {
    const watcher: Watcher = { service, listener, awaitingSnapshot: true, closed: false };
    this.#watchers.add(watcher);
    if (this.#synced) {
      queueMicrotask(() => {
        if (watcher.awaitingSnapshot) this.#snapshot(watcher);
      });
    }
    return {
      close: () => {
        if (watcher.closed) return;
        watcher.closed = true;
        this.#watchers.delete(watcher);
        onClose?.();
      },
    };
  }

  /** The whole set, after a (re)connect: every watcher gets a new snapshot. */
  resync(instances: readonly ServiceInstance[]): void {
    const { added, removed } = this.#replace(instances);
    this.#synced = true;
    for (const watcher of this.#watchers) this.#snapshot(watcher);
    this.#publish(added, removed);
  }

  /** The whole set, after a rescan on a healthy connection: watchers get only what changed. */
  reconcile(instances: readonly ServiceInstance[]): void {
    if (!this.#synced) {
      this.resync(instances);
      return;
    }
    const { added, removed } = this.#replace(instances);
    for (const instance of added) this.#each(instance, { type: "add", instance });
    for (const instance of removed) this.#each(instance, { type: "remove", instance });
    this.#publish(added, removed);
  }

  put(instance: ServiceInstance): void {
    const previous = this.#known.get(instance.id);
    if (previous !== undefined && sameInstance(previous, instance)) return;
    this.#known.set(instance.id, instance);
    if (!this.#synced) return;
    this.#each(instance, { type: "add", instance });
    this.#publish([instance], []);
  }

  delete(id: string): void {
    const instance = this.#known.get(id);
    if (instance === undefined) return;
    this.#known.delete(id);
    if (!this.#synced) return;
    this.#each(instance, { type: "remove", instance });
    this.#publish([], [instance]);
  }

  /** The registry cannot be reached; watchers keep what they have. */
  error(error: Error): void {
    for (const watcher of this.#watchers) {
      if (watcher.awaitingSnapshot && this.#synced) this.#snapshot(watcher);
      this.#send(watcher, { type: "error", error });
    }
  }

  /** Forgets every instance, as before the first sync (when nobody watches any more). */
  reset(): void {
    this.#known.clear();
    this.#synced = false;
  }

  close(): void {
    for (const watcher of this.#watchers) watcher.closed = true;
    this.#watchers.clear();
  }

  #replace(instances: readonly ServiceInstance[]) {
    const next = new Map(instances.map((instance) => [instance.id, instance]));
    const added: ServiceInstance[] = [];
    const removed: ServiceInstance[] = [];
    for (const [id, instance] of this.#known) if (!next.has(id)) removed.push(instance);
    for (const [id, instance] of next) {
      const previous = this.#known.get(id);
      if (previous === undefined || !sameInstance(previous, instance)) added.push(instance);
    }
    this.#known.clear();
    for (const [id, instance] of next) this.#known.set(id, instance);
    return { added, removed };
  }

  #snapshot(watcher: Watcher): void {
    watcher.awaitingSnapshot = false;
    this.#send(watcher, { type: "snapshot", instances: this.instances(watcher.service) });
  }

  #each(instance: ServiceInstance, event: WatchEvent): void {
    for (const watcher of this.#watchers) {
      if (watcher.awaitingSnapshot) continue;
      if (watcher.service === undefined || watcher.service === instance.service) this.#send(watcher, event);
    }
  }

  #send(watcher: Watcher, event: WatchEvent): void {
    if (watcher.closed) return;
    try {
      watcher.listener(event);
    } catch {
      // A listener's failure is its own: the hub and the other watchers go on.
    }
  }

  #publish(added: readonly ServiceInstance[], removed: readonly ServiceInstance[]): void {
    if (added.length > 0 || removed.length > 0)
      publishRegistryEvent({ type: "changed", url: this.#url, added, removed });
  }
}

/** Two records of one instance say the same. */
export function sameInstance(a: ServiceInstance, b: ServiceInstance): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}
