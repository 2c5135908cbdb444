/**
 * actors/destination.ts loadPdus: the PDUs of a transaction, ours signed on the way out with the
 * room's version read once per room and process. A reviewer found that when the process's map of
 * versions filled up (10,000 rooms) and was cleared during a call, the call lost the versions of
 * the rooms it had found there and silently left OUR events of those rooms out of the transaction
 * (never sent). Redis here is a map behind `mgetBuffer` (the only command loadPdus uses).
 */
import { describe, expect, it } from 'vitest';
import { loadPdus } from '../../actors/destination';
import { signingKeyFromSeed } from '../../src/protocol/crypto';
import { hashAndIdentify, hashAndSignEvent, verifyEventSignature } from '../../src/protocol/event-hashing';
import { requireRoomVersion } from '../../src/protocol/room-versions';
import { ownEventSigner } from '../../src/rooms/own-signatures';
import { encode } from '../../src/store/codec';
import { KeySpace, roomData } from '../../src/store/keys';
import { shardOf } from '../../src/store/shards';

const OURS = 'ours.test';
const key = signingKeyFromSeed('ed25519:k', new Uint8Array(32).fill(3));
const otherKey = signingKeyFromSeed('ed25519:o', new Uint8Array(32).fill(4));
const v10 = requireRoomVersion('10');
const keys = new KeySpace('rs:');
const SHARDS = 4;
const store = new Map<string, Buffer>();
const redis = { mgetBuffer: async (...ks: string[]) => ks.map((k) => store.get(k) ?? null) };
const ctx = { redis } as never;

function putRoom(roomId: string): void {
  store.set(keys.shard('room', shardOf(roomId, SHARDS)).state('room', roomId), encode({ roomId, version: '10', createId: '$c', seq: 1, depth: 1, extremities: [], snap: 0, snapChain: 0, snapSeq: 0 }));
}
function putEvent(roomId: string, sender: string, n: number, signedBy?: { server: string; key: typeof key }): string {
  const raw = { room_id: roomId, sender, type: 'm.room.message', content: { body: `m${n}` }, origin_server_ts: n, depth: 2, prev_events: [], auth_events: [] };
  const built = hashAndIdentify(raw, v10);
  const ev = signedBy ? hashAndSignEvent(raw, v10, signedBy.server, signedBy.key) : built.event;
  store.set(keys.shard('room', shardOf(roomId, SHARDS)).data(roomData.event(built.eventId)), encode({ j: JSON.stringify(ev), p: n, d: 2, sb: 0, sa: 0 }));
  return built.eventId;
}

describe('loadPdus room-version map', () => {
  it('does not drop our unsigned events of an already cached room when the map is cleared', async () => {
    const signer = ownEventSigner(OURS, key);
    // Our unsigned event in room r0: its room's version gets cached.
    putRoom('!r0:ours.test');
    const ownId = putEvent('!r0:ours.test', `@a:${OURS}`, 1);
    expect(await loadPdus(ctx, keys, SHARDS, signer, [{ r: '!r0:ours.test', e: ownId }])).toHaveLength(1);
    // Fill the map up to 10,000 rooms with remote events (they lack our signature: their rooms are looked up too).
    const fill: { r: string; e: string }[] = [];
    for (let i = 1; i < 10_000; i++) {
      const r = `!f${i}:other.test`;
      putRoom(r);
      fill.push({ r, e: putEvent(r, '@x:other.test', i, { server: 'other.test', key: otherKey }) });
    }
    expect(await loadPdus(ctx, keys, SHARDS, signer, fill)).toHaveLength(fill.length);
    // Next transaction: our event of r0 (cached) and one event of a new room: the map is cleared.
    putRoom('!new:other.test');
    const newId = putEvent('!new:other.test', '@x:other.test', 99_999, { server: 'other.test', key: otherKey });
    const out = await loadPdus(ctx, keys, SHARDS, signer, [{ r: '!r0:ours.test', e: ownId }, { r: '!new:other.test', e: newId }]);
    expect(out.map((p) => p.content)).toEqual([{ body: 'm1' }, { body: 'm99999' }]);
    expect(verifyEventSignature(out[0]!, v10, OURS, key.keyId, key.publicKey).ok).toBe(true);
    // The relayed event of another server goes as it came: signed by its server, not by us.
    expect(Object.keys(out[1]!.signatures as object)).toEqual(['other.test']);
  });

  it('leaves out (and only) our events whose room has no version to sign them with; relayed ones still go', async () => {
    const signer = ownEventSigner(OURS, key);
    // No room record (a purged room): ours cannot be signed, the relayed one needs no signature of ours.
    const ownId = putEvent('!gone:ours.test', `@a:${OURS}`, 7);
    const relayedId = putEvent('!gone:ours.test', '@x:other.test', 8, { server: 'other.test', key: otherKey });
    const out = await loadPdus(ctx, keys, SHARDS, signer, [{ r: '!gone:ours.test', e: ownId }, { r: '!gone:ours.test', e: relayedId }]);
    expect(out.map((p) => p.content)).toEqual([{ body: 'm8' }]);
  });
});
