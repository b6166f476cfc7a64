/**
 * @gantry/transport-http: serves Gantry services over HTTP/JSON on express 5, with a fast path on
 * node:http for routes no express middleware touches.
 *
 * @example
 * import { httpTransport } from "@gantry/transport-http";
 * export default createApp({ services: [HelloService], transports: [httpTransport({ port: 8080 })] });
 */
import { type HttpTransportOptions } from "./config.js";
import { HttpTransport } from "./transport.js";

export { type HttpClientOptions, httpClientTransport } from "./client.js";
export {
  type CorsOptions,
  type HttpConfig,
  type HttpTransportOptions,
  httpConfigSchema,
  type ServingPath,
} from "./config.js";
export { httpErrors } from "./errors.js";
export { HttpTransport, type ServingStats } from "./transport.js";

/** Creates the HTTP transport. Its options are defaults for the `http.*` config keys. */
export function httpTransport(options: HttpTransportOptions = {}): HttpTransport {
  return new HttpTransport(options);
}
