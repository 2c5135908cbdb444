/**
 * History visibility values the spec does not define — a string that is none of the four, or a
 * value that is not a string, or no value — read as `shared` on every read path (the spec's
 * "not understood" rule, and Synapse's): a user who joins later sees what was said before, a
 * non-member sees nothing (it is not world_readable). A room with `joined` is the control: there
 * the later member sees nothing from before their join.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from './server-harness';
import { clientsFor, enc, txn, type Clients, type Json, type Session } from './clients';

let server: TestServer;
let c: Clients;

beforeAll(async () => {
  server = await startTestServer();
  c = await clientsFor(server);
});

afterAll(async () => {
  await c?.close();
  await server?.stop();
});

const V1 = '/_matrix/client/v1';

interface Room {
  roomId: string;
  /** A message sent before bob joined, the root of a thread, and the reply in it. */
  before: string;
  beforeTs: number;
  reply: string;
  /** bob's view: a member who joined after `before`. */
  bob: Session;
  /** carol's view: never a member. */
  carol: Session;
}

let n = 0;
/** A public room whose history visibility content is `content`, a thread before bob joins, and bob joined. */
async function roomWith(content: Json): Promise<Room> {
  n++;
  const alice = await c.mint(`hva${n}`);
  const bob = await c.mint(`hvb${n}`);
  const carol = await c.mint(`hvc${n}`);
  const created = await c.call(alice, 'POST', '/createRoom', { preset: 'public_chat' });
  expect(created.status).toBe(200);
  const roomId = created.body.room_id as string;
  const hv = await c.call(alice, 'PUT', `/rooms/${enc(roomId)}/state/m.room.history_visibility/`, content);
  expect(hv.status, JSON.stringify(hv.body)).toBe(200);
  const sent = await c.call(alice, 'PUT', `/rooms/${enc(roomId)}/send/m.room.message/${txn()}`, { msgtype: 'm.text', body: 'said before bob came' });
  const before = sent.body.event_id as string;
  const beforeTs = (await c.call(alice, 'GET', `/rooms/${enc(roomId)}/event/${enc(before)}`)).body.origin_server_ts as number;
  const reply = await c.call(alice, 'PUT', `/rooms/${enc(roomId)}/send/m.room.message/${txn()}`, { msgtype: 'm.text', body: 'in the thread', 'm.relates_to': { rel_type: 'm.thread', event_id: before } });
  expect(reply.status).toBe(200);
  expect((await c.call(bob, 'POST', `/join/${enc(roomId)}`, {})).status).toBe(200);
  return { roomId, before, beforeTs, reply: reply.body.event_id as string, bob, carol };
}

/** What bob (joined later) can read of `before`, on each read path: true where it is visible. */
async function bobSees(r: Room): Promise<Record<string, boolean>> {
  const room = enc(r.roomId);
  const messages = await c.call(r.bob, 'GET', `/rooms/${room}/messages?dir=b&limit=50`);
  expect(messages.status).toBe(200);
  const context = await c.call(r.bob, 'GET', `/rooms/${room}/context/${enc(r.before)}?limit=4`);
  const event = await c.call(r.bob, 'GET', `/rooms/${room}/event/${enc(r.before)}`);
  const relations = await c.call(r.bob, 'GET', `${V1}/rooms/${room}/relations/${enc(r.before)}`);
  const threads = await c.call(r.bob, 'GET', `${V1}/rooms/${room}/threads`);
  expect(threads.status).toBe(200);
  const byTs = await c.call(r.bob, 'GET', `${V1}/rooms/${room}/timestamp_to_event?ts=${r.beforeTs}&dir=b`);
  const sync = await c.call(r.bob, 'GET', `/sync?timeout=0&filter=${enc(JSON.stringify({ room: { timeline: { limit: 50 } } }))}`);
  expect(sync.status).toBe(200);
  const report = await c.call(r.bob, 'POST', `/rooms/${room}/report/${enc(r.before)}`, { reason: 'test' });
  return {
    messages: (messages.body.chunk as Json[]).some((e) => e.event_id === r.before),
    context: context.status === 200,
    event: event.status === 200,
    relations: relations.status === 200 && (relations.body.chunk as Json[]).length === 1,
    threads: (threads.body.chunk as Json[]).some((e) => e.event_id === r.before),
    // The latest visible event at or before `before`'s time is it (or its reply, in the same ms).
    // (Under `joined` it is an earlier event: the history_visibility change, judged by the state before it.)
    timestamp_to_event: byTs.status === 200 && [r.before, r.reply].includes(byTs.body.event_id as string),
    sync: ((sync.body.rooms?.join?.[r.roomId]?.timeline?.events ?? []) as Json[]).some((e) => e.event_id === r.before),
    report: report.status === 200,
  };
}

const ALL_VISIBLE = { messages: true, context: true, event: true, relations: true, threads: true, timestamp_to_event: true, sync: true, report: true };
const NONE_VISIBLE = { messages: false, context: false, event: false, relations: false, threads: false, timestamp_to_event: false, sync: false, report: false };

/** A non-member's reads: the room is not world_readable, so every read is refused. */
async function carolRefused(r: Room): Promise<void> {
  const room = enc(r.roomId);
  for (const path of [`/rooms/${room}/messages?dir=b`, `/rooms/${room}/members`, `/rooms/${room}/state`, `/rooms/${room}/aliases`, `/rooms/${room}/initialSync`]) {
    const res = await c.call(r.carol, 'GET', path);
    expect(res.status, path).toBe(403);
    expect(res.body.errcode, path).toBe('M_FORBIDDEN');
  }
  expect((await c.call(r.carol, 'GET', `/rooms/${room}/event/${enc(r.before)}`)).status).toBe(404);
  expect((await c.call(r.carol, 'GET', `${V1}/rooms/${room}/relations/${enc(r.before)}`)).status).toBe(403);
}

describe('history_visibility values that are not understood read as shared', () => {
  it('control: "joined" hides what was said before the join on every path', async () => {
    const r = await roomWith({ history_visibility: 'joined' });
    expect(await bobSees(r)).toEqual(NONE_VISIBLE);
    await carolRefused(r);
  });

  it('control: "shared" shows it on every path', async () => {
    const r = await roomWith({ history_visibility: 'shared' });
    expect(await bobSees(r)).toEqual(ALL_VISIBLE);
    await carolRefused(r);
  });

  it.each<[string, Json]>([
    ['an unknown string', { history_visibility: 'sometimes' }],
    ['a near miss of a known value', { history_visibility: 'Joined' }],
    ['a number', { history_visibility: 5 }],
    ['a list', { history_visibility: ['joined'] }],
    ['an object', { history_visibility: { value: 'joined' } }],
    ['no value at all', {}],
  ])('%s: shared on /messages, /context, /event, /relations, /threads, /timestamp_to_event, /sync, report; non-members refused', async (_name, content) => {
    const r = await roomWith(content);
    expect(await bobSees(r)).toEqual(ALL_VISIBLE);
    await carolRefused(r);
  });
});
