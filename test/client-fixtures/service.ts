import { setTimeout as sleep } from "node:timers/promises";
import { type CallContext, type ConfigOf, GantryError, Inject } from "@gantry/core";
import {
  type AppendReply,
  type AppendRequest,
  FaultApi,
  type StatsReply,
  type WorkReply,
  type WorkRequest,
} from "./api.js";
import { FixtureConfig } from "./config.js";

const INSTANCE = String(process.pid);

/** faults.v1.FaultService, as FaultApi declares it. */
export class FaultService extends FaultApi {
  readonly #values: string[] = [];
  #work = 0;
  #append = 0;
  #aborted = 0;

  constructor(@Inject(FixtureConfig) private readonly config: ConfigOf<typeof FixtureConfig>) {
    super();
  }

  override async work(req: WorkRequest, ctx: CallContext): Promise<WorkReply> {
    this.#work++;
    const { delayMs, unavailable } = this.config.fixture;
    if (unavailable) {
      throw new GantryError("UNAVAILABLE", `instance ${INSTANCE} is set to fail`, { code: "FIXTURE_UNAVAILABLE" });
    }
    const ms = delayMs + req.sleepMs;
    if (ms > 0) {
      const started = Date.now();
      try {
        await sleep(ms, undefined, { signal: ctx.signal });
      } catch (error) {
        // What the deadline test looks for: the callee saw its call aborted, why, and when.
        this.#aborted++;
        const reason = ctx.abortReason;
        ctx.log.warn(
          { id: req.id, transport: ctx.transport, afterMs: Date.now() - started, reason: reason?.code },
          "work aborted",
        );
        throw reason ?? error;
      }
    }
    return { id: req.id, instance: INSTANCE };
  }

  override async append(req: AppendRequest): Promise<AppendReply> {
    this.#append++;
    this.#values.push(req.value);
    return { id: req.id, instance: INSTANCE, length: this.#values.length };
  }

  override async stats(): Promise<StatsReply> {
    return { instance: INSTANCE, work: this.#work, append: this.#append, aborted: this.#aborted };
  }
}
