import type { Logger } from "@gantry/core";
import { publishRegistryEvent, type Registrar, type ServiceInstance } from "@gantry/core/registry";
import { type Etcd3, EtcdLeaseInvalidError } from "etcd3";
import { backoff, pause } from "../retry.js";
import { closedError, describe, etcdError, isPermanent } from "./client.js";
import { type EtcdSettings, retryCeiling } from "./options.js";

/** etcd's default limit of operations in one transaction is 128. */
const PUTS_PER_TXN = 100;
/** Longest wait for the revoke at deregister; past it the records expire with their lease instead. */
const REVOKE_TIMEOUT_MS = 3000;

/** How a keep-alive stream ended. */
type StreamEnd =
  | { readonly kind: "stopped" }
  /** etcd answered that the lease is gone (revoked, expired, or etcd lost its data). */
  | { readonly kind: "lost" }
  | { readonly kind: "broken"; readonly error: unknown };

/** One registration, from register to deregister: aborting it stops everything it started. */
interface Term {
  readonly controller: AbortController;
  keeping: Promise<void> | undefined;
}

/**
 * Holds this process's instances in etcd: one lease with the URL's TTL for all of them, kept alive on
 * one stream, each instance a key under the lease (`<prefix>/services/<service>/<id>` → its JSON).
 *
 * It stops believing in its lease only when etcd says the lease is gone; until then a broken stream
 * is reopened, with backoff, and the lease checked. etcd keeps leases across its own restarts, so an
 * outage of etcd alone loses nothing; a lease that did expire (or was revoked, or etcd came back
 * empty) is replaced and every record written again, by itself, until deregister or close.
 */
export class EtcdRegistrar implements Registrar {
  readonly #client: Etcd3;
  readonly #settings: EtcdSettings;
  readonly #log: Logger;
  readonly #keyOf: (instance: ServiceInstance) => string;
  readonly #isClosed: () => boolean;
  readonly #instances = new Map<string, ServiceInstance>();
  /** The lease the records are under, while etcd has not said it is gone. */
  #lease: string | undefined;
  #term: Term = newTerm();
  /** Grants, puts and revokes run one at a time, in order. */
  #tail: Promise<unknown> = Promise.resolve();

  constructor(
    client: Etcd3,
    settings: EtcdSettings,
    log: Logger,
    keyOf: (instance: ServiceInstance) => string,
    isClosed: () => boolean,
  ) {
    this.#client = client;
    this.#settings = settings;
    this.#log = log;
    this.#keyOf = keyOf;
    this.#isClosed = isClosed;
  }

  async register(instances: readonly ServiceInstance[], signal?: AbortSignal): Promise<void> {
    const url = this.#settings.url;
    if (this.#isClosed()) throw closedError(url);
    const term = this.#term;
    const now = Date.now();
    for (const instance of instances) this.#instances.set(instance.id, { registeredAt: now, ...instance });
    const stop = signal === undefined ? term.controller.signal : AbortSignal.any([signal, term.controller.signal]);
    for (let attempt = 0; ; attempt++) {
      try {
        await this.#serial(() => this.#putAll(term));
        break;
      } catch (error) {
        const failure = etcdError(url, error);
        if (this.#isClosed()) throw closedError(url);
        if (term.controller.signal.aborted) throw etcdError(url, "deregistered before the registration succeeded");
        if (isPermanent(error)) {
          this.#forget(instances);
          throw failure;
        }
        const delay = backoff(attempt, 100, retryCeiling(this.#settings));
        this.#log.warn(`etcd ${url}: registering failed, trying again in ${delay} ms: ${describe(error)}`);
        await pause(delay, stop);
        if (signal?.aborted) {
          this.#forget(instances);
          throw etcdError(url, `gave up registering: ${describe(error)}`);
        }
      }
    }
    if (term.controller.signal.aborted) throw etcdError(url, "deregistered before the registration succeeded");
    publishRegistryEvent({ type: "registered", url, instances: this.#registered(instances) });
    term.keeping ??= this.#keep(term).catch((error: unknown) => {
      this.#log.error({ err: error }, `etcd ${url}: keeping the registration stopped`);
    });
  }

  async deregister(): Promise<void> {
    if (this.#isClosed()) throw closedError(this.#settings.url);
    await this.stop();
  }

  /** Deregisters, if anything is registered; for the registry's close. */
  async stop(): Promise<void> {
    const term = this.#term;
    this.#term = newTerm();
    term.controller.abort();
    await term.keeping;
    const instances = [...this.#instances.values()];
    this.#instances.clear();
    const revoked = await this.#serial(() => this.#revoke());
    if (revoked && instances.length > 0) {
      publishRegistryEvent({ type: "deregistered", url: this.#settings.url, instances });
    }
  }

  /** Keeps the lease alive until the term ends; puts the records again whenever the lease is lost. */
  async #keep(term: Term): Promise<void> {
    const url = this.#settings.url;
    const signal = term.controller.signal;
    const maxDelay = retryCeiling(this.#settings);
    let failures = 0;
    /** Set from the first failure until the records are known to be in place again. */
    let trouble = false;
    const lost = (error: unknown) => {
      if (!trouble) publishRegistryEvent({ type: "lost", url, error: etcdError(url, error) });
      trouble = true;
    };
    const recovered = () => {
      failures = 0;
      if (!trouble) return;
      trouble = false;
      this.#log.info(`etcd ${url}: the registration holds again`);
      publishRegistryEvent({ type: "registered", url, instances: [...this.#instances.values()] });
    };
    while (!signal.aborted) {
      let failure: unknown;
      try {
        const lease = this.#lease;
        if (lease === undefined) {
          await this.#serial(() => this.#putAll(term));
          recovered();
          continue;
        }
        if (trouble && !(await this.#alive(lease))) {
          this.#dropLease(lease);
          this.#log.warn(`etcd ${url}: lease ${hex(lease)} expired while etcd was out of reach; registering again`);
          continue;
        }
        const end = await this.#stream(lease, signal, recovered);
        if (end.kind === "stopped") return;
        if (end.kind === "lost") {
          this.#dropLease(lease);
          lost(new Error(`lease ${hex(lease)} expired or was revoked`));
          this.#log.warn(`etcd ${url}: lease ${hex(lease)} expired or was revoked; registering again`);
          continue;
        }
        failure = end.error;
      } catch (error) {
        if (signal.aborted) return;
        failure = error;
      }
      lost(failure);
      const delay = backoff(failures++, 100, maxDelay);
      this.#log.warn(`etcd ${url}: keeping the registration failed, trying again in ${delay} ms: ${describe(failure)}`);
      await pause(delay, signal);
    }
  }

  /**
   * Keeps `lease` alive on one stream, sending every TTL/3 as etcd's own clients do, until the
   * stream breaks, etcd says the lease is gone, no answer comes within a TTL, or `signal` aborts.
   */
  async #stream(lease: string, signal: AbortSignal, alive: () => void): Promise<StreamEnd> {
    const stream = await this.#client.leaseClient.leaseKeepAlive();
    const ttlMs = this.#settings.ttlSeconds * 1000;
    return new Promise<StreamEnd>((resolve) => {
      let done = false;
      const finish = (end: StreamEnd) => {
        if (done) return;
        done = true;
        clearInterval(ticker);
        clearTimeout(watchdog);
        signal.removeEventListener("abort", stop);
        try {
          stream.end();
        } catch {
          // Already closed by the error that ended it.
        }
        resolve(end);
      };
      const silence = () =>
        setTimeout(
          () => finish({ kind: "broken", error: new Error(`no keep-alive answer within ${ttlMs} ms`) }),
          ttlMs,
        ).unref();
      const send = () => {
        try {
          stream.write({ ID: lease });
        } catch (error) {
          finish({ kind: "broken", error });
        }
      };
      const stop = () => finish({ kind: "stopped" });
      let watchdog = silence();
      const ticker = setInterval(send, ttlMs / 3).unref();
      stream.on("data", (answer) => {
        if (done) return;
        if (Number(answer.TTL) <= 0) return finish({ kind: "lost" });
        clearTimeout(watchdog);
        watchdog = silence();
        alive();
      });
      stream.on("error", (error) => finish({ kind: "broken", error }));
      stream.on("end", () => finish({ kind: "broken", error: new Error("etcd ended the keep-alive stream") }));
      signal.addEventListener("abort", stop, { once: true });
      if (signal.aborted) stop();
      else send();
    });
  }

  /** Asks etcd whether `lease` still exists. */
  async #alive(lease: string): Promise<boolean> {
    try {
      const answer = await this.#client.leaseClient.leaseTimeToLive({ ID: lease });
      return Number(answer.TTL) > 0;
    } catch (error) {
      if (error instanceof EtcdLeaseInvalidError) return false;
      throw error;
    }
  }

  /** Grants a lease if there is none, and puts every record under it. */
  async #putAll(term: Term): Promise<void> {
    if (term.controller.signal.aborted) throw new Error("deregistered");
    if (this.#lease === undefined) {
      const granted = await this.#client.leaseClient.leaseGrant({ TTL: this.#settings.ttlSeconds });
      this.#lease = granted.ID;
    }
    const lease = this.#lease;
    const records = [...this.#instances.values()];
    try {
      for (let i = 0; i < records.length; i += PUTS_PER_TXN) {
        await this.#client.kv.txn({
          success: records.slice(i, i + PUTS_PER_TXN).map((instance) => ({
            request_put: {
              key: Buffer.from(this.#keyOf(instance)),
              value: Buffer.from(JSON.stringify(instance)),
              lease,
            },
          })),
        });
      }
    } catch (error) {
      if (error instanceof EtcdLeaseInvalidError) this.#dropLease(lease);
      throw error;
    }
  }

  /** Revokes the lease, which deletes every record at once; false when nothing was registered. */
  async #revoke(): Promise<boolean> {
    const lease = this.#lease;
    this.#lease = undefined;
    if (lease === undefined) return false;
    try {
      await this.#client.leaseClient.leaseRevoke({ ID: lease }, { deadline: Date.now() + REVOKE_TIMEOUT_MS });
    } catch (error) {
      if (!(error instanceof EtcdLeaseInvalidError)) {
        this.#log.warn(
          `etcd ${this.#settings.url}: revoking the lease failed, so the records stay until it expires (within ${this.#settings.ttlSeconds} s): ${describe(error)}`,
        );
      }
    }
    return true;
  }

  #dropLease(lease: string): void {
    if (this.#lease === lease) this.#lease = undefined;
  }

  #forget(instances: readonly ServiceInstance[]): void {
    for (const instance of instances) this.#instances.delete(instance.id);
  }

  /** The records as registered (with the time they were first registered). */
  #registered(instances: readonly ServiceInstance[]): ServiceInstance[] {
    return instances.map((instance) => this.#instances.get(instance.id) ?? instance);
  }

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#tail.then(fn, fn);
    this.#tail = run.catch(() => undefined);
    return run;
  }
}

/** A lease ID as etcdctl shows it. */
function hex(lease: string): string {
  return BigInt(lease).toString(16);
}

function newTerm(): Term {
  return { controller: new AbortController(), keeping: undefined };
}
