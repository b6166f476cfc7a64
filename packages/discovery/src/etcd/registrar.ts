import type { Logger } from "@gantry/core";
import { publishRegistryEvent, type Registrar, type ServiceInstance } from "@gantry/core/registry";
import { type Etcd3, EtcdLeaseInvalidError } from "etcd3";
import { backoff, pause } from "../retry.js";
import { closedError, describe, etcdError, isPermanent, unlessAborted, withTimeout } from "./client.js";
import { type EtcdSettings, retryCeiling } from "./options.js";

/** etcd's default limit of operations in one transaction is 128. */
const PUTS_PER_TXN = 100;
/** Longest wait for the revoke at deregister; past it the records expire with their lease instead. */
const REVOKE_TIMEOUT_MS = 2000;
/**
 * A keep-alive stream that stayed up this long after its first answer was healthy: the next failure
 * starts the backoff over. A stream that answers and then breaks at once is reopened with a growing
 * backoff instead.
 */
const HEALTHY_MS = 1000;

/** How a keep-alive stream ended; `healthy` when it had stayed up for HEALTHY_MS after its first answer. */
type StreamEnd =
  | { readonly kind: "stopped" }
  /** etcd answered that the lease is gone (revoked, expired, or etcd lost its data). */
  | { readonly kind: "lost"; readonly healthy: boolean }
  | { readonly kind: "broken"; readonly error: unknown; readonly healthy: boolean };

/**
 * One registration, from register to deregister, with its own instances and lease: a deregister that
 * is still revoking never touches what a register after it writes. Aborting it stops everything it
 * started.
 */
interface Term {
  readonly controller: AbortController;
  readonly instances: Map<string, ServiceInstance>;
  /** The lease the records are under, while etcd has not said it is gone. */
  lease: string | undefined;
  /** The lease every record was last written under: while it is not `lease`, they are written again. */
  written: string | undefined;
  keeping: Promise<void> | undefined;
  /** Grants and puts run one at a time, in order. */
  tail: Promise<unknown>;
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
  #term: Term = newTerm();

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
    for (const instance of instances) term.instances.set(instance.id, { registeredAt: now, ...instance });
    const stop = signal === undefined ? term.controller.signal : AbortSignal.any([signal, term.controller.signal]);
    for (let attempt = 0; ; attempt++) {
      try {
        await this.#serial(term, () => this.#putAll(term));
        break;
      } catch (error) {
        const failure = etcdError(url, error);
        if (this.#isClosed()) throw closedError(url);
        if (term.controller.signal.aborted) throw etcdError(url, "deregistered before the registration succeeded");
        if (isPermanent(error)) {
          this.#forget(term, instances);
          throw failure;
        }
        const delay = backoff(attempt, 100, retryCeiling(this.#settings));
        this.#log.warn(`etcd ${url}: registering failed, trying again in ${delay} ms: ${describe(error)}`);
        await pause(delay, stop);
        if (signal?.aborted) {
          this.#forget(term, instances);
          throw etcdError(url, `gave up registering: ${describe(error)}`);
        }
      }
    }
    if (term.controller.signal.aborted) throw etcdError(url, "deregistered before the registration succeeded");
    publishRegistryEvent({ type: "registered", url, instances: registered(term, instances) });
    term.keeping ??= this.#keep(term).catch((error: unknown) => {
      this.#log.error({ err: error }, `etcd ${url}: keeping the registration stopped`);
    });
  }

  async deregister(): Promise<void> {
    if (this.#isClosed()) throw closedError(this.#settings.url);
    await this.stop();
  }

  /**
   * Deregisters, if anything is registered; for the registry's close. The term's instances and lease
   * are taken before anything is awaited: a register() from here on starts a new term with its own.
   * It waits for no call to etcd but the revoke, and that one only REVOKE_TIMEOUT_MS.
   */
  async stop(): Promise<void> {
    const term = this.#term;
    this.#term = newTerm();
    term.controller.abort();
    const instances = [...term.instances.values()];
    // Quick: the keep-alive loop gives up its calls to etcd when the term aborts.
    await term.keeping;
    const revoked = await this.#revoke(term);
    if (revoked && instances.length > 0) {
      publishRegistryEvent({ type: "deregistered", url: this.#settings.url, instances });
    }
  }

  /** Keeps the lease alive until the term ends; puts the records again whenever they are not under it. */
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
      if (!trouble) return;
      trouble = false;
      this.#log.info(`etcd ${url}: the registration holds again`);
      publishRegistryEvent({ type: "registered", url, instances: [...term.instances.values()] });
    };
    while (!signal.aborted) {
      let failure: unknown;
      try {
        const lease = term.lease;
        if (lease === undefined || term.written !== lease) {
          // A new lease, or one whose records were not all written (a put failed after the grant).
          await unlessAborted(
            this.#serial(term, () => this.#putAll(term)),
            signal,
          );
          recovered();
          continue;
        }
        if (trouble && !(await unlessAborted(this.#alive(lease), signal))) {
          dropLease(term, lease);
          this.#log.warn(`etcd ${url}: lease ${hex(lease)} expired while etcd was out of reach; registering again`);
          continue;
        }
        // The records are under the lease: an answer on the stream means they hold.
        const end = await this.#stream(lease, signal, recovered);
        if (end.kind === "stopped") return;
        if (end.healthy) failures = 0;
        if (end.kind === "lost") {
          dropLease(term, lease);
          lost(new Error(`lease ${hex(lease)} expired or was revoked`));
          this.#log.warn(`etcd ${url}: lease ${hex(lease)} expired or was revoked; registering again`);
          // At once, unless the lease was lost right after it was written: then with backoff.
          if (!end.healthy) await pause(backoff(failures++, 100, maxDelay), signal);
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
    const opening = this.#client.leaseClient.leaseKeepAlive();
    let stream: Awaited<typeof opening>;
    try {
      stream = await unlessAborted(opening, signal);
    } catch (error) {
      if (!signal.aborted) throw error;
      // Still opening (etcd is slow to answer): close it when it opens.
      opening.then(closeStream, () => undefined);
      return { kind: "stopped" };
    }
    const ttlMs = this.#settings.ttlSeconds * 1000;
    return new Promise<StreamEnd>((resolve) => {
      let done = false;
      let answeredAt: number | undefined;
      const healthy = () => answeredAt !== undefined && Date.now() - answeredAt >= HEALTHY_MS;
      const finish = (end: StreamEnd) => {
        if (done) return;
        done = true;
        clearInterval(ticker);
        clearTimeout(watchdog);
        signal.removeEventListener("abort", stop);
        closeStream(stream);
        resolve(end);
      };
      const broken = (error: unknown) => finish({ kind: "broken", error, healthy: healthy() });
      const silence = () =>
        setTimeout(() => broken(new Error(`no keep-alive answer within ${ttlMs} ms`)), ttlMs).unref();
      const send = () => {
        try {
          stream.write({ ID: lease });
        } catch (error) {
          broken(error);
        }
      };
      const stop = () => finish({ kind: "stopped" });
      let watchdog = silence();
      const ticker = setInterval(send, ttlMs / 3).unref();
      stream.on("data", (answer) => {
        if (done) return;
        if (Number(answer.TTL) <= 0) return finish({ kind: "lost", healthy: healthy() });
        answeredAt ??= Date.now();
        clearTimeout(watchdog);
        watchdog = silence();
        alive();
      });
      stream.on("error", broken);
      stream.on("end", () => broken(new Error("etcd ended the keep-alive stream")));
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

  /** Grants the term a lease if it has none, and puts every record under it. */
  async #putAll(term: Term): Promise<void> {
    const signal = term.controller.signal;
    if (signal.aborted) throw new Error("deregistered");
    let lease = term.lease;
    if (lease === undefined) {
      const granted = await this.#client.leaseClient.leaseGrant({ TTL: this.#settings.ttlSeconds });
      // Deregistered meanwhile: nothing is under the new lease, and it expires on its own.
      if (signal.aborted) throw new Error("deregistered");
      lease = granted.ID;
      term.lease = lease;
    }
    const records = [...term.instances.values()];
    try {
      for (let i = 0; i < records.length; i += PUTS_PER_TXN) {
        // A deregister revokes the lease; puts after it would only fail, or land under a dead lease.
        if (signal.aborted) throw new Error("deregistered");
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
      if (error instanceof EtcdLeaseInvalidError) dropLease(term, lease);
      throw error;
    }
    if (term.lease === lease) term.written = lease;
  }

  /** Revokes the term's lease, which deletes every record at once; false when nothing was registered. */
  async #revoke(term: Term): Promise<boolean> {
    const lease = term.lease;
    term.lease = undefined;
    if (lease === undefined) return false;
    const deadline = Date.now() + REVOKE_TIMEOUT_MS;
    try {
      // The call's deadline bounds each try; the timeout bounds them all (and the auth before them).
      await withTimeout(
        this.#client.leaseClient.leaseRevoke({ ID: lease }, { deadline }),
        REVOKE_TIMEOUT_MS,
        `etcd did not answer within ${REVOKE_TIMEOUT_MS} ms`,
      );
    } catch (error) {
      if (!(error instanceof EtcdLeaseInvalidError)) {
        this.#log.warn(
          `etcd ${this.#settings.url}: revoking the lease failed, so the records stay until it expires (within ${this.#settings.ttlSeconds} s): ${describe(error)}`,
        );
      }
    }
    return true;
  }

  #forget(term: Term, instances: readonly ServiceInstance[]): void {
    for (const instance of instances) term.instances.delete(instance.id);
  }

  #serial<T>(term: Term, fn: () => Promise<T>): Promise<T> {
    const run = term.tail.then(fn, fn);
    term.tail = run.catch(() => undefined);
    return run;
  }
}

/** The records as registered (with the time they were first registered). */
function registered(term: Term, instances: readonly ServiceInstance[]): ServiceInstance[] {
  return instances.map((instance) => term.instances.get(instance.id) ?? instance);
}

function dropLease(term: Term, lease: string): void {
  if (term.lease === lease) term.lease = undefined;
}

/**
 * Ends a keep-alive stream at once. `end()` alone would wait for etcd to close its side, which an
 * etcd that does not answer never does. Ended first, the stream is no longer writable, so etcd3 does
 * not take the cancellation for a failure of the host.
 */
function closeStream(stream: { end(): void; cancel(): void }): void {
  for (const close of [() => stream.end(), () => stream.cancel()]) {
    try {
      close();
    } catch {
      // Already closed by the error that ended it.
    }
  }
}

/** A lease ID as etcdctl shows it. */
function hex(lease: string): string {
  return BigInt(lease).toString(16);
}

function newTerm(): Term {
  return {
    controller: new AbortController(),
    instances: new Map(),
    lease: undefined,
    written: undefined,
    keeping: undefined,
    tail: Promise.resolve(),
  };
}
