import { defaultResource, type Resource, resourceFromAttributes } from "@opentelemetry/resources";
import {
  ATTR_K8S_NAMESPACE_NAME,
  ATTR_K8S_NODE_NAME,
  ATTR_K8S_POD_NAME,
  ATTR_SERVICE_INSTANCE_ID,
  ATTR_SERVICE_NAME,
  ATTR_SERVICE_VERSION,
} from "@opentelemetry/semantic-conventions";
import type { TelemetryOptions } from "./config.js";
import { telemetryErrors } from "./errors.js";

/**
 * The attributes that describe this process, lowest precedence first: the options, the Kubernetes
 * variables, `OTEL_RESOURCE_ATTRIBUTES`, then `OTEL_SERVICE_NAME`.
 */
export function resourceAttributes(
  options: Pick<TelemetryOptions, "serviceName" | "serviceVersion" | "instanceId">,
  env: Readonly<Record<string, string | undefined>>,
): Record<string, string> {
  const attributes: Record<string, string> = {};
  const set = (key: string, value: string | undefined) => {
    if (value !== undefined && value.trim() !== "") attributes[key] = value.trim();
  };
  set(ATTR_SERVICE_NAME, options.serviceName);
  set(ATTR_SERVICE_VERSION, options.serviceVersion);
  set(ATTR_SERVICE_INSTANCE_ID, options.instanceId);
  Object.assign(attributes, kubernetesAttributes(env));
  Object.assign(attributes, parseResourceAttributes(env.OTEL_RESOURCE_ATTRIBUTES));
  set(ATTR_SERVICE_NAME, env.OTEL_SERVICE_NAME);
  return attributes;
}

/** What an app tells of itself once it is loaded; see `TelemetryOptions.app`. */
export interface AppIdentity {
  readonly name: string;
  readonly version: string;
  readonly instanceId: string;
}

/**
 * The SDK's default resource (telemetry.sdk.*, a default service.name) under these attributes, and
 * under them the app's name, version and instance id for whichever of the three they leave unset,
 * once `app` resolves (exporters wait for it; a rejected `app` leaves the defaults).
 */
export function buildResource(attributes: Record<string, string>, app?: Promise<AppIdentity>): Resource {
  const resource = defaultResource().merge(resourceFromAttributes(attributes));
  if (app === undefined) return resource;
  const known = app.catch(() => undefined);
  const late: Record<string, Promise<string | undefined>> = {};
  const fill = (key: string, pick: (identity: AppIdentity) => string) => {
    if (attributes[key] === undefined)
      late[key] = known.then((identity) => (identity === undefined ? undefined : pick(identity)));
  };
  fill(ATTR_SERVICE_NAME, (identity) => identity.name);
  fill(ATTR_SERVICE_VERSION, (identity) => identity.version);
  fill(ATTR_SERVICE_INSTANCE_ID, (identity) => identity.instanceId);
  return resource.merge(resourceFromAttributes(late));
}

/**
 * On Kubernetes (`KUBERNETES_SERVICE_HOST` is set in every pod): the pod's name (`POD_NAME` from the
 * downward API, else `HOSTNAME`, which is the pod's name unless the spec sets another), its namespace
 * (`POD_NAMESPACE`) and node (`NODE_NAME`). Elsewhere those names mean nothing, so none are read.
 */
function kubernetesAttributes(env: Readonly<Record<string, string | undefined>>): Record<string, string> {
  if (!env.KUBERNETES_SERVICE_HOST) return {};
  const attributes: Record<string, string> = {};
  const pod = env.POD_NAME || env.HOSTNAME;
  if (pod) attributes[ATTR_K8S_POD_NAME] = pod;
  if (env.POD_NAMESPACE) attributes[ATTR_K8S_NAMESPACE_NAME] = env.POD_NAMESPACE;
  if (env.NODE_NAME) attributes[ATTR_K8S_NODE_NAME] = env.NODE_NAME;
  return attributes;
}

/** `key=value,key=value`, values percent-encoded, as the specification gives it. */
function parseResourceAttributes(raw: string | undefined): Record<string, string> {
  const attributes: Record<string, string> = {};
  if (raw === undefined || raw.trim() === "") return attributes;
  for (const pair of raw.split(",")) {
    if (pair.trim() === "") continue;
    const equals = pair.indexOf("=");
    const key = pair.slice(0, equals).trim();
    if (equals === -1 || key === "") throw badAttributes(`"${pair}" is not key=value`);
    try {
      attributes[key] = decodeURIComponent(pair.slice(equals + 1).trim());
    } catch {
      throw badAttributes(`the value of ${key} is not percent-encoded`);
    }
  }
  return attributes;
}

function badAttributes(problem: string) {
  return telemetryErrors.create("GANTRY_ERR_TELEMETRY_CONFIG", { source: "OTEL_RESOURCE_ATTRIBUTES", problem });
}
