import { getChannelzHandlers, type ServerUnaryCall } from "@grpc/grpc-js";

/**
 * Calls of this process's grpc-js servers by the status grpc-js sent, from its channelz call
 * tracker: `succeeded` counts calls that ended with status OK on the wire. Both gRPC contenders report
 * it, so the driver can hold each to the same rule: OK replies counted by the server equal the calls
 * h2load saw succeed (h2load sees only the HTTP status, which is 200 for gRPC errors too).
 *
 * Read it while the server is still open: grpc-js forgets a server's counts once it shuts down.
 */
export interface GrpcCalls {
  started: number;
  succeeded: number;
  failed: number;
}

export function grpcCalls(): GrpcCalls {
  const calls: GrpcCalls = { started: 0, succeeded: 0, failed: 0 };
  // The channelz service's own handler; it answers at once (synchronously), from memory.
  const request = { request: { start_server_id: "0", max_results: "0" } } as unknown as ServerUnaryCall<never, never>;
  getChannelzHandlers().GetServers(request, (error, response) => {
    if (error !== null) throw new Error(`channelz GetServers failed: ${error.details}`);
    for (const server of response?.server ?? []) {
      calls.started += Number(server.data?.calls_started ?? 0);
      calls.succeeded += Number(server.data?.calls_succeeded ?? 0);
      calls.failed += Number(server.data?.calls_failed ?? 0);
    }
  });
  return calls;
}
