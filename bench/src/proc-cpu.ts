import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";

/**
 * CPU time from /proc, in clock ticks: of one process (the sum over its threads: main thread, GC and
 * libuv workers, all that a server pinned to one core can spend), of this process's finished
 * children (the load generator, once it has exited), and of a whole core (whoever ran on it).
 */

let ticksPerSecond: number | undefined;

/** Clock ticks per second, the unit of /proc's CPU times (`getconf CLK_TCK`, 100 on Linux). */
export function clockTicks(): number {
  ticksPerSecond ??= Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim());
  return ticksPerSecond;
}

/** The fields of /proc/<pid>/stat from field 3 on (see proc(5)): fields[0] is field 3. */
function statFields(pid: number | "self"): string[] {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  // The command name (field 2) is in parentheses and may hold spaces: count fields after the last ")".
  return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
}

/** utime + stime of a running process. */
export function processTicks(pid: number): number {
  const fields = statFields(pid);
  return Number(fields[11]) + Number(fields[12]);
}

/** cutime + cstime of this process: the CPU time of its children that have exited and been waited for. */
export function childrenTicks(): number {
  const fields = statFields("self");
  return Number(fields[13]) + Number(fields[14]);
}

/** Time a core spent running tasks (user, nice, system), whoever they were; not interrupts or idle. */
export function coreTicks(core: number): number {
  const line = readFileSync("/proc/stat", "utf8")
    .split("\n")
    .find((l) => l.startsWith(`cpu${core} `));
  if (line === undefined) throw new Error(`/proc/stat has no line for core ${core}`);
  const [, user, nice, system] = line.split(/\s+/);
  return Number(user) + Number(nice) + Number(system);
}

/** CPU shares over one measured window; 1 is one core fully busy. */
export interface CpuShares {
  /** The server process. */
  readonly server: number;
  /** The server's CPU time over the window, in seconds. */
  readonly serverSeconds: number;
  /** The load generator (a child of this process that ran, and exited, inside the window). */
  readonly load: number;
  /** Everything else that ran on each core: other tenants of the machine. */
  readonly otherOnLoadCore: number;
  readonly otherOnServerCore: number;
}

/**
 * Runs `work` (the load generator, to completion) and measures who used the two cores meanwhile.
 * A server below full use of its core either was not loaded hard enough, or lost its core to
 * another process: the shares on each core tell which.
 */
export async function measureCpu<T>(
  cores: { load: number; server: number },
  serverPid: number,
  work: () => Promise<T>,
): Promise<{ result: T; cpu: CpuShares }> {
  const before = snapshot(cores, serverPid);
  const started = process.hrtime.bigint();
  const result = await work();
  const after = snapshot(cores, serverPid);
  const perSecond = (Number(process.hrtime.bigint() - started) / 1e9) * clockTicks();
  const server = (after.server - before.server) / perSecond;
  const load = (after.children - before.children) / perSecond;
  return {
    result,
    cpu: {
      server,
      serverSeconds: (after.server - before.server) / clockTicks(),
      load,
      otherOnLoadCore: Math.max(0, (after.loadCore - before.loadCore) / perSecond - load),
      otherOnServerCore: Math.max(0, (after.serverCore - before.serverCore) / perSecond - server),
    },
  };
}

function snapshot(cores: { load: number; server: number }, serverPid: number) {
  return {
    server: processTicks(serverPid),
    children: childrenTicks(),
    loadCore: coreTicks(cores.load),
    serverCore: coreTicks(cores.server),
  };
}
