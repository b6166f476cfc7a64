/**
 * A real DNS server for tests of `dns://`: Debian's dnsmasq on 127.0.0.1, on a free high port, serving
 * the SRV, A and AAAA records a test gives it under the `test` domain (RFC 6761). A name under `test`
 * without records answers NXDOMAIN; `servfail.test` and every name under it answer SERVFAIL; a name
 * outside `test` is REFUSED.
 *
 * @example
 * const dns = await startDnsmasq({
 *   srv: { "_grpc._tcp.hello.test": ["pod-1.hello.test:50051"] },
 *   hosts: { "pod-1.hello.test": ["127.0.0.1"] },
 * });
 * try {
 *   await openRegistry(`dns://${dns.server}/hello.test`, { log });
 * } finally {
 *   await dns.stop();
 * }
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createSocket } from "node:dgram";
import { Resolver } from "node:dns/promises";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer, isIP } from "node:net";
import { tmpdir, userInfo } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

/** The records dnsmasq serves; every name must be under `test`. */
export interface DnsRecords {
  /**
   * SRV records by name, each `target:port`: `{ "_grpc._tcp.hello.test": ["pod-1.hello.test:50051"] }`.
   * A target under `servfail.test` makes the lookup of that target fail.
   */
  readonly srv?: Readonly<Record<string, readonly string[]>>;
  /** A and AAAA records by name: `{ "pod-1.hello.test": ["127.0.0.1", "::1"] }`. */
  readonly hosts?: Readonly<Record<string, readonly string[]>>;
}

/** A running dnsmasq. */
export interface Dnsmasq {
  /** `127.0.0.1:PORT`: the authority of a `dns://` URL, or an entry for `Resolver.setServers`. */
  readonly server: string;
  /** The domain it answers for: a name under it without records is NXDOMAIN. */
  readonly domain: string;
  /** A name that answers SERVFAIL to every query, as do the names under it. */
  readonly servfail: string;
  /**
   * Serves these records instead; resolves once it answers with them. dnsmasq restarts on the same
   * port (queries meanwhile are refused): SIGHUP re-reads only hosts files, not the `srv-host` and
   * `host-record` lines of its config.
   */
  update(records: DnsRecords): Promise<void>;
  /**
   * The queries it received since it started (across updates and restarts), oldest first, as
   * `SRV _grpc._tcp.hello.test`, `A pod-1.hello.test`; only those for `name` if given. (It asks for
   * `ready.test` itself while it starts.)
   */
  queries(name?: string): string[];
  /** Brings a stopped server back on the same port with its last records. */
  start(): Promise<void>;
  /** Stops it: queries are then refused. SIGTERM, then SIGKILL if it has not exited within 2 s. */
  stop(): Promise<void>;
}

const DOMAIN = "test";
const SERVFAIL = `servfail.${DOMAIN}`;
const NAME = /^[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62})(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62}))*$/;
const READY_MS = 5000;
const STOP_MS = 2000;
/** dnsmasq refuses to validate without a root anchor; this is the root zone's published KSK-2017 DS. */
const ROOT_ANCHOR = ".,20326,8,2,E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D";

/** The children still running, killed if the test process exits without stopping them. */
const running = new Set<ChildProcess>();
let exitHookInstalled = false;

/**
 * Starts dnsmasq with these records and resolves once it answers. SERVFAIL comes from DNSSEC: the
 * server forwards `servfail.test` to a second dnsmasq (on its own free port) that answers it without
 * signatures, and holds a trust anchor for `servfail.test` that no key can match, so every answer for
 * it is bogus — dnsmasq answers SERVFAIL for a bogus answer. (An upstream that refuses or is down
 * gives REFUSED or a timeout instead, not SERVFAIL.)
 */
export async function startDnsmasq(records: DnsRecords = {}): Promise<Dnsmasq> {
  const dir = await mkdtemp(join(tmpdir(), "gantry-dnsmasq-"));
  let upstream: Child | undefined;
  let main: Child | undefined;
  let current = render(records);
  const queries: { type: string; name: string }[] = [];
  const onQuery = (type: string, name: string) => {
    if (queries.length < 100_000) queries.push({ type, name: name.toLowerCase() });
  };
  try {
    upstream = await startOnFreePort(dir, "upstream", `local=/${SERVFAIL}/\n`);
    const upstreamPort = upstream.port;
    const config = (body: string) =>
      [
        `local=/${DOMAIN}/`,
        `server=/${SERVFAIL}/127.0.0.1#${upstreamPort}`,
        "dnssec",
        `trust-anchor=${ROOT_ANCHOR}`,
        `trust-anchor=${SERVFAIL},1,8,2,${"0".repeat(64)}`,
        body,
      ].join("\n");
    main = await startOnFreePort(dir, "main", config(current), onQuery);
    const port = main.port;
    let up: Child | undefined = upstream;
    let server: Child | undefined = main;
    let stopped = false;
    return {
      server: `127.0.0.1:${port}`,
      domain: DOMAIN,
      servfail: SERVFAIL,
      async update(next) {
        current = render(next);
        if (stopped) return;
        await server?.stop();
        server = undefined;
        server = await startChild(dir, "main", config(current), port, onQuery);
      },
      queries(name) {
        const wanted = name?.toLowerCase();
        return queries.filter((q) => wanted === undefined || q.name === wanted).map((q) => `${q.type} ${q.name}`);
      },
      async start() {
        if (!stopped) return;
        up = await startChild(dir, "upstream", `local=/${SERVFAIL}/\n`, upstreamPort);
        server = await startChild(dir, "main", config(current), port, onQuery);
        stopped = false;
      },
      async stop() {
        stopped = true;
        await Promise.all([server?.stop(), up?.stop()]);
        server = undefined;
        up = undefined;
        await rm(dir, { recursive: true, force: true });
      },
    };
  } catch (error) {
    await Promise.all([main?.stop(), upstream?.stop()]);
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
}

/** The config lines of the records; a name outside `test` or a bad address is a TypeError. */
function render(records: DnsRecords): string {
  const lines: string[] = [];
  for (const [name, targets] of Object.entries(records.srv ?? {})) {
    checkName(name);
    for (const target of targets) {
      const at = target.lastIndexOf(":");
      const host = target.slice(0, at);
      const port = Number(target.slice(at + 1));
      if (at === -1 || !Number.isInteger(port) || port < 0 || port > 65535) {
        throw new TypeError(`SRV ${name}: ${JSON.stringify(target)} is not target:port`);
      }
      checkName(host, true);
      lines.push(`srv-host=${name},${host},${port}`);
    }
  }
  for (const [name, addresses] of Object.entries(records.hosts ?? {})) {
    checkName(name);
    for (const address of addresses) {
      if (isIP(address) === 0) throw new TypeError(`${name}: ${JSON.stringify(address)} is not an IP address`);
      // One line per address: dnsmasq answers with every host-record of a name.
      lines.push(`host-record=${name},${address}`);
    }
  }
  return `${lines.join("\n")}\n`;
}

/** A name the records may use: under `test`; only an SRV target may be under `servfail.test`. */
function checkName(name: string, target = false): void {
  const lower = name.toLowerCase();
  const under = (domain: string) => lower === domain || lower.endsWith(`.${domain}`);
  if (!NAME.test(name) || name.length > 253 || !under(DOMAIN) || (!target && under(SERVFAIL))) {
    throw new TypeError(`${JSON.stringify(name)} is not a DNS name under .${DOMAIN} (outside ${SERVFAIL})`);
  }
}

interface Child {
  readonly port: number;
  stop(): Promise<void>;
}

/** Starts a dnsmasq on a port that was free a moment ago; another try if it was taken meanwhile. */
async function startOnFreePort(
  dir: string,
  role: string,
  config: string,
  onQuery?: (type: string, name: string) => void,
): Promise<Child> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startChild(dir, role, config, await freePort(), onQuery);
    } catch (error) {
      if (attempt >= 5 || !String(error).includes("Address already in use")) throw error;
    }
  }
}

async function startChild(
  dir: string,
  role: string,
  config: string,
  port: number,
  onQuery?: (type: string, name: string) => void,
): Promise<Child> {
  const file = join(dir, `${role}.conf`);
  await mkdir(dir, { recursive: true });
  await writeFile(file, config);
  const child = spawn(
    "/usr/sbin/dnsmasq",
    [
      "--keep-in-foreground",
      "--no-resolv",
      "--no-hosts",
      "--bind-interfaces",
      "--listen-address=127.0.0.1",
      `--port=${port}`,
      `--pid-file=${join(dir, `${role}.pid`)}`,
      `--user=${userInfo().username}`,
      `--conf-file=${file}`,
      "--log-facility=-",
      ...(onQuery === undefined ? [] : ["--log-queries"]),
    ],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  track(child);
  let output = "";
  let partial = "";
  child.once("error", (error) => {
    output += error.message;
  });
  child.stderr?.setEncoding("utf8").on("data", (chunk: string) => {
    output = (output + chunk).slice(-4000);
    const lines = (partial + chunk).split("\n");
    partial = lines.pop() ?? "";
    for (const line of lines) {
      const query = /: query\[(\w+)\] (\S+) from /.exec(line);
      if (query !== null && onQuery !== undefined) onQuery(query[1], query[2]);
    }
  });
  const exited = new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    child.once("close", () => resolve());
    child.once("error", () => resolve()); // not started: /usr/sbin/dnsmasq is missing (apt-get install dnsmasq-base)
  });
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), STOP_MS);
      await exited;
      clearTimeout(timer);
    }
    running.delete(child);
  };
  let gone = false;
  void exited.then(() => {
    gone = true;
  });
  const resolver = new Resolver({ timeout: 200, tries: 1 });
  resolver.setServers([`127.0.0.1:${port}`]);
  const deadline = Date.now() + READY_MS;
  for (;;) {
    if (gone) {
      running.delete(child);
      throw new Error(`dnsmasq (${role}) exited before it answered on port ${port}: ${output.trim()}`);
    }
    if (await answers(resolver)) return { port, stop };
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`dnsmasq (${role}) did not answer on port ${port} within ${READY_MS} ms: ${output.trim()}`);
    }
    await sleep(20);
  }
}

/**
 * True once the server answers at all (NXDOMAIN, or REFUSED from the upstream, which only answers
 * for `servfail.test`), not a refused port or a timeout. The port was free when dnsmasq started and
 * dnsmasq exits if it cannot bind it, so an answer is this dnsmasq's, with its config loaded.
 */
async function answers(resolver: Resolver): Promise<boolean> {
  try {
    await resolver.resolve4(`ready.${DOMAIN}`);
    return true;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    return code === "ENOTFOUND" || code === "ENODATA" || code === "EREFUSED";
  }
}

/** A port free for both UDP and TCP on 127.0.0.1 a moment ago. */
async function freePort(): Promise<number> {
  for (let attempt = 1; ; attempt++) {
    const port = await new Promise<number>((resolve, reject) => {
      const socket = createSocket("udp4");
      socket.once("error", reject);
      socket.bind(0, "127.0.0.1", () => {
        const { port } = socket.address();
        socket.close(() => resolve(port));
      });
    });
    const tcpFree = await new Promise<boolean>((resolve) => {
      const server = createServer();
      server.once("error", () => resolve(false));
      server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)));
    });
    if (tcpFree || attempt >= 20) return port;
  }
}

function track(child: ChildProcess): void {
  running.add(child);
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once("exit", () => {
    for (const child of running) child.kill("SIGKILL");
  });
}
