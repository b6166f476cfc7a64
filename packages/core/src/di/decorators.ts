import { inject, injectable, optional } from "inversify";
import { type Constructor, ownMap } from "../metadata.js";
import type { Token } from "./token.js";

/** Something that can be injected: a class, a token, or a config schema (which carries its token). */
export type InjectionTarget<T = unknown> = Constructor<T> | Token<T> | { readonly token: Token<T> };

/** @internal What @Inject and @Optional record per constructor parameter. */
export interface ParameterRecord {
  identifier?: Constructor | symbol;
  optional?: boolean;
}

/** The DI identifier of an injectable: config schemas are injected by their token. */
export function identifierOf(target: InjectionTarget): Constructor | symbol {
  return typeof target === "object" && target !== null ? target.token : target;
}

/**
 * Marks a class that is not a service (a repository, a guard) as buildable by DI.
 *
 * @example
 * @Injectable()
 * export class UserRepository { constructor(@Inject(DB) private db: Pool) {} }
 */
export function Injectable(): ClassDecorator {
  return (target) => {
    injectable()(target);
  };
}

/**
 * Injects a token, a class or a config schema into a constructor parameter, where its TypeScript type
 * does not name it (interfaces, primitives, config).
 *
 * @example
 * constructor(@Inject(DB) private db: Pool, @Inject(AppConfig) private config: ConfigOf<typeof AppConfig>) {}
 */
export function Inject(target: InjectionTarget): ParameterDecorator {
  const identifier = identifierOf(target);
  return (type, key, index) => {
    if (key !== undefined) throw new TypeError("@Inject decorates constructor parameters only");
    parameterRecord(type as Constructor, index).identifier = identifier;
    inject(identifier)(type, key, index);
  };
}

/**
 * Lets a constructor parameter be undefined when nothing provides it.
 *
 * @example
 * constructor(@Optional() @Inject(CACHE) private cache?: Cache) {}
 */
export function Optional(): ParameterDecorator {
  return (type, key, index) => {
    if (key !== undefined) throw new TypeError("@Optional decorates constructor parameters only");
    parameterRecord(type as Constructor, index).optional = true;
    optional()(type, key, index);
  };
}

function parameterRecord(type: Constructor, index: number): ParameterRecord {
  const records = ownMap<number, ParameterRecord>("inject", type);
  let record = records.get(index);
  if (record === undefined) {
    record = {};
    records.set(index, record);
  }
  return record;
}
