/**
 * Transactions to an application service (issue 22.3), end to end: a real Axon (two workers, one
 * front, real Redis) with a registration file, and a real HTTP appservice (test/appservice/
 * receiver.ts) that dedupes by txn id as the spec asks. What each test holds:
 *  - the events that interest the appservice arrive in order, each once, and only those;
 *  - interest through the room namespace and through an alias of the room;
 *  - the appservice down for a minute: nothing is lost or repeated when it comes back, and the
 *    backlog arrives batched (many events per transaction, not one each);
 *  - typing, receipts and to-device messages for its users when the registration asks.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clientsFor, enc, eventually, txn, type Clients, type Session } from '../e2e/clients';
import { startTestServer, type TestServer } from '../e2e/server-harness';
import { AppserviceReceiver, registrationYaml } from '../../scripts/lib/appservice-receiver';
import pino from 'pino';
import { AppserviceRoomReader } from '../../src/appservice/reader';
import type { AppserviceRegistry } from '../../src/appservice/registration';
import { parseOutboxEntry } from '../../src/runtime/envelope';
import { shardCountsFor } from '../../src/runtime/cluster-settings';
import { decode } from '../../src/store/codec';
import { KeySpace } from '../../src/store/keys';
import { shardOf } from '../../src/store/shards';

describe('appservice transactions', () => {
  let server: TestServer;
  let c: Clients;
  let bridge: AppserviceReceiver;
  let other: AppserviceReceiver;
  let puppet: Session;
  let plain: Session;
  const hsToken = randomBytes(12).toString('hex');

  beforeAll(async () => {
    bridge = new AppserviceReceiver(hsToken);
    await bridge.start();
    other = new AppserviceReceiver('other-hs');
    await other.start();
    const dir = mkdtempSync(join(tmpdir(), 'axon-as-'));
    const file = join(dir, 'bridge.yaml');
    writeFileSync(file, registrationYaml({ id: 'bridge', url: bridge.url, asToken: `as-${hsToken}`, hsToken, senderLocalpart: 'bridgebot', users: ['@puppet_.*:localhost'], ephemeral: true, toDevice: true }));
    const file2 = join(dir, 'other.yaml');
    writeFileSync(file2, registrationYaml({ id: 'other', url: other.url, asToken: 'as-other', hsToken: 'other-hs', senderLocalpart: 'otherbot', rooms: ['!nomatch.*'], aliases: ['#other_.*:localhost'] }));
    server = await startTestServer({
      configure: (cfg) => {
        cfg.appservices = { ...cfg.appservices, configFiles: [file, file2], sender: { backoffStartMs: 500, backoffMaxMs: 8_000 } };
      },
    });
    c = await clientsFor(server);
    puppet = await c.mint('puppet_alice');
    plain = await c.mint('plainbob');
  }, 120_000);

  afterAll(async () => {
    await c?.close();
    await server?.stop();
    await bridge?.down();
    await other?.down();
  });

  async function send(s: Session, roomId: string, body: string): Promise<string> {
    const r = await c.call(s, 'PUT', `/rooms/${enc(roomId)}/send/m.room.message/${txn()}`, { msgtype: 'm.text', body });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    return r.body.event_id as string;
  }

  it('judges an event by the members of the room at it, not by those who joined after: a reader that runs behind the room pushes nothing from before its users came', async () => {
    const room = await c.call(plain, 'POST', '/createRoom', { preset: 'public_chat' });
    expect(room.status).toBe(200);
    const roomId = room.body.room_id as string;
    const before = await send(plain, roomId, 'sent before the puppet is in');
    expect((await c.call(puppet, 'POST', `/join/${enc(roomId)}`, {})).status).toBe(200);
    const after = await send(plain, roomId, 'sent with the puppet in');
    // A reader of the room's outbox that comes to these entries only now, after all of them were
    // committed (as a reader behind the room does), with an appservice whose namespace is the puppet's.
    const keys = new KeySpace(server.config.redis.keyPrefix);
    const shardCounts = shardCountsFor(server.config);
    const probe = { id: 'probe', url: 'http://probe.invalid', receiveEphemeral: false, isInterestedInUser: (u: string) => u === puppet.userId, isInterestedInAlias: () => false, isInterestedInRoom: () => false };
    const reader = new AppserviceRoomReader(server.redis, keys, shardCounts, { all: () => [probe] } as unknown as AppserviceRegistry, `probe-${randomBytes(3).toString('hex')}`, pino({ level: 'silent' }));
    const told: string[] = [];
    (reader as any).actors = { tell: async (_f: string, _k: string, _as: string, body: { items: { e: string }[] }) => void told.push(body.items[0]!.e) };
    const shard = shardOf(roomId, shardCounts.room);
    const rows = (await server.redis.xrangeBuffer(keys.shard('room', shard).outbox, '-', '+')) as [Buffer, Buffer[]][];
    const entries = rows.map(([id, fields]) => ({ id: id.toString(), entry: parseOutboxEntry(fields) })).filter((e) => e.entry && (decode(e.entry.body) as { roomId?: string }).roomId === roomId);
    await (reader as any).apply(shard, entries);
    expect(told).toContain(after);
    expect(told).not.toContain(before);
    // The join itself is the puppet's (its state_key is in the namespace): pushed; the room's
    // creation, before anyone of the namespace was in, is not.
    const joinId = entries.map((e) => decode(e.entry!.body) as { eventId: string; event: { type: string; state_key?: string } }).find((o) => o.event.type === 'm.room.member' && o.event.state_key === puppet.userId)?.eventId;
    expect(told).toContain(joinId);
    expect(told).toEqual([joinId, after]);
  });

  it('pushes the events of rooms its users are in, in order, each once, and nothing else', async () => {
    const room = await c.call(plain, 'POST', '/createRoom', { preset: 'public_chat' });
    expect(room.status).toBe(200);
    const roomId = room.body.room_id as string;
    // Before the puppet joins, nothing of this room interests the bridge.
    const before = await send(plain, roomId, 'before anyone of the bridge is here');
    const join = await c.call(puppet, 'POST', `/join/${enc(roomId)}`, {});
    expect(join.status).toBe(200);
    const sent: string[] = [];
    for (let i = 0; i < 30; i++) sent.push(await send(i % 2 ? plain : puppet, roomId, `message ${i}`));
    const got = await eventually(
      async () => bridge.events().filter((e) => e.room_id === roomId),
      (evs) => evs.filter((e) => e.type === 'm.room.message').length >= 30,
      60_000,
    );
    const messages = got.filter((e) => e.type === 'm.room.message').map((e) => e.event_id);
    expect(messages).toEqual(sent);
    expect(new Set(got.map((e) => e.event_id)).size).toBe(got.length);
    expect(got.map((e) => e.event_id)).not.toContain(before);
    // The puppet's join is there (its state_key is in the namespace), in the client format.
    const joinEvent = got.find((e) => e.type === 'm.room.member' && e.state_key === puppet.userId);
    expect(joinEvent?.content.membership).toBe('join');
    expect(joinEvent?.unsigned?.age).toBeTypeOf('number');
    expect(joinEvent?.hashes).toBeUndefined();
    expect(bridge.badAuth).toBe(0);
    // A room without any of its users never reaches it.
    const lonely = await c.call(plain, 'POST', '/createRoom', {});
    const lonelyEvent = await send(plain, lonely.body.room_id, 'nobody from the bridge');
    await send(puppet, roomId, 'a marker after it');
    await eventually(async () => bridge.events().length, () => bridge.events().some((e) => e.content?.body === 'a marker after it'), 60_000);
    expect(bridge.events().map((e) => e.event_id)).not.toContain(lonelyEvent);
  }, 120_000);

  it('pushes the events of a room whose alias is in its alias namespace', async () => {
    const room = await c.call(plain, 'POST', '/createRoom', { room_alias_name: `other_${randomBytes(3).toString('hex')}` });
    expect(room.status, JSON.stringify(room.body)).toBe(200);
    const id = await send(plain, room.body.room_id, 'for the other appservice');
    const got = await eventually(async () => other.events().map((e) => e.event_id), (ids) => ids.includes(id), 60_000);
    expect(got).toContain(id);
    expect(other.events().some((e) => e.type === 'm.room.canonical_alias')).toBe(true);
  }, 120_000);

  it('loses and repeats nothing when the appservice is down for a minute, and sends the backlog batched', async () => {
    const room = await c.call(puppet, 'POST', '/createRoom', {});
    const roomId = room.body.room_id as string;
    await eventually(async () => bridge.events().some((e) => e.room_id === roomId && e.type === 'm.room.create'), Boolean, 60_000);
    await bridge.down();
    const downAt = Date.now();
    const txnsBefore = bridge.txns.length;
    const sent: string[] = [];
    for (let i = 0; i < 250; i++) sent.push(await send(puppet, roomId, `while down ${i}`));
    const wait = 60_000 - (Date.now() - downAt);
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    expect(bridge.txns.length).toBe(txnsBefore);
    await bridge.up();
    const upAt = Date.now();
    const got = await eventually(
      async () => bridge.events().filter((e) => e.room_id === roomId && e.type === 'm.room.message').map((e) => e.event_id),
      (ids) => ids.length >= sent.length,
      120_000,
    );
    expect(got).toEqual(sent);
    const backlogTxns = bridge.txns.slice(txnsBefore).filter((t) => (t.body.events as { room_id: string }[]).some((e) => e.room_id === roomId));
    // 250 events in transactions of up to 100: three (Synapse's recoverer would send many more).
    expect(backlogTxns.length).toBeLessThanOrEqual(5);
    console.log(`appservice down 60 s: ${sent.length} events in ${backlogTxns.length} transactions, all delivered ${Date.now() - upAt} ms after it came back`);
  }, 300_000);

  it('retries a transaction the appservice answered with an error, under the same txn id', async () => {
    const room = await c.call(puppet, 'POST', '/createRoom', {});
    const roomId = room.body.room_id as string;
    // The room's creation delivered first, so the next transaction carries the message alone.
    const marker = await send(puppet, roomId, 'all is well');
    await eventually(async () => bridge.events().some((e) => e.event_id === marker), Boolean, 60_000);
    bridge.failWith = 500;
    const attemptsBefore = bridge.attempts.length;
    const id = await send(puppet, roomId, 'refused at first');
    // Refused three times (retries after the backoff), then accepted.
    await eventually(async () => bridge.attempts.length, (n) => n >= attemptsBefore + 3, 60_000);
    const refused = bridge.attempts.slice(attemptsBefore);
    expect(refused.length).toBeGreaterThanOrEqual(3);
    bridge.failWith = null;
    await eventually(async () => bridge.events().map((e) => e.event_id), (ids) => ids.includes(id), 60_000);
    // Each refused attempt came back under the same txn id with the same content, and was taken once.
    const ids = (t: { body: { events?: { event_id: string }[]; ephemeral?: unknown[] } }) => [(t.body.events ?? []).map((e) => e.event_id), t.body.ephemeral ?? []];
    for (const r of refused) {
      const taken = bridge.txns.filter((t) => t.txnId === r.txnId);
      expect(taken, r.txnId).toHaveLength(1);
      expect(ids(taken[0]!)).toEqual(ids(r));
    }
    // The retries of one transaction are spaced by the backoff (500 ms, doubling).
    expect(refused[1]!.at - refused[0]!.at).toBeGreaterThanOrEqual(400);
    expect(bridge.events().filter((e) => e.event_id === id)).toHaveLength(1);
  }, 120_000);

  it('pushes typing, receipts and to-device messages for its users', async () => {
    const room = await c.call(plain, 'POST', '/createRoom', { preset: 'public_chat' });
    const roomId = room.body.room_id as string;
    expect((await c.call(puppet, 'POST', `/join/${enc(roomId)}`, {})).status).toBe(200);
    const typed = await c.call(plain, 'PUT', `/rooms/${enc(roomId)}/typing/${enc(plain.userId)}`, { typing: true, timeout: 30_000 });
    expect(typed.status).toBe(200);
    const id = await send(plain, roomId, 'read me');
    const rec = await c.call(plain, 'POST', `/rooms/${enc(roomId)}/receipt/m.read/${enc(id)}`, {});
    expect(rec.status).toBe(200);
    const td = await c.call(plain, 'PUT', `/sendToDevice/m.test.ping/${txn()}`, { messages: { [puppet.userId]: { [puppet.deviceId]: { n: 1 } } } });
    expect(td.status).toBe(200);
    const eph = await eventually(
      async () => bridge.ephemeral().filter((e) => e.room_id === roomId),
      (evs) => evs.some((e) => e.type === 'm.typing') && evs.some((e) => e.type === 'm.receipt'),
      60_000,
    );
    expect(eph.find((e) => e.type === 'm.typing')?.content.user_ids).toContain(plain.userId);
    expect(eph.find((e) => e.type === 'm.receipt')?.content[id]['m.read'][plain.userId].ts).toBeTypeOf('number');
    const toDevice = await eventually(async () => bridge.toDevice(), (l) => l.some((m) => m.type === 'm.test.ping'), 60_000);
    const m = toDevice.find((x) => x.type === 'm.test.ping')!;
    expect(m).toMatchObject({ sender: plain.userId, to_user_id: puppet.userId, to_device_id: puppet.deviceId, content: { n: 1 } });
    // Both names of the ephemeral list, as Synapse sends them.
    const t = bridge.txns.find((x) => (x.body.ephemeral as unknown[])?.length)!;
    expect(t.body['de.sorunome.msc2409.ephemeral']).toEqual(t.body.ephemeral);
    // The other appservice asked for none of it.
    expect(other.ephemeral()).toHaveLength(0);
  }, 120_000);
});
