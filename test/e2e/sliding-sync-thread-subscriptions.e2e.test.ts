/**
 * Sliding sync's thread subscriptions extension (MSC4308, `io.element.msc4308.thread_subscriptions`)
 * over real HTTP, with thread subscriptions on (`threadSubscriptions.enabled`): a new connection
 * gets the user's subscriptions, a later answer only what changed since (subscribed, automatic,
 * unsubscribed), a long-poll is woken by a change, `limit` cuts the changes with a `prev_batch`
 * that GET /thread_subscriptions pages on from, and a connection with nothing new gets no section.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from './server-harness';
import { clientsFor, enc, txn, type Clients, type Json, type Session } from './clients';

const SS = '/_matrix/client/unstable/org.matrix.simplified_msc3575/sync';
const EXT = 'io.element.msc4308.thread_subscriptions';
const SUB = (roomId: string, root: string) => `/_matrix/client/unstable/io.element.msc4306/rooms/${enc(roomId)}/thread/${enc(root)}/subscription`;

let server: TestServer;
let c: Clients;

beforeAll(async () => {
  server = await startTestServer({
    configure: (cfg) => {
      cfg.threadSubscriptions = { enabled: true };
    },
  });
  c = await clientsFor(server);
}, 120_000);

afterAll(async () => {
  await c?.close();
  await server?.stop();
});

async function send(s: Session, roomId: string, content: Json): Promise<string> {
  const r = await c.call(s, 'PUT', `/rooms/${enc(roomId)}/send/m.room.message/${txn()}`, content);
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  return r.body.event_id;
}

describe('sliding sync: thread subscriptions extension (MSC4308)', () => {
  it('sends subscriptions, then only changes, wakes long-polls, pages with prev_batch', async () => {
    const me = await c.mint('tsub');
    const room = (await c.call(me, 'POST', '/createRoom', { preset: 'private_chat', name: 'threads' })).body.room_id as string;
    const roots = [await send(me, room, { msgtype: 'm.text', body: 'root one' }), await send(me, room, { msgtype: 'm.text', body: 'root two' }), await send(me, room, { msgtype: 'm.text', body: 'root three' })];
    expect((await c.call(me, 'PUT', SUB(room, roots[0]!), {})).status).toBe(200);
    const body = (limit?: number) => ({ lists: { all: { ranges: [[0, 0]], timeline_limit: 0, required_state: [] } }, extensions: { [EXT]: { enabled: true, ...(limit ? { limit } : {}) } } });
    const ss = async (b: Json, query = '') => {
      const r = await c.call(me, 'POST', `${SS}${query}`, b);
      expect(r.status, JSON.stringify(r.body)).toBe(200);
      return r.body;
    };

    // A new connection: the subscription there is.
    const first = await ss(body());
    const sub0 = first.extensions[EXT].subscribed[room][roots[0]!];
    expect(sub0.automatic).toBe(false);
    expect(typeof sub0.bump_stamp).toBe('number');
    expect(first.extensions[EXT].unsubscribed).toBeUndefined();

    // Nothing changed: no section (and the answer keeps its pos).
    const idle = await ss(body(), `?pos=${encodeURIComponent(first.pos)}&timeout=0`);
    expect(idle.extensions[EXT]).toBeUndefined();

    // A long-poll woken by a change: an automatic subscription (a reply in thread two) and the
    // first thread unsubscribed; only those two changes.
    const poll = ss(body(), `?pos=${encodeURIComponent(first.pos)}&timeout=20000`);
    await new Promise((r) => setTimeout(r, 300));
    const reply = await send(me, room, { msgtype: 'm.text', body: 'in thread two', 'm.relates_to': { rel_type: 'm.thread', event_id: roots[1] } });
    expect((await c.call(me, 'PUT', SUB(room, roots[1]!), { automatic: reply })).status).toBe(200);
    expect((await c.call(me, 'DELETE', SUB(room, roots[0]!))).status).toBe(200);
    let inc = await poll;
    // The poll may have answered at the first change; the next answer has the rest.
    const seen: Json = { subscribed: {}, unsubscribed: {} };
    for (let i = 0; i < 5; i++) {
      Object.assign(seen.subscribed, inc.extensions[EXT]?.subscribed?.[room] ?? {});
      Object.assign(seen.unsubscribed, inc.extensions[EXT]?.unsubscribed?.[room] ?? {});
      if (seen.unsubscribed[roots[0]!] && seen.subscribed[roots[1]!]) break;
      inc = await ss(body(), `?pos=${encodeURIComponent(inc.pos)}&timeout=5000`);
    }
    expect(Object.keys(seen.subscribed)).toEqual([roots[1]]);
    expect(seen.subscribed[roots[1]!].automatic).toBe(true);
    expect(Object.keys(seen.unsubscribed)).toEqual([roots[0]]);
    expect(seen.unsubscribed[roots[0]!].bump_stamp).toBeGreaterThan(sub0.bump_stamp);

    // limit 1 on a new connection with three changes standing (thread three subscribed now): the
    // newest one, and a prev_batch the companion endpoint pages on from.
    expect((await c.call(me, 'PUT', SUB(room, roots[2]!), {})).status).toBe(200);
    const limited = await ss({ ...body(1), conn_id: 'limited' });
    const ext = limited.extensions[EXT];
    expect(Object.keys(ext.subscribed[room])).toEqual([roots[2]]);
    expect(typeof ext.prev_batch).toBe('string');
    const older = await c.call(me, 'GET', `/_matrix/client/unstable/io.element.msc4308/thread_subscriptions?dir=b&limit=10&from=${encodeURIComponent(ext.prev_batch)}`);
    expect(older.status, JSON.stringify(older.body)).toBe(200);
    expect(Object.keys(older.body.subscribed[room])).toEqual([roots[1]]);
    expect(Object.keys(older.body.unsubscribed[room])).toEqual([roots[0]]);

    // A bad limit is a Matrix error, not a crash.
    const bad = await c.call(me, 'POST', SS, { extensions: { [EXT]: { enabled: true, limit: 0 } } });
    expect(bad.status).toBe(400);
    expect(bad.body.errcode).toMatch(/^M_/);
  }, 120_000);
});
