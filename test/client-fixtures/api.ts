import { type CallContext, Field, implementedElsewhere, Message, Method, Service } from "@gantry/core";

@Message()
export class WorkRequest {
  /** Chosen by the caller, so that its log lines can be found in the callee's output. */
  @Field(1) id!: string;
  /** How long the call takes on top of the instance's `fixture.delayMs`. */
  @Field(2, { type: "int32", min: 0, max: 60_000 }) sleepMs!: number;
}

@Message()
export class WorkReply {
  @Field(1) id!: string;
  /** The pid of the process that answered, so that tests can count each instance's share. */
  @Field(2) instance!: string;
}

@Message()
export class AppendRequest {
  @Field(1) id!: string;
  @Field(2) value!: string;
}

@Message()
export class AppendReply {
  @Field(1) id!: string;
  @Field(2) instance!: string;
  /** How many values this instance holds after this one. */
  @Field(3, { type: "int32" }) length!: number;
}

@Message()
export class StatsReply {
  @Field(1) instance!: string;
  /** Work calls that reached the method, answered or not. */
  @Field(2, { type: "int32" }) work!: number;
  @Field(3, { type: "int32" }) append!: number;
  /** Calls whose signal aborted while they slept (deadline, cancel, shutdown). */
  @Field(4, { type: "int32" }) aborted!: number;
}

/**
 * The contract of the fault tests' service: what the callers in the test process know of it. One
 * idempotent method (Work), one that is not (Append: running it twice appends twice), and Stats.
 */
@Service({ package: "faults", version: "v1", name: "FaultService" })
export class FaultApi {
  @Method({ input: WorkRequest, output: WorkReply, idempotent: true })
  work(_req: WorkRequest, _ctx: CallContext): Promise<WorkReply> {
    return implementedElsewhere();
  }

  @Method({ input: AppendRequest, output: AppendReply })
  append(_req: AppendRequest): Promise<AppendReply> {
    return implementedElsewhere();
  }

  @Method({ output: StatsReply, idempotent: true })
  stats(): Promise<StatsReply> {
    return implementedElsewhere();
  }
}
