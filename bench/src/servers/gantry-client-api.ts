/**
 * The contract the client section's server implements and its load generator calls: the gRPC
 * section's `bench.v1.Greeter/SayHello` (proto/greeter.proto), declared as a Gantry contract so that
 * a typed client can be made from it without the server's implementation.
 */
import { Field, implementedElsewhere, Message, Method, Service } from "@gantry/core";

@Message()
export class HelloRequest {
  @Field(1, { minLength: 1, maxLength: 64 }) name!: string;
}

@Message()
export class HelloReply {
  @Field(1) message!: string;
}

@Service({ package: "bench", version: "v1", name: "Greeter" })
export class GreeterApi {
  @Method({ input: HelloRequest, output: HelloReply })
  sayHello(_req: HelloRequest): HelloReply {
    return implementedElsewhere();
  }
}
