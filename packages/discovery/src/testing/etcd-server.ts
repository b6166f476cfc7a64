/**
 * A real etcd for tests and benches: its own free loopback ports and temporary data directory, stopped
 * and started again on the same ports, with TLS and auth when asked. Needs the `etcd` and `etcdctl`
 * binaries (Debian's `etcd-server` and `etcd-client`); `ETCD_BIN` and `ETCDCTL_BIN` override them.
 *
 * @example
 * await using etcd = await startEtcd();
 * const registry = await openRegistry(etcd.url("/my-test", { ttl: "2s" }), { log });
 * await etcd.restart({ empty: true });
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { once } from "node:events";
import { access, mkdir, mkdtemp, open, readFile, rm, writeFile } from "node:fs/promises";
import { request } from "node:https";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

export interface EtcdServerOptions {
  /**
   * Serve clients over TLS, with a CA and a certificate for 127.0.0.1 made with openssl in the
   * server's directory. `{ clientCerts: true }` also gives etcd the CA as `--trusted-ca-file`, with
   * which etcd requires every client to show a certificate signed by it.
   */
  tls?: boolean | { clientCerts: boolean };
  /** Turn auth on, with a `root` user of this password (the etcdctl helper logs in as root). */
  auth?: { password: string };
  /** Longest wait for the server to answer after it is started; 15 s by default. */
  startTimeoutMs?: number;
}

/** The files of a TLS server: its CA, and a client certificate and key signed by that CA. */
export interface EtcdTlsFiles {
  readonly ca: string;
  readonly cert: string;
  readonly key: string;
}

export interface EtcdServer {
  /** `127.0.0.1:<port>`: where clients connect. */
  readonly address: string;
  /** `http://127.0.0.1:<port>`, or `https://` with TLS. */
  readonly endpoint: string;
  readonly dataDir: string;
  /** The CA and client certificate files, when the server uses TLS. */
  readonly tls: EtcdTlsFiles | undefined;
  /** True between a start and a stop. */
  readonly running: boolean;
  /**
   * A registry URL of this server: `etcd://127.0.0.1:<port><prefix>?<params>`, or `etcds://` with
   * `ca` (and `cert`/`key` when the server wants client certificates). With `auth`, the root user's
   * credentials are in it unless `credentials` is false.
   */
  url(prefix?: string, params?: Readonly<Record<string, string>>, options?: { credentials?: boolean }): string;
  /** Runs `etcdctl` (API v3) against this server, as root when auth is on; resolves with its stdout. */
  etcdctl(...args: string[]): Promise<string>;
  /** SIGTERM, then SIGKILL when it has not exited within 5 s. */
  stop(): Promise<void>;
  /** Starts again on the same ports and data, and waits until it answers. */
  start(): Promise<void>;
  /** Stops and starts again on the same ports; `empty` wipes the data first (a new cluster). */
  restart(options?: { empty?: boolean }): Promise<void>;
  /** Stops the server and removes its directory. */
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

const STOP_TIMEOUT_MS = 5000;
const ETCDCTL_TIMEOUT_MS = 15_000;

/** Starts an etcd on free loopback ports with a fresh data directory, and waits until it answers. */
export async function startEtcd(options: EtcdServerOptions = {}): Promise<EtcdServer> {
  const dir = await mkdtemp(join(tmpdir(), "gantry-etcd-"));
  let server: LocalEtcd | undefined;
  try {
    const [clientPort, peerPort] = await freePorts(2);
    const tls = options.tls === undefined || options.tls === false ? undefined : await makeCertificates(dir);
    const clientCerts = typeof options.tls === "object" && options.tls.clientCerts;
    server = new LocalEtcd({ dir, clientPort, peerPort, tls, clientCerts, options });
    await server.start();
    return server;
  } catch (error) {
    // A setup step after the spawn (auth) may fail with etcd running: stop it, not only its directory.
    await server?.close().catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
}

interface LocalEtcdInit {
  dir: string;
  clientPort: number;
  peerPort: number;
  tls: EtcdTlsFiles | undefined;
  clientCerts: boolean;
  options: EtcdServerOptions;
}

class LocalEtcd implements EtcdServer {
  readonly address: string;
  readonly endpoint: string;
  readonly dataDir: string;
  readonly tls: EtcdTlsFiles | undefined;
  readonly #init: LocalEtcdInit;
  #child: ChildProcess | undefined;
  #exited: Promise<unknown> = Promise.resolve();
  #closed = false;
  #authOn = false;
  readonly #killOnExit = () => this.#child?.kill("SIGKILL");

  constructor(init: LocalEtcdInit) {
    this.#init = init;
    this.address = `127.0.0.1:${init.clientPort}`;
    this.endpoint = `${init.tls === undefined ? "http" : "https"}://${this.address}`;
    this.dataDir = join(init.dir, "data");
    this.tls = init.tls;
  }

  get running(): boolean {
    return this.#child !== undefined;
  }

  url(prefix = "", params: Readonly<Record<string, string>> = {}, options: { credentials?: boolean } = {}): string {
    const auth = this.#init.options.auth;
    const credentials =
      auth !== undefined && options.credentials !== false ? `root:${encodeURIComponent(auth.password)}@` : "";
    const query = new URLSearchParams(params);
    if (this.tls !== undefined) {
      query.set("ca", this.tls.ca);
      if (this.#init.clientCerts) {
        query.set("cert", this.tls.cert);
        query.set("key", this.tls.key);
      }
    }
    const search = query.size === 0 ? "" : `?${query}`;
    return `${this.tls === undefined ? "etcd" : "etcds"}://${credentials}${this.address}${prefix}${search}`;
  }

  etcdctl(...args: string[]): Promise<string> {
    const flags = [`--endpoints=${this.endpoint}`, "--dial-timeout=3s", "--command-timeout=10s"];
    if (this.tls !== undefined)
      flags.push(`--cacert=${this.tls.ca}`, `--cert=${this.tls.cert}`, `--key=${this.tls.key}`);
    const auth = this.#init.options.auth;
    if (auth !== undefined && this.#authOn) flags.push(`--user=root:${auth.password}`);
    return run(
      process.env.ETCDCTL_BIN ?? "etcdctl",
      [...flags, ...args],
      { ...process.env, ETCDCTL_API: "3" },
      auth?.password,
    );
  }

  async start(): Promise<void> {
    if (this.#closed) throw new Error("this etcd is closed");
    if (this.#child !== undefined) return;
    const { dir, peerPort, tls, clientCerts, options } = this.#init;
    const fresh = !(await exists(join(this.dataDir, "member")));
    await mkdir(this.dataDir, { recursive: true, mode: 0o700 });
    const peer = `http://127.0.0.1:${peerPort}`;
    const args = [
      "--name=gantry-test",
      `--data-dir=${this.dataDir}`,
      `--listen-client-urls=${this.endpoint}`,
      `--advertise-client-urls=${this.endpoint}`,
      `--listen-peer-urls=${peer}`,
      `--initial-advertise-peer-urls=${peer}`,
      `--initial-cluster=gantry-test=${peer}`,
      "--initial-cluster-state=new",
      // A single member elects itself after the election timeout: keep starts and restarts quick.
      "--heartbeat-interval=25",
      "--election-timeout=250",
      "--logger=zap",
      "--log-outputs=stderr",
      "--log-level=warn",
    ];
    if (tls !== undefined) {
      args.push(`--cert-file=${join(dir, "server.crt")}`, `--key-file=${join(dir, "server.key")}`);
      if (clientCerts) args.push(`--trusted-ca-file=${tls.ca}`, "--client-cert-auth");
    }
    const log = await open(join(dir, "etcd.log"), "a");
    const child = spawn(process.env.ETCD_BIN ?? "etcd", args, { stdio: ["ignore", log.fd, log.fd] });
    // Listen before anything awaits: a spawn failure is emitted on the next tick.
    const spawnError = once(child, "error").then(([error]) => error as Error);
    this.#exited = once(child, "exit").catch(() => undefined);
    let exitCode: number | null | undefined;
    child.once("exit", (code) => {
      exitCode = code;
      if (this.#child === child) this.#child = undefined;
      process.removeListener("exit", this.#killOnExit);
    });
    this.#child = child;
    process.once("exit", this.#killOnExit);
    // The child has its own copy of the log's descriptor.
    await log.close();
    const deadline = Date.now() + (options.startTimeoutMs ?? 15_000);
    for (;;) {
      const failed = await Promise.race([spawnError, sleep(50).then(() => undefined)]);
      if (failed !== undefined) {
        this.#child = undefined;
        process.removeListener("exit", this.#killOnExit);
        throw new Error(`could not start etcd: ${failed.message} (is etcd-server installed?)`);
      }
      if (exitCode !== undefined) throw new Error(`etcd exited with ${exitCode}:\n${await this.#logTail()}`);
      if (await this.#healthy()) break;
      if (Date.now() > deadline) {
        await this.stop();
        throw new Error(`etcd did not answer within ${options.startTimeoutMs ?? 15_000} ms:\n${await this.#logTail()}`);
      }
    }
    if (fresh) this.#authOn = false;
    if (options.auth !== undefined && !this.#authOn) {
      await this.etcdctl("role", "add", "root");
      await this.etcdctl("user", "add", `root:${options.auth.password}`, "--interactive=false");
      await this.etcdctl("user", "grant-role", "root", "root");
      await this.etcdctl("auth", "enable");
      this.#authOn = true;
    }
  }

  async stop(): Promise<void> {
    const child = this.#child;
    if (child === undefined) return;
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), STOP_TIMEOUT_MS);
    await this.#exited;
    clearTimeout(timer);
  }

  async restart(options: { empty?: boolean } = {}): Promise<void> {
    await this.stop();
    if (options.empty === true) await rm(this.dataDir, { recursive: true, force: true });
    await this.start();
  }

  async close(): Promise<void> {
    this.#closed = true;
    await this.stop();
    await rm(this.#init.dir, { recursive: true, force: true });
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  async #healthy(): Promise<boolean> {
    const tls = this.tls;
    return new Promise((resolve) => {
      const get = tls === undefined ? fetchHealth(`${this.endpoint}/health`) : fetchHealthTls(this.endpoint, tls);
      get.then(
        (body) => resolve(body.includes('"health":"true"')),
        () => resolve(false),
      );
    });
  }

  async #logTail(): Promise<string> {
    const text = await readFile(join(this.#init.dir, "etcd.log"), "utf8").catch(() => "");
    return text.split("\n").slice(-20).join("\n");
  }
}

async function fetchHealth(url: string): Promise<string> {
  const response = await fetch(url, { signal: AbortSignal.timeout(1000) });
  return response.text();
}

function fetchHealthTls(endpoint: string, tls: EtcdTlsFiles): Promise<string> {
  return Promise.all([readFile(tls.ca), readFile(tls.cert), readFile(tls.key)]).then(
    ([ca, cert, key]) =>
      new Promise<string>((resolve, reject) => {
        const req = request(`${endpoint}/health`, { ca, cert, key, timeout: 1000 }, (res) => {
          let body = "";
          res.on("data", (chunk: Buffer) => {
            body += chunk.toString();
          });
          res.on("end", () => resolve(body));
          res.on("error", reject);
        });
        req.on("timeout", () => req.destroy(new Error("timed out")));
        req.on("error", reject);
        req.end();
      }),
  );
}

/** A CA, a server certificate for 127.0.0.1 and a client certificate, all short-lived, made by openssl. */
async function makeCertificates(dir: string): Promise<EtcdTlsFiles> {
  const file = (name: string) => join(dir, name);
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  const openssl = (...args: string[]) => run("openssl", args, process.env);
  await openssl(
    "req",
    "-x509",
    ...ec,
    "-days",
    "2",
    "-subj",
    "/CN=gantry test CA",
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign",
    "-keyout",
    file("ca.key"),
    "-out",
    file("ca.crt"),
  );
  const sign = async (name: string, subject: string, extensions: string) => {
    await openssl("req", ...ec, "-subj", subject, "-keyout", file(`${name}.key`), "-out", file(`${name}.csr`));
    await writeFile(file(`${name}.ext`), extensions);
    await openssl(
      "x509",
      "-req",
      "-in",
      file(`${name}.csr`),
      "-CA",
      file("ca.crt"),
      "-CAkey",
      file("ca.key"),
      "-CAcreateserial",
      "-days",
      "2",
      "-extfile",
      file(`${name}.ext`),
      "-out",
      file(`${name}.crt`),
    );
  };
  await sign("server", "/CN=127.0.0.1", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n");
  await sign("client", "/CN=root", "extendedKeyUsage=clientAuth\n");
  return { ca: file("ca.crt"), cert: file("client.crt"), key: file("client.key") };
}

/** Ports free on 127.0.0.1 now, all different. */
async function freePorts(count: number): Promise<number[]> {
  const servers = Array.from({ length: count }, () => createServer());
  try {
    return await Promise.all(
      servers.map(
        (server) =>
          new Promise<number>((resolve, reject) => {
            server.once("error", reject);
            server.listen(0, "127.0.0.1", () => {
              const address = server.address();
              if (address === null || typeof address === "string") reject(new Error("no port"));
              else resolve(address.port);
            });
          }),
      ),
    );
  } finally {
    await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
  }
}

/** Runs `file`; its error names the command, with `secret` (a password in the arguments) masked everywhere. */
function run(file: string, args: string[], env: NodeJS.ProcessEnv, secret?: string): Promise<string> {
  const mask = (text: string) => (secret === undefined || secret === "" ? text : text.replaceAll(secret, "***"));
  return new Promise((resolve, reject) => {
    execFile(file, args, { env, timeout: ETCDCTL_TIMEOUT_MS }, (error, stdout, stderr) => {
      if (error === null) resolve(stdout);
      // execFile's own message repeats the command line, so it is masked too.
      else reject(new Error(mask(`${file} ${args.join(" ")}: ${stderr.trim() || error.message}`)));
    });
  });
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}
