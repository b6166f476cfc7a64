/**
 * Service discovery for Gantry apps: registry backends chosen by URL scheme.
 *
 * - `local://[namespace]` (the default): no server; every process of the same user and namespace on
 *   this machine sees every other.
 * - `etcd://host:2379[,host:2379]`: real clusters, with leases kept alive and a prefix watch.
 * - `dns:///name:port`: the SRV and A records of a Kubernetes headless Service; a resolver only.
 * - `static://host:port[,host:port]`: fixed addresses; a resolver only.
 *
 * @example
 * export default createApp({ services, transports, discovery: discovery() });
 */
export { type DiscoveryOptions, discovery, discoveryConfigSchema } from "./discovery.js";
export { type DiscoveryErrorCode, discoveryErrors } from "./errors.js";
export { type OpenBackend, type OpenOptions, openRegistry, parseRegistryUrl, redact, registrySchemes } from "./open.js";
