/**
 * A process that registers one instance and holds it until it is killed: the conformance suite
 * SIGKILLs it to check that the backend drops the instance within its TTL.
 *
 * node holder.js <registry-url> <service>
 */
import { createLogger } from "@gantry/core";
import { openRegistry } from "../open.js";
import { instance } from "./index.js";

const [url, service] = process.argv.slice(2);
const registry = await openRegistry(url, { log: createLogger("holder", { level: "warn" }) });
await registry.registrar?.register([instance(service)]);
process.stdout.write("registered\n");
setInterval(() => undefined, 60_000);
