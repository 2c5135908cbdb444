/**
 * Steps 2–3 of the receipt checks worked out ahead (`precheckPdus`, run by the room actor's shell
 * on the thread pool) give the same verdicts as the synchronous checks: valid events pass with
 * their ids, a bad or missing signature drops the event with the same reason, an unknown or
 * expired key is no key, and a content hash mismatch hands on the redacted event.
 */
import { describe, expect, it } from 'vitest';
import { signingKeyFromSeed } from '../../src/protocol/crypto';
import { computeEventId, hashAndSignEvent } from '../../src/protocol/event-hashing';
import type { JsonObject } from '../../src/protocol/json';
import { requireRoomVersion } from '../../src/protocol/room-versions';
import { checkReceivedPdu, precheckPdus, type IngestView, type RemoteKeys } from '../../src/rooms/ingest';

const V = requireRoomVersion('10');
const ROOM = '!r:peer.test';
const key = signingKeyFromSeed('ed25519:p', new Uint8Array(32).fill(3));
const other = signingKeyFromSeed('ed25519:p', new Uint8Array(32).fill(4));
const keys: RemoteKeys = { 'peer.test': { 'ed25519:p': { key: key.publicKeyBase64, validUntilTs: 1e15 } } };
const view: IngestView = { version: V, roomId: ROOM, known: () => undefined, getEvent: () => undefined };

function event(n: number, signer = key, ts = 1000 + n): JsonObject {
  const raw: JsonObject = { room_id: ROOM, type: 'm.room.message', sender: '@u:peer.test', content: { body: `m${n}` }, origin_server_ts: ts, depth: n, prev_events: [], auth_events: [] };
  return hashAndSignEvent(raw, V, 'peer.test', signer);
}

describe('precheckPdus', () => {
  it('agrees with the synchronous checks, event by event', async () => {
    const good = Array.from({ length: 450 }, (_, i) => event(i));
    const forged = event(1000, other);
    const unsigned: JsonObject = { ...event(1001), signatures: {} };
    const tampered: JsonObject = { ...event(1002), content: { body: 'changed after signing' } };
    const expired = event(1003, key, 2e15);
    const all = [...good, forged, unsigned, tampered, expired];
    const pre = await precheckPdus(all, V, keys);
    expect(pre.size).toBe(all.length);
    for (const raw of all) {
      const p = pre.get(raw)!;
      expect(p.eventId).toBe(computeEventId(raw, V));
      expect(checkReceivedPdu(raw, view, keys, p)).toEqual(checkReceivedPdu(raw, view, keys));
    }
    for (const raw of good) expect(pre.get(raw)).toMatchObject({ signatureProblem: null, contentHashOk: true });
    expect(pre.get(forged)!.signatureProblem).toBe('no valid signature from peer.test with a known key');
    expect(pre.get(unsigned)!.signatureProblem).toBe('no signature from peer.test');
    expect(pre.get(expired)!.signatureProblem).toBe('no valid signature from peer.test with a known key');
    // The signature covers the redacted form, so a changed body still verifies; the hash does not.
    expect(pre.get(tampered)).toMatchObject({ signatureProblem: null, contentHashOk: false });
    const checked = checkReceivedPdu(tampered, view, keys, pre.get(tampered));
    expect(checked.ok && checked.redacted).toBe(true);
  });
});
