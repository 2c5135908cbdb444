/**
 * Events built by another server, taken by the room actor on the real runtime: the receipt checks
 * in the spec's order — dropped (bad signature), redacted (bad content hash), rejected (auth
 * events), soft-failed (current state), missing prev events, outliers — and forks whose state is
 * resolved.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { buildCreateEvent } from '../../actors/room';
import type { IngestReply, RoomConfig, RoomReply, SuppliedState } from '../../src/rooms/model';
import type { ActorClient } from '../../src/runtime/actor-client';
import { signingKeyFromSeed } from '../../src/protocol/crypto';
import { computeEventId, hashAndSignEvent } from '../../src/protocol/event-hashing';
import { authEventSelection } from '../../src/protocol/auth-rules';
import { stateKeyOf } from '../../src/protocol/pdu';
import { requireRoomVersion } from '../../src/protocol/room-versions';
import type { JsonObject } from '../../src/protocol/json';
import { RoomReader, servableToClients } from '../../src/store/room-reader';
import { sha1Hex } from '../../src/protocol/state-resolution-v1';
import type { RemoteKeys } from '../../src/rooms/ingest';
import { buildRemoteEvent, type RemoteTemplate } from './remote-event';
import { MODES, rig, type Rig } from '../runtime/harness';

const local: RoomConfig = { serverName: 'test.local', signingKey: signingKeyFromSeed('ed25519:l', new Uint8Array(32).fill(1)) };
const remoteKey = signingKeyFromSeed('ed25519:r', new Uint8Array(32).fill(2));
const keys: RemoteKeys = { 'remote.test': { 'ed25519:r': { key: remoteKey.publicKeyBase64, validUntilTs: Date.now() + 3600_000 } } };
const alice = '@alice:test.local';
const bob = '@bob:remote.test';
const carol = '@carol:remote.test';
const VERSION = '10';

type Sent = Extract<RoomReply, { event_id: string }>;

function send(c: ActorClient, roomId: string, sender: string, type: string, content: JsonObject, stateKey?: string) {
  return c.ask<Sent>('room', 'room', roomId, { op: 'send', event: { type, sender, content, ...(stateKey !== undefined ? { state_key: stateKey } : {}) } });
}

function ingest(c: ActorClient, roomId: string, pdus: JsonObject[], outlier = false) {
  return c.ask<IngestReply>('room', 'room', roomId, { op: 'ingest', pdus, keys, ...(outlier ? { outlier } : {}) });
}

/** Build an event as remote.test would, on top of the given prev events and state. */
function remoteEvent(reader: RoomReader, roomId: string, t: RemoteTemplate): Promise<JsonObject> {
  return buildRemoteEvent(reader, roomId, { server: 'remote.test', key: remoteKey }, t, VERSION);
}

for (const mode of MODES) {
  describe(`ingesting remote events (${mode} redis)`, () => {
    let r: Rig;
    afterEach(async () => {
      await r?.close();
    });

    async function publicRoom(c: ActorClient, roomVersion = VERSION, roomLocalpart = 'fed'): Promise<string> {
      const { roomId, event } = buildCreateEvent(local, { roomVersion, creator: alice, roomLocalpart, ts: Date.now() });
      await c.ask('room', 'room', roomId, { op: 'create', event });
      await send(c, roomId, alice, 'm.room.member', { membership: 'join' }, alice);
      await send(c, roomId, alice, 'm.room.power_levels', { users: { [alice]: 100 }, users_default: 0 }, '');
      await send(c, roomId, alice, 'm.room.join_rules', { join_rule: 'public' }, '');
      return roomId;
    }

    it('accepts a remote join and messages; drops bad signatures; redacts on a bad content hash', async () => {
      r = await rig(mode, { room: local });
      await r.startWorker('w1');
      const c = await r.client();
      const reader = new RoomReader(r.redis, r.keys, r.shardCounts.room);
      const roomId = await publicRoom(c);

      const join = await remoteEvent(reader, roomId, { type: 'm.room.member', sender: bob, content: { membership: 'join' }, stateKey: bob });
      expect((await ingest(c, roomId, [join])).results).toMatchObject([{ status: 'accepted' }]);
      expect(await reader.membership(roomId, bob)).toBe('join');

      const msg = await remoteEvent(reader, roomId, { type: 'm.room.message', sender: bob, content: { msgtype: 'm.text', body: 'hello from afar' } });
      const res = (await ingest(c, roomId, [msg])).results[0]!;
      expect(res.status).toBe('accepted');
      const meta = (await reader.meta(roomId))!;
      expect(meta.extremities).toEqual([res.event_id]);
      expect((await reader.event(roomId, res.event_id!))!.event.content).toEqual({ msgtype: 'm.text', body: 'hello from afar' });
      // Ingesting the same event again changes nothing.
      expect((await ingest(c, roomId, [msg])).results[0]!.status).toBe('duplicate');

      // 2. A forged signature: dropped, nothing stored.
      const forged = await remoteEvent(reader, roomId, { type: 'm.room.message', sender: bob, content: { body: 'forged' } });
      (forged.signatures as Record<string, Record<string, string>>)['remote.test']!['ed25519:r'] = 'A'.repeat(86);
      expect((await ingest(c, roomId, [forged])).results[0]).toMatchObject({ status: 'dropped' });
      // …and one signed by a key we do not know: dropped too.
      const unknownKey = hashAndSignEvent({ ...(await remoteEvent(reader, roomId, { type: 'm.room.message', sender: bob, content: { body: 'x' } })), signatures: {} }, requireRoomVersion(VERSION), 'remote.test', signingKeyFromSeed('ed25519:other', new Uint8Array(32).fill(7)));
      expect((await ingest(c, roomId, [unknownKey])).results[0]).toMatchObject({ status: 'dropped' });

      // 3. Content changed after signing: the signature (over the redacted form) holds, the hash
      //    does not, so the event is taken in its redacted form.
      const tampered = await remoteEvent(reader, roomId, { type: 'm.room.message', sender: bob, content: { body: 'original' } });
      tampered.content = { body: 'changed in transit' };
      const t = (await ingest(c, roomId, [tampered])).results[0]!;
      expect(t.status).toBe('accepted');
      expect((await reader.event(roomId, t.event_id!))!.event.content).toEqual({});
      expect((await reader.meta(roomId))!.seq).toBe(meta.seq + 1);
    });

    it('rejects events their auth events do not allow, soft-fails what the current state forbids, and asks for missing events', async () => {
      r = await rig(mode, { room: local });
      await r.startWorker('w1');
      const c = await r.client();
      const reader = new RoomReader(r.redis, r.keys, r.shardCounts.room);
      const roomId = await publicRoom(c);
      const join = await remoteEvent(reader, roomId, { type: 'm.room.member', sender: bob, content: { membership: 'join' }, stateKey: bob });
      await ingest(c, roomId, [join]);

      // 4. Carol never joined: her message fails against its own auth events → rejected, stored
      //    as rejected, never in the timeline or the extremities.
      const before = (await reader.meta(roomId))!;
      const carolMsg = await remoteEvent(reader, roomId, { type: 'm.room.message', sender: carol, content: { body: 'let me in' } });
      const rej = (await ingest(c, roomId, [carolMsg])).results[0]!;
      expect(rej.status).toBe('rejected');
      const stored = (await reader.event(roomId, rej.event_id!))!;
      expect(stored.rejected).toBeTruthy();
      expect(servableToClients(stored)).toBe(false);
      expect((await reader.meta(roomId))!.extremities).toEqual(before.extremities);
      expect((await reader.meta(roomId))!.seq).toBe(before.seq);

      // Unknown prev events: nothing is stored, and the reply names them.
      const bobMsg = await remoteEvent(reader, roomId, { type: 'm.room.message', sender: bob, content: { body: 'x' } });
      const dangling = hashAndSignEvent({ ...bobMsg, prev_events: ['$doesnotexist'], signatures: {}, hashes: {} }, requireRoomVersion(VERSION), 'remote.test', remoteKey);
      const miss = (await ingest(c, roomId, [dangling])).results[0]!;
      expect(miss, JSON.stringify(miss)).toMatchObject({ status: 'missing', missing: ['$doesnotexist'] });
      expect(await reader.event(roomId, miss.event_id!)).toBeNull();

      // 6. Bob is banned here; a message he built before learning of it (its prev is the event
      //    before the ban) passes against its auth events and the state before it, but not
      //    against the current state: soft-failed.
      const beforeBan = (await reader.meta(roomId))!.extremities;
      await send(c, roomId, alice, 'm.room.member', { membership: 'ban' }, bob);
      const late = await remoteEvent(reader, roomId, { type: 'm.room.message', sender: bob, content: { body: 'am I still here?' }, prev: beforeBan });
      const sf = (await ingest(c, roomId, [late])).results[0]!;
      expect(sf.status).toBe('soft_failed');
      const afterSf = (await reader.meta(roomId))!;
      expect(afterSf.extremities).not.toContain(sf.event_id);
      expect(servableToClients((await reader.event(roomId, sf.event_id!))!)).toBe(false);
      expect((await reader.timeline(roomId, 'b', null, 100)).events.map((e) => e.eventId)).not.toContain(sf.event_id);

    });

    it('keeps outliers out of the history, and resolves state across a fork', async () => {
      r = await rig(mode, { room: local });
      await r.startWorker('w1');
      const c = await r.client();
      const reader = new RoomReader(r.redis, r.keys, r.shardCounts.room);
      const roomId = await publicRoom(c);
      const join = await remoteEvent(reader, roomId, { type: 'm.room.member', sender: bob, content: { membership: 'join' }, stateKey: bob });
      const joinId = (await ingest(c, roomId, [join])).results[0]!.event_id!;
      await send(c, roomId, alice, 'm.room.power_levels', { users: { [alice]: 100, [bob]: 50 }, users_default: 0 }, '');
      const forkPoint = (await reader.meta(roomId))!.extremities;

      // An outlier: stored, not in the timeline.
      const out = await remoteEvent(reader, roomId, { type: 'm.room.message', sender: bob, content: { body: 'outlier' } });
      const o = (await ingest(c, roomId, [out], true)).results[0]!;
      expect(o.status).toBe('outlier');
      expect((await reader.timeline(roomId, 'b', null, 100)).events.map((e) => e.eventId)).not.toContain(o.event_id);
      expect(servableToClients((await reader.event(roomId, o.event_id!))!)).toBe(false);
      // The auth chain of bob's join: the create event, alice's join, the power levels and the
      // join rules it cites (and theirs), never the join itself.
      const chain = await reader.authChain(roomId, [joinId]);
      expect(new Set(chain.map((e) => e.event.type))).toEqual(new Set(['m.room.create', 'm.room.member', 'm.room.power_levels', 'm.room.join_rules']));
      expect(chain.map((e) => e.eventId)).not.toContain(joinId);
      expect(chain.every((e) => e.event.sender === alice)).toBe(true);

      // Alice sets a topic here while Bob, on his server, sets one from the same point: a fork.
      const aliceTopic = await send(c, roomId, alice, 'm.room.topic', { topic: 'alice' }, '');
      const bobTopic = await remoteEvent(reader, roomId, { type: 'm.room.topic', sender: bob, content: { topic: 'bob' }, stateKey: '', prev: forkPoint, ts: Date.now() + 1000 });
      const b = (await ingest(c, roomId, [bobTopic])).results[0]!;
      expect(b.status).toBe('accepted');
      const meta = (await reader.meta(roomId))!;
      expect(meta.extremities.sort()).toEqual([aliceTopic.event_id, b.event_id!].sort());
      // State resolution picked one topic for the current state (both senders may set it; the
      // mainline ordering puts the later one last).
      const topic = (await reader.currentStateIds(roomId, { type: 'm.room.topic', stateKey: '' })).get('m.room.topic\u0000');
      expect([aliceTopic.event_id, b.event_id]).toContain(topic);
      // A local event now merges the fork.
      const merge = await send(c, roomId, alice, 'm.room.message', { body: 'merged' });
      expect((await reader.meta(roomId))!.extremities).toEqual([merge.event_id]);
      const merged = (await reader.event(roomId, merge.event_id))!;
      expect((merged.event.prev_events as string[]).sort()).toEqual([aliceTopic.event_id, b.event_id!].sort());
    });

    it('resolves a fork in a room version 1 room with state resolution v1', async () => {
      r = await rig(mode, { room: local });
      await r.startWorker('w1');
      const c = await r.client();
      const reader = new RoomReader(r.redis, r.keys, r.shardCounts.room);
      const roomId = await publicRoom(c, '1');
      const v1 = { version: '1' };
      const join = await remoteEvent(reader, roomId, { ...v1, type: 'm.room.member', sender: bob, content: { membership: 'join' }, stateKey: bob });
      expect((await ingest(c, roomId, [join])).results).toMatchObject([{ status: 'accepted' }]);
      await send(c, roomId, alice, 'm.room.power_levels', { users: { [alice]: 100, [bob]: 50 }, users_default: 0 }, '');
      const forkPoint = (await reader.meta(roomId))!.extremities;

      // Alice sets the topic and then the room name here; bob, from the same point, sets the
      // topic on his server and then joins carol (public room, carol's own join built by him).
      const aliceTopic = await send(c, roomId, alice, 'm.room.topic', { topic: 'alice' }, '');
      const aliceName = await send(c, roomId, alice, 'm.room.name', { name: 'the room' }, '');
      const bobTopic = await remoteEvent(reader, roomId, { ...v1, type: 'm.room.topic', sender: bob, content: { topic: 'bob' }, stateKey: '', prev: forkPoint });
      const bt = (await ingest(c, roomId, [bobTopic])).results[0]!;
      expect(bt.status).toBe('accepted');
      const carolJoin = await remoteEvent(reader, roomId, { ...v1, type: 'm.room.member', sender: carol, content: { membership: 'join' }, stateKey: carol, prev: [bt.event_id!] });
      const cj = (await ingest(c, roomId, [carolJoin])).results[0]!;
      expect(cj.status).toBe('accepted');

      // v1: both topics have the same depth and both senders may set it, so the lower
      // sha1(event_id) wins; the name and carol's membership are on one side only, so they are
      // not conflicted and both stay.
      const meta = (await reader.meta(roomId))!;
      expect(meta.extremities.sort()).toEqual([aliceName.event_id, cj.event_id!].sort());
      const expectedTopic = [aliceTopic.event_id, bt.event_id!].sort((a, b) => (sha1Hex(a) < sha1Hex(b) ? -1 : 1))[0];
      const current = await reader.currentStateIds(roomId);
      expect(current.get('m.room.topic\u0000')).toBe(expectedTopic);
      expect(current.get('m.room.name\u0000')).toBe(aliceName.event_id);
      expect(current.get(`m.room.member\u0000${carol}`)).toBe(cj.event_id);
      expect(await reader.membership(roomId, carol)).toBe('join');

      // A local event merges the fork; its state before is the v1 resolution of both sides.
      const merge = await send(c, roomId, alice, 'm.room.message', { body: 'merged' });
      const mergedPrev = ((await reader.event(roomId, merge.event_id))!.event.prev_events as [string, unknown][]).map((p) => p[0]).sort();
      expect(mergedPrev).toEqual([aliceName.event_id, cj.event_id!].sort());
      const before = (await reader.stateAt(roomId, merge.event_id, 'before'))!;
      expect(before.get('m.room.topic\u0000')).toBe(expectedTopic);
      expect(before.get(`m.room.member\u0000${carol}`)).toBe(cj.event_id);

      // And a remote event on the merge, whose state is checked against that resolution, is fine.
      const after = await remoteEvent(reader, roomId, { ...v1, type: 'm.room.message', sender: carol, content: { body: 'hi' } });
      expect((await ingest(c, roomId, [after])).results[0]!.status).toBe('accepted');
    });

    it("takes our own join from a send_join answer (ownJoin) though our stale current state still bans the user", async () => {
      // Our copy of the room: Dave (ours) banned by Bob. Bob's server then lifts the ban, which we
      // never get (no user of ours is in the room), and answers Dave's send_join with the state
      // after the unban. Without ownJoin the join is soft-failed against our current state; with
      // it, it is accepted and the state is resolved to Dave joined.
      const dave = '@dave:test.local';
      const withLocal: RemoteKeys = { ...keys, 'test.local': { 'ed25519:l': { key: local.signingKey.publicKeyBase64, validUntilTs: Date.now() + 3600_000 } } };
      r = await rig(mode, { room: local });
      await r.startWorker('w1');
      const c = await r.client();
      const reader = new RoomReader(r.redis, r.keys, r.shardCounts.room);
      const version = requireRoomVersion(VERSION);
      const setUp = async (localpart: string): Promise<{ roomId: string; joinPdu: JsonObject; joinId: string; state: SuppliedState }> => {
        const roomId = await publicRoom(c, VERSION, localpart);
        await ingest(c, roomId, [await remoteEvent(reader, roomId, { type: 'm.room.member', sender: bob, content: { membership: 'join' }, stateKey: bob })]);
        await send(c, roomId, alice, 'm.room.power_levels', { users: { [alice]: 100, [bob]: 100 }, users_default: 0 }, '');
        await ingest(c, roomId, [await remoteEvent(reader, roomId, { type: 'm.room.member', sender: bob, content: { membership: 'ban' }, stateKey: dave })]);
        await send(c, roomId, alice, 'm.room.member', { membership: 'leave' }, alice);
        const unban = await remoteEvent(reader, roomId, { type: 'm.room.member', sender: bob, content: { membership: 'leave' }, stateKey: dave });
        const unbanId = computeEventId(unban, version);
        const afterUnban = new Map(await reader.currentStateIds(roomId));
        afterUnban.set(stateKeyOf('m.room.member', dave), unbanId);
        const auth = authEventSelection({ type: 'm.room.member', stateKey: dave, sender: dave, content: { membership: 'join' } }, version).map(([t, k]) => afterUnban.get(stateKeyOf(t, k))).filter((x): x is string => !!x);
        const joinPdu = hashAndSignEvent(
          { room_id: roomId, sender: dave, type: 'm.room.member', state_key: dave, content: { membership: 'join' }, origin_server_ts: Date.now(), depth: (unban.depth as number) + 1, prev_events: [unbanId], auth_events: auth },
          version, 'test.local', local.signingKey,
        );
        const joinId = computeEventId(joinPdu, version);
        return { roomId, joinPdu, joinId, state: { events: [unban], before: { [joinId]: [...afterUnban.values()] } } };
      };

      const stale = await setUp('stale');
      const without = await c.ask<IngestReply>('room', 'room', stale.roomId, { op: 'ingest', pdus: [stale.joinPdu], keys: withLocal, state: stale.state });
      expect(without.results.find((x) => x.event_id === stale.joinId)).toMatchObject({ status: 'soft_failed' });
      expect(await reader.membership(stale.roomId, dave)).toBe('ban');

      const own = await setUp('own');
      const taken = await c.ask<IngestReply>('room', 'room', own.roomId, { op: 'ingest', pdus: [own.joinPdu], keys: withLocal, state: own.state, ownJoin: own.joinId });
      expect(taken.results.find((x) => x.event_id === own.joinId)).toMatchObject({ status: 'accepted' });
      expect(await reader.membership(own.roomId, dave)).toBe('join');
      expect((await reader.meta(own.roomId))!.extremities).toContain(own.joinId);
    });
  });
}
