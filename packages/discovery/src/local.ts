import { existsSync, type FSWatcher, type Stats, watch as watchDir } from "node:fs";
import { lstat, mkdir, readdir, readFile, rename, rm, utimes, writeFile } from "node:fs/promises";
import { tmpdir, userInfo } from "node:os";
import { join } from "node:path";
import { config, type Logger } from "@gantry/core";
import {
  checkInstance,
  publishRegistryEvent,
  type Registry,
  type ServiceInstance,
  type WatchEvent,
} from "@gantry/core/registry";
import { discoveryErrors } from "./errors.js";
import { WatchHub } from "./hub.js";
import type { OpenOptions } from "./open.js";
import { backoff, every, pause, reason } from "./retry.js";

/**
 * A registration holder refreshes its records every TTL / 3 and a record not refreshed within its
 * TTL is gone. 5 s: a hung process leaves within seconds, and a heartbeat is one `utimes` per
 * instance every 1.7 s. A process that died (SIGKILL, crash) leaves sooner: readers check that its
 * pid is alive at every rescan.
 */
const DEFAULT_TTL_MS = 5000;
/** Readers rescan at least this often (fs events make most changes show sooner). */
const MAX_RESCAN_MS = 1000;
const NAMESPACE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
/** Write errors that no retry mends: registering fails at once, with the reason. */
const PERMANENT = new Set(["EACCES", "EPERM", "EROFS", "ENOTDIR", "ENAMETOOLONG", "EINVAL"]);
/** A temp file older than this was left by a writer that died between write and rename. */
const STALE_TEMP_MS = 60_000;

/** What a record file holds: the instance and who keeps it alive. */
interface LocalRecord {
  readonly instance: ServiceInstance;
  readonly pid: number;
  readonly ttlMs: number;
}

/**
 * `local://[namespace][?dir=...&ttl=5s]`: the embedded default. No server: one JSON file per
 * instance in a per-user directory (mode 0700) under the namespace, written atomically and refreshed
 * by a heartbeat; readers watch the directory and rescan it. Processes of one user and namespace on
 * one machine see each other; other namespaces (tests, projects) do not.
 */
export async function openLocal(url: URL, options: OpenOptions): Promise<Registry> {
  const namespace = url.host === "" ? "default" : url.host;
  const text = `local://${namespace}`;
  const problem = (what: string) => discoveryErrors.create("GANTRY_ERR_REGISTRY_URL", { url: url.href, problem: what });
  if (!NAMESPACE.test(namespace)) {
    throw problem("the namespace must be letters, digits, '.', '_' or '-' (up to 64), such as local://my-project");
  }
  if (url.pathname !== "" && url.pathname !== "/") throw problem("takes no path; put the namespace in the host");
  for (const key of url.searchParams.keys()) {
    if (key !== "dir" && key !== "ttl") throw problem(`unknown option ${key}; local:// takes dir and ttl`);
  }
  const ttlMs = parseTtl(url.searchParams.get("ttl"), problem);
  const base = url.searchParams.get("dir") ?? defaultBase();
  const dir = join(base, namespace);
  await privateDirectory(base, text);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  return new LocalRegistry(text, dir, ttlMs, options.log);
}

/**
 * The per-user base directory, from the uid alone so that every process of the user agrees whatever
 * its environment: `/run/user/<uid>/gantry` where the system keeps per-user runtime directories,
 * else `<tmp>/gantry-<uid>`.
 */
function defaultBase(): string {
  const uid = userInfo().uid;
  const runtime = `/run/user/${uid}`;
  return existsSync(runtime) ? join(runtime, "gantry") : join(tmpdir(), `gantry-${uid}`);
}

const ttlField = config.duration({ min: 300, max: 3_600_000 });

function parseTtl(raw: string | null, problem: (what: string) => Error): number {
  if (raw === null) return DEFAULT_TTL_MS;
  try {
    return ttlField.parse(raw) ?? DEFAULT_TTL_MS;
  } catch (error) {
    throw problem(`ttl ${reason(error)}`);
  }
}

/** Creates the base directory with mode 0700, and refuses one that other users could write or read. */
async function privateDirectory(base: string, url: string): Promise<void> {
  let info: Stats;
  try {
    await mkdir(base, { recursive: true, mode: 0o700 });
    info = await lstat(base);
  } catch (error) {
    throw discoveryErrors.create("GANTRY_ERR_LOCAL_DIRECTORY", {
      url,
      dir: base,
      fault: `cannot be made: ${reason(error)}`,
    });
  }
  const uid = process.getuid?.();
  const fault = !info.isDirectory()
    ? "is not a directory"
    : uid !== undefined && info.uid !== uid
      ? `belongs to uid ${info.uid}, not ${uid}`
      : (info.mode & 0o077) !== 0
        ? `has mode ${(info.mode & 0o777).toString(8)}; it must be 700`
        : undefined;
  if (fault !== undefined) throw discoveryErrors.create("GANTRY_ERR_LOCAL_DIRECTORY", { url, dir: base, fault });
}

class LocalRegistry implements Registry {
  readonly url: string;
  readonly #dir: string;
  readonly #ttlMs: number;
  readonly #log: Logger;
  readonly #hub: WatchHub;
  /** Files already reported as malformed, by name and mtime: one warning each. */
  readonly #reported = new Set<string>();
  #held: ServiceInstance[] = [];
  #stopHeartbeat: (() => void) | undefined;
  #beating: Promise<void> | undefined;
  #writes = 0;
  #watcher: FSWatcher | undefined;
  #stopRescan: (() => void) | undefined;
  #rescanning: Promise<void> | undefined;
  #rescanAgain = false;
  #closed = false;

  constructor(url: string, dir: string, ttlMs: number, log: Logger) {
    this.url = url;
    this.#dir = dir;
    this.#ttlMs = ttlMs;
    this.#log = log;
    this.#hub = new WatchHub(url);
  }

  readonly registrar = {
    register: (instances: readonly ServiceInstance[], signal?: AbortSignal) => this.#register(instances, signal),
    deregister: () => this.#deregister(),
  };

  readonly resolver = {
    list: async (service?: string) => {
      this.#checkOpen();
      return (await this.#scan()).filter((instance) => service === undefined || instance.service === service);
    },
    watch: (service: string | undefined, listener: (event: WatchEvent) => void) => {
      this.#checkOpen();
      const watch = this.#hub.watch(service, listener, () => {
        if (this.#hub.size === 0) this.#unwatch();
      });
      if (this.#watcher === undefined && this.#stopRescan === undefined) this.#startWatching();
      return watch;
    },
  };

  async close(): Promise<void> {
    if (this.#closed) return;
    await this.#deregister();
    this.#closed = true;
    this.#unwatch();
    this.#hub.close();
  }

  async #register(instances: readonly ServiceInstance[], signal?: AbortSignal): Promise<void> {
    this.#checkOpen();
    for (let attempt = 0; ; attempt++) {
      try {
        await Promise.all(instances.map((instance) => this.#write(instance)));
        break;
      } catch (error) {
        if (PERMANENT.has((error as NodeJS.ErrnoException).code ?? "")) {
          throw discoveryErrors.create("GANTRY_ERR_REGISTRY_UNAVAILABLE", { url: this.url, reason: reason(error) });
        }
        if (signal?.aborted || this.#closed) throw error;
        this.#log.warn(
          { registry: this.url, reason: reason(error) },
          "local registry: could not write a record; retrying",
        );
        await pause(backoff(attempt), signal);
      }
    }
    if (this.#closed || signal?.aborted) {
      // Given up on (start timed out) or closed while writing: leave nothing behind.
      await Promise.all(instances.map((instance) => rm(this.#file(instance.id), { force: true })));
      throw signal?.reason ?? discoveryErrors.create("GANTRY_ERR_REGISTRY_CLOSED", { url: this.url });
    }
    this.#held = [...instances];
    this.#stopHeartbeat ??= every(Math.max(100, Math.floor(this.#ttlMs / 3)), () => {
      // One heartbeat at a time: a slow disk skips a tick rather than piling writes up.
      this.#beating ??= this.#heartbeat().finally(() => {
        this.#beating = undefined;
      });
    });
    publishRegistryEvent({ type: "registered", url: this.url, instances });
  }

  async #deregister(): Promise<void> {
    this.#stopHeartbeat?.();
    this.#stopHeartbeat = undefined;
    const held = this.#held;
    this.#held = [];
    // A heartbeat writing a lost record again must finish first, or its rename would bring it back.
    await this.#beating;
    if (held.length === 0) return;
    await Promise.all(held.map((instance) => rm(this.#file(instance.id), { force: true })));
    publishRegistryEvent({ type: "deregistered", url: this.url, instances: held });
  }

  /** Refreshes every held record; one that vanished (deleted, expired and collected) is written again. */
  async #heartbeat(): Promise<void> {
    const held = this.#held;
    const now = new Date();
    const lost: ServiceInstance[] = [];
    await Promise.all(
      held.map((instance) =>
        utimes(this.#file(instance.id), now, now).catch(() => {
          lost.push(instance);
        }),
      ),
    );
    if (lost.length === 0 || this.#held !== held) return;
    const error = new Error(`${lost.length} record(s) in ${this.#dir} were gone; writing them again`);
    this.#log.warn({ registry: this.url }, `local registry: ${error.message}`);
    publishRegistryEvent({ type: "lost", url: this.url, error });
    try {
      await Promise.all(lost.map((instance) => this.#write(instance)));
      publishRegistryEvent({ type: "registered", url: this.url, instances: lost });
    } catch (failure) {
      this.#log.warn({ registry: this.url, reason: reason(failure) }, "local registry: could not write a record again");
    }
  }

  /** Writes a record atomically: a temp file, then a rename over the record's name. */
  async #write(instance: ServiceInstance): Promise<void> {
    const record: LocalRecord = { instance, pid: process.pid, ttlMs: this.#ttlMs };
    const file = this.#file(instance.id);
    const temp = join(this.#dir, `.${process.pid}-${++this.#writes}-${fileName(instance.id)}.tmp`);
    await mkdir(this.#dir, { recursive: true, mode: 0o700 });
    await writeFile(temp, JSON.stringify(record), { mode: 0o600 });
    await rename(temp, file);
  }

  #file(id: string): string {
    return join(this.#dir, `${fileName(id)}.json`);
  }

  /** Every live instance in the directory; expired records of dead holders are removed on the way. */
  async #scan(): Promise<ServiceInstance[]> {
    let names: string[];
    try {
      names = await readdir(this.#dir);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return [];
      throw discoveryErrors.create("GANTRY_ERR_REGISTRY_UNAVAILABLE", { url: this.url, reason: reason(error) });
    }
    const found = await Promise.all(names.map((name) => this.#read(name)));
    const present = new Set(names);
    for (const key of this.#reported) if (!present.has(key.slice(0, key.lastIndexOf("@")))) this.#reported.delete(key);
    return found.filter((instance) => instance !== undefined);
  }

  async #read(name: string): Promise<ServiceInstance | undefined> {
    const file = join(this.#dir, name);
    let info: Stats;
    try {
      info = await lstat(file);
    } catch {
      return undefined; // Removed while scanning.
    }
    if (name.startsWith(".")) {
      if (name.endsWith(".tmp") && Date.now() - info.mtimeMs > STALE_TEMP_MS) await rm(file, { force: true });
      return undefined;
    }
    if (!name.endsWith(".json")) return undefined;
    // Only a regular file is read: opening a FIFO or a device would block for good.
    if (!info.isFile()) {
      this.#skip(name, info.mtimeMs, "not a regular file");
      return undefined;
    }
    let text: string;
    try {
      text = await readFile(file, "utf8");
    } catch {
      return undefined;
    }
    const record = parseRecord(text, name);
    if (typeof record === "string") {
      this.#skip(name, info.mtimeMs, record);
      return undefined;
    }
    const expired = Date.now() - info.mtimeMs > record.ttlMs;
    if (expired || !alive(record.pid)) {
      await rm(file, { force: true });
      return undefined;
    }
    return record.instance;
  }

  #skip(name: string, mtime: number, why: string): void {
    const key = `${name}@${mtime}`;
    if (this.#reported.has(key)) return;
    this.#reported.add(key);
    this.#log.warn(
      { registry: this.url, file: join(this.#dir, name), reason: why },
      "local registry: skipped a malformed record",
    );
    publishRegistryEvent({ type: "skipped", url: this.url, key: name, reason: why });
  }

  #startWatching(): void {
    this.#stopRescan = every(Math.min(MAX_RESCAN_MS, Math.floor(this.#ttlMs / 3)), () => this.#rescan());
    this.#watchDirectory();
    this.#rescan();
  }

  #watchDirectory(): void {
    try {
      this.#watcher = watchDir(this.#dir, { persistent: false }, (event) => {
        if (event === "rename") this.#rescan();
      });
      this.#watcher.on("error", () => {
        // The directory went away: the periodic rescan recreates the watch.
        this.#watcher?.close();
        this.#watcher = undefined;
      });
    } catch {
      this.#watcher = undefined;
    }
  }

  /** Rescans now, or once more after the running scan (events during a scan are not lost). */
  #rescan(): void {
    if (this.#rescanning !== undefined) {
      this.#rescanAgain = true;
      return;
    }
    if (this.#watcher === undefined && this.#stopRescan !== undefined) this.#watchDirectory();
    this.#rescanning = this.#scan()
      .then(
        (instances) => this.#hub.reconcile(instances),
        (error: Error) => this.#hub.error(error),
      )
      .finally(() => {
        this.#rescanning = undefined;
        if (this.#rescanAgain && this.#stopRescan !== undefined) {
          this.#rescanAgain = false;
          this.#rescan();
        }
      });
  }

  #unwatch(): void {
    this.#hub.reset();
    this.#stopRescan?.();
    this.#stopRescan = undefined;
    this.#watcher?.close();
    this.#watcher = undefined;
  }

  #checkOpen(): void {
    if (this.#closed) throw discoveryErrors.create("GANTRY_ERR_REGISTRY_CLOSED", { url: this.url });
  }
}

/** An instance id as a file name: no separators, nothing hidden. */
function fileName(id: string): string {
  return encodeURIComponent(id).replace(/^\./, "%2E");
}

/** The record in a file's text, or the reason it is not one. */
function parseRecord(text: string, name: string): LocalRecord | string {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return "not JSON";
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) return "not an object";
  const { instance, pid, ttlMs } = value as Record<string, unknown>;
  if (!Number.isSafeInteger(pid) || (pid as number) <= 0) return "pid is not a positive integer";
  if (typeof ttlMs !== "number" || !(ttlMs > 0)) return "ttlMs is not a positive number";
  const checked = checkInstance(instance);
  if (typeof checked === "string") return `instance: ${checked}`;
  if (`${fileName(checked.id)}.json` !== name) return `the file name does not match the instance id ${checked.id}`;
  return { instance: checked, pid: pid as number, ttlMs };
}

/** True if a process with this pid runs (or exists under another user). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}
