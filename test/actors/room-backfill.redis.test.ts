/**
 * Backfill on the real runtime: another server (remote.test, a test key) builds a room's whole
 * history; this server is given only its tail (with the state before it, as a join over
 * federation brings it) and then takes the older part as a /backfill response would bring it,
 * newest first, with the state a remote's /state_ids supplies for the oldest event.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { IngestReply, RoomConfig, RoomReply, SuppliedState } from '../../src/rooms/model';
import { authEventSelection } from '../../src/protocol/auth-rules';
import { signingKeyFromSeed, type SigningKey } from '../../src/protocol/crypto';
import { computeEventId, hashAndSignEvent } from '../../src/protocol/event-hashing';
import type { JsonObject } from '../../src/protocol/json';
import { stateKeyOf, toPdu, type Pdu, type StateMap } from '../../src/protocol/pdu';
import { requireRoomVersion, type RoomVersion } from '../../src/protocol/room-versions';
import { resolveState } from '../../src/protocol/state-resolution';
import type { RemoteKeys } from '../../src/rooms/ingest';
import { RoomReader, servableToClients } from '../../src/store/room-reader';
import type { RedisClient } from '../../src/store/redis';
import { MODES, rig, type Rig } from '../runtime/harness';
import { decodeToken, encodeToken } from '../../src/rooms/pagination';

const localKey = signingKeyFromSeed('ed25519:l', new Uint8Array(32).fill(1));
const local: RoomConfig = { serverName: 'test.local', signingKey: localKey };
const remoteKey = signingKeyFromSeed('ed25519:r', new Uint8Array(32).fill(2));
const keys: RemoteKeys = {
  'remote.test': { 'ed25519:r': { key: remoteKey.publicKeyBase64, validUntilTs: Date.now() + 3600_000 } },
  'test.local': { 'ed25519:l': { key: localKey.publicKeyBase64, validUntilTs: Date.now() + 3600_000 } },
};
const bob = '@bob:remote.test';
const carol = '@carol:remote.test';
const dave = '@dave:remote.test';
const alice = '@alice:test.local';

/** A room as the remote server holds it: every event, and the state after each. */
class RemoteRoom {
  readonly version: RoomVersion;
  readonly raw = new Map<string, JsonObject>();
  readonly pdus = new Map<string, Pdu>();
  readonly after = new Map<string, StateMap>();
  readonly order: string[] = [];
  roomId = '';
  private ts = 1_700_000_000_000;

  constructor(versionId: string) {
    this.version = requireRoomVersion(versionId);
  }

  private sign(raw: JsonObject, server: string): JsonObject {
    return hashAndSignEvent(raw, this.version, server, server === 'test.local' ? localKey : (remoteKey as SigningKey));
  }

  create(): string {
    const raw: JsonObject = { type: 'm.room.create', state_key: '', sender: bob, content: { room_version: this.version.id, ...(this.version.createHasCreator ? { creator: bob } : {}) }, origin_server_ts: this.ts++, depth: 1, prev_events: [], auth_events: [] };
    if (!this.version.roomIdFromCreateEvent) {
      this.roomId = '!history:remote.test';
      raw.room_id = this.roomId;
    }
    const signed = this.sign(raw, 'remote.test');
    const id = computeEventId(signed, this.version);
    if (this.version.roomIdFromCreateEvent) this.roomId = `!${id.slice(1)}`;
    return this.put(signed, id, new Map());
  }

  /** Build an event on `prev` (default: the last event), with auth events from the state before it. */
  add(t: { type: string; sender: string; content: JsonObject; stateKey?: string; prev?: string[] }, opts: { tamperSignature?: boolean } = {}): string {
    const prev = t.prev ?? [this.order[this.order.length - 1]!];
    const before = prev.length === 1 ? this.after.get(prev[0]!)! : resolveState({ version: this.version, stateSets: prev.map((p) => this.after.get(p)!), getEvent: (id) => this.pdus.get(id) });
    const auth = authEventSelection({ type: t.type, stateKey: t.stateKey, sender: t.sender, content: t.content }, this.version)
      .map(([type, key]) => before.get(stateKeyOf(type, key)))
      .filter((x): x is string => !!x);
    const raw: JsonObject = {
      room_id: this.roomId, type: t.type, sender: t.sender, content: t.content, origin_server_ts: this.ts++,
      depth: 1 + Math.max(...prev.map((p) => this.pdus.get(p)!.depth)), prev_events: prev, auth_events: auth,
    };
    if (t.stateKey !== undefined) raw.state_key = t.stateKey;
    const signed = this.sign(raw, t.sender.endsWith(':test.local') ? 'test.local' : 'remote.test');
    if (opts.tamperSignature) (signed.signatures as Record<string, Record<string, string>>)['remote.test']!['ed25519:r'] = 'A'.repeat(86);
    return this.put(signed, computeEventId(signed, this.version), before);
  }

  private put(raw: JsonObject, id: string, before: StateMap): string {
    const pdu = toPdu(raw, this.version, id);
    this.raw.set(id, raw);
    this.pdus.set(id, pdu);
    const after = new Map(before);
    if (pdu.stateKey !== undefined) after.set(stateKeyOf(pdu.type, pdu.stateKey), id);
    this.after.set(id, after);
    this.order.push(id);
    return id;
  }

  stateBefore(id: string): StateMap {
    const pdu = this.pdus.get(id)!;
    if (pdu.prevEvents.length === 0) return new Map();
    return pdu.prevEvents.length === 1 ? this.after.get(pdu.prevEvents[0]!)! : resolveState({ version: this.version, stateSets: pdu.prevEvents.map((p) => this.after.get(p)!), getEvent: (e) => this.pdus.get(e) });
  }

  /** What /state_ids at `id` answers, with the events: the state before it and its auth chain. */
  suppliedState(id: string): SuppliedState {
    const state = [...this.stateBefore(id).values()];
    const chain = new Set<string>();
    const stack = [...state];
    while (stack.length) {
      const e = stack.pop()!;
      if (chain.has(e)) continue;
      chain.add(e);
      stack.push(...this.pdus.get(e)!.authEvents);
    }
    return { events: [...chain].map((e) => this.raw.get(e)!), before: { [id]: state } };
  }
}

/** Every data key of the prefix with its value, to tell that a replay wrote nothing. */
async function dataDump(redis: RedisClient, prefix: string): Promise<Map<string, string>> {
  const nodes = 'nodes' in redis && typeof redis.nodes === 'function' ? redis.nodes('master') : [redis];
  const out = new Map<string, string>();
  for (const node of nodes) {
    let cursor = '0';
    do {
      const [next, found] = await node.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
      cursor = next;
      for (const k of found) {
        // The runtime's own bookkeeping (dedupe marks, inbox/outbox streams, leases) changes with any message.
        if (!k.includes('}:d:')) continue;
        const dump = await node.dumpBuffer(k);
        out.set(k, dump ? dump.toString('base64') : '');
      }
    } while (cursor !== '0');
  }
  return out;
}

for (const mode of MODES) {
  describe(`backfill (${mode} redis)`, () => {
    let r: Rig;
    afterEach(async () => {
      await r?.close();
    });

    for (const versionId of ['10', '12']) {
      it(`room v${versionId}: the tail first, then older history placed before it, in order, with its state; bad events kept out; replays write nothing`, async () => {
        r = await rig(mode, { room: local });
        await r.startWorker('w1');
        const c = await r.client();
        const reader = new RoomReader(r.redis, r.keys, r.shardCounts.room);
        const ask = (body: unknown) => c.ask<IngestReply>('room', 'room', remote.roomId, body);

        // The remote's history: 1 create … a fork and its merge … alice (ours) joins … the end.
        const remote = new RemoteRoom(versionId);
        const create = remote.create();
        remote.add({ type: 'm.room.member', sender: bob, content: { membership: 'join' }, stateKey: bob });
        // (v12: bob, the creator, has unbounded power and may not be listed.)
        remote.add({ type: 'm.room.power_levels', sender: bob, content: { users: remote.version.privilegedCreators ? {} : { [bob]: 100 } }, stateKey: '' });
        remote.add({ type: 'm.room.join_rules', sender: bob, content: { join_rule: 'public' }, stateKey: '' });
        remote.add({ type: 'm.room.history_visibility', sender: bob, content: { history_visibility: 'shared' }, stateKey: '' });
        const oldTopic = remote.add({ type: 'm.room.topic', sender: bob, content: { topic: 'old' }, stateKey: '' });
        for (let i = 0; i < 4; i++) remote.add({ type: 'm.room.message', sender: bob, content: { body: `early ${i}` } });
        const carolJoin = remote.add({ type: 'm.room.member', sender: carol, content: { membership: 'join' }, stateKey: carol });
        const forkBase = remote.add({ type: 'm.room.message', sender: carol, content: { body: 'before the fork' } });
        const forkTopic = remote.add({ type: 'm.room.topic', sender: bob, content: { topic: 'middle' }, stateKey: '', prev: [forkBase] });
        const forkDave = remote.add({ type: 'm.room.member', sender: dave, content: { membership: 'join' }, stateKey: dave, prev: [forkBase] });
        const merge = remote.add({ type: 'm.room.message', sender: bob, content: { body: 'merged' }, prev: [forkTopic, forkDave] });
        for (let i = 0; i < 3; i++) remote.add({ type: 'm.room.message', sender: dave, content: { body: `middle ${i}` } });
        const lastOld = remote.order[remote.order.length - 1]!;
        // Side branches the backfill batch will carry: a forged signature, and an event by someone
        // who never joined (signed properly, refused by its auth events).
        const forged = remote.add({ type: 'm.room.message', sender: carol, content: { body: 'forged' }, prev: [merge] }, { tamperSignature: true });
        const intruder = remote.add({ type: 'm.room.message', sender: '@mallory:remote.test', content: { body: 'let me in' }, prev: [merge] });
        const tailStart = remote.add({ type: 'm.room.message', sender: bob, content: { body: 'tail 0' }, prev: [lastOld] });
        remote.add({ type: 'm.room.member', sender: alice, content: { membership: 'join' }, stateKey: alice });
        for (let i = 1; i < 5; i++) remote.add({ type: 'm.room.message', sender: i % 2 ? alice : bob, content: { body: `tail ${i}` } });
        const tailEnd = remote.order[remote.order.length - 1]!;
        const history = remote.order.filter((id) => id !== forged && id !== intruder);
        const tail = history.slice(history.indexOf(tailStart));
        const older = history.slice(0, history.indexOf(tailStart));

        // This server learns the tail, with the state before its first event (a join over federation).
        const joined = await ask({ op: 'ingest', pdus: tail.map((id) => remote.raw.get(id)!), keys, state: remote.suppliedState(tailStart) });
        const byStatus = (res: IngestReply) => res.results.reduce<Record<string, number>>((a, x) => ({ ...a, [x.status]: (a[x.status] ?? 0) + 1 }), {});
        expect(joined.results.filter((x) => tail.includes(x.event_id!)).map((x) => x.status)).toEqual(tail.map(() => 'accepted'));
        const metaAfterTail = (await reader.meta(remote.roomId))!;
        expect(metaAfterTail.extremities).toEqual([tailEnd]);
        expect(Object.fromEntries(await reader.currentStateIds(remote.roomId))).toEqual(Object.fromEntries(remote.after.get(tailEnd)!));
        expect((await reader.timeline(remote.roomId, 'b', null, 100)).events.map((e) => e.eventId)).toEqual([...tail].reverse());
        expect((await reader.event(remote.roomId, create))!.outlier).toBe(true);

        // The older part in two /backfill responses (newest first), each with the state before
        // its oldest event. The first also carries the two bad side events.
        const outbox = r.keys.shard('room', (await import('../../src/store/shards')).shardOf(remote.roomId, r.shardCounts.room)).outbox;
        const outboxLen = await r.redis.xlen(outbox);
        const split = older.indexOf(carolJoin);
        const recent = older.slice(split);
        const first = await ask({ op: 'backfill', pdus: [...recent, forged, intruder].reverse().map((id) => remote.raw.get(id)!), keys, state: remote.suppliedState(recent[0]!) });
        const status = new Map(first.results.map((x) => [x.event_id, x]));
        for (const id of recent) expect(status.get(id)?.status, id).toBe('accepted');
        expect(status.get(forged)?.status).toBe('dropped');
        expect(status.get(intruder)?.status).toBe('rejected');
        expect(await reader.event(remote.roomId, forged)).toBeNull();
        const rejected = (await reader.event(remote.roomId, intruder))!;
        expect(rejected.rejected).toBeTruthy();
        expect(servableToClients(rejected)).toBe(false);

        const earliest = older.slice(0, split);
        const second = await ask({ op: 'backfill', pdus: [...earliest].reverse().map((id) => remote.raw.get(id)!), keys });
        // The create event and the state that came with the tail were outliers: now they take their place.
        expect(second.results.map((x) => x.status)).toEqual(earliest.map(() => 'accepted'));
        expect((await reader.event(remote.roomId, create))!.outlier).toBeUndefined();

        // Paging backwards from the newest event gives the whole history, newest first, in
        // pages, with no rejected or dropped event; positions below the tail's.
        const seen: string[] = [];
        let from: number | null = null;
        for (;;) {
          const page = await reader.timeline(remote.roomId, 'b', from, 7);
          seen.push(...page.events.map((e) => e.eventId));
          expect(page.events.every(servableToClients)).toBe(true);
          if (page.next === null) break;
          from = page.next;
        }
        // Within the fork, the two sides have the same depth: either order is topological.
        const expected = [...history].reverse();
        expect(seen.filter((id) => id !== forkTopic && id !== forkDave)).toEqual(expected.filter((id) => id !== forkTopic && id !== forkDave));
        expect(seen.indexOf(merge)).toBeLessThan(Math.min(seen.indexOf(forkTopic), seen.indexOf(forkDave)));
        expect(Math.max(seen.indexOf(forkTopic), seen.indexOf(forkDave))).toBeLessThan(seen.indexOf(forkBase));
        const positions = await Promise.all(history.map(async (id) => (await reader.event(remote.roomId, id))!.pos));
        // /messages tokens carry these positions (negative ones included) both ways.
        for (const p of positions) expect(decodeToken(encodeToken(p - 1), 'from')).toBe(p - 1);
        expect(positions.slice(0, older.length).every((p) => p < 0)).toBe(true);
        expect(positions.slice(older.length).every((p) => p > 0)).toBe(true);
        const depthThenPos = history.map((id, i) => ({ d: remote.pdus.get(id)!.depth, p: positions[i]! })).sort((a, b) => a.d - b.d || a.p - b.p);
        expect(depthThenPos.map((x) => x.p)).toEqual([...positions].sort((a, b) => a - b));

        // The state at backfilled events is the remote's.
        for (const id of [create, oldTopic, carolJoin, forkTopic, forkDave, merge, lastOld]) {
          expect(Object.fromEntries((await reader.stateAt(remote.roomId, id, 'after'))!), id).toEqual(Object.fromEntries(remote.after.get(id)!));
          expect(Object.fromEntries((await reader.stateAt(remote.roomId, id, 'before'))!), id).toEqual(Object.fromEntries(remote.stateBefore(id)));
        }

        // Backfill changed neither the current state, nor the extremities, nor the stream /sync reads.
        const metaNow = (await reader.meta(remote.roomId))!;
        expect(metaNow.extremities).toEqual([tailEnd]);
        expect(metaNow.seq).toBe(metaAfterTail.seq);
        expect(Object.fromEntries(await reader.currentStateIds(remote.roomId))).toEqual(Object.fromEntries(remote.after.get(tailEnd)!));
        expect(await r.redis.xlen(outbox)).toBe(outboxLen);

        // Replaying either response writes nothing.
        const dump = await dataDump(r.redis, r.prefix);
        expect(dump.size).toBeGreaterThan(history.length);
        const replay = await ask({ op: 'backfill', pdus: [...recent, forged, intruder].reverse().map((id) => remote.raw.get(id)!), keys, state: remote.suppliedState(recent[0]!) });
        expect(byStatus(replay)).toEqual({ duplicate: replay.results.length - 1, dropped: 1 });
        const replay2 = await ask({ op: 'backfill', pdus: earliest.map((id) => remote.raw.get(id)!), keys });
        expect(byStatus(replay2)).toEqual({ duplicate: earliest.length });
        expect(await dataDump(r.redis, r.prefix)).toEqual(dump);

        // A local event builds on the room's newest event only, never on backfilled history.
        const sent = await c.ask<Extract<RoomReply, { event_id: string }>>('room', 'room', remote.roomId, { op: 'send', event: { type: 'm.room.message', sender: alice, content: { body: 'after backfill' } } });
        const ours = (await reader.event(remote.roomId, sent.event_id))!;
        expect(ours.event.prev_events).toEqual([tailEnd]);
        expect(ours.depth).toBe(remote.pdus.get(tailEnd)!.depth + 1);
      });
    }

    it('refuses a backfill into a room it does not know, and an unknown room without its create event', async () => {
      r = await rig(mode, { room: local });
      await r.startWorker('w1');
      const c = await r.client();
      const remote = new RemoteRoom('10');
      remote.create();
      const join = remote.add({ type: 'm.room.member', sender: bob, content: { membership: 'join' }, stateKey: bob });
      const msg = remote.add({ type: 'm.room.message', sender: bob, content: { body: 'x' } });
      await expect(c.ask('room', 'room', remote.roomId, { op: 'backfill', pdus: [remote.raw.get(join)!], keys, state: remote.suppliedState(join) })).rejects.toMatchObject({ errcode: 'M_NOT_FOUND' });
      const noCreate = remote.suppliedState(msg);
      noCreate.events = noCreate.events.filter((e) => e.type !== 'm.room.create');
      await expect(c.ask('room', 'room', remote.roomId, { op: 'ingest', pdus: [remote.raw.get(msg)!], keys, state: noCreate })).rejects.toMatchObject({ errcode: 'M_NOT_FOUND' });
      const reader = new RoomReader(r.redis, r.keys, r.shardCounts.room);
      expect(await reader.meta(remote.roomId)).toBeNull();
    });
  });
}
