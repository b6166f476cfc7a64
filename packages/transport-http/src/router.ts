import type { HttpMethod, HttpRoute, MethodDescriptor } from "@gantry/core";

/** One route of one method. */
export interface RouteEntry {
  readonly route: HttpRoute;
  readonly method: MethodDescriptor;
  /** The route's header bindings as [field, header] pairs, listed once. */
  readonly headers: readonly (readonly [string, string])[];
}

/** The routes at one path, by HTTP method, with the path's parameter values (still encoded). */
export interface PathMatch {
  readonly entries: ReadonlyMap<HttpMethod, RouteEntry>;
  readonly params: readonly string[];
}

class Node {
  readonly statics = new Map<string, Node>();
  param: Node | undefined;
  entries: Map<HttpMethod, RouteEntry> | undefined;
}

/**
 * Gantry's router, used on both the fast and the express path so that the two match the same way:
 * case-sensitive, one trailing slash ignored, static segments before parameters. Static paths are one
 * map lookup.
 */
export class Router {
  readonly #static = new Map<string, Map<HttpMethod, RouteEntry>>();
  readonly #root = new Node();

  add(entry: RouteEntry): void {
    const { route } = entry;
    let entries: Map<HttpMethod, RouteEntry>;
    if (route.params.length === 0) {
      entries = this.#static.get(route.path) ?? new Map();
      this.#static.set(route.path, entries);
    } else {
      let node = this.#root;
      for (const segment of route.path.split("/").slice(1)) {
        if (segment.startsWith(":")) {
          node.param ??= new Node();
          node = node.param;
        } else {
          let next = node.statics.get(segment);
          if (next === undefined) {
            next = new Node();
            node.statics.set(segment, next);
          }
          node = next;
        }
      }
      node.entries ??= new Map();
      entries = node.entries;
    }
    entries.set(route.method, entry);
  }

  /** The routes at a path (without its query string), or undefined when no route has this path. */
  find(path: string): PathMatch | undefined {
    if (path.length > 1 && path.charCodeAt(path.length - 1) === 47 /* / */) path = path.slice(0, -1);
    const entries = this.#static.get(path);
    if (entries !== undefined) return { entries, params: [] };
    if (path.charCodeAt(0) !== 47) return undefined;
    const params: string[] = [];
    const found = match(this.#root, path, 1, params);
    return found === undefined ? undefined : { entries: found, params };
  }
}

function match(node: Node, path: string, start: number, params: string[]): Map<HttpMethod, RouteEntry> | undefined {
  if (start > path.length) return node.entries;
  let end = path.indexOf("/", start);
  if (end === -1) end = path.length;
  const segment = path.slice(start, end);
  const next = node.statics.get(segment);
  if (next !== undefined) {
    const found = match(next, path, end + 1, params);
    if (found !== undefined) return found;
  }
  if (node.param !== undefined && segment !== "") {
    params.push(segment);
    const found = match(node.param, path, end + 1, params);
    if (found !== undefined) return found;
    params.pop();
  }
  return undefined;
}
