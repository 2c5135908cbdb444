/**
 * The event id → room id index on the real runtime and Redis (single and Cluster): every event a
 * room actor stores is indexed with its commit (on a Cluster right after it), so
 * `/_matrix/federation/v1/event/{eventId}` finds an event's room with one read; an event missing
 * from the index (stored before it existed) is found by probing the room shards and the index
 * is repaired.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { buildCreateEvent } from '../../actors/room';
import { roomOfEvent } from '../../src/federation/inbound/server-reads';
import { signingKeyFromSeed } from '../../src/protocol/crypto';
import type { JsonObject } from '../../src/protocol/json';
import type { RoomConfig, RoomReply } from '../../src/rooms/model';
import type { ActorClient } from '../../src/runtime/actor-client';
import { MODES, rig, type Rig } from '../runtime/harness';

const room: RoomConfig = { serverName: 'index.test', signingKey: signingKeyFromSeed('ed25519:i', new Uint8Array(32).fill(7)) };
const alice = '@alice:index.test';

function send(c: ActorClient, roomId: string, type: string, content: JsonObject, stateKey?: string, redacts?: string) {
  return c.ask<Extract<RoomReply, { event_id: string }>>('room', 'room', roomId, { op: 'send', event: { type, sender: alice, content, ...(stateKey !== undefined ? { state_key: stateKey } : {}), ...(redacts ? { redacts } : {}) } }, { timeoutMs: 30_000 });
}

for (const mode of MODES) {
  describe(`event id → room index (${mode} redis)`, () => {
    let r: Rig;
    afterEach(async () => {
      await r?.close();
    });

    for (const version of ['10', '12']) {
      it(`room v${version}: every stored event is indexed, and the lookup reads the index`, { timeout: 60_000 }, async () => {
        r = await rig(mode, { room });
        await r.startWorker('w1');
        const c = await r.client();
        const { roomId, event } = buildCreateEvent(room, { roomVersion: version, creator: alice, roomLocalpart: `idx${version}`, ts: Date.now() });
        const created = await c.ask<Extract<RoomReply, { event_id: string }>>('room', 'room', roomId, { op: 'create', event }, { timeoutMs: 30_000 });
        const ids = [created.event_id];
        ids.push((await send(c, roomId, 'm.room.member', { membership: 'join' }, alice)).event_id);
        ids.push((await send(c, roomId, 'm.room.power_levels', { users: version === '12' ? {} : { [alice]: 100 } }, '')).event_id);
        for (let i = 0; i < 5; i++) ids.push((await send(c, roomId, 'm.room.message', { msgtype: 'm.text', body: `m${i}` })).event_id);
        // A redaction stores its target's record again: still the same room.
        ids.push((await send(c, roomId, 'm.room.redaction', {}, undefined, ids[4])).event_id);

        // Derived writes on a Cluster follow the commit: wait for the last one.
        const deadline = Date.now() + 10_000;
        while (Date.now() < deadline && (await r.redis.hget(r.keys.eventRoom(ids.at(-1)!), ids.at(-1)!)) === null) await new Promise((res) => setTimeout(res, 50));
        for (const id of ids) expect(await r.redis.hget(r.keys.eventRoom(id), id)).toBe(roomId);

        const api = { redis: r.redis, keys: r.keys, shardCounts: r.shardCounts };
        for (const id of ids) expect(await roomOfEvent(api, id)).toBe(roomId);
        expect(await roomOfEvent(api, '$unknown-event-id')).toBeNull();
        expect(await r.redis.hget(r.keys.eventRoom('$unknown-event-id'), '$unknown-event-id')).toBeNull();

        // An event the index lacks (stored before it existed): found by the shard probe, index repaired.
        const message = (await send(c, roomId, 'm.room.message', { msgtype: 'm.text', body: 'late' })).event_id;
        const until = Date.now() + 10_000;
        while (Date.now() < until && (await r.redis.hget(r.keys.eventRoom(message), message)) === null) await new Promise((res) => setTimeout(res, 50));
        await r.redis.hdel(r.keys.eventRoom(message), message);
        expect(await roomOfEvent(api, message)).toBe(roomId);
        expect(await r.redis.hget(r.keys.eventRoom(message), message)).toBe(roomId);
      });
    }
  });
}
