type Source = Readonly<Record<string, string | readonly string[] | undefined>>;

/**
 * Call metadata: HTTP headers and gRPC metadata behind one API. Keys are lower case. Built over the
 * transport's own header object and copied only when first changed.
 *
 * @example
 * const tenant = ctx.metadata.get("x-tenant-id");
 * ctx.responseMetadata.set("x-cache", "hit");
 */
export class Metadata {
  #source: Source | undefined;
  #entries: Map<string, string[]> | undefined;

  constructor(init?: Source | Iterable<readonly [string, string]>) {
    if (init === undefined) return;
    if (Symbol.iterator in init) {
      for (const [key, value] of init as Iterable<readonly [string, string]>) this.append(key, value);
    } else {
      this.#source = init as Source;
    }
  }

  /** The first value of a key. */
  get(key: string): string | undefined {
    if (this.#entries === undefined) {
      const value = this.#source?.[key.toLowerCase()];
      return typeof value === "string" ? value : value?.[0];
    }
    return this.#entries.get(key.toLowerCase())?.[0];
  }

  /** Every value of a key. */
  getAll(key: string): string[] {
    if (this.#entries === undefined) {
      const value = this.#source?.[key.toLowerCase()];
      return value === undefined ? [] : typeof value === "string" ? [value] : [...value];
    }
    return [...(this.#entries.get(key.toLowerCase()) ?? [])];
  }

  has(key: string): boolean {
    return this.get(key) !== undefined;
  }

  set(key: string, value: string): this {
    this.#own().set(checkKey(key), [checkValue(key, value)]);
    return this;
  }

  append(key: string, value: string): this {
    const entries = this.#own();
    const lower = checkKey(key);
    const list = entries.get(lower);
    if (list === undefined) entries.set(lower, [checkValue(key, value)]);
    else list.push(checkValue(key, value));
    return this;
  }

  delete(key: string): this {
    this.#own().delete(key.toLowerCase());
    return this;
  }

  /** Each key with all its values. */
  *entries(): IterableIterator<[string, string[]]> {
    if (this.#entries !== undefined) {
      for (const [key, values] of this.#entries) yield [key, [...values]];
      return;
    }
    for (const [key, value] of Object.entries(this.#source ?? {})) {
      if (value !== undefined) yield [key, typeof value === "string" ? [value] : [...value]];
    }
  }

  get size(): number {
    // Keys whose value is undefined are absent, as entries() and get() treat them.
    return this.#entries?.size ?? Object.values(this.#source ?? {}).filter((value) => value !== undefined).length;
  }

  toJSON(): Record<string, string[]> {
    return Object.fromEntries(this.entries());
  }

  #own(): Map<string, string[]> {
    if (this.#entries === undefined) {
      const entries = new Map<string, string[]>();
      for (const [key, value] of Object.entries(this.#source ?? {})) {
        if (value !== undefined) entries.set(key.toLowerCase(), typeof value === "string" ? [value] : [...value]);
      }
      this.#entries = entries;
      this.#source = undefined;
    }
    return this.#entries;
  }
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9a-z]+$/;

function checkKey(key: string): string {
  const lower = key.toLowerCase();
  if (!TOKEN.test(lower)) throw new TypeError(`metadata key ${JSON.stringify(key)} is not a valid header name`);
  return lower;
}

function checkValue(key: string, value: string): string {
  if (typeof value !== "string" || /[\r\n\0]/.test(value)) {
    throw new TypeError(`metadata ${key}: value must be a string without line breaks`);
  }
  return value;
}
