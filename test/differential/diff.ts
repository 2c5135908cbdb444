/**
 * The structural comparison of the differential harness (pure: no I/O). Two JSON answers to the same
 * request, one from Axon and one from Synapse, are first normalized — the ids the session captured
 * become their names (`{{room1}}`), each server's name becomes `<hs>`, other room and event ids become
 * `!…` / `$…` — and then compared: object keys present on one side only, JSON types, list lengths
 * (with a one-line summary of each list, so a reader sees which events differ), and values except
 * where a value is by nature server-specific (tokens, timestamps, device ids, error prose).
 * Lists are compared in order unless `unordered` names them (the spec leaves `state` unordered).
 */

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

export interface Difference {
  /** Where, as `a.b[2].c` (object keys as they are, dots included). */
  path: string;
  kind: 'only-axon' | 'only-synapse' | 'type' | 'value' | 'list';
  axon?: string;
  synapse?: string;
}

export interface Normalizer {
  /** Exact captured values → their names (room ids, event ids, user ids the session captured). */
  captured: Map<string, string>;
  /** The server's own name (`localhost`, `127.0.0.57:40000`), replaced after a `:` by `<hs>`. */
  serverName: string;
}

/** Keys whose values differ by nature between servers: compared by JSON type only. */
export const VOLATILE_KEYS = new Set([
  'origin_server_ts', 'age', 'ts', 'last_active_ago', 'last_seen_ts', 'last_seen_ip', 'last_seen_user_agent',
  'next_batch', 'prev_batch', 'start', 'end', 'next_token', 'prev_token', 'from', 'to', 'since',
  'access_token', 'refresh_token', 'expires_in_ms', 'retry_after_ms', 'device_id', 'session', 'error',
  'txn_id', 'transaction_id', 'home_server', 'base_url',
]);

const typeOf = (v: unknown): string => (v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v);

function normalizeString(s: string, n: Normalizer): string {
  const name = n.captured.get(s);
  if (name !== undefined) return `{{${name}}}`;
  const out = s.split(`:${n.serverName}`).join(':<hs>').split(`//${n.serverName}/`).join('//<hs>/');
  if (/^![^\s]+$/.test(out)) return '!…';
  if (/^\$[^\s]+$/.test(out)) return '$…';
  return out;
}

/** The answer with captured ids named and server names replaced, in keys as in values. */
export function normalize(v: JsonValue, n: Normalizer): JsonValue {
  if (typeof v === 'string') return normalizeString(v, n);
  if (Array.isArray(v)) return v.map((x) => normalize(x, n));
  if (v && typeof v === 'object') {
    const out: Record<string, JsonValue> = {};
    for (const [k, x] of Object.entries(v)) out[normalizeString(k, n)] = normalize(x, n);
    return out;
  }
  return v;
}

/** A short description of one list element: events as `type(state_key)`, the rest as JSON. */
export function summarize(v: JsonValue): string {
  if (v && typeof v === 'object' && !Array.isArray(v)) {
    if (typeof v.type === 'string') {
      const sk = typeof v.state_key === 'string' ? `(${v.state_key})` : '';
      const membership = v.content && typeof v.content === 'object' && !Array.isArray(v.content) && typeof v.content.membership === 'string' ? `=${v.content.membership}` : '';
      const body = v.content && typeof v.content === 'object' && !Array.isArray(v.content) && typeof v.content.body === 'string' ? ` "${v.content.body}"` : '';
      return `${v.type}${sk}${membership}${body}`;
    }
    if (typeof v.rule_id === 'string') return v.rule_id;
    if (typeof v.room_id === 'string') return v.room_id;
    if (typeof v.user_id === 'string') return v.user_id;
  }
  const s = JSON.stringify(v);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

const show = (v: JsonValue): string => {
  const s = JSON.stringify(v);
  return s.length > 120 ? `${s.slice(0, 117)}...` : s;
};

export interface DiffOptions {
  /** A sort key for the elements of a list whose order does not matter (undefined: ordered). */
  unordered?: (path: string) => ((v: JsonValue) => string) | undefined;
}

const childPath = (path: string, key: string) => (path ? `${path}.${key}` : key);

/** Every structural difference between two normalized answers. */
export function structuralDiff(axon: JsonValue, synapse: JsonValue, opts: DiffOptions = {}, path = ''): Difference[] {
  const out: Difference[] = [];
  walk(axon, synapse, path, opts, out);
  return out;
}

function walk(a: JsonValue, s: JsonValue, path: string, opts: DiffOptions, out: Difference[]): void {
  const ta = typeOf(a);
  const ts = typeOf(s);
  if (ta !== ts) {
    out.push({ path, kind: 'type', axon: `${ta} ${show(a)}`, synapse: `${ts} ${show(s)}` });
    return;
  }
  if (Array.isArray(a) && Array.isArray(s)) {
    const key = opts.unordered?.(path);
    const la = key ? [...a].sort((x, y) => cmp(key(x), key(y))) : a;
    const ls = key ? [...s].sort((x, y) => cmp(key(x), key(y))) : s;
    if (la.length !== ls.length) {
      out.push({ path, kind: 'list', axon: `${la.length} [${la.map(summarize).join(', ')}]`, synapse: `${ls.length} [${ls.map(summarize).join(', ')}]` });
      return;
    }
    for (let i = 0; i < la.length; i++) walk(la[i]!, ls[i]!, `${path}[${i}]`, opts, out);
    return;
  }
  if (a && typeof a === 'object' && s && typeof s === 'object' && !Array.isArray(a) && !Array.isArray(s)) {
    for (const k of Object.keys(a)) {
      if (!(k in s)) out.push({ path: childPath(path, k), kind: 'only-axon', axon: show(a[k]!) });
    }
    for (const k of Object.keys(s)) {
      if (!(k in a)) out.push({ path: childPath(path, k), kind: 'only-synapse', synapse: show(s[k]!) });
    }
    for (const k of Object.keys(a)) {
      if (!(k in s)) continue;
      const p = childPath(path, k);
      if (VOLATILE_KEYS.has(k) && typeOf(a[k]!) !== 'object' && typeOf(a[k]!) !== 'array') {
        if (typeOf(a[k]!) !== typeOf(s[k]!)) out.push({ path: p, kind: 'type', axon: `${typeOf(a[k]!)} ${show(a[k]!)}`, synapse: `${typeOf(s[k]!)} ${show(s[k]!)}` });
        continue;
      }
      walk(a[k]!, s[k]!, p, opts, out);
    }
    return;
  }
  if (a !== s) out.push({ path, kind: 'value', axon: show(a), synapse: show(s) });
}

const cmp = (x: string, y: string) => (x < y ? -1 : x > y ? 1 : 0);

/** `*` matches any run of characters; a pattern covers its path and everything under it. */
export function patternMatches(pattern: string, path: string): boolean {
  const re = new RegExp(`^${pattern.split('*').map((p) => p.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*')}(?:$|[.[ ])`);
  return re.test(path);
}

/** One line per difference, for a failure message. */
export function formatDifference(where: string, d: Difference): string {
  const what =
    d.kind === 'only-axon' ? `only in Axon: ${d.axon}`
    : d.kind === 'only-synapse' ? `only in Synapse: ${d.synapse}`
    : d.kind === 'type' ? `type: Axon ${d.axon} / Synapse ${d.synapse}`
    : d.kind === 'list' ? `list:\n      Axon    ${d.axon}\n      Synapse ${d.synapse}`
    : `value: Axon ${d.axon} / Synapse ${d.synapse}`;
  return `${where} ${d.path || '(body)'} — ${what}`;
}
