import "reflect-metadata";

/**
 * The one module that reads and writes decorator metadata. Every key is namespaced `gantry:`; the
 * decorators only record, and the bootstrap reads what they recorded through these functions.
 */

// biome-ignore lint/suspicious/noExplicitAny: constructors of any shape are recorded
export type Constructor<T = unknown> = abstract new (...args: any[]) => T;

type Target = object;

const KEYS = {
  service: "gantry:service",
  message: "gantry:message",
  fields: "gantry:fields",
  members: "gantry:members",
  inject: "gantry:inject",
  classExtensions: "gantry:class-extensions",
} as const;

/** Reads the metadata a class itself declares (not its bases). */
export function getOwn<T>(key: keyof typeof KEYS, target: Target): T | undefined {
  return Reflect.getOwnMetadata(KEYS[key], target) as T | undefined;
}

export function setOwn(key: keyof typeof KEYS, target: Target, value: unknown): void {
  Reflect.defineMetadata(KEYS[key], value, target);
}

/** A list kept per class, created on first write; bases are merged by the readers below. */
export function ownList<T>(key: keyof typeof KEYS, target: Target): T[] {
  let list = getOwn<T[]>(key, target);
  if (list === undefined) {
    list = [];
    setOwn(key, target, list);
  }
  return list;
}

/** A map kept per class, created on first write. */
export function ownMap<K, V>(key: keyof typeof KEYS, target: Target): Map<K, V> {
  let map = getOwn<Map<K, V>>(key, target);
  if (map === undefined) {
    map = new Map();
    setOwn(key, target, map);
  }
  return map;
}

/** The chain of a class and its bases, most basic first, stopping at Object. */
export function classChain(type: Constructor): Constructor[] {
  const chain: Constructor[] = [];
  for (let current: unknown = type; typeof current === "function" && current !== Function.prototype; ) {
    chain.unshift(current as Constructor);
    current = Object.getPrototypeOf(current);
  }
  return chain;
}

/** The TypeScript design type of a property, as emitDecoratorMetadata recorded it. */
export function designType(prototype: object, key: string | symbol): unknown {
  return Reflect.getMetadata("design:type", prototype, key);
}

export function designParamTypes(target: object, key?: string | symbol): unknown[] | undefined {
  return (
    key === undefined
      ? Reflect.getMetadata("design:paramtypes", target)
      : Reflect.getMetadata("design:paramtypes", target, key)
  ) as unknown[] | undefined;
}

export function designReturnType(prototype: object, key: string | symbol): unknown {
  return Reflect.getMetadata("design:returntype", prototype, key);
}
