/**
 * The authorization rules, as a table derived from the spec text (matrix-org/matrix-spec,
 * content/rooms/fragments/v1-auth-rules.md, v3-auth-rules.md, v8-auth-rules.md, and the inline
 * rules in content/rooms/v6.md, v7.md, v10.md, v11.md, v12.md; auth events selection from
 * content/server-server-api.md).
 *
 * Rule numbers move between versions, so names cite the rule by its text; where a number is
 * given it is the number in the version(s) named. Top-level numbering:
 *   v1–v5:  1 create, 2 auth events, 3 m.federate, 4 aliases, 5 member, 6 sender joined,
 *           7 third_party_invite, 8 required power, 9 `@` state key, 10 power levels,
 *           11 redaction (v1/v2 only; v3–v5: 11 otherwise allow)
 *   v6–v11: 1 create, 2 auth events, 3 m.federate, 4 member, 5 sender joined, 6 third_party_invite,
 *           7 required power, 8 `@` state key, 9 power levels, 10 otherwise allow
 *   v12:    1 create, 2 room_id = create event, 3 auth events, 4 m.federate, 5 member,
 *           6 sender joined, 7 third_party_invite, 8 required power, 9 `@` state key,
 *           10 power levels, 11 otherwise allow
 *
 * `checkEventAuth` gets the state to check against as a StateLookup; these tests always include
 * the create event in it (also for v12, where it is implied by the room id rather than listed in
 * `auth_events`).
 */
import { describe, expect, it } from 'vitest';
import { authEventSelection, checkAuthEventsList, checkEventAuth, isPowerEvent, userPowerLevel, type AuthResult } from '../../src/protocol/auth-rules';
import { signingKeyFromSeed, type SigningKey } from '../../src/protocol/crypto';
import { encodeBase64Url } from '../../src/protocol/base64';
import { signJson } from '../../src/protocol/signing';
import type { JsonObject } from '../../src/protocol/json';
import { lookupFromEvents, type Pdu, type StateLookup } from '../../src/protocol/pdu';
import { requireRoomVersion } from '../../src/protocol/room-versions';
import {
  ALICE, ALL_VERSIONS, BOB, CAROL, CREATOR, DAVE, ERIN, EVE, FRANK, OLD_ROOM_ID,
  standardRoom, TestRoom, versions, type VersionId,
} from './auth-fixtures';

const GINA = '@gina:example.com';
const ZED = '@zed:other.org';
const MOD = '@mod:example.com';

type Built = { room: TestRoom; event: Pdu; state?: StateLookup };

interface Case {
  name: string;
  versions: readonly VersionId[];
  allowed: boolean;
  build: (v: VersionId) => Built;
}

function run(result: AuthResult): string {
  return result.allowed ? 'allowed' : `rejected: ${result.reason}`;
}

function table(title: string, cases: Case[]): void {
  describe(title, () => {
    for (const c of cases) {
      it.each([...c.versions])(`v%s: ${c.allowed ? 'allows' : 'rejects'} ${c.name}`, (v) => {
        const { room, event, state } = c.build(v);
        const result = checkEventAuth(event, state ?? room.lookup(), room.version);
        if (c.allowed) {
          expect(run(result)).toBe('allowed');
        } else {
          expect(result.allowed, 'expected a rejection').toBe(false);
          if (!result.allowed) expect(typeof result.reason).toBe('string');
        }
      });
    }
  });
}

const ALL = ALL_VERSIONS;
const EMPTY: StateLookup = lookupFromEvents([]);

/** A create event for a fresh room of version v, with tweaks. */
function createEvent(v: VersionId, tweak: { content?: JsonObject; dropContent?: string[]; prev?: string[]; roomId?: string | null; sender?: string } = {}): Built {
  const room = new TestRoom(v);
  const content: JsonObject = { ...room.create.content, ...(tweak.content ?? {}) };
  for (const k of tweak.dropContent ?? []) delete content[k];
  const roomId = tweak.roomId !== undefined ? tweak.roomId : room.version.roomIdFromCreateEvent ? null : OLD_ROOM_ID;
  const event = room.event({ type: 'm.room.create', sender: tweak.sender ?? CREATOR, stateKey: '', content, prev: tweak.prev ?? [], roomId, id: 'create2' });
  return { room, event, state: EMPTY };
}

// ---------------------------------------------------------------------------------------------
// m.room.create (rule 1)
// ---------------------------------------------------------------------------------------------

table('m.room.create (rule 1)', [
  { name: 'a well-formed create event', versions: ALL, allowed: true, build: (v) => createEvent(v) },
  { name: 'a create event with prev_events (1.1)', versions: ALL, allowed: false, build: (v) => createEvent(v, { prev: ['somewhere'] }) },
  { name: 'content.room_version that is not a recognised version', versions: ALL, allowed: false, build: (v) => createEvent(v, { content: { room_version: 'org.example.no-such-version' } }) },
  { name: 'content.room_version absent (only "present and unrecognised" rejects)', versions: ALL, allowed: true, build: (v) => createEvent(v, { dropContent: ['room_version'] }) },
  {
    name: 'room_id domain differs from the sender domain (1.2)',
    versions: versions(1, 11),
    allowed: false,
    build: (v) => createEvent(v, { sender: '@creator:other.org', content: requireRoomVersion(v).createHasCreator ? { creator: '@creator:other.org' } : {} }),
  },
  { name: 'content has no creator (1.4)', versions: versions(1, 10), allowed: false, build: (v) => createEvent(v, { dropContent: ['creator'] }) },
  { name: 'content without creator (v11 dropped rule 1.4)', versions: versions(11), allowed: true, build: (v) => createEvent(v, { dropContent: ['creator'] }) },
  { name: 'v12 create event that has a room_id (1.2)', versions: ['12'], allowed: false, build: (v) => createEvent(v, { roomId: '!create' }) },
  { name: 'v12 create sender on any server (no room_id domain rule)', versions: ['12'], allowed: true, build: (v) => createEvent(v, { sender: '@creator:other.org' }) },
  { name: 'v12 additional_creators: an array of valid user ids (1.4)', versions: ['12'], allowed: true, build: (v) => createEvent(v, { content: { additional_creators: [FRANK, '@someone:other.org'] } }) },
  { name: 'v12 additional_creators is not an array (1.4)', versions: ['12'], allowed: false, build: (v) => createEvent(v, { content: { additional_creators: FRANK } }) },
  { name: 'v12 additional_creators with an invalid user id (1.4)', versions: ['12'], allowed: false, build: (v) => createEvent(v, { content: { additional_creators: [FRANK, 'not-a-user-id'] } }) },
  { name: 'v12 additional_creators with a non-string entry (1.4)', versions: ['12'], allowed: false, build: (v) => createEvent(v, { content: { additional_creators: [FRANK, 42] } }) },
  // Rule 1 is about the type: it applies to an m.room.create without a state key (what
  // `PUT /send/m.room.create/{txn}` makes) and with any state key, not only to the room's create.
  {
    name: 'an m.room.create without a state_key, sent into a room by a power-0 member (1.1: it has prev_events)',
    versions: ALL,
    allowed: false,
    build: (v) => {
      const room = standardRoom(v);
      return { room, event: room.event({ type: 'm.room.create', sender: BOB, content: { room_version: v } }) };
    },
  },
  {
    name: 'an m.room.create without a state_key, even from the creator (1.1)',
    versions: ALL,
    allowed: false,
    build: (v) => {
      const room = standardRoom(v);
      return { room, event: room.event({ type: 'm.room.create', sender: CREATOR, content: { ...room.create.content } }) };
    },
  },
  {
    name: 'an m.room.create with a non-empty state_key, from the creator (1.1)',
    versions: ALL,
    allowed: false,
    build: (v) => {
      const room = standardRoom(v);
      return { room, event: room.stateEvent('m.room.create', CREATOR, 'x', { ...room.create.content }) };
    },
  },
  {
    name: 'a second m.room.create with the empty state_key, from the creator (1.1)',
    versions: ALL,
    allowed: false,
    build: (v) => {
      const room = standardRoom(v);
      return { room, event: room.stateEvent('m.room.create', CREATOR, '', { ...room.create.content }) };
    },
  },
]);

describe('checkAuthEventsList leaves every m.room.create to rule 1', () => {
  it.each([...ALL])('v%s: a non-state m.room.create is judged by checkEventAuth, not by its auth events', (v) => {
    const room = standardRoom(v);
    const event = room.event({ type: 'm.room.create', sender: BOB, content: { room_version: v } });
    expect(checkAuthEventsList(event, [], room.version).allowed).toBe(true);
    expect(checkEventAuth(event, room.lookup(), room.version).allowed).toBe(false);
  });
});

// ---------------------------------------------------------------------------------------------
// The create event in the auth state; v12 room ids (rules 2 / v12 rules 2–3)
// ---------------------------------------------------------------------------------------------

table('create event among the auth events / room id', [
  {
    name: 'no m.room.create event in the auth state (2.4)',
    versions: versions(1, 11),
    allowed: false,
    build: (v) => {
      const room = standardRoom(v);
      const event = room.message(BOB);
      room.remove('m.room.create', '');
      return { room, event };
    },
  },
  {
    name: 'the create event in the auth state belongs to another room (2.5)',
    versions: versions(1, 11),
    allowed: false,
    build: (v) => {
      const room = standardRoom(v);
      room.put(room.event({ type: 'm.room.create', sender: CREATOR, stateKey: '', content: room.create.content, prev: [], roomId: '!other:example.com', id: 'create-other' }));
      return { room, event: room.message(BOB) };
    },
  },
  {
    name: 'v12: room_id is not the id of the create event (v12 rule 2)',
    versions: ['12'],
    allowed: false,
    build: (v) => {
      const room = standardRoom(v);
      return { room, event: room.event({ type: 'm.room.message', sender: BOB, content: { body: 'x' }, roomId: '!someotherroom' }) };
    },
  },
  {
    name: 'v12: the create event the room id names is not available (v12 rule 2)',
    versions: ['12'],
    allowed: false,
    build: (v) => {
      const room = standardRoom(v);
      const event = room.message(BOB);
      room.remove('m.room.create', '');
      return { room, event };
    },
  },
  {
    name: 'v12: room_id is "!" + the create event id (v12 rule 2)',
    versions: ['12'],
    allowed: true,
    build: (v) => {
      const room = standardRoom(v);
      expect(room.roomId).toBe(`!${room.create.eventId.slice(1)}`);
      return { room, event: room.message(BOB) };
    },
  },
]);

// ---------------------------------------------------------------------------------------------
// m.federate (rule 3; v12 rule 4)
// ---------------------------------------------------------------------------------------------

const noFederate = (v: VersionId) => standardRoom(v, { createContent: { 'm.federate': false } });

table('m.federate: false', [
  { name: 'a message from a joined user on another server', versions: ALL, allowed: false, build: (v) => { const room = noFederate(v); return { room, event: room.message(EVE) }; } },
  { name: 'a message from a user on the create event sender\'s server', versions: ALL, allowed: true, build: (v) => { const room = noFederate(v); return { room, event: room.message(BOB) }; } },
  { name: 'a join of a non-federating public room by a user on another server', versions: ALL, allowed: false, build: (v) => { const room = noFederate(v); return { room, event: room.member(ZED, 'join') }; } },
  {
    name: 'm.federate: true lets the other server\'s user speak',
    versions: ALL,
    allowed: true,
    build: (v) => { const room = standardRoom(v, { createContent: { 'm.federate': true } }); return { room, event: room.message(EVE) }; },
  },
]);

// ---------------------------------------------------------------------------------------------
// The sender must be joined (rule 6; v6–v11 rule 5; v12 rule 6)
// ---------------------------------------------------------------------------------------------

table('sender must be joined for non-membership events', [
  { name: 'a message from a joined member', versions: ALL, allowed: true, build: (v) => { const room = standardRoom(v); return { room, event: room.message(BOB) }; } },
  { name: 'a message from a user with no membership', versions: ALL, allowed: false, build: (v) => { const room = standardRoom(v); return { room, event: room.message(CAROL) }; } },
  { name: 'a message from an invited user', versions: ALL, allowed: false, build: (v) => { const room = standardRoom(v).setMember(CAROL, 'invite', ALICE); return { room, event: room.message(CAROL) }; } },
  { name: 'a message from a user who left', versions: ALL, allowed: false, build: (v) => { const room = standardRoom(v).setMember(BOB, 'leave'); return { room, event: room.message(BOB) }; } },
  { name: 'a message from a banned user', versions: ALL, allowed: false, build: (v) => { const room = standardRoom(v).setMember(BOB, 'ban', ALICE); return { room, event: room.message(BOB) }; } },
  { name: 'a message from a user who knocked', versions: versions(7), allowed: false, build: (v) => { const room = standardRoom(v, { joinRule: 'knock' }).setMember(CAROL, 'knock'); return { room, event: room.message(CAROL) }; } },
  { name: 'a state event from a user with no membership', versions: ALL, allowed: false, build: (v) => { const room = standardRoom(v); return { room, event: room.stateEvent('m.room.topic', CAROL, '', { topic: 't' }) }; } },
]);

// ---------------------------------------------------------------------------------------------
// Required power level (rule 8; v6–v11 rule 7)
// ---------------------------------------------------------------------------------------------

table('required power level for the event type', [
  { name: 'message at events_default 10 from a user at 0', versions: ALL, allowed: false, build: (v) => { const room = standardRoom(v, { plOverrides: { events_default: 10 } }); return { room, event: room.message(BOB) }; } },
  { name: 'message type listed in events above the sender', versions: ALL, allowed: false, build: (v) => { const room = standardRoom(v, { plOverrides: { events: { 'm.room.message': 50 } } }); return { room, event: room.message(BOB) }; } },
  { name: 'message type listed in events at the sender\'s level', versions: ALL, allowed: true, build: (v) => { const room = standardRoom(v, { plOverrides: { events: { 'm.room.message': 50 } } }); return { room, event: room.message(ALICE) }; } },
  { name: 'state event at state_default 50 from a user at 0', versions: ALL, allowed: false, build: (v) => { const room = standardRoom(v); return { room, event: room.stateEvent('m.room.topic', BOB, '', { topic: 't' }) }; } },
  { name: 'state event at state_default 50 from a user at 50', versions: ALL, allowed: true, build: (v) => { const room = standardRoom(v); return { room, event: room.stateEvent('m.room.topic', ALICE, '', { topic: 't' }) }; } },
  { name: 'state event type lowered to 0 in events', versions: ALL, allowed: true, build: (v) => { const room = standardRoom(v, { plOverrides: { events: { 'm.room.topic': 0 } } }); return { room, event: room.stateEvent('m.room.topic', BOB, '', { topic: 't' }) }; } },
  { name: 'state event from a user at 40 under state_default 50', versions: ALL, allowed: false, build: (v) => { const room = standardRoom(v); return { room, event: room.stateEvent('m.room.name', ERIN, '', { name: 'n' }) }; } },
  { name: 'users_default applies to users not listed in users', versions: ALL, allowed: true, build: (v) => { const room = standardRoom(v, { plOverrides: { users_default: 50 } }); return { room, event: room.stateEvent('m.room.topic', BOB, '', { topic: 't' }) }; } },
  {
    name: 'no power levels event: a non-creator member cannot send state (state_default 50)',
    versions: ALL,
    allowed: false,
    build: (v) => { const room = new TestRoom(v).setMember(CREATOR, 'join').setJoinRule('public').setMember(BOB, 'join'); return { room, event: room.stateEvent('m.room.topic', BOB, '', { topic: 't' }) }; },
  },
  {
    name: 'no power levels event: the creator can send state',
    versions: ALL,
    allowed: true,
    build: (v) => { const room = new TestRoom(v).setMember(CREATOR, 'join'); return { room, event: room.stateEvent('m.room.topic', CREATOR, '', { topic: 't' }) }; },
  },
  {
    name: 'no power levels event: a non-creator member can send messages (events_default 0)',
    versions: ALL,
    allowed: true,
    build: (v) => { const room = new TestRoom(v).setMember(CREATOR, 'join').setJoinRule('public').setMember(BOB, 'join'); return { room, event: room.message(BOB) }; },
  },
  {
    name: 'string power levels in the current state are read as integers ("30" meets state_default "30")',
    versions: versions(1, 9),
    allowed: true,
    build: (v) => {
      const room = standardRoom(v);
      room.setPowerLevels({ state_default: '30', users: { [CREATOR]: '100', [BOB]: '30' } });
      return { room, event: room.stateEvent('m.room.topic', BOB, '', { topic: 't' }) };
    },
  },
  {
    name: 'string power levels in the current state: "29" is below state_default "30"',
    versions: versions(1, 9),
    allowed: false,
    build: (v) => {
      const room = standardRoom(v);
      room.setPowerLevels({ state_default: '30', users: { [CREATOR]: '100', [BOB]: '29' } });
      return { room, event: room.stateEvent('m.room.topic', BOB, '', { topic: 't' }) };
    },
  },
]);

// ---------------------------------------------------------------------------------------------
// State keys starting with `@` (rule 9; v6–v11 rule 8; v12 rule 9) — no exception in any version
// ---------------------------------------------------------------------------------------------

table('state_key starting with @ must be the sender', [
  { name: 'custom state keyed by another user\'s id', versions: ALL, allowed: false, build: (v) => { const room = standardRoom(v); return { room, event: room.stateEvent('org.example.state', ALICE, BOB, {}) }; } },
  { name: 'custom state keyed by the sender\'s own id', versions: ALL, allowed: true, build: (v) => { const room = standardRoom(v); return { room, event: room.stateEvent('org.example.state', ALICE, ALICE, {}) }; } },
  { name: 'custom state keyed by another user\'s id, even from the creator', versions: ALL, allowed: false, build: (v) => { const room = standardRoom(v); return { room, event: room.stateEvent('org.example.state', CREATOR, BOB, {}) }; } },
  { name: 'custom state keyed by any "@"-prefixed string that is not the sender', versions: ALL, allowed: false, build: (v) => { const room = standardRoom(v); return { room, event: room.stateEvent('org.example.state', ALICE, '@alice', {}) }; } },
  { name: 'custom state keyed without a leading @', versions: ALL, allowed: true, build: (v) => { const room = standardRoom(v); return { room, event: room.stateEvent('org.example.state', ALICE, 'bob:example.com', {}) }; } },
]);

// ---------------------------------------------------------------------------------------------
// m.room.third_party_invite (rule 7; v6–v11 rule 6)
// ---------------------------------------------------------------------------------------------

const tpiEvent = (room: TestRoom, sender: string, token = 'tok') =>
  room.stateEvent('m.room.third_party_invite', sender, token, { display_name: 'c…@e…', key_validity_url: 'https://id.example.org/_matrix/identity/v2/pubkey/isvalid', public_key: 'AAAA' });

table('m.room.third_party_invite events', [
  { name: 'allowed iff the sender has the invite level: 0 ≥ invite 0, although state_default is 50', versions: ALL, allowed: true, build: (v) => { const room = standardRoom(v); return { room, event: tpiEvent(room, BOB) }; } },
  { name: 'a sender below the invite level (invite 50, sender 0)', versions: ALL, allowed: false, build: (v) => { const room = standardRoom(v, { plOverrides: { invite: 50 } }); return { room, event: tpiEvent(room, BOB) }; } },
  { name: 'a sender at the invite level (invite 50, sender 50)', versions: ALL, allowed: true, build: (v) => { const room = standardRoom(v, { plOverrides: { invite: 50 } }); return { room, event: tpiEvent(room, ALICE) }; } },
  {
    name: 'invite level decides even if events lists the type higher ("allow if and only if")',
    versions: ALL,
    allowed: true,
    build: (v) => { const room = standardRoom(v, { plOverrides: { events: { 'm.room.third_party_invite': 100 } } }); return { room, event: tpiEvent(room, BOB) }; },
  },
  { name: 'a sender who is not joined', versions: ALL, allowed: false, build: (v) => { const room = standardRoom(v); return { room, event: tpiEvent(room, CAROL) }; } },
]);

// ---------------------------------------------------------------------------------------------
// m.room.member: general
// ---------------------------------------------------------------------------------------------

table('m.room.member: shape and unknown memberships', [
  { name: 'membership missing from content', versions: ALL, allowed: false, build: (v) => { const room = standardRoom(v); return { room, event: room.event({ type: 'm.room.member', sender: CAROL, stateKey: CAROL, content: { displayname: 'C' } }) }; } },
  { name: 'a member event without a state_key', versions: ALL, allowed: false, build: (v) => { const room = standardRoom(v); return { room, event: room.event({ type: 'm.room.member', sender: CAROL, content: { membership: 'join' } }) }; } },
  { name: 'an unknown membership value', versions: ALL, allowed: false, build: (v) => { const room = standardRoom(v); return { room, event: room.member(BOB, 'wibble') }; } },
  { name: 'membership knock before knocking existed (unknown membership)', versions: versions(1, 6), allowed: false, build: (v) => { const room = standardRoom(v, { joinRule: 'knock' }); return { room, event: room.member(CAROL, 'knock') }; } },
  {
    // Not literal spec text: the state_key of a member event is "the user given by the state_key"
    // (Target User); Synapse, ruma and gomatrixserverlib all refuse one that is not a user id.
    name: 'an invite whose state_key is not a valid user id (target user must be a user id)',
    versions: ALL,
    allowed: false,
    build: (v) => { const room = standardRoom(v); return { room, event: room.member('not-a-user-id', 'invite', ALICE) }; },
  },
]);

// ---------------------------------------------------------------------------------------------
// m.room.member: join
// ---------------------------------------------------------------------------------------------

const authorisedJoin = (room: TestRoom, user: string, authoriser: string) =>
  room.member(user, 'join', user, { join_authorised_via_users_server: authoriser });

table('m.room.member: join', [
  {
    name: 'the creator\'s join whose only prev event is the create event',
    versions: ALL,
    allowed: true,
    build: (v) => { const room = new TestRoom(v); return { room, event: room.event({ type: 'm.room.member', sender: CREATOR, stateKey: CREATOR, content: { membership: 'join' }, prev: ['create'] }) }; },
  },
  {
    name: 'another user\'s join right after the create event (not the creator; no join rule)',
    versions: ALL,
    allowed: false,
    build: (v) => { const room = new TestRoom(v); return { room, event: room.event({ type: 'm.room.member', sender: BOB, stateKey: BOB, content: { membership: 'join' }, prev: ['create'] }) }; },
  },
  {
    name: 'the creator\'s join with two prev events is not the first join (no join rule)',
    versions: ALL,
    allowed: false,
    build: (v) => { const room = new TestRoom(v); return { room, event: room.event({ type: 'm.room.member', sender: CREATOR, stateKey: CREATOR, content: { membership: 'join' }, prev: ['create', 'other'] }) }; },
  },
  {
    name: 'v11+: the first join is by the create event\'s sender (create content has no creator)',
    versions: versions(11),
    allowed: true,
    build: (v) => {
      const room = new TestRoom(v, { creator: GINA });
      expect(room.create.content.creator).toBeUndefined();
      return { room, event: room.event({ type: 'm.room.member', sender: GINA, stateKey: GINA, content: { membership: 'join' }, prev: ['create'] }) };
    },
  },
  { name: 'a join sent by someone other than the joining user (force-join)', versions: ALL, allowed: false, build: (v) => { const room = standardRoom(v); return { room, event: room.member(CAROL, 'join', CREATOR) }; } },
  { name: 'a join of a public room', versions: ALL, allowed: true, build: (v) => { const room = standardRoom(v); return { room, event: room.member(CAROL, 'join') }; } },
  { name: 'a join of a public room by a user on another server', versions: ALL, allowed: true, build: (v) => { const room = standardRoom(v); return { room, event: room.member(ZED, 'join') }; } },
  { name: 'a rejoin of a public room after leaving', versions: ALL, allowed: true, build: (v) => { const room = standardRoom(v).setMember(CAROL, 'leave'); return { room, event: room.member(CAROL, 'join') }; } },
  { name: 'a join of a public room by a banned user', versions: ALL, allowed: false, build: (v) => { const room = standardRoom(v).setMember(CAROL, 'ban', ALICE); return { room, event: room.member(CAROL, 'join') }; } },
  { name: 'a join of an invite-only room without an invite', versions: ALL, allowed: false, build: (v) => { const room = standardRoom(v, { joinRule: 'invite' }); return { room, event: room.member(CAROL, 'join') }; } },
  { name: 'a join of an invite-only room with an invite', versions: ALL, allowed: true, build: (v) => { const room = standardRoom(v, { joinRule: 'invite' }).setMember(CAROL, 'invite', ALICE); return { room, event: room.member(CAROL, 'join') }; } },
  { name: 'a join of an invite-only room by a member already joined (profile change)', versions: ALL, allowed: true, build: (v) => { const room = standardRoom(v, { joinRule: 'invite' }); return { room, event: room.member(BOB, 'join', BOB, { displayname: 'Bobby' }) }; } },
  { name: 'a rejoin of an invite-only room after leaving', versions: ALL, allowed: false, build: (v) => { const room = standardRoom(v, { joinRule: 'invite' }).setMember(CAROL, 'leave'); return { room, event: room.member(CAROL, 'join') }; } },
  { name: 'a join of an invite-only room by a banned user', versions: ALL, allowed: false, build: (v) => { const room = standardRoom(v, { joinRule: 'invite' }).setMember(CAROL, 'ban', ALICE); return { room, event: room.member(CAROL, 'join') }; } },
  {
    name: 'a join when there is no join rules event ("otherwise, reject")',
    versions: ALL,
    allowed: false,
    build: (v) => { const room = standardRoom(v).remove('m.room.join_rules', ''); return { room, event: room.member(CAROL, 'join') }; },
  },
  { name: 'a join under an unknown join rule ("private")', versions: ALL, allowed: false, build: (v) => { const room = standardRoom(v, { joinRule: 'private' }); return { room, event: room.member(CAROL, 'join') }; } },
  { name: 'an invited user joining under join rule knock before knocking existed', versions: versions(1, 6), allowed: false, build: (v) => { const room = standardRoom(v, { joinRule: 'knock' }).setMember(CAROL, 'invite', ALICE); return { room, event: room.member(CAROL, 'join') }; } },
  { name: 'an invited user joining under join rule knock ("invite or knock")', versions: versions(7), allowed: true, build: (v) => { const room = standardRoom(v, { joinRule: 'knock' }).setMember(CAROL, 'invite', ALICE); return { room, event: room.member(CAROL, 'join') }; } },
  { name: 'an uninvited join under join rule knock', versions: versions(7), allowed: false, build: (v) => { const room = standardRoom(v, { joinRule: 'knock' }); return { room, event: room.member(CAROL, 'join') }; } },
  { name: 'a knocked (not invited) user joining under join rule knock', versions: versions(7), allowed: false, build: (v) => { const room = standardRoom(v, { joinRule: 'knock' }).setMember(CAROL, 'knock'); return { room, event: room.member(CAROL, 'join') }; } },
]);

const restrictedRoom = (v: VersionId, rule = 'restricted', plOverrides: JsonObject = {}) => {
  const room = standardRoom(v, { plOverrides });
  return room.setJoinRule(rule, { allow: [{ type: 'm.room_membership', room_id: '!space:example.com' }] });
};

table('m.room.member: restricted joins', [
  { name: 'join rule restricted before restricted rooms existed, even with an authoriser', versions: versions(1, 7), allowed: false, build: (v) => { const room = restrictedRoom(v); return { room, event: authorisedJoin(room, CAROL, ALICE) }; } },
  { name: 'join rule restricted before restricted rooms existed, even when invited', versions: versions(1, 7), allowed: false, build: (v) => { const room = restrictedRoom(v).setMember(CAROL, 'invite', ALICE); return { room, event: room.member(CAROL, 'join') }; } },
  { name: 'restricted: authorised by a joined user with the invite level', versions: versions(8), allowed: true, build: (v) => { const room = restrictedRoom(v); return { room, event: authorisedJoin(room, CAROL, ALICE) }; } },
  { name: 'restricted: an invited user joins without an authoriser', versions: versions(8), allowed: true, build: (v) => { const room = restrictedRoom(v).setMember(CAROL, 'invite', ALICE); return { room, event: room.member(CAROL, 'join') }; } },
  { name: 'restricted: a joined user updates their member event without an authoriser', versions: versions(8), allowed: true, build: (v) => { const room = restrictedRoom(v); return { room, event: room.member(BOB, 'join', BOB, { displayname: 'B' }) }; } },
  { name: 'restricted: no join_authorised_via_users_server and not invited', versions: versions(8), allowed: false, build: (v) => { const room = restrictedRoom(v); return { room, event: room.member(CAROL, 'join') }; } },
  { name: 'restricted: the authoriser is not a member of the room', versions: versions(8), allowed: false, build: (v) => { const room = restrictedRoom(v); return { room, event: authorisedJoin(room, CAROL, GINA) }; } },
  { name: 'restricted: the authoriser is only invited, not joined', versions: versions(8), allowed: false, build: (v) => { const room = restrictedRoom(v).setMember(GINA, 'invite', ALICE); return { room, event: authorisedJoin(room, CAROL, GINA) }; } },
  { name: 'restricted: the authoriser is joined but below the invite level (invite 50, authoriser 0)', versions: versions(8), allowed: false, build: (v) => { const room = restrictedRoom(v, 'restricted', { invite: 50 }); return { room, event: authorisedJoin(room, CAROL, BOB) }; } },
  { name: 'restricted: the authoriser meets a raised invite level (invite 50, authoriser 50)', versions: versions(8), allowed: true, build: (v) => { const room = restrictedRoom(v, 'restricted', { invite: 50 }); return { room, event: authorisedJoin(room, CAROL, ALICE) }; } },
  { name: 'restricted: a banned user, even with a valid authoriser', versions: versions(8), allowed: false, build: (v) => { const room = restrictedRoom(v).setMember(CAROL, 'ban', ALICE); return { room, event: authorisedJoin(room, CAROL, ALICE) }; } },
  { name: 'knock_restricted before v10 is an unknown join rule (authorised join)', versions: versions(8, 9), allowed: false, build: (v) => { const room = restrictedRoom(v, 'knock_restricted'); return { room, event: authorisedJoin(room, CAROL, ALICE) }; } },
  { name: 'knock_restricted before v10 is an unknown join rule (invited join)', versions: versions(1, 9), allowed: false, build: (v) => { const room = restrictedRoom(v, 'knock_restricted').setMember(CAROL, 'invite', ALICE); return { room, event: room.member(CAROL, 'join') }; } },
  { name: 'knock_restricted: authorised by a joined user with the invite level', versions: versions(10), allowed: true, build: (v) => { const room = restrictedRoom(v, 'knock_restricted'); return { room, event: authorisedJoin(room, CAROL, ALICE) }; } },
  { name: 'knock_restricted: an invited user joins', versions: versions(10), allowed: true, build: (v) => { const room = restrictedRoom(v, 'knock_restricted').setMember(CAROL, 'invite', ALICE); return { room, event: room.member(CAROL, 'join') }; } },
  { name: 'knock_restricted: neither invited nor authorised', versions: versions(10), allowed: false, build: (v) => { const room = restrictedRoom(v, 'knock_restricted'); return { room, event: room.member(CAROL, 'join') }; } },
]);

// ---------------------------------------------------------------------------------------------
// m.room.member: invite
// ---------------------------------------------------------------------------------------------

table('m.room.member: invite', [
  { name: 'a joined member at the invite level (0) invites a new user', versions: ALL, allowed: true, build: (v) => { const room = standardRoom(v); return { room, event: room.member(CAROL, 'invite', BOB) }; } },
  { name: 'a sender below a raised invite level (invite 50, sender 0)', versions: ALL, allowed: false, build: (v) => { const room = standardRoom(v, { plOverrides: { invite: 50 } }); return { room, event: room.member(CAROL, 'invite', BOB) }; } },
  { name: 'a sender at a raised invite level (invite 50, sender 50)', versions: ALL, allowed: true, build: (v) => { const room = standardRoom(v, { plOverrides: { invite: 50 } }); return { room, event: room.member(CAROL, 'invite', ALICE) }; } },
  { name: 'an invite of a user who is already joined', versions: ALL, allowed: false, build: (v) => { const room = standardRoom(v); return { room, event: room.member(BOB, 'invite', ALICE) }; } },
  { name: 'an invite of a banned user', versions: ALL, allowed: false, build: (v) => { const room = standardRoom(v).setMember(CAROL, 'ban', ALICE); return { room, event: room.member(CAROL, 'invite', ALICE) }; } },
  { name: 'an invite from a sender who is not joined', versions: ALL, allowed: false, build: (v) => { const room = standardRoom(v); return { room, event: room.member(GINA, 'invite', CAROL) }; } },
  { name: 'an invite from a sender who is only invited', versions: ALL, allowed: false, build: (v) => { const room = standardRoom(v).setMember(CAROL, 'invite', ALICE); return { room, event: room.member(GINA, 'invite', CAROL) }; } },
  { name: 'a re-invite of an already invited user', versions: ALL, allowed: true, build: (v) => { const room = standardRoom(v).setMember(CAROL, 'invite', ALICE); return { room, event: room.member(CAROL, 'invite', BOB) }; } },
  { name: 'an invite of a user who left', versions: ALL, allowed: true, build: (v) => { const room = standardRoom(v).setMember(CAROL, 'leave'); return { room, event: room.member(CAROL, 'invite', ALICE) }; } },
  { name: 'an invite of a user who knocked', versions: versions(7), allowed: true, build: (v) => { const room = standardRoom(v, { joinRule: 'knock' }).setMember(CAROL, 'knock'); return { room, event: room.member(CAROL, 'invite', ALICE) }; } },
]);

// ---------------------------------------------------------------------------------------------
// m.room.member: invite with third_party_invite
// ---------------------------------------------------------------------------------------------

const ID_SERVER = 'id.example.org';
const ID_KEY = signingKeyFromSeed('ed25519:0', new Uint8Array(32).fill(2));
const ID_KEY2 = signingKeyFromSeed('ed25519:1', new Uint8Array(32).fill(3));
const WRONG_KEY = signingKeyFromSeed('ed25519:0', new Uint8Array(32).fill(4));
const TOKEN = 'sometoken';

function tpiRoom(v: VersionId, opts: { tpiSender?: string; publicKey?: string } = {}): TestRoom {
  const room = standardRoom(v);
  room.put(
    room.stateEvent('m.room.third_party_invite', opts.tpiSender ?? ALICE, TOKEN, {
      display_name: 'c...@e...',
      key_validity_url: `https://${ID_SERVER}/_matrix/identity/v2/pubkey/isvalid`,
      public_key: opts.publicKey ?? ID_KEY.publicKeyBase64,
      public_keys: [{ public_key: ID_KEY2.publicKeyBase64, key_validity_url: `https://${ID_SERVER}/_matrix/identity/v2/pubkey/isvalid` }],
    }),
  );
  return room;
}

function signedBlock(mxid: string, token: string, key: SigningKey = ID_KEY): JsonObject {
  return signJson({ mxid, token }, ID_SERVER, key);
}

function tpiInvite(room: TestRoom, target: string, signed: JsonObject | undefined, sender = ALICE): Pdu {
  const third_party_invite: JsonObject = { display_name: 'c...@e...' };
  if (signed !== undefined) third_party_invite.signed = signed;
  return room.member(target, 'invite', sender, { third_party_invite });
}

table('m.room.member: third-party invites', [
  { name: 'signed by the key in public_key, token and mxid matching', versions: ALL, allowed: true, build: (v) => { const room = tpiRoom(v); return { room, event: tpiInvite(room, CAROL, signedBlock(CAROL, TOKEN)) }; } },
  { name: 'signed by a key listed only in public_keys', versions: ALL, allowed: true, build: (v) => { const room = tpiRoom(v); return { room, event: tpiInvite(room, CAROL, signedBlock(CAROL, TOKEN, ID_KEY2)) }; } },
  {
    name: 'public_key in URL-safe unpadded base64 (either alphabet is allowed)',
    versions: ALL,
    allowed: true,
    build: (v) => {
      const urlSafe = encodeBase64Url(ID_KEY.publicKey);
      expect(urlSafe).not.toBe(ID_KEY.publicKeyBase64); // the fixture key has + or / in it
      const room = tpiRoom(v, { publicKey: urlSafe });
      return { room, event: tpiInvite(room, CAROL, signedBlock(CAROL, TOKEN)) };
    },
  },
  { name: 'signed by a key the third-party invite does not list', versions: ALL, allowed: false, build: (v) => { const room = tpiRoom(v); return { room, event: tpiInvite(room, CAROL, signedBlock(CAROL, TOKEN, WRONG_KEY)) }; } },
  {
    name: 'a signed block altered after signing (signature no longer matches)',
    versions: ALL,
    allowed: false,
    build: (v) => {
      const room = tpiRoom(v);
      const signed = { ...signedBlock(GINA, TOKEN), mxid: CAROL };
      return { room, event: tpiInvite(room, CAROL, signed) };
    },
  },
  { name: 'signed.mxid differs from the state_key', versions: ALL, allowed: false, build: (v) => { const room = tpiRoom(v); return { room, event: tpiInvite(room, CAROL, signedBlock(GINA, TOKEN)) }; } },
  { name: 'no m.room.third_party_invite event for the token', versions: ALL, allowed: false, build: (v) => { const room = tpiRoom(v); return { room, event: tpiInvite(room, CAROL, signedBlock(CAROL, 'othertoken')) }; } },
  { name: 'the sender is not the sender of the m.room.third_party_invite', versions: ALL, allowed: false, build: (v) => { const room = tpiRoom(v); return { room, event: tpiInvite(room, CAROL, signedBlock(CAROL, TOKEN), BOB) }; } },
  { name: 'the target user is banned', versions: ALL, allowed: false, build: (v) => { const room = tpiRoom(v).setMember(CAROL, 'ban', ALICE); return { room, event: tpiInvite(room, CAROL, signedBlock(CAROL, TOKEN)) }; } },
  { name: 'third_party_invite without signed (no fallback to an ordinary invite)', versions: ALL, allowed: false, build: (v) => { const room = tpiRoom(v); return { room, event: tpiInvite(room, CAROL, undefined) }; } },
  {
    name: 'signed without token',
    versions: ALL,
    allowed: false,
    build: (v) => { const room = tpiRoom(v); return { room, event: tpiInvite(room, CAROL, signJson({ mxid: CAROL }, ID_SERVER, ID_KEY)) }; },
  },
  {
    name: 'signed without mxid',
    versions: ALL,
    allowed: false,
    build: (v) => { const room = tpiRoom(v); return { room, event: tpiInvite(room, CAROL, signJson({ token: TOKEN }, ID_SERVER, ID_KEY)) }; },
  },
  {
    name: 'a valid third-party invite is allowed before the sender-joined check (third_party_invite rule comes first)',
    versions: ALL,
    allowed: true,
    build: (v) => { const room = tpiRoom(v).setMember(ALICE, 'leave'); return { room, event: tpiInvite(room, CAROL, signedBlock(CAROL, TOKEN)) }; },
  },
]);

// ---------------------------------------------------------------------------------------------
// m.room.member: leave (self-leave, kick, unban)
// ---------------------------------------------------------------------------------------------

table('m.room.member: leave', [
  { name: 'a joined user leaves', versions: ALL, allowed: true, build: (v) => { const room = standardRoom(v); return { room, event: room.member(BOB, 'leave') }; } },
  { name: 'an invited user rejects the invite', versions: ALL, allowed: true, build: (v) => { const room = standardRoom(v).setMember(CAROL, 'invite', ALICE); return { room, event: room.member(CAROL, 'leave') }; } },
  { name: 'a user with no membership "leaves"', versions: ALL, allowed: false, build: (v) => { const room = standardRoom(v); return { room, event: room.member(CAROL, 'leave') }; } },
  { name: 'a user who already left leaves again', versions: ALL, allowed: false, build: (v) => { const room = standardRoom(v).setMember(CAROL, 'leave'); return { room, event: room.member(CAROL, 'leave') }; } },
  { name: 'a banned user cannot unban themselves by leaving', versions: ALL, allowed: false, build: (v) => { const room = standardRoom(v).setMember(CAROL, 'ban', ALICE); return { room, event: room.member(CAROL, 'leave') }; } },
  { name: 'a knocking user rescinds the knock', versions: versions(7), allowed: true, build: (v) => { const room = standardRoom(v, { joinRule: 'knock' }).setMember(CAROL, 'knock'); return { room, event: room.member(CAROL, 'leave') }; } },
  { name: 'kick: sender at the kick level, target below the sender', versions: ALL, allowed: true, build: (v) => { const room = standardRoom(v); return { room, event: room.member(BOB, 'leave', ALICE) }; } },
  { name: 'kick: sender below the kick level', versions: ALL, allowed: false, build: (v) => { const room = standardRoom(v); return { room, event: room.member(ERIN, 'leave', BOB) }; } },
  { name: 'kick: target at the same level as the sender', versions: ALL, allowed: false, build: (v) => { const room = standardRoom(v); return { room, event: room.member(DAVE, 'leave', ALICE) }; } },
  { name: 'kick: target above the sender', versions: ALL, allowed: false, build: (v) => { const room = standardRoom(v); return { room, event: room.member(CREATOR, 'leave', ALICE) }; } },
  { name: 'kick: kick level 0 but the target is at the sender\'s level (0 is not below 0)', versions: ALL, allowed: false, build: (v) => { const room = standardRoom(v, { plOverrides: { kick: 0 } }).setMember(GINA, 'join'); return { room, event: room.member(GINA, 'leave', BOB) }; } },
  { name: 'kick: sender not joined', versions: ALL, allowed: false, build: (v) => { const room = standardRoom(v).setMember(ALICE, 'leave'); return { room, event: room.member(BOB, 'leave', ALICE) }; } },
  { name: 'kick: revoking an invite', versions: ALL, allowed: true, build: (v) => { const room = standardRoom(v).setMember(CAROL, 'invite', BOB); return { room, event: room.member(CAROL, 'leave', ALICE) }; } },
  { name: 'unban: sender at both the ban and kick levels, above the target', versions: ALL, allowed: true, build: (v) => { const room = standardRoom(v).setMember(CAROL, 'ban', ALICE); return { room, event: room.member(CAROL, 'leave', ALICE) }; } },
  { name: 'unban: sender below the ban level (ban 75)', versions: ALL, allowed: false, build: (v) => { const room = standardRoom(v, { plOverrides: { ban: 75 } }).setMember(CAROL, 'ban', CREATOR); return { room, event: room.member(CAROL, 'leave', ALICE) }; } },
  { name: 'unban: sender at the ban level but below the kick level (kick 75)', versions: ALL, allowed: false, build: (v) => { const room = standardRoom(v, { plOverrides: { kick: 75 } }).setMember(CAROL, 'ban', ALICE); return { room, event: room.member(CAROL, 'leave', ALICE) }; } },
]);

// ---------------------------------------------------------------------------------------------
// m.room.member: ban
// ---------------------------------------------------------------------------------------------

table('m.room.member: ban', [
  { name: 'sender at the ban level bans a member below them', versions: ALL, allowed: true, build: (v) => { const room = standardRoom(v); return { room, event: room.member(BOB, 'ban', ALICE) }; } },
  { name: 'sender at the ban level bans a user who never joined', versions: ALL, allowed: true, build: (v) => { const room = standardRoom(v); return { room, event: room.member(CAROL, 'ban', ALICE) }; } },
  { name: 'sender below the ban level', versions: ALL, allowed: false, build: (v) => { const room = standardRoom(v); return { room, event: room.member(CAROL, 'ban', BOB) }; } },
  { name: 'sender at 40 below ban 50, target at 0', versions: ALL, allowed: false, build: (v) => { const room = standardRoom(v); return { room, event: room.member(BOB, 'ban', ERIN) }; } },
  { name: 'target at the same level as the sender', versions: ALL, allowed: false, build: (v) => { const room = standardRoom(v); return { room, event: room.member(DAVE, 'ban', ALICE) }; } },
  { name: 'target above the sender', versions: ALL, allowed: false, build: (v) => { const room = standardRoom(v); return { room, event: room.member(CREATOR, 'ban', ALICE) }; } },
  { name: 'sender not joined', versions: ALL, allowed: false, build: (v) => { const room = standardRoom(v).setMember(ALICE, 'leave'); return { room, event: room.member(BOB, 'ban', ALICE) }; } },
]);

// ---------------------------------------------------------------------------------------------
// m.room.member: knock (v7+)
// ---------------------------------------------------------------------------------------------

const knockRoom = (v: VersionId, rule = 'knock') => standardRoom(v, { joinRule: rule });

table('m.room.member: knock', [
  { name: 'a user with no membership knocks on a knock room', versions: versions(7), allowed: true, build: (v) => { const room = knockRoom(v); return { room, event: room.member(CAROL, 'knock') }; } },
  { name: 'a user who left knocks again', versions: versions(7), allowed: true, build: (v) => { const room = knockRoom(v).setMember(CAROL, 'leave'); return { room, event: room.member(CAROL, 'knock') }; } },
  { name: 'a user on another server knocks', versions: versions(7), allowed: true, build: (v) => { const room = knockRoom(v); return { room, event: room.member(ZED, 'knock') }; } },
  { name: 'a knock sent on behalf of someone else', versions: versions(7), allowed: false, build: (v) => { const room = knockRoom(v); return { room, event: room.member(CAROL, 'knock', ALICE) }; } },
  { name: 'a knock on a public room', versions: versions(7), allowed: false, build: (v) => { const room = knockRoom(v, 'public'); return { room, event: room.member(CAROL, 'knock') }; } },
  { name: 'a knock on an invite-only room', versions: versions(7), allowed: false, build: (v) => { const room = knockRoom(v, 'invite'); return { room, event: room.member(CAROL, 'knock') }; } },
  { name: 'a knock on a restricted room', versions: versions(8), allowed: false, build: (v) => { const room = knockRoom(v, 'restricted'); return { room, event: room.member(CAROL, 'knock') }; } },
  { name: 'a knock by a joined member', versions: versions(7), allowed: false, build: (v) => { const room = knockRoom(v); return { room, event: room.member(BOB, 'knock') }; } },
  { name: 'a knock by an invited user', versions: versions(7), allowed: false, build: (v) => { const room = knockRoom(v).setMember(CAROL, 'invite', ALICE); return { room, event: room.member(CAROL, 'knock') }; } },
  { name: 'a knock by a banned user', versions: versions(7), allowed: false, build: (v) => { const room = knockRoom(v).setMember(CAROL, 'ban', ALICE); return { room, event: room.member(CAROL, 'knock') }; } },
  { name: 'a knock on a knock_restricted room before v10', versions: versions(7, 9), allowed: false, build: (v) => { const room = knockRoom(v, 'knock_restricted'); return { room, event: room.member(CAROL, 'knock') }; } },
  { name: 'a knock on a knock_restricted room', versions: versions(10), allowed: true, build: (v) => { const room = knockRoom(v, 'knock_restricted'); return { room, event: room.member(CAROL, 'knock') }; } },
]);

// ---------------------------------------------------------------------------------------------
// m.room.power_levels (rule 10; v6–v11 rule 9; v12 rule 10)
// ---------------------------------------------------------------------------------------------

/** ALICE (50) replaces the standard power levels with an edited copy. */
function plEdit(v: VersionId, edit: (c: JsonObject) => void, opts: { sender?: string; plOverrides?: JsonObject } = {}): Built {
  const room = standardRoom(v, { plOverrides: opts.plOverrides ?? {} });
  const content = structuredClone(room.get('m.room.power_levels', '')!.content) as JsonObject;
  edit(content);
  return { room, event: room.powerLevels(content, opts.sender ?? ALICE) };
}
const users = (c: JsonObject) => c.users as JsonObject;
const events = (c: JsonObject) => c.events as JsonObject;

/** The first power levels event, sent by the creator right after their join. */
function firstPl(v: VersionId, content: JsonObject, sender = CREATOR): Built {
  const room = new TestRoom(v).setMember(CREATOR, 'join');
  return { room, event: room.powerLevels(content, sender) };
}

table('m.room.power_levels: content validation', [
  { name: 'first power levels event with ordinary content', versions: ALL, allowed: true, build: (v) => firstPl(v, { users: { [ALICE]: 100 }, state_default: 50, ban: 100 }) },
  { name: 'first power levels event may set levels above the sender (no previous event to compare)', versions: versions(1, 11), allowed: true, build: (v) => firstPl(v, { users: { [CREATOR]: 100, [ALICE]: 1000 }, ban: 1000, events: { 'm.room.name': 1000 } }) },
  { name: 'users with a key that is not a user id', versions: ALL, allowed: false, build: (v) => firstPl(v, { users: { [ALICE]: 50, 'not-a-user': 10 } }) },
  { name: 'users that is not an object', versions: ALL, allowed: false, build: (v) => firstPl(v, { users: [ALICE] }) },
  { name: 'a users value that is a non-numeric string', versions: ALL, allowed: false, build: (v) => firstPl(v, { users: { [ALICE]: 'fifty' } }) },
  { name: 'a users value that is an array', versions: ALL, allowed: false, build: (v) => firstPl(v, { users: { [ALICE]: [] } }) },
  { name: 'a users value as an integer string ("or a string that is an integer")', versions: versions(1, 9), allowed: true, build: (v) => firstPl(v, { users: { [ALICE]: '50' } }) },
  { name: 'a users value as an integer string (v10: values must be integers)', versions: versions(10), allowed: false, build: (v) => firstPl(v, { users: { [ALICE]: '50' } }) },
  { name: 'a float users value (v1–v5 accept and truncate floats)', versions: versions(1, 5), allowed: true, build: (v) => firstPl(v, { users: { [ALICE]: 50.57 } }) },
  { name: 'string ban/users_default values (only users is type-checked before v10)', versions: versions(1, 9), allowed: true, build: (v) => firstPl(v, { users: { [ALICE]: 50 }, ban: '50', users_default: '0', events: { 'm.room.name': '50' }, notifications: { room: '50' } }) },
  { name: 'string power levels are rejected: ban "50" (v10 rule 9.1)', versions: versions(10), allowed: false, build: (v) => firstPl(v, { ban: '50' }) },
  { name: 'string power levels are rejected: users_default "0" (v10 rule 9.1)', versions: versions(10), allowed: false, build: (v) => firstPl(v, { users_default: '0' }) },
  { name: 'non-integer power levels are rejected: kick 50.5 (v10 rule 9.1)', versions: versions(10), allowed: false, build: (v) => firstPl(v, { kick: 50.5 }) },
  { name: 'non-integer power levels are rejected: users_default {} (v10 rule 9.1)', versions: versions(10), allowed: false, build: (v) => firstPl(v, { users_default: {} }) },
  { name: 'string event levels are rejected: events {"m.room.name": "50"} (v10 rule 9.2)', versions: versions(10), allowed: false, build: (v) => firstPl(v, { events: { 'm.room.name': '50' } }) },
  { name: 'events that is not an object (v10 rule 9.2)', versions: versions(10), allowed: false, build: (v) => firstPl(v, { events: ['m.room.name'] }) },
  { name: 'string notification levels are rejected: notifications {room: "50"} (v10 rule 9.2)', versions: versions(10), allowed: false, build: (v) => firstPl(v, { notifications: { room: '50' } }) },
  { name: 'null notification level (v10 rule 9.2)', versions: versions(10), allowed: false, build: (v) => firstPl(v, { notifications: { room: null } }) },
  { name: 'a sender below the required level cannot send power levels at all', versions: ALL, allowed: false, build: (v) => plEdit(v, (c) => { c.ban = 0; }, { sender: BOB }) },
]);

table('m.room.power_levels: changes against the previous event', [
  { name: 'lowering ban 50 → 40 (old and new within the sender\'s 50)', versions: ALL, allowed: true, build: (v) => plEdit(v, (c) => { c.ban = 40; }) },
  { name: 'raising ban above the sender (50 → 60)', versions: ALL, allowed: false, build: (v) => plEdit(v, (c) => { c.ban = 60; }) },
  { name: 'changing kick whose current value (75) is above the sender', versions: ALL, allowed: false, build: (v) => plEdit(v, (c) => { c.kick = 50; }, { plOverrides: { kick: 75 } }) },
  { name: 'removing redact whose current value (75) is above the sender', versions: ALL, allowed: false, build: (v) => plEdit(v, (c) => { delete c.redact; }, { plOverrides: { redact: 75 } }) },
  { name: 'raising users_default to the sender\'s level (0 → 50)', versions: ALL, allowed: true, build: (v) => plEdit(v, (c) => { c.users_default = 50; }) },
  { name: 'raising users_default above the sender (0 → 51)', versions: ALL, allowed: false, build: (v) => plEdit(v, (c) => { c.users_default = 51; }) },
  { name: 'raising state_default above the sender (50 → 100)', versions: ALL, allowed: false, build: (v) => plEdit(v, (c) => { c.state_default = 100; }) },
  { name: 'adding an events entry above the sender', versions: ALL, allowed: false, build: (v) => plEdit(v, (c) => { events(c)['m.room.name'] = 60; }) },
  { name: 'adding an events entry at the sender\'s level', versions: ALL, allowed: true, build: (v) => plEdit(v, (c) => { events(c)['m.room.topic'] = 50; }) },
  { name: 'lowering an events entry whose current value is above the sender', versions: ALL, allowed: false, build: (v) => plEdit(v, (c) => { events(c)['m.room.topic'] = 50; }, { plOverrides: { events: { 'm.room.topic': 100 } } }) },
  { name: 'removing an events entry whose current value is above the sender', versions: ALL, allowed: false, build: (v) => plEdit(v, (c) => { delete events(c)['m.room.topic']; }, { plOverrides: { events: { 'm.room.topic': 100 } } }) },
  { name: 'unchanged entries above the sender do not block other changes', versions: ALL, allowed: true, build: (v) => plEdit(v, (c) => { c.ban = 40; }, { plOverrides: { kick: 75, events: { 'm.room.tombstone': 100 } } }) },
  { name: 'raising another user to the sender\'s level (0 → 50)', versions: ALL, allowed: true, build: (v) => plEdit(v, (c) => { users(c)[BOB] = 50; }) },
  { name: 'raising another user above the sender (0 → 51)', versions: ALL, allowed: false, build: (v) => plEdit(v, (c) => { users(c)[BOB] = 51; }) },
  { name: 'demoting a user at the sender\'s own level (50 → 0)', versions: ALL, allowed: false, build: (v) => plEdit(v, (c) => { users(c)[DAVE] = 0; }) },
  { name: 'removing a user at the sender\'s own level from users', versions: ALL, allowed: false, build: (v) => plEdit(v, (c) => { delete users(c)[DAVE]; }) },
  { name: 'demoting a user below the sender (40 → 0)', versions: ALL, allowed: true, build: (v) => plEdit(v, (c) => { users(c)[ERIN] = 0; }) },
  { name: 'removing a user below the sender from users', versions: ALL, allowed: true, build: (v) => plEdit(v, (c) => { delete users(c)[ERIN]; }) },
  { name: 'the sender demotes themselves (own entry is exempt from the current-value check)', versions: ALL, allowed: true, build: (v) => plEdit(v, (c) => { users(c)[ALICE] = 10; }) },
  { name: 'the sender promotes themselves above their level', versions: ALL, allowed: false, build: (v) => plEdit(v, (c) => { users(c)[ALICE] = 60; }) },
  { name: 'notifications.room raised above the sender, not checked before v6', versions: versions(1, 5), allowed: true, build: (v) => plEdit(v, (c) => { c.notifications = { room: 100 }; }) },
  { name: 'notifications.room raised above the sender (v6 rule 9.5)', versions: versions(6), allowed: false, build: (v) => plEdit(v, (c) => { c.notifications = { room: 100 }; }) },
  { name: 'notifications.room lowered from above the sender, not checked before v6', versions: versions(1, 5), allowed: true, build: (v) => plEdit(v, (c) => { c.notifications = { room: 0 }; }, { plOverrides: { notifications: { room: 100 } } }) },
  { name: 'notifications.room lowered from above the sender (v6 rule 9.4)', versions: versions(6), allowed: false, build: (v) => plEdit(v, (c) => { c.notifications = { room: 0 }; }, { plOverrides: { notifications: { room: 100 } } }) },
  { name: 'notifications.room lowered within the sender\'s level', versions: ALL, allowed: true, build: (v) => plEdit(v, (c) => { c.notifications = { room: 10 }; }) },
]);

// ---------------------------------------------------------------------------------------------
// Redactions: an auth rule in v1/v2 only
// ---------------------------------------------------------------------------------------------

function redaction(v: VersionId, sender: string, target: string, plOverrides: JsonObject = {}): Built {
  const room = standardRoom(v, { plOverrides });
  return { room, event: room.event({ type: 'm.room.redaction', sender, content: {}, redacts: target, id: 'redaction' }) };
}

table('m.room.redaction', [
  { name: 'v1/v2: below the redact level, redacting an event whose id has the redaction\'s domain (11.2)', versions: ['1', '2'], allowed: true, build: (v) => redaction(v, BOB, '$target:example.com') },
  { name: 'v1/v2: below the redact level, redacting an event from another domain (11.3)', versions: ['1', '2'], allowed: false, build: (v) => redaction(v, BOB, '$target:other.org') },
  { name: 'v1/v2: at the redact level, redacting an event from another domain (11.1)', versions: ['1', '2'], allowed: true, build: (v) => redaction(v, ALICE, '$target:other.org') },
  { name: 'v3+: the redact level is not an auth rule (checked when applying the redaction)', versions: versions(3), allowed: true, build: (v) => redaction(v, BOB, '$target') },
  { name: 'events["m.room.redaction"] applies like any event type', versions: ALL, allowed: false, build: (v) => redaction(v, BOB, v === '1' || v === '2' ? '$target:example.com' : '$target', { events: { 'm.room.redaction': 50 } }) },
  {
    name: 'a redaction from a sender who is not joined',
    versions: ALL,
    allowed: false,
    build: (v) => {
      const room = standardRoom(v);
      return { room, event: room.event({ type: 'm.room.redaction', sender: CAROL, content: {}, redacts: room.id('target'), id: 'redaction' }) };
    },
  },
]);

// ---------------------------------------------------------------------------------------------
// m.room.aliases: its own rule in v1–v5
// ---------------------------------------------------------------------------------------------

const aliases = (room: TestRoom, sender: string, stateKey: string | undefined) =>
  room.event({ type: 'm.room.aliases', sender, ...(stateKey === undefined ? {} : { stateKey }), content: { aliases: ['#a:example.com'] } });

table('m.room.aliases', [
  { name: 'v1–v5: state_key is the sender\'s domain, sender not even a member (rule 4 precedes rule 6)', versions: versions(1, 5), allowed: true, build: (v) => { const room = standardRoom(v); return { room, event: aliases(room, CAROL, 'example.com') }; } },
  { name: 'v1–v5: state_key is the sender\'s domain, sender at power 0', versions: versions(1, 5), allowed: true, build: (v) => { const room = standardRoom(v); return { room, event: aliases(room, BOB, 'example.com') }; } },
  { name: 'v1–v5: state_key is not the sender\'s domain, even for the creator', versions: versions(1, 5), allowed: false, build: (v) => { const room = standardRoom(v); return { room, event: aliases(room, CREATOR, 'other.org') }; } },
  { name: 'v1–v5: no state_key', versions: versions(1, 5), allowed: false, build: (v) => { const room = standardRoom(v); return { room, event: aliases(room, CREATOR, undefined) }; } },
  { name: 'v6+: a non-member cannot send m.room.aliases', versions: versions(6), allowed: false, build: (v) => { const room = standardRoom(v); return { room, event: aliases(room, CAROL, 'example.com') }; } },
  { name: 'v6+: m.room.aliases needs state_default like any state event', versions: versions(6), allowed: false, build: (v) => { const room = standardRoom(v); return { room, event: aliases(room, BOB, 'example.com') }; } },
  { name: 'v6+: no check of the state_key against the sender\'s domain', versions: versions(6), allowed: true, build: (v) => { const room = standardRoom(v); return { room, event: aliases(room, ALICE, 'other.org') }; } },
]);

// ---------------------------------------------------------------------------------------------
// v12: room creators
// ---------------------------------------------------------------------------------------------

/** CREATOR and FRANK (additional creator) joined; MOD at 100; tombstone at 150. */
function creatorsRoom(v: VersionId): TestRoom {
  const room = new TestRoom(v, { createContent: v === '12' ? { additional_creators: [FRANK] } : {} });
  room.setMember(CREATOR, 'join');
  const usersMap: JsonObject = { [MOD]: 100, [ALICE]: 50 };
  if (v !== '12') usersMap[CREATOR] = 100;
  room.setPowerLevels({ users: usersMap, users_default: 0, state_default: 50, events_default: 0, ban: 50, kick: 50, invite: 0, redact: 50, events: { 'm.room.tombstone': 150, 'm.room.power_levels': 100 } });
  room.setJoinRule('public');
  for (const u of [FRANK, MOD, ALICE, BOB]) room.setMember(u, 'join');
  return room;
}

table('v12: room creators', [
  { name: 'v12: the create sender, not listed in users, sends a tombstone requiring 150', versions: ['12'], allowed: true, build: (v) => { const room = creatorsRoom(v); return { room, event: room.stateEvent('m.room.tombstone', CREATOR, '', { body: 'gone', replacement_room: '!new:example.com' }) }; } },
  { name: 'v12: an additional creator sends a tombstone requiring 150', versions: ['12'], allowed: true, build: (v) => { const room = creatorsRoom(v); return { room, event: room.stateEvent('m.room.tombstone', FRANK, '', { body: 'gone', replacement_room: '!new:example.com' }) }; } },
  { name: 'a user at 100 cannot send a tombstone requiring 150', versions: ALL, allowed: false, build: (v) => { const room = creatorsRoom(v); return { room, event: room.stateEvent('m.room.tombstone', MOD, '', { body: 'gone', replacement_room: '!new:example.com' }) }; } },
  {
    name: 'v1–v11: once power levels exist, a creator not listed in users has users_default',
    versions: versions(1, 11),
    allowed: false,
    build: (v) => { const room = creatorsRoom(v); room.setPowerLevels({ users: { [MOD]: 100 } }); return { room, event: room.stateEvent('m.room.topic', CREATOR, '', { topic: 't' }) }; },
  },
  { name: 'v12: a user at 100 cannot kick a creator', versions: ['12'], allowed: false, build: (v) => { const room = creatorsRoom(v); return { room, event: room.member(CREATOR, 'leave', MOD) }; } },
  { name: 'v12: a user at 100 cannot ban an additional creator', versions: ['12'], allowed: false, build: (v) => { const room = creatorsRoom(v); return { room, event: room.member(FRANK, 'ban', MOD) }; } },
  { name: 'v12: a creator bans a user at 100', versions: ['12'], allowed: true, build: (v) => { const room = creatorsRoom(v); return { room, event: room.member(MOD, 'ban', FRANK) }; } },
  { name: 'v12: one creator cannot kick another (infinite is not below infinite)', versions: ['12'], allowed: false, build: (v) => { const room = creatorsRoom(v); return { room, event: room.member(CREATOR, 'leave', FRANK) }; } },
  {
    name: 'v12: a creator changes power levels, including levels above 100',
    versions: ['12'],
    allowed: true,
    build: (v) => { const room = creatorsRoom(v); return { room, event: room.powerLevels({ users: { [MOD]: 200, [ALICE]: 150 }, ban: 300, events: { 'm.room.tombstone': 500 } }, FRANK) }; },
  },
  {
    name: 'v12: power levels listing the create event sender in users (rule 10.4)',
    versions: ['12'],
    allowed: false,
    build: (v) => { const room = creatorsRoom(v); return { room, event: room.powerLevels({ users: { [MOD]: 100, [CREATOR]: 100 } }, CREATOR) }; },
  },
  {
    name: 'v12: power levels listing an additional creator in users (rule 10.4)',
    versions: ['12'],
    allowed: false,
    build: (v) => { const room = creatorsRoom(v); return { room, event: room.powerLevels({ users: { [MOD]: 100, [FRANK]: 100 } }, CREATOR) }; },
  },
  {
    name: 'v12: the first power levels event may not list the creator either (10.4 precedes 10.5)',
    versions: ['12'],
    allowed: false,
    build: (v) => firstPl(v, { users: { [CREATOR]: 100 } }),
  },
  { name: 'v1–v11: the first power levels event lists the creator', versions: versions(1, 11), allowed: true, build: (v) => firstPl(v, { users: { [CREATOR]: 100 } }) },
  {
    name: 'a user at 100 cannot demote another user at 100 (current value ≥ sender)',
    versions: ALL,
    allowed: false,
    build: (v) => {
      const room = creatorsRoom(v);
      room.setMember(GINA, 'join');
      const u: JsonObject = { [MOD]: 100, [ALICE]: 50, [GINA]: 100 };
      if (v !== '12') u[CREATOR] = 100;
      room.setPowerLevels({ users: u, events: { 'm.room.power_levels': 100 } });
      const next: JsonObject = { ...u, [GINA]: 0 };
      return { room, event: room.powerLevels({ users: next, events: { 'm.room.power_levels': 100 } }, MOD) };
    },
  },
]);

// ---------------------------------------------------------------------------------------------
// userPowerLevel
// ---------------------------------------------------------------------------------------------

describe('userPowerLevel', () => {
  describe.each(versions(1, 11).map((v) => [v]))('v%s', (v) => {
    it('with no power levels event: the creator has 100, everyone else 0', () => {
      const room = new TestRoom(v).setMember(CREATOR, 'join');
      expect(userPowerLevel(CREATOR, room.lookup(), room.version)).toBe(100);
      expect(userPowerLevel(BOB, room.lookup(), room.version)).toBe(0);
    });
  });
  describe.each(ALL.map((v) => [v]))('v%s', (v) => {
    it('reads users, falls back to users_default, and to 0 without users_default', () => {
      const room = standardRoom(v, { plOverrides: { users_default: 5 } });
      expect(userPowerLevel(ALICE, room.lookup(), room.version)).toBe(50);
      expect(userPowerLevel(ERIN, room.lookup(), room.version)).toBe(40);
      expect(userPowerLevel(BOB, room.lookup(), room.version)).toBe(5);
      room.setPowerLevels({ users: { [ALICE]: 50 } });
      expect(userPowerLevel(BOB, room.lookup(), room.version)).toBe(0);
    });
  });
  describe.each(versions(1, 9).map((v) => [v]))('v%s', (v) => {
    it('reads string values in the formats the stringy power levels fragment allows', () => {
      const room = standardRoom(v);
      room.setPowerLevels({ users: { [ALICE]: '50', [BOB]: '000100', [DAVE]: ' +42 ', [ERIN]: '-7' }, users_default: '3' });
      const pl = (u: string) => userPowerLevel(u, room.lookup(), room.version);
      expect([pl(ALICE), pl(BOB), pl(DAVE), pl(ERIN), pl(CAROL)]).toEqual([50, 100, 42, -7, 3]);
    });
  });
  describe.each(versions(1, 5).map((v) => [v]))('v%s', (v) => {
    it('truncates float values (floaty power levels fragment)', () => {
      const room = standardRoom(v);
      room.setPowerLevels({ users: { [ALICE]: 50.57 } });
      expect(userPowerLevel(ALICE, room.lookup(), room.version)).toBe(50);
    });
  });
  it('v12: creators (sender and additional_creators) have unbounded power, with or without power levels', () => {
    const room = new TestRoom('12', { createContent: { additional_creators: [FRANK] } }).setMember(CREATOR, 'join');
    expect(userPowerLevel(CREATOR, room.lookup(), room.version)).toBeGreaterThan(Number.MAX_SAFE_INTEGER);
    expect(userPowerLevel(FRANK, room.lookup(), room.version)).toBeGreaterThan(Number.MAX_SAFE_INTEGER);
    expect(userPowerLevel(BOB, room.lookup(), room.version)).toBe(0);
    room.setPowerLevels({ users: { [ALICE]: 100 }, users_default: 10 });
    expect(userPowerLevel(CREATOR, room.lookup(), room.version)).toBeGreaterThan(Number.MAX_SAFE_INTEGER);
    expect(userPowerLevel(FRANK, room.lookup(), room.version)).toBeGreaterThan(Number.MAX_SAFE_INTEGER);
    expect(userPowerLevel(ALICE, room.lookup(), room.version)).toBe(100);
    expect(userPowerLevel(BOB, room.lookup(), room.version)).toBe(10);
  });
});

// ---------------------------------------------------------------------------------------------
// isPowerEvent (state resolution v2 definition: power levels, join rules, and membership
// leave/ban whose sender is not the state_key)
// ---------------------------------------------------------------------------------------------

describe('isPowerEvent', () => {
  const room = standardRoom('10');
  const cases: [string, Pdu, boolean][] = [
    ['m.room.power_levels', room.powerLevels({ users: {} }), true],
    ['m.room.join_rules', room.stateEvent('m.room.join_rules', CREATOR, '', { join_rule: 'invite' }), true],
    ['a kick (leave by someone else)', room.member(BOB, 'leave', ALICE), true],
    ['a ban of someone else', room.member(BOB, 'ban', ALICE), true],
    ['a self-leave', room.member(BOB, 'leave'), false],
    ['a join', room.member(CAROL, 'join'), false],
    ['an invite', room.member(CAROL, 'invite', ALICE), false],
    ['m.room.topic', room.stateEvent('m.room.topic', ALICE, '', { topic: 't' }), false],
    ['a message', room.message(BOB), false],
  ];
  it.each(cases)('%s → %s', (_name, event, expected) => {
    expect(isPowerEvent(event)).toBe(expected);
  });
});

// ---------------------------------------------------------------------------------------------
// authEventSelection (server-server-api "Auth events selection")
// ---------------------------------------------------------------------------------------------

function sel(v: VersionId, e: { type: string; stateKey?: string; sender: string; content: Record<string, unknown> }): string[] {
  const pairs = authEventSelection(e, requireRoomVersion(v));
  return [...new Set(pairs.map(([t, k]) => `${t}|${k}`))].sort();
}
function pairs(...p: [string, string][]): string[] {
  return [...new Set(p.map(([t, k]) => `${t}|${k}`))].sort();
}
const withCreate = (v: VersionId, ...p: [string, string][]): string[] =>
  requireRoomVersion(v).createEventInAuthEvents ? pairs(['m.room.create', ''], ...p) : pairs(...p);

describe('authEventSelection', () => {
  describe.each(ALL.map((v) => [v as VersionId]))('v%s', (v) => {
    const PL: [string, string] = ['m.room.power_levels', ''];
    const JR: [string, string] = ['m.room.join_rules', ''];
    const mem = (u: string): [string, string] => ['m.room.member', u];

    it('m.room.create selects nothing', () => {
      expect(authEventSelection({ type: 'm.room.create', stateKey: '', sender: CREATOR, content: { room_version: v } }, requireRoomVersion(v))).toEqual([]);
    });
    it(`a message: ${v === '12' ? 'power levels and sender member (no create in v12)' : 'create, power levels, sender member'}`, () => {
      expect(sel(v, { type: 'm.room.message', sender: BOB, content: { body: 'x' } })).toEqual(withCreate(v, PL, mem(BOB)));
    });
    it('a state event such as m.room.topic selects the same as a message', () => {
      expect(sel(v, { type: 'm.room.topic', stateKey: '', sender: ALICE, content: { topic: 't' } })).toEqual(withCreate(v, PL, mem(ALICE)));
    });
    it('a join adds the join rules (the target is the sender)', () => {
      expect(sel(v, { type: 'm.room.member', stateKey: CAROL, sender: CAROL, content: { membership: 'join' } })).toEqual(withCreate(v, PL, mem(CAROL), JR));
    });
    it('an invite adds the target\'s member event and the join rules', () => {
      expect(sel(v, { type: 'm.room.member', stateKey: CAROL, sender: ALICE, content: { membership: 'invite' } })).toEqual(withCreate(v, PL, mem(ALICE), mem(CAROL), JR));
    });
    it('a third-party invite adds m.room.third_party_invite for signed.token', () => {
      const content = { membership: 'invite', third_party_invite: { display_name: 'c', signed: { mxid: CAROL, token: 'tok', signatures: {} } } };
      expect(sel(v, { type: 'm.room.member', stateKey: CAROL, sender: ALICE, content })).toEqual(withCreate(v, PL, mem(ALICE), mem(CAROL), JR, ['m.room.third_party_invite', 'tok']));
    });
    it('a kick (leave) has the target\'s member event but no join rules', () => {
      expect(sel(v, { type: 'm.room.member', stateKey: BOB, sender: ALICE, content: { membership: 'leave' } })).toEqual(withCreate(v, PL, mem(ALICE), mem(BOB)));
    });
    it('a ban has the target\'s member event but no join rules', () => {
      expect(sel(v, { type: 'm.room.member', stateKey: BOB, sender: ALICE, content: { membership: 'ban' } })).toEqual(withCreate(v, PL, mem(ALICE), mem(BOB)));
    });
    it('a knock adds the join rules', () => {
      expect(sel(v, { type: 'm.room.member', stateKey: CAROL, sender: CAROL, content: { membership: 'knock' } })).toEqual(withCreate(v, PL, mem(CAROL), JR));
    });
    const restricted = { membership: 'join', join_authorised_via_users_server: ALICE };
    if (Number(v) >= 8) {
      it('a restricted join adds the authorising user\'s member event', () => {
        expect(sel(v, { type: 'm.room.member', stateKey: CAROL, sender: CAROL, content: restricted })).toEqual(withCreate(v, PL, mem(CAROL), JR, mem(ALICE)));
      });
    } else {
      it('join_authorised_via_users_server is ignored before restricted rooms (v8)', () => {
        expect(sel(v, { type: 'm.room.member', stateKey: CAROL, sender: CAROL, content: restricted })).toEqual(withCreate(v, PL, mem(CAROL), JR));
      });
    }
    it('never lists the same (type, state_key) twice', () => {
      const got = authEventSelection({ type: 'm.room.member', stateKey: CAROL, sender: CAROL, content: { membership: 'join' } }, requireRoomVersion(v));
      const keys = got.map(([t, k]) => `${t}|${k}`);
      expect(new Set(keys).size).toBe(keys.length);
    });
  });
});
