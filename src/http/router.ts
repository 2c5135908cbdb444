/**
 * Path routing for the uWS front. uWS's own router cannot tell "no such path" (404) from "path
 * exists but not for this method" (405), and hands back parameters still percent-encoded; this
 * one does both, and decodes each parameter once.
 */

export type Method = 'GET' | 'PUT' | 'POST' | 'DELETE' | 'HEAD' | 'OPTIONS' | 'PATCH';

export interface RouteMatch<H> {
  handler: H;
  params: Record<string, string>;
  /** The pattern that matched (the route's name in metrics). */
  pattern: string;
}

interface Route<H> {
  method: Method;
  pattern: string;
  /** The pattern's text before its first parameter: a path without it cannot match. */
  prefix: string;
  regex: RegExp;
  names: string[];
  handler: H;
  /** The pattern's first KEY_SEGMENTS `/`-separated parts: a literal, or null for a parameter (any). */
  head: (string | null)[];
}

/** Path parts (the empty one before the leading `/` included) that pick a path's candidate routes. */
const KEY_SEGMENTS = 5;
/** Candidate lists kept, by those parts (a client sending made-up paths cannot grow it further). */
const CANDIDATES_MAX = 2048;

export type RouteResult<H> = { kind: 'match'; match: RouteMatch<H> } | { kind: 'wrong-method'; allowed: Method[] } | { kind: 'none' };

export class Router<H> {
  private routes: Route<H>[] = [];
  /**
   * Per path head (its first KEY_SEGMENTS parts), the routes whose own literal parts there agree
   * with it, in registration order: a request tries those few instead of every route's prefix.
   */
  private readonly candidates = new Map<string, Route<H>[]>();

  /**
   * `pattern` is a path with `:name` segments (one path segment each) and an optional trailing
   * `*name` that takes the rest of the path, e.g. `/_matrix/key/v2/server/:keyId`.
   */
  add(method: Method, pattern: string, handler: H): this {
    const names: string[] = [];
    const source = pattern
      .split('/')
      .map((seg) => {
        if (seg.startsWith(':')) {
          names.push(seg.slice(1));
          return '([^/]+)';
        }
        if (seg.startsWith('*')) {
          names.push(seg.slice(1));
          return '(.*)';
        }
        return seg.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
      })
      .join('/');
    const param = pattern.search(/[:*]/);
    const parts = pattern.split('/');
    const head: (string | null)[] = [];
    for (let i = 0; i < Math.min(KEY_SEGMENTS, parts.length); i++) {
      const seg = parts[i]!;
      if (seg.startsWith('*')) break; // the rest of the path, whatever it is
      head.push(seg.startsWith(':') ? null : seg);
    }
    this.routes.push({ method, pattern, prefix: param < 0 ? pattern : pattern.slice(0, param), regex: new RegExp(`^${source}$`), names, handler, head });
    this.candidates.clear();
    return this;
  }

  /** The routes that may match a path with these first parts (a route is left out only when one of its literal parts differs). */
  private candidatesFor(path: string): Route<H>[] {
    let end = -1;
    for (let i = 0; i < KEY_SEGMENTS; i++) {
      end = path.indexOf('/', end + 1);
      if (end < 0) break;
    }
    const key = end < 0 ? path : path.slice(0, end);
    const hit = this.candidates.get(key);
    if (hit) return hit;
    const parts = key.split('/');
    const list = this.routes.filter((r) => r.head.every((seg, i) => seg === null || i >= parts.length || seg === parts[i]));
    if (this.candidates.size < CANDIDATES_MAX) this.candidates.set(key, list);
    return list;
  }

  /** Every registered method and pattern, in registration order. */
  patterns(): { method: Method; pattern: string }[] {
    return this.routes.map((r) => ({ method: r.method, pattern: r.pattern }));
  }

  /** The handler registered for exactly this method and pattern, if any. */
  handlerOf(method: Method, pattern: string): H | undefined {
    return this.routes.find((r) => r.method === method && r.pattern === pattern)?.handler;
  }

  match(method: string, path: string): RouteResult<H> {
    const allowed: Method[] = [];
    for (const r of this.candidatesFor(path)) {
      // A string compare before the regex: most of the hundreds of routes fail here.
      if (!path.startsWith(r.prefix)) continue;
      const m = r.regex.exec(path);
      if (!m) continue;
      if (r.method !== method && !(method === 'HEAD' && r.method === 'GET')) {
        allowed.push(r.method);
        continue;
      }
      const params: Record<string, string> = {};
      for (let i = 0; i < r.names.length; i++) {
        const raw = m[i + 1]!;
        try {
          params[r.names[i]!] = decodeURIComponent(raw);
        } catch {
          params[r.names[i]!] = raw; // malformed escapes: handlers validate ids anyway
        }
      }
      return { kind: 'match', match: { handler: r.handler, params, pattern: r.pattern } };
    }
    return allowed.length ? { kind: 'wrong-method', allowed } : { kind: 'none' };
  }
}
