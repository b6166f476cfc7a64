/**
 * Type tests of typed clients: `tsc -b` compiles this file, and every `@ts-expect-error` line must be
 * an error, so a client that accepted wrong input or gave the wrong output type fails the build.
 */
import {
  type CallContext,
  Field,
  implementedElsewhere,
  Message,
  Method,
  Service,
  type ServiceClient,
} from "../src/index.js";

@Message()
class GreetRequest {
  @Field(1) name!: string;
  @Field(2, { type: "int64" }) times!: bigint;
}

@Message()
class GreetReply {
  @Field(1) message!: string;
}

@Service({ package: "types", version: "v1", name: "GreetService" })
export class GreetApi {
  @Method({ input: GreetRequest, output: GreetReply })
  greet(_req: GreetRequest, _ctx: CallContext): Promise<GreetReply> {
    return implementedElsewhere();
  }
}

export async function typedClients(client: ServiceClient<GreetApi>): Promise<void> {
  const reply: GreetReply = await client.greet({ name: "Ada", times: 2n });
  await client.greet({}); // every field may be left out
  await client.greet({ name: "Ada" }, { timeoutMs: 100, metadata: { "x-tenant": "a" } });
  void reply.message.toUpperCase();
  // @ts-expect-error a field of the wrong type
  await client.greet({ name: 1 });
  // @ts-expect-error an int64 field takes a bigint
  await client.greet({ times: "2" });
  // @ts-expect-error a field the message does not have
  await client.greet({ nmae: "Ada" });
  // @ts-expect-error the output is a GreetReply, not a number
  const wrong: number = await client.greet({});
  void wrong;
  // @ts-expect-error a method the service does not have
  await client.farewell({});
  // @ts-expect-error metadata values are strings
  await client.greet({}, { metadata: { retries: 3 } });
}
