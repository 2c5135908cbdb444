/**
 * Faster joins, the pure parts (src/protocol/partial-state.ts): what a partial-state send_join
 * answer keeps of the state, and how the events since a partial-state join are judged again once
 * the full state is in — with the real auth rules.
 */
import { describe, expect, it } from 'vitest';
import { checkEventAuth } from '../../src/protocol/auth-rules';
import type { JsonObject } from '../../src/protocol/json';
import { completeCurrentState, partialJoinStateIds, recheckSinceJoin } from '../../src/protocol/partial-state';
import { stateKeyOf, toPdu, type Pdu, type StateMap } from '../../src/protocol/pdu';
import { requireRoomVersion } from '../../src/protocol/room-versions';

const version = requireRoomVersion('10');
const ROOM = '!r:res.example';
const CREATOR = '@creator:res.example';
const BOB = '@bob:res.example';
const CAROL = '@carol:res.example';
const OURS = '@us:fast.example';

const events = new Map<string, Pdu>();
let depth = 0;
function ev(id: string, type: string, sender: string, content: JsonObject, stateKey?: string, auth: string[] = [], prev: string[] = []): Pdu {
  const raw: JsonObject = { room_id: ROOM, type, sender, content, origin_server_ts: 1, depth: ++depth, prev_events: prev, auth_events: auth };
  if (stateKey !== undefined) raw.state_key = stateKey;
  const pdu = toPdu(raw, version, id);
  events.set(id, pdu);
  return pdu;
}
const key = (p: Pdu) => stateKeyOf(p.type, p.stateKey!);

const create = ev('$create', 'm.room.create', CREATOR, { room_version: '10' }, '');
const creatorJoin = ev('$cj', 'm.room.member', CREATOR, { membership: 'join' }, CREATOR, ['$create'], ['$create']);
const power = ev('$pl', 'm.room.power_levels', CREATOR, { users: { [CREATOR]: 100 }, users_default: 0, events_default: 0, state_default: 0 }, '', ['$create', '$cj'], ['$cj']);
const rules = ev('$jr', 'm.room.join_rules', CREATOR, { join_rule: 'public' }, '', ['$create', '$cj', '$pl'], ['$pl']);
const bobJoin = ev('$bj', 'm.room.member', BOB, { membership: 'join' }, BOB, ['$create', '$pl', '$jr'], ['$jr']);
const carolLeave = ev('$cl', 'm.room.member', CAROL, { membership: 'leave' }, CAROL, ['$create', '$pl', '$jr'], ['$bj']);
const full: StateMap = new Map([create, creatorJoin, power, rules, bobJoin, carolLeave].map((p) => [key(p), p.eventId]));

const authorize = (pdu: Pdu, st: StateMap) => checkEventAuth(pdu, { get: (t, k) => events.get(st.get(stateKeyOf(t, k)) ?? '') }, version);

describe('partialJoinStateIds (what a send_join with omit_members keeps)', () => {
  it('keeps every non-member event and the joining user’s membership, and leaves other members out', () => {
    const withOurInvite = new Map(full);
    const invite = ev('$inv', 'm.room.member', CREATOR, { membership: 'invite' }, OURS, ['$create', '$pl', '$cj'], ['$cl']);
    withOurInvite.set(key(invite), invite.eventId);
    withOurInvite.set(stateKeyOf('m.room.name', ''), '$name');
    const kept = partialJoinStateIds(withOurInvite, OURS, new Map([[CREATOR, 'join'], [BOB, 'join']]));
    expect(new Set(kept)).toEqual(new Set(['$create', '$pl', '$jr', '$name', '$inv']));
  });

  it('keeps the heroes’ memberships (joined or invited, sorted, five at most) when the room has no name or alias', () => {
    const state = new Map(full);
    const members = new Map([[CREATOR, 'join'], [BOB, 'join'], [CAROL, 'leave'], [OURS, 'join']]);
    expect(new Set(partialJoinStateIds(state, OURS, members))).toEqual(new Set(['$create', '$pl', '$jr', '$cj', '$bj']));
    const many = new Map(members);
    for (let i = 0; i < 8; i++) many.set(`@m${i}:res.example`, 'join');
    const heroes = partialJoinStateIds(state, OURS, many).filter((id) => id === '$cj' || id === '$bj');
    // Sorted by user id, five at most: @bob and @creator come first.
    expect(heroes.sort()).toEqual(['$bj', '$cj']);
  });
});

describe('recheckSinceJoin (the events since a partial-state join, judged again)', () => {
  // The partial state before our join: the non-member events only.
  const partial: StateMap = new Map([create, power, rules].map((p) => [key(p), p.eventId]));
  const ourJoin = ev('$oj', 'm.room.member', OURS, { membership: 'join' }, OURS, ['$create', '$pl', '$jr'], ['$cl']);
  const afterJoin = new Map(partial).set(key(ourJoin), ourJoin.eventId);
  const bobSays = ev('$bm', 'm.room.message', BOB, { body: 'hi' }, undefined, ['$create', '$pl', '$bj'], ['$oj']);
  // Carol left before our join; her auth events (forged: her old join) made it pass on the partial state.
  const carolTopic = ev('$ct', 'm.room.topic', CAROL, { topic: 'mine now' }, '', ['$create', '$pl'], ['$bm']);
  const afterTopic = new Map(afterJoin).set(key(carolTopic), carolTopic.eventId);
  const bobAfter = ev('$bm2', 'm.room.message', BOB, { body: 'still here' }, undefined, ['$create', '$pl', '$bj'], ['$ct']);
  const since = [
    { eventId: '$oj', pdu: ourJoin, before: partial },
    { eventId: '$bm', pdu: bobSays, before: afterJoin },
    { eventId: '$ct', pdu: carolTopic, before: afterJoin },
    { eventId: '$bm2', pdu: bobAfter, before: afterTopic },
  ];
  const recheck = recheckSinceJoin(full, since, authorize);

  it('fills in exactly the member entries the partial state lacked', () => {
    expect(new Set(recheck.filled)).toEqual(new Set([key(creatorJoin), key(bobJoin), key(carolLeave)]));
    expect(recheck.events[0]!.before.get(key(bobJoin))).toBe('$bj');
    expect(recheck.events[0]!.after.get(key(ourJoin))).toBe('$oj');
  });

  it('keeps what the full state allows and rejects what it refuses', () => {
    expect(recheck.events.map((e) => [e.eventId, e.rejected === undefined])).toEqual([
      ['$oj', true],
      ['$bm', true],
      ['$ct', false],
      ['$bm2', true],
    ]);
    expect(recheck.events[2]!.rejected).toMatch(/not in room|join/i);
  });

  it('takes a rejected state event out of the states after it and of the current state', () => {
    expect(recheck.events[3]!.before.has(stateKeyOf('m.room.topic', ''))).toBe(false);
    expect(recheck.reverted.get(stateKeyOf('m.room.topic', ''))).toEqual({ rejectedId: '$ct', fallback: undefined });
    const changes = completeCurrentState(afterTopic, full, recheck);
    expect(changes.get(stateKeyOf('m.room.topic', ''))).toBeUndefined();
    expect(changes.has(stateKeyOf('m.room.topic', ''))).toBe(true);
    expect(changes.get(key(bobJoin))).toBe('$bj');
    expect(changes.has(key(ourJoin))).toBe(false);
  });
});
