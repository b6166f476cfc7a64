/** A typed DI token for values that are not classes (config, clients, connection pools). */
export type Token<T> = symbol & { readonly __gantryTokenOf?: T };

/**
 * Creates a DI token. Provide it with `{ provide: TOKEN, useValue | useFactory }` and inject it with
 * `@Inject(TOKEN)`.
 *
 * @example
 * export const DB = createToken<Pool>("db");
 */
export function createToken<T>(description: string): Token<T> {
  return Symbol(description) as Token<T>;
}
