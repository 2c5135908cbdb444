/**
 * Known key and federation paths called with the wrong method answer 405 M_UNRECOGNIZED on the
 * client port too (issue 17), as client paths do and as Synapse answers; a path that is not
 * served there is still 404 M_UNRECOGNIZED.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFederatedAxon } from './harness';
import { createTestCa, type TestCa } from '../peers/test-ca';
import type { TestServer } from '../e2e/server-harness';

const IP = '127.0.0.171';
let ca: TestCa;
let axon: TestServer;

beforeAll(async () => {
  ca = createTestCa();
  axon = await startFederatedAxon(IP, ca);
}, 60_000);

afterAll(async () => {
  await axon?.stop();
  ca?.cleanup();
});

async function raw(method: string, path: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const r = await fetch(`${axon.baseUrl}${path}`, { method, headers: { 'Content-Type': 'application/json' }, body: method === 'GET' ? undefined : '{}' });
  return { status: r.status, body: (await r.json()) as Record<string, unknown> };
}

describe('wrong methods on known federation paths (client port)', () => {
  it('answers 405 M_UNRECOGNIZED', async () => {
    for (const [method, path] of [
      ['GET', '/_matrix/key/v2/query'],
      ['POST', '/_matrix/key/v2/server'],
      ['POST', '/_matrix/federation/v1/version'],
      ['GET', '/_matrix/federation/v1/send/txn1'],
      ['POST', '/_matrix/federation/v1/make_join/!r:x/@u:x'],
    ] as const) {
      const r = await raw(method, path);
      expect(r.status, `${method} ${path}`).toBe(405);
      expect(r.body.errcode, `${method} ${path}`).toBe('M_UNRECOGNIZED');
    }
    // Unknown paths stay 404; the key document is still served here.
    const unknown = await raw('GET', '/_matrix/federation/v1/nope');
    expect(unknown.status).toBe(404);
    expect((await raw('GET', '/_matrix/key/v2/server')).status).toBe(200);
  }, 60_000);
});
