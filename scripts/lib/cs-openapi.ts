/**
 * The Client-Server API's operations as the spec's OpenAPI files give them
 * (`matrix-spec/data/api/client-server/*.yaml`): method, full path, whether an access token is
 * required, optional or not taken, and the top level of the success response's JSON schema
 * (required fields and each field's type). Used by scripts/conformance-audit.ts and by
 * test/e2e/openapi-routes.e2e.test.ts; `$ref`s across files and `allOf` are resolved.
 */
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';

type Json = Record<string, any>;

export type AuthRule = 'required' | 'optional' | 'none';

export interface SpecOperation {
  method: 'GET' | 'PUT' | 'POST' | 'DELETE';
  /** Full path with the spec's `{param}` names, e.g. `/_matrix/client/v3/rooms/{roomId}/join`. */
  path: string;
  /** The OpenAPI file, e.g. `joining.yaml`. */
  file: string;
  operationId: string;
  deprecated: boolean;
  auth: AuthRule;
  /** The lowest 2xx status the spec lists (most are 200; SSO redirects are 302). */
  successStatus: number;
  /** Top-level fields the success body must have, and the JSON type of each field the schema types. */
  requiredFields: string[];
  fieldTypes: Record<string, string[]>;
  /** Whether the success body is JSON at all (media downloads are not). */
  jsonResponse: boolean;
  /**
   * The success body checked against the whole schema, nested objects, arrays and maps included
   * (required fields, JSON types, string enums; `oneOf`/`anyOf` pass when one alternative does):
   * one line per problem, e.g. `rooms.join.!a:b.timeline: missing limited`.
   */
  responseProblems(body: unknown): string[];
  /** Whether the request takes a JSON body, and the top-level fields its schema requires. */
  jsonBody: boolean;
  requestRequired: string[];
  /** The first example of the JSON request body, if the spec gives one. */
  exampleBody?: unknown;
  /** Query parameters the spec marks required. */
  requiredQuery: string[];
  /** Every query parameter with its JSON type (`integer`, `boolean`, `string`…; '' when unstated). */
  queryParams: { name: string; type: string }[];
}

const repoRoot = fileURLToPath(new URL('../..', import.meta.url));

/**
 * Where the spec's `data/` is: `$AXON_MATRIX_SPEC_DIR`, else `shared/matrix-spec` beside the
 * repository (as CI and the lead's checkout have it), else `/work/shared/matrix-spec` (worktrees).
 */
export function specDataDir(): string {
  const candidates = [process.env.AXON_MATRIX_SPEC_DIR, join(repoRoot, '..', 'shared', 'matrix-spec'), '/work/shared/matrix-spec'].filter((x): x is string => !!x);
  for (const c of candidates) {
    const data = c.endsWith('data') ? c : join(c, 'data');
    if (existsSync(join(data, 'api', 'client-server'))) return data;
  }
  throw new Error(`The Matrix spec's data/ was not found (tried ${candidates.join(', ')}); set AXON_MATRIX_SPEC_DIR`);
}

class RefResolver {
  private docs = new Map<string, Json>();

  load(file: string): Json {
    let d = this.docs.get(file);
    if (!d) {
      d = parseYaml(readFileSync(file, 'utf8')) as Json;
      this.docs.set(file, d);
    }
    return d;
  }

  /** Follow `$ref`s until a node without one; returns the node and the file it lives in. */
  deref(node: any, file: string): { node: any; file: string } {
    let guard = 0;
    while (node && typeof node === 'object' && typeof node.$ref === 'string' && guard++ < 20) {
      const [target, pointer] = (node.$ref as string).split('#') as [string, string | undefined];
      const targetFile = target ? resolve(dirname(file), target) : file;
      let n: any = this.load(targetFile);
      for (const part of (pointer ?? '').split('/').filter(Boolean)) n = n?.[part.replace(/~1/g, '/').replace(/~0/g, '~')];
      node = n;
      file = targetFile;
    }
    return { node, file };
  }

  /** The top level of an object schema: `allOf` merged, `$ref`s followed. */
  topLevel(schema: any, file: string): { required: string[]; properties: Record<string, { node: any; file: string }> } {
    const { node, file: f } = this.deref(schema, file);
    const out = { required: [] as string[], properties: {} as Record<string, { node: any; file: string }> };
    if (!node || typeof node !== 'object') return out;
    for (const part of node.allOf ?? []) {
      const sub = this.topLevel(part, f);
      out.required.push(...sub.required);
      Object.assign(out.properties, sub.properties);
    }
    out.required.push(...(node.required ?? []));
    for (const [k, v] of Object.entries(node.properties ?? {})) out.properties[k] = { node: v, file: f };
    return out;
  }

  /** Problems of `value` against `schema` (see SpecOperation.responseProblems); `depth` bounds recursion. */
  problems(schema: any, file: string, value: unknown, at: string, depth = 0): string[] {
    if (depth > 24) return [];
    const { node, file: f } = this.deref(schema, file);
    if (!node || typeof node !== 'object') return [];
    const out: string[] = [];
    for (const part of node.allOf ?? []) out.push(...this.problems(part, f, value, at, depth + 1));
    const alts = node.oneOf ?? node.anyOf;
    if (alts) {
      let best: string[] | null = null;
      for (const alt of alts) {
        const p = this.problems(alt, f, value, at, depth + 1);
        if (!p.length) {
          best = [];
          break;
        }
        if (!best || p.length < best.length) best = p;
      }
      out.push(...(best ?? []));
    }
    const types: string[] | undefined = node.type ? (Array.isArray(node.type) ? node.type : [node.type]) : undefined;
    const actual = value === null ? 'null' : Array.isArray(value) ? 'array' : typeof value === 'number' ? (Number.isInteger(value) ? 'integer' : 'number') : typeof value;
    if (types && !types.includes(actual) && !(actual === 'integer' && types.includes('number'))) {
      out.push(`${at || '(body)'}: ${actual}, not ${types.join('|')}`);
      return out;
    }
    if (Array.isArray(node.enum) && typeof value === 'string' && !node.enum.includes(value)) out.push(`${at}: ${JSON.stringify(value)} not in ${JSON.stringify(node.enum)}`);
    if (actual === 'object' && value !== null) {
      const obj = value as Record<string, unknown>;
      for (const r of node.required ?? []) if (!(r in obj)) out.push(`${at || '(body)'}: missing ${r}`);
      const props: Record<string, any> = node.properties ?? {};
      for (const [k, v] of Object.entries(obj)) {
        const child = at ? `${at}.${k}` : k;
        if (k in props) out.push(...this.problems(props[k], f, v, child, depth + 1));
        else if (node.patternProperties) {
          for (const [pat, sch] of Object.entries<any>(node.patternProperties)) if (new RegExp(pat).test(k)) out.push(...this.problems(sch, f, v, child, depth + 1));
        } else if (node.additionalProperties && typeof node.additionalProperties === 'object') out.push(...this.problems(node.additionalProperties, f, v, child, depth + 1));
      }
    }
    if (actual === 'array' && node.items) (value as unknown[]).slice(0, 20).forEach((v, i) => out.push(...this.problems(node.items, f, v, `${at}[${i}]`, depth + 1)));
    return out;
  }

  /** The JSON types a property may have (empty: not stated). */
  typesOf(prop: { node: any; file: string }): string[] {
    const { node, file } = this.deref(prop.node, prop.file);
    if (!node || typeof node !== 'object') return [];
    if (node.type) return Array.isArray(node.type) ? node.type : [node.type];
    if (node.allOf) for (const p of node.allOf) {
      const t = this.typesOf({ node: p, file });
      if (t.length) return t;
    }
    const alts = node.oneOf ?? node.anyOf;
    if (alts) {
      const all = alts.flatMap((p: any) => this.typesOf({ node: p, file }));
      return all.length === alts.length ? [...new Set<string>(all)] : [];
    }
    return [];
  }
}

const METHODS = ['get', 'put', 'post', 'delete'] as const;

/** Every operation of the Client-Server API, sorted by path then method; duplicates (one path
 * described twice, e.g. `/rooms/{roomId}/invite` for users and for 3PIDs) are merged. */
export function loadClientServerOperations(dataDir = specDataDir()): SpecOperation[] {
  const dir = join(dataDir, 'api', 'client-server');
  const refs = new RefResolver();
  const ops = new Map<string, SpecOperation>();
  for (const name of readdirSync(dir).filter((f) => f.endsWith('.yaml')).sort()) {
    const file = join(dir, name);
    const doc = refs.load(file);
    const basePath: string = doc.servers?.[0]?.variables?.basePath?.default ?? '';
    for (const [rawPath, item] of Object.entries<Json>(doc.paths ?? {})) {
      const path = `${basePath}${rawPath.trim()}`;
      for (const m of METHODS) {
        const op = item[m];
        if (!op) continue;
        const method = m.toUpperCase() as SpecOperation['method'];
        const key = `${method} ${path}`;
        const security: Json[] | undefined = op.security ?? doc.security;
        const auth: AuthRule = !security || security.length === 0
          ? 'none'
          : security.some((s) => Object.keys(s).length === 0 || s.signedRequest)
            ? 'optional'
            : security.some((s) => s.accessTokenBearer || s.appserviceAccessTokenBearer) ? 'required' : 'none';
        const codes = Object.keys(op.responses ?? {}).map(Number).filter((c) => c >= 200 && c < 400).sort((a, b) => a - b);
        const successStatus = codes[0] ?? 200;
        const success = refs.deref(op.responses?.[String(successStatus)], file);
        const jsonSchema = success.node?.content?.['application/json']?.schema;
        const top = jsonSchema ? refs.topLevel(jsonSchema, success.file) : { required: [], properties: {} };
        const fieldTypes: Record<string, string[]> = {};
        for (const [k, p] of Object.entries(top.properties)) {
          const t = refs.typesOf(p);
          if (t.length) fieldTypes[k] = t;
        }
        const body = refs.deref(op.requestBody, file).node?.content?.['application/json'];
        const requestRequired = body?.schema ? [...new Set(refs.topLevel(body.schema, refs.deref(op.requestBody, file).file).required)] : [];
        const exampleBody = body?.example ?? (body?.examples ? (Object.values<Json>(body.examples)[0]?.value) : undefined);
        const params = [...(item.parameters ?? []), ...(op.parameters ?? [])].map((p: any) => refs.deref(p, file).node);
        const requiredQuery = params.filter((p: any) => p?.in === 'query' && p.required).map((p: any) => p.name as string);
        const queryParams = params.filter((p: any) => p?.in === 'query').map((p: any) => ({ name: p.name as string, type: String(refs.deref(p.schema, file).node?.type ?? '') }));
        const entry: SpecOperation = {
          method, path, file: name, operationId: op.operationId ?? '', deprecated: !!op.deprecated, auth, successStatus, jsonBody: !!body, requestRequired, queryParams,
          responseProblems: (b: unknown) => (jsonSchema ? [...new Set(refs.problems(jsonSchema, success.file, b, ''))] : []),
          requiredFields: [...new Set(top.required)], fieldTypes, jsonResponse: !!jsonSchema || successStatus !== 200, exampleBody, requiredQuery,
        };
        const prev = ops.get(key);
        if (prev) {
          // One endpoint described twice: the union of what either description requires.
          prev.requiredFields = [...new Set([...prev.requiredFields, ...entry.requiredFields])];
          prev.file = `${prev.file}, ${entry.file}`;
          continue;
        }
        ops.set(key, entry);
      }
    }
  }
  return [...ops.values()].sort((a, b) => a.path.localeCompare(b.path) || a.method.localeCompare(b.method));
}

/** `/_matrix/client/v3/rooms/{roomId}/join` → a RegExp matching the path with any parameter values. */
export function pathPattern(specPath: string): RegExp {
  const src = specPath.split(/(\{[^}]+\})/).map((part) => (part.startsWith('{') ? '[^/]+' : part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))).join('');
  return new RegExp(`^${src}$`);
}

/**
 * The path as the conformance table writes it: `/_matrix/client/v3` dropped (`/rooms/{roomId}/join`),
 * `/_matrix/client/v1` written `/v1` (`/v1/rooms/{roomId}/hierarchy`), `/_matrix/client/versions`
 * written `/versions`; other paths (legacy media, .well-known) whole.
 */
export function shortPath(specPath: string): string {
  return specPath.replace(/^\/_matrix\/client\/v3(?=\/)/, '').replace(/^\/_matrix\/client\/(v1)(?=\/)/, '/$1').replace(/^\/_matrix\/client(?=\/versions$)/, '');
}

export interface ConformanceRow {
  /** `METHOD path` pairs of the row, as written in the table (short paths). */
  endpoints: { method: string; path: string }[];
  status: string;
  /** An issue number for `absent` rows owned by another issue. */
  notes: string;
  line: number;
}

/**
 * The rows of docs/conformance.md's endpoint table (the `## Endpoints` section; tables under other
 * headings, e.g. unstable endpoints, are not read): the first cell names the row's endpoints as
 * `` `METHOD /path` `` items (a method may be shared: `` `GET, PUT /path` ``); the second is the
 * status word (complete, partial, absent).
 */
export function parseConformanceTable(markdown: string): ConformanceRow[] {
  const rows: ConformanceRow[] = [];
  const lines = markdown.split('\n');
  let inEndpoints = false;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (line.startsWith('## ')) inEndpoints = line.trim() === '## Endpoints';
    if (!inEndpoints || !line.startsWith('| `')) continue;
    const cells = line.split(/(?<!\\)\|/).slice(1, -1).map((c) => c.trim());
    if (cells.length < 3) continue;
    const endpoints: { method: string; path: string }[] = [];
    for (const m of cells[0]!.matchAll(/`((?:GET|PUT|POST|DELETE)(?:, ?(?:GET|PUT|POST|DELETE))*) ([^`\s]+)`/g)) {
      for (const method of m[1]!.split(',').map((s) => s.trim())) endpoints.push({ method, path: m[2]! });
    }
    if (!endpoints.length) continue;
    rows.push({ endpoints, status: (cells[1]!.split(/\s/)[0] ?? '').replace(/[^a-z]/g, ''), notes: cells[2] ?? '', line: i + 1 });
  }
  return rows;
}

/** The table's row for a spec operation (matched by method and short path). */
export function rowFor(rows: ConformanceRow[], op: SpecOperation): ConformanceRow | undefined {
  const p = shortPath(op.path);
  return rows.find((r) => r.endpoints.some((e) => e.method === op.method && e.path === p));
}
