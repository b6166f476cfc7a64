import { Writable } from "node:stream";
import {
  type AppOptions,
  type CallContext,
  createApp,
  Delete,
  Field,
  type GantryApp,
  GantryError,
  Get,
  type Guard,
  Message,
  Method,
  Post,
  Put,
  registerEnum,
  Service,
  UseGuards,
} from "@gantry/core";
import { type HttpTransport, type HttpTransportOptions, httpTransport } from "@gantry/transport-http";

export enum Color {
  COLOR_UNSPECIFIED = 0,
  RED = 1,
  GREEN = 2,
}
registerEnum(Color, "Color");

@Message()
export class Address {
  @Field(1) city!: string;
  @Field(2, { type: "int32" }) zip!: number;
}

@Message()
export class ItemRequest {
  @Field(1, { minLength: 1, maxLength: 16 }) id!: string;
  @Field(2, { type: "int64" }) count!: bigint;
  @Field(3, { type: "string", repeated: true }) tags!: string[];
  @Field(4, { enum: Color }) color!: Color;
  @Field(5) address!: Address;
  @Field(6, { optional: true }) tenant?: string;
  @Field(7, { map: { key: "string", value: "int32" } }) scores!: Record<string, number>;
  @Field(8, { type: "int32", min: 0, max: 100 }) percent!: number;
}

@Message()
export class PatchRequest {
  @Field(1) id!: string;
  @Field(2) address!: Address;
  @Field(3, { type: "string", repeated: true }) tags!: string[];
}

@Message()
export class SleepRequest {
  @Field(1, { type: "int32" }) ms!: number;
}

@Message()
export class SleepReply {
  @Field(1) aborted!: boolean;
}

@Message()
export class FailRequest {
  @Field(1) kind!: string;
}

@Message()
export class Empty2 {}

/** Calls the sleep method aborted, for tests that cancel. */
export const aborts: string[] = [];

class DenyGuard implements Guard {
  canActivate(context: { call: CallContext }) {
    return context.call.metadata.get("x-allow") === "yes";
  }
}

@Service({ package: "test", version: "v1" })
export class ItemService {
  @Get("/items/:id", { headers: { tenant: "x-tenant" } })
  @Method({ output: ItemRequest, idempotent: true })
  async getItem(req: ItemRequest, ctx: CallContext): Promise<ItemRequest> {
    ctx.responseMetadata.set("x-item", req.id);
    return req;
  }

  @Post("/items", { status: 201 })
  @Method({ output: ItemRequest })
  async createItem(req: ItemRequest): Promise<ItemRequest> {
    return req;
  }

  @Put("/items/:id/address", { body: "address" })
  @Method({ input: PatchRequest, output: PatchRequest })
  async setAddress(req: PatchRequest): Promise<PatchRequest> {
    return req;
  }

  @Delete("/items/:id")
  @Method({ input: PatchRequest, output: Empty2 })
  async deleteItem(): Promise<Empty2> {
    return {};
  }

  @Post("/sleep")
  @Method({ output: SleepReply })
  async sleep(req: SleepRequest, ctx: CallContext): Promise<SleepReply> {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, req.ms);
      ctx.signal.addEventListener("abort", () => {
        clearTimeout(timer);
        aborts.push(ctx.requestId);
        resolve();
      });
    });
    return { aborted: ctx.signal.aborted };
  }

  @Post("/fail")
  @Method({ output: SleepReply })
  async fail(req: FailRequest): Promise<SleepReply> {
    if (req.kind === "not-found") throw new GantryError("NOT_FOUND", "no such thing", { code: "THING_NOT_FOUND" });
    if (req.kind === "bad-output-field") return { aborted: "yes" } as unknown as SleepReply;
    if (req.kind === "bad-output") return "not an object" as unknown as SleepReply;
    throw new Error("database password is hunter2");
  }

  @Get("/guarded")
  @UseGuards(DenyGuard)
  @Method({ input: ItemRequest, output: Empty2 })
  async guarded(): Promise<Empty2> {
    return {};
  }

  @Method({ input: SleepRequest, output: SleepReply, stream: "server" })
  async *ticks(): AsyncIterable<SleepReply> {
    yield { aborted: false };
  }
}

/** Collects pino lines, for asserting what was logged. */
export class LogLines extends Writable {
  readonly lines: Record<string, unknown>[] = [];
  override _write(chunk: Buffer, _encoding: string, done: () => void): void {
    for (const line of chunk.toString("utf8").split("\n")) if (line !== "") this.lines.push(JSON.parse(line));
    done();
  }
}

export interface Served {
  readonly app: GantryApp;
  readonly http: HttpTransport;
  readonly url: string;
  readonly logs: LogLines;
  close(): Promise<void>;
}

/** Starts an app with the HTTP transport on 127.0.0.1, port 0. */
export async function serve(
  options: HttpTransportOptions = {},
  app: Partial<AppOptions> = {},
  configure?: (http: HttpTransport) => void,
): Promise<Served> {
  const http = httpTransport({ port: 0, host: "127.0.0.1", ...options });
  configure?.(http);
  const logs = new LogLines();
  const gantry = createApp({
    services: [ItemService],
    transports: [http],
    logger: { destination: logs },
    ...app,
  });
  await gantry.start({ env: {} });
  return { app: gantry, http, url: gantry.endpoints[0].url, logs, close: () => gantry.close() };
}

export async function json(response: Response): Promise<Record<string, unknown>> {
  return (await response.json()) as Record<string, unknown>;
}
