import { Field, Message, registerEnum } from "@gantry/core";

export enum Tone {
  TONE_UNSPECIFIED = 0,
  WARM = 1,
  FORMAL = 2,
}
registerEnum(Tone, "Tone");

@Message({ description: "Who to greet, and how." })
export class HelloRequest {
  @Field(1, { minLength: 1, maxLength: 64, description: "The name to greet" })
  name!: string;

  @Field(2, { enum: Tone })
  tone!: Tone;
}

@Message()
export class HelloReply {
  @Field(1) message!: string;
  @Field(2) greetedAt!: Date;
}

@Message({ description: "Everyone World should greet." })
export class GreetRequest {
  @Field(1, { type: "string", repeated: true, minItems: 1, maxItems: 10, validate: noBlank })
  names!: string[];
}

@Message()
export class GreetReply {
  @Field(1, { type: "string", repeated: true }) messages!: string[];
  @Field(2, { type: "int32" }) count!: number;
}

function noBlank(names: unknown): string | undefined {
  return (names as string[]).some((name) => name.trim() === "") ? "must not hold blank names" : undefined;
}
