/**
 * The search session of the differential test (search.e2e.test.ts): two users, two rooms, messages
 * in several scripts, an edit and a redaction, then `POST /search` with each feature the spec
 * gives room_events — rank and recent order, counts, highlights, filters (rooms, senders, types,
 * limit), keys, groupings, event context with profiles, include_state, pagination by next_batch,
 * a prefix term — and bad requests. Run unchanged against Axon and Synapse.
 *
 * Axon indexes after /send answers (its search reader follows the room logs), so the first
 * search waits until every message is found; Synapse indexes as it persists.
 */
import type { Json, Step } from './session';

const PASSWORD = 'correct horse battery';

function register(user: string): Step[] {
  return [
    { name: `register ${user}: flows`, method: 'POST', path: '/register', body: { username: user, password: PASSWORD }, capture: { [`${user}.session`]: 'session' }, skipCompare: true },
    {
      name: `register ${user}`,
      method: 'POST',
      path: '/register',
      body: { username: user, password: PASSWORD, auth: { type: 'm.login.dummy', session: `{{${user}.session}}` } },
      capture: { [user]: 'user_id', [`${user}.token`]: 'access_token' },
      skipCompare: true,
    },
  ];
}

let txnCounter = 0;
const send = (name: string, as: string, room: string, body: string, capture: string, extra: Json = {}): Step => ({
  name,
  as,
  method: 'PUT',
  path: `/rooms/{{${room}}}/send/m.room.message/s${++txnCounter}`,
  body: { msgtype: 'm.text', body, ...extra },
  capture: { [capture]: 'event_id' },
  skipCompare: true,
});

const roomEvents = (searchTerm: string, more: Json = {}): Json => ({ search_categories: { room_events: { search_term: searchTerm, ...more } } });
const search = (name: string, as: string, body: Json, extra: Partial<Step> = {}): Step => ({ name, as, method: 'POST', path: '/search', body, ...extra });
const count = (b: Json): number => b?.search_categories?.room_events?.count ?? -1;

/** Steps whose order is by rank: their result lists are compared as sets (the algorithms differ). */
export const RANKED_STEPS = new Set(['search heron rank', 'search heron rank page 1', 'search heron grouped', 'search prefix', 'search two words', 'search accented', 'search context', 'search senders filter', 'search name key', 'search topic key', 'search include_state', 'search after redaction']);

export const searchSession: Step[] = [
  ...register('alice'),
  ...register('bob'),
  { name: 'bob sets a display name', as: 'bob', method: 'PUT', path: '/profile/{{bob}}/displayname', body: { displayname: 'Bob the Birder' }, skipCompare: true },
  { name: 'create room1', as: 'alice', method: 'POST', path: '/createRoom', body: { preset: 'private_chat', name: 'Heron lake', topic: 'all about herons and egrets', invite: ['{{bob}}'] }, capture: { room1: 'room_id' }, skipCompare: true },
  { name: 'bob joins room1', as: 'bob', method: 'POST', path: '/rooms/{{room1}}/join', body: {}, skipCompare: true },
  { name: 'create room2', as: 'bob', method: 'POST', path: '/createRoom', body: { preset: 'private_chat', invite: ['{{alice}}'] }, capture: { room2: 'room_id' }, skipCompare: true },
  { name: 'alice joins room2', as: 'alice', method: 'POST', path: '/rooms/{{room2}}/join', body: {}, skipCompare: true },
  send('m1', 'alice', 'room1', 'The grey heron fishes at the lake', 'm1'),
  send('m2', 'bob', 'room1', 'heron heron heron everywhere', 'm2'),
  send('m3', 'alice', 'room1', 'We had coffee at a café in Zürich', 'm3'),
  send('m4', 'alice', 'room1', 'Nothing to see here', 'm4'),
  send('m5', 'bob', 'room2', 'Heron sighting at dawn near the river', 'm5'),
  send('m6', 'alice', 'room2', 'the heron flew off; a kingfisher came', 'm6'),
  send('m7', 'bob', 'room1', 'this message about herons will be redacted', 'm7'),
  send('m8', 'alice', 'room2', 'egret and heron together', 'm8'),
  { name: 'redact m7', as: 'bob', method: 'PUT', path: '/rooms/{{room1}}/redact/{{m7}}/r1', body: { reason: 'oops' }, skipCompare: true },

  // Waits until every heron message is found (Axon's reader indexes asynchronously).
  search('search heron recent', 'alice', roomEvents('heron', { order_by: 'recent' }), { until: (b) => count(b) === 5, untilMs: 30_000 }),
  search('search heron rank', 'alice', roomEvents('heron', { order_by: 'rank' })),
  // Synapse pages only `recent` results (a rank search answers its first page without next_batch).
  search('search heron rank page 1', 'alice', roomEvents('heron', { filter: { limit: 3 } })),
  search('search heron recent page 1', 'alice', roomEvents('heron', { order_by: 'recent', filter: { limit: 2 } }), { capture: { recent2: 'search_categories.room_events.next_batch' } }),
  { ...search('search heron recent page 2', 'alice', roomEvents('heron', { order_by: 'recent', filter: { limit: 2 } })), query: { next_batch: '{{recent2}}' } },
  search('search rooms filter', 'alice', roomEvents('heron', { order_by: 'recent', filter: { rooms: ['{{room2}}'] } })),
  search('search not_rooms filter', 'alice', roomEvents('heron', { order_by: 'recent', filter: { not_rooms: ['{{room2}}'] } })),
  search('search senders filter', 'alice', roomEvents('heron', { filter: { senders: ['{{bob}}'] } })),
  search('search types filter', 'alice', roomEvents('heron', { order_by: 'recent', filter: { types: ['m.room.message'] } })),
  search('search heron grouped', 'alice', roomEvents('heron', { groupings: { group_by: [{ key: 'room_id' }, { key: 'sender' }] } })),
  search('search context', 'alice', roomEvents('kingfisher', { event_context: { before_limit: 1, after_limit: 1, include_profile: true } })),
  search('search include_state', 'alice', roomEvents('kingfisher', { include_state: true })),
  search('search two words', 'alice', roomEvents('heron lake')),
  search('search prefix', 'alice', roomEvents('kingfi')),
  search('search accented', 'alice', roomEvents('zürich')),
  search('search name key', 'alice', roomEvents('heron', { keys: ['content.name'] })),
  search('search topic key', 'alice', roomEvents('egrets', { keys: ['content.topic'] })),
  search('search after redaction', 'alice', roomEvents('redacted')),
  search('search nothing found', 'alice', roomEvents('platypus')),
  search('search no category', 'alice', { search_categories: {} }),
  search('search bad order_by', 'alice', roomEvents('heron', { order_by: 'best' })),
  search('search no search_term', 'alice', { search_categories: { room_events: {} } }),
  { name: 'search unauthenticated', method: 'POST', path: '/search', body: roomEvents('heron') },
];
