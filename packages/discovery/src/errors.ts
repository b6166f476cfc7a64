import { defineErrors } from "@gantry/core";

/** Every error @gantry/discovery raises. */
export const discoveryErrors = defineErrors({
  GANTRY_ERR_REGISTRY_SCHEME: {
    status: "FAILED_PRECONDITION",
    message: "unknown registry scheme {scheme} in {url}; known schemes: {known}",
  },
  GANTRY_ERR_REGISTRY_URL: {
    status: "FAILED_PRECONDITION",
    message: "registry URL {url}: {problem}",
  },
  GANTRY_ERR_REGISTRY_UNAVAILABLE: {
    status: "UNAVAILABLE",
    retryable: true,
    message: "registry {url} is unavailable: {reason}",
  },
  GANTRY_ERR_REGISTRY_CLOSED: {
    status: "FAILED_PRECONDITION",
    message: "registry {url} is closed",
  },
  GANTRY_ERR_REGISTRY_NO_TARGET: {
    status: "FAILED_PRECONDITION",
    message: "{url} needs a target per service and has none for {service}; set one in registry.targets",
  },
  // local://
  GANTRY_ERR_LOCAL_DIRECTORY: {
    status: "FAILED_PRECONDITION",
    message: "{url}: the directory {dir} {fault}",
  },
  // dns://
  GANTRY_ERR_DNS_LOOKUP: {
    status: "UNAVAILABLE",
    retryable: true,
    message: "dns: looking up {name} failed: {reason}",
  },
  // etcd://
  GANTRY_ERR_ETCD: {
    status: "UNAVAILABLE",
    retryable: true,
    message: "etcd {url}: {reason}",
  },
});

export type DiscoveryErrorCode = keyof typeof discoveryErrors.definitions;
