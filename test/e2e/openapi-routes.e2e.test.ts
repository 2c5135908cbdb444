/**
 * The cheap half of the Client-Server audit (scripts/conformance-audit.ts), kept true in the suite:
 * docs/conformance.md has a row for every operation of the spec's OpenAPI
 * (`matrix-spec/data/api/client-server/*.yaml`), and a real Axon serves what the table says —
 * every operation marked complete or partial is routed and, where the spec's `security` requires
 * an access token, answers 401 `M_MISSING_TOKEN` without one; every operation marked absent
 * answers 404/405 `M_UNRECOGNIZED`. The requests carry no token, so they change nothing.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadClientServerOperations, parseConformanceTable, rowFor, shortPath, type ConformanceRow, type SpecOperation } from '../../scripts/lib/cs-openapi';
import { startTestServer, type TestServer } from './server-harness';

/**
 * The spec is not part of this repository: it is read from beside it (scripts/lib/cs-openapi.ts).
 * Where it is not there, these checks cannot run and say so instead of failing.
 */
let operations: SpecOperation[] = [];
let specMissing = '';
try {
  operations = loadClientServerOperations();
} catch (e) {
  specMissing = (e as Error).message;
  console.warn(`openapi-routes.e2e: skipped. ${specMissing}`);
}
const table: ConformanceRow[] = parseConformanceTable(readFileSync(join(import.meta.dirname, '..', '..', 'docs', 'conformance.md'), 'utf8'));
const STATUSES = ['complete', 'partial', 'absent'];

let server: TestServer;

beforeAll(async () => {
  if (specMissing) return;
  // URL previews and TURN are off by default (404 M_UNRECOGNIZED); the table describes them on.
  server = await startTestServer({
    configure: (c) => {
      c.media.urlPreviews.enabled = true;
      c.voip = { ...c.voip, turnUris: ['turn:turn.example.org'], turnSharedSecret: 'audit' };
    },
  });
}, 60_000);

afterAll(async () => {
  await server?.stop();
});

/** A path of the operation with placeholder values (nothing needs to exist: no token is sent). */
function concretePath(op: SpecOperation): string {
  const values: Record<string, string> = {
    roomId: '!audit:localhost', roomIdOrAlias: '!audit:localhost', roomAlias: '#audit:localhost', userId: '@audit:localhost', eventId: '$audit',
    serverName: 'localhost', mediaId: 'auditmedia', stateKey: '', kind: 'override', ruleId: '.m.rule.master',
  };
  const path = op.path.replace(/\{([^}]+)\}/g, (_m, name: string) => encodeURIComponent(values[name] ?? 'audit'));
  const query = op.requiredQuery.map((q) => `${q}=${q === 'dir' ? 'b' : 'x'}`).join('&');
  return query ? `${path}?${query}` : path;
}

async function anonymous(op: SpecOperation): Promise<{ status: number; errcode?: string }> {
  const r = await fetch(`${server.baseUrl}${concretePath(op)}`, {
    method: op.method,
    redirect: 'manual',
    ...(op.method === 'GET' || op.method === 'DELETE' ? {} : { headers: { 'Content-Type': 'application/json' }, body: '{}' }),
  });
  const text = await r.text();
  let errcode: string | undefined;
  try {
    errcode = JSON.parse(text).errcode;
  } catch {
    // not JSON (a redirect, media)
  }
  return { status: r.status, errcode };
}

describe.skipIf(!!specMissing)('docs/conformance.md covers the whole OpenAPI', () => {
  it('every operation has exactly one row, with a status word', () => {
    expect(operations.length).toBeGreaterThan(150);
    const unlisted = operations.filter((op) => !rowFor(table, op)).map((op) => `${op.method} ${shortPath(op.path)}`);
    expect(unlisted).toEqual([]);
    const twice = operations.filter((op) => table.filter((r) => r.endpoints.some((e) => e.method === op.method && e.path === shortPath(op.path))).length > 1);
    expect(twice.map((op) => `${op.method} ${shortPath(op.path)}`)).toEqual([]);
    const badStatus = table.filter((r) => !STATUSES.includes(r.status)).map((r) => `line ${r.line}: ${r.status}`);
    expect(badStatus).toEqual([]);
  });

  it('every endpoint the table names is in the spec (no typos)', () => {
    const known = new Set(operations.map((op) => `${op.method} ${shortPath(op.path)}`));
    const unknown = table.flatMap((r) => r.endpoints.map((e) => `${e.method} ${e.path}`)).filter((k) => !known.has(k));
    expect(unknown).toEqual([]);
  });
});

describe.skipIf(!!specMissing)('Axon serves what the table says', () => {
  it('complete and partial operations are routed and require a token as `security` says; absent ones are not routed', async () => {
    const wrong: string[] = [];
    for (const op of operations) {
      const row = rowFor(table, op);
      if (!row) continue; // reported by the coverage test
      const name = `${op.method} ${shortPath(op.path)} (${row.status}, line ${row.line})`;
      const r = await anonymous(op);
      const unrouted = (r.status === 404 || r.status === 405) && r.errcode === 'M_UNRECOGNIZED';
      if (row.status === 'absent') {
        if (!unrouted) wrong.push(`${name}: marked absent but answered ${r.status} ${r.errcode ?? ''}`);
        continue;
      }
      if (unrouted) {
        wrong.push(`${name}: not routed (${r.status} M_UNRECOGNIZED)`);
        continue;
      }
      if (op.auth === 'required' && !(r.status === 401 && r.errcode === 'M_MISSING_TOKEN')) wrong.push(`${name}: without a token answered ${r.status} ${r.errcode ?? ''}, not 401 M_MISSING_TOKEN`);
      if (op.auth === 'none' && r.status === 401 && r.errcode === 'M_MISSING_TOKEN') wrong.push(`${name}: takes no token in the spec, but asked for one`);
    }
    expect(wrong).toEqual([]);
  }, 120_000);
});
