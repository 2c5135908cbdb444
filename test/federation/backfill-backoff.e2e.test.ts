/**
 * `/messages dir=b` backfilling from a server that has gone: two Axons over TLS on loopback; a
 * user of A joins B's room (over federation), B is stopped, and A's user pages back. The first
 * /messages asks B, fails, and records it; the next ones within the backoff do not ask B again
 * (its failure count stays), and still answer what A has.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backfillFailure, BACKFILL_BACKOFF_MIN_MS } from '../../src/federation/backfill-remote';
import { clientsFor, enc, type Clients, type Json, type Session } from '../e2e/clients';
import type { TestServer } from '../e2e/server-harness';
import { createTestCa, type TestCa } from '../peers/test-ca';
import { startFederatedAxon } from './harness';

const A_IP = '127.0.0.181';
const B_IP = '127.0.0.182';

let ca: TestCa;
let a: TestServer;
let b: TestServer | null;
let ca_: Clients;
let cb: Clients | null;
let alice: Session;
let bob: Session;
let roomId: string;

beforeAll(async () => {
  ca = createTestCa();
  [a, b] = await Promise.all([startFederatedAxon(A_IP, ca), startFederatedAxon(B_IP, ca)]);
  [ca_, cb] = await Promise.all([clientsFor(a), clientsFor(b)]);
  [alice, bob] = await Promise.all([ca_.mint('alice'), cb.mint('bob')]);
  const created = await cb.call(bob, 'POST', '/createRoom', { preset: 'public_chat', room_version: '10' });
  expect(created.status, JSON.stringify(created.body)).toBe(200);
  roomId = created.body.room_id;
  for (let i = 0; i < 5; i++) expect((await cb.call(bob, 'PUT', `/rooms/${enc(roomId)}/send/m.room.message/t${i}`, { msgtype: 'm.text', body: `before ${i}` })).status).toBe(200);
}, 120_000);

afterAll(async () => {
  await ca_?.close();
  await cb?.close();
  await Promise.all([a?.stop(), b?.stop()]);
  ca?.cleanup();
});

describe('backfill from a dead server backs off', () => {
  it('a stopped peer is asked once, then skipped by the following /messages', { timeout: 180_000 }, async () => {
    const joined = await ca_.call(alice, 'POST', `/join/${enc(roomId)}?server_name=${enc(b!.serverName)}`, {});
    expect(joined.status, JSON.stringify(joined.body)).toBe(200);
    const bName = b!.serverName;
    await cb!.close();
    cb = null;
    await b!.stop();
    b = null;

    const page = async () => {
      const r = await ca_.call(alice, 'GET', `/rooms/${enc(roomId)}/messages?dir=b&limit=20`);
      expect(r.status, JSON.stringify(r.body)).toBe(200);
      return r.body.chunk as Json[];
    };
    expect(backfillFailure(roomId, bName)).toBeUndefined();
    const first = await page();
    // What A has: alice's join (the history before it was on B).
    expect(first.some((e) => e.type === 'm.room.member' && e.state_key === alice.userId)).toBe(true);
    expect(first.some((e) => e.type === 'm.room.message')).toBe(false);
    const failed = backfillFailure(roomId, bName);
    expect(failed?.failures).toBe(1);
    expect(failed!.until).toBeGreaterThan(Date.now() + BACKFILL_BACKOFF_MIN_MS / 2);

    // Within the backoff, B is not asked again: no second failure is recorded.
    for (let i = 0; i < 3; i++) {
      const again = await page();
      expect(again.some((e) => e.type === 'm.room.member' && e.state_key === alice.userId)).toBe(true);
    }
    expect(backfillFailure(roomId, bName)).toEqual(failed);
  });
});
