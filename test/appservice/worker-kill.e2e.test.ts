/**
 * An appservice transaction across a worker kill -9 (issue 22.3): a cluster started with the
 * operator's scripts (two workers, one front) and a registration file; the appservice holds a
 * transaction unanswered, both workers are killed with -9 while it is out, `cluster up` starts
 * them again. The appservice actor's next holder must send the same transaction again — same
 * txn id, same events — and then go on: every event arrives once, in order.
 */
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Json, ScriptCluster } from '../setup/script-cluster';
import { AppserviceReceiver, registrationYaml } from '../../scripts/lib/appservice-receiver';

async function until<T>(fn: () => T | Promise<T>, ok: (v: T) => boolean, ms: number): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (ok(v) || Date.now() > deadline) return v;
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('appservice transaction across a worker kill -9', () => {
  let c: ScriptCluster;
  const hsToken = randomBytes(12).toString('hex');
  const bridge = new AppserviceReceiver(hsToken);

  beforeAll(async () => {
    await bridge.start();
    c = await ScriptCluster.create({
      name: 'as-kill',
      env: { AXON_SERVER_NAME: 'localhost', AXON_APPSERVICE_BACKOFF_START_MS: '500', AXON_APPSERVICE_BACKOFF_MAX_MS: '5000' },
    });
    const file = join(c.dataDir, 'bridge.yaml');
    writeFileSync(file, registrationYaml({ id: 'bridge', url: bridge.url, asToken: `as-${hsToken}`, hsToken, senderLocalpart: 'bridgebot', users: ['@puppet_.*:localhost'] }));
    c.env.AXON_APPSERVICE_CONFIG_FILES = file;
    await c.up(2);
  }, 240_000);

  afterAll(async () => {
    await c?.destroy();
    await bridge.down();
  }, 120_000);

  it('sends the transaction that was out again under the same txn id, and every event once', async () => {
    const { token } = await c.register('puppet_kill');
    const created = await c.call(token, 'POST', '/createRoom', {});
    expect(created.status).toBe(200);
    const roomId = created.body.room_id as string;
    const send = async (i: number) => {
      const res = await c.call(token, 'PUT', `/rooms/${encodeURIComponent(roomId)}/send/m.room.message/k${i}`, { msgtype: 'm.text', body: `kill ${i}` });
      expect(res.status, JSON.stringify(res.body)).toBe(200);
      return res.body.event_id as string;
    };
    const first = await send(0);
    await until(() => bridge.events().some((e) => e.event_id === first), Boolean, 60_000);
    // The next transaction is held unanswered while both workers are killed.
    bridge.hold = true;
    const held = [await send(1), await send(2), await send(3)];
    const attempt = await until(() => bridge.attempts.find((a) => (a.body.events as Json[]).some((e) => e.event_id === held[0])), Boolean, 60_000);
    expect(attempt, 'the transaction reached the appservice').toBeTruthy();
    for (const w of ['w1', 'w2']) process.kill(c.pid(w), 'SIGKILL');
    bridge.hold = false;
    await c.up(2);
    const after = [await send(4), await send(5)];
    const all = [first, ...held, ...after];
    const got = await until(() => bridge.events().filter((e) => e.type === 'm.room.message').map((e) => e.event_id as string), (ids) => ids.length >= all.length, 180_000);
    expect(got).toEqual(all);
    // The held transaction came again, same id and same events, and was processed once.
    const again = bridge.txns.find((t) => t.txnId === attempt!.txnId);
    expect(again, `txn ${attempt!.txnId} sent again after the kill`).toBeTruthy();
    expect((again!.body.events as Json[]).map((e) => e.event_id)).toEqual((attempt!.body.events as Json[]).map((e) => e.event_id));
    expect(bridge.attempts.filter((a) => a.txnId === attempt!.txnId).length).toBeGreaterThanOrEqual(2);
    console.log(`appservice-worker-kill.e2e: txn ${attempt!.txnId} (${(attempt!.body.events as Json[]).length} events) held when both workers were killed, sent again after the restart; ${all.length} messages once, in order`);
  }, 420_000);
});
