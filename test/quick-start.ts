import { type CallContext, createApp, Field, Get, Message, Method, Service } from "@gantry/core";
import { grpcTransport } from "@gantry/transport-grpc";
import { httpTransport } from "@gantry/transport-http";

@Message()
class HelloRequest {
  @Field(1, { minLength: 1, maxLength: 64 }) name!: string;
}

@Message()
class HelloReply {
  @Field(1) message!: string;
}

@Service({ package: "hello", version: "v1" })
class HelloService {
  @Get("/hello/:name") // also POST /hello.v1.HelloService/SayHello
  @Method({ output: HelloReply, idempotent: true })
  async sayHello(req: HelloRequest, ctx: CallContext): Promise<HelloReply> {
    ctx.log.info({ name: req.name }, "greeting"); // carries service, method and request id
    return { message: `Hello, ${req.name}` };
  }
}

export default createApp({
  name: "hello",
  services: [HelloService],
  transports: [httpTransport({ port: 8080 }), grpcTransport({ port: 50051 })],
});
