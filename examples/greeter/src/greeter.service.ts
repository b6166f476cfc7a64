import { ProtoService } from "@gantry/transport-grpc";

/** helloworld.HelloRequest, with the proto3 JSON names of its fields. */
export interface HelloRequest {
  name: string;
}

/** helloworld.HelloReply */
export interface HelloReply {
  message: string;
}

const GREETINGS = ["Hello", "Hola", "Bonjour"];

/**
 * helloworld.Greeter from proto/helloworld.proto. The proto declares the messages and the rpcs; the
 * class only implements them: rpc SayHello is served by sayHello, rpc SayHelloStream by sayHelloStream.
 * The URL is resolved from this module, so it finds the file from src/ (tests) and dist/ (gantry start).
 */
@ProtoService({ file: new URL("../proto/helloworld.proto", import.meta.url), service: "helloworld.Greeter" })
export class Greeter {
  async sayHello(request: HelloRequest): Promise<HelloReply> {
    return { message: `Hello, ${request.name}` };
  }

  async *sayHelloStream(request: HelloRequest): AsyncGenerator<HelloReply> {
    for (const greeting of GREETINGS) yield { message: `${greeting}, ${request.name}` };
  }
}
