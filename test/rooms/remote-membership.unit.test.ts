/**
 * The pure checks of membership over federation (src/rooms/remote-join.ts, src/rooms/join-remote.ts):
 * what send_join/send_knock/send_leave accept, how our event is built from a make_ template (the
 * membership must be the one asked for; only a join keeps the resident's
 * `join_authorised_via_users_server`), and the candidate servers' order.
 */
import { describe, expect, it } from 'vitest';
import { signingKeyFromSeed } from '../../src/protocol/crypto';
import { computeEventId, hashAndSignEvent } from '../../src/protocol/event-hashing';
import type { JsonObject } from '../../src/protocol/json';
import { requireRoomVersion } from '../../src/protocol/room-versions';
import { buildMembershipEvent, candidateServers } from '../../src/rooms/join-remote';
import { checkSentMembership } from '../../src/rooms/remote-join';
import { strippedEvent, strippedEvents } from '../../src/sync/remote-invites';

const V10 = requireRoomVersion('10');
const KEY = signingKeyFromSeed('ed25519:k', new Uint8Array(32).fill(7));
const ROOM = '!room:resident.example';
const KIM = '@kim:peer.example';

function template(membership: string, extra: JsonObject = {}): JsonObject {
  return { room_id: ROOM, sender: KIM, state_key: KIM, type: 'm.room.member', content: { membership, ...extra }, origin_server_ts: 1, depth: 5, prev_events: ['$p'], auth_events: ['$c', '$pl', '$jr'] };
}

function signed(membership: string, sender = KIM): { pdu: JsonObject; id: string } {
  const pdu = hashAndSignEvent({ ...template(membership), sender, state_key: sender, origin: 'peer.example' }, V10, 'peer.example', KEY);
  return { pdu, id: computeEventId(pdu, V10) };
}

describe('checkSentMembership (send_join / send_knock / send_leave)', () => {
  it('accepts a knock of a user of the origin with the path event id', () => {
    const { pdu, id } = signed('knock');
    expect(checkSentMembership(pdu, V10, ROOM, id, 'peer.example', 'knock')).toEqual({ ok: true, eventId: id, userId: KIM });
  });

  it('refuses another membership, another room, a user of another server, a mismatched event id, and a body that is not an event', () => {
    const { pdu, id } = signed('knock');
    expect(checkSentMembership(pdu, V10, ROOM, id, 'peer.example', 'join')).toEqual({ ok: false, error: 'The membership must be "join"' });
    expect(checkSentMembership(pdu, V10, '!other:resident.example', id, 'peer.example', 'knock').ok).toBe(false);
    expect(checkSentMembership(pdu, V10, ROOM, id, 'elsewhere.example', 'knock')).toEqual({ ok: false, error: 'The sender is not a user of the requesting server' });
    expect(checkSentMembership(pdu, V10, ROOM, '$another', 'peer.example', 'knock')).toEqual({ ok: false, error: 'The event id does not match the path' });
    expect(checkSentMembership([pdu], V10, ROOM, id, 'peer.example', 'knock').ok).toBe(false);
    const forOther = { ...pdu, state_key: '@someone:peer.example' };
    expect(checkSentMembership(forOther, V10, ROOM, id, 'peer.example', 'knock')).toEqual({ ok: false, error: 'The state_key must be the sender' });
  });
});

describe('buildMembershipEvent (from a make_ template)', () => {
  it('a knock: our content, our origin, the template DAG fields; hashes/signatures/unsigned of the template dropped', () => {
    const t = { ...template('knock'), hashes: { sha256: 'x' }, signatures: { x: {} }, unsigned: { age: 1 } };
    const e = buildMembershipEvent(t, V10, ROOM, KIM, 'peer.example', { membership: 'knock', reason: 'hi', displayname: 'Kim' }, 'knock')!;
    expect(e).toMatchObject({ room_id: ROOM, sender: KIM, state_key: KIM, depth: 5, prev_events: ['$p'], auth_events: ['$c', '$pl', '$jr'], origin: 'peer.example' });
    expect(e.content).toEqual({ membership: 'knock', reason: 'hi', displayname: 'Kim' });
    expect(e.hashes).toBeUndefined();
    expect(e.signatures).toBeUndefined();
    expect(e.unsigned).toBeUndefined();
  });

  it('a template of another membership, user or room is not used', () => {
    expect(buildMembershipEvent(template('join'), V10, ROOM, KIM, 'peer.example', { membership: 'knock' }, 'knock')).toBeNull();
    expect(buildMembershipEvent(template('knock'), V10, ROOM, '@other:peer.example', 'peer.example', { membership: 'knock' }, 'knock')).toBeNull();
    expect(buildMembershipEvent(template('knock'), V10, '!else:x', KIM, 'peer.example', { membership: 'knock' }, 'knock')).toBeNull();
  });

  it('only a join keeps the resident’s join_authorised_via_users_server; the client cannot change the membership', () => {
    const via = { join_authorised_via_users_server: '@admin:resident.example' };
    expect(buildMembershipEvent(template('join', via), V10, ROOM, KIM, 'peer.example', { membership: 'join' }, 'join')!.content).toEqual({ membership: 'join', ...via });
    expect(buildMembershipEvent(template('knock', via), V10, ROOM, KIM, 'peer.example', { membership: 'knock' }, 'knock')!.content).toEqual({ membership: 'knock' });
    expect(buildMembershipEvent(template('leave'), V10, ROOM, KIM, 'peer.example', { membership: 'join', reason: 'bye' }, 'leave')!.content).toEqual({ membership: 'leave', reason: 'bye' });
  });

  it('room versions with server-chosen event ids (v1, v2) get one of ours', () => {
    const e = buildMembershipEvent(template('leave'), requireRoomVersion('1'), ROOM, KIM, 'peer.example', { membership: 'leave' }, 'leave')!;
    expect(e.event_id).toMatch(/^\$[A-Za-z0-9_-]+:peer\.example$/);
  });
});

describe('candidate servers and stripped state', () => {
  it('candidates keep the first order, drop duplicates, blanks and ourselves', () => {
    expect(candidateServers('us.example', [['a.example', 'us.example'], [null, 'b.example', 'a.example'], [undefined, '']])).toEqual(['a.example', 'b.example']);
  });

  it('stripped events keep type, state_key, sender and content only; anything else is left out', () => {
    const given = [{ type: 'm.room.name', state_key: '', sender: KIM, content: { name: 'n' }, event_id: '$x', origin_server_ts: 3 }, { type: 'm.room.topic' }, 'junk', null];
    expect(strippedEvents(given as never)).toEqual([{ type: 'm.room.name', state_key: '', sender: KIM, content: { name: 'n' } }]);
    expect(strippedEvents({ not: 'a list' })).toEqual([]);
    expect(strippedEvent(undefined)).toBeNull();
  });
});
