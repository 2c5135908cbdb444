/**
 * Search on Redis Cluster: the index lives on each room's shard (one hash slot per shard), so
 * the index script's keys — the postings hashes it names from the room's prefix included — stay
 * in one slot. Messages in several rooms (so several shards, likely several nodes), a prefix
 * search across them, an edit and a redaction.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from './server-harness';
import { clientsFor, enc, eventually, txn, type Clients, type Json, type Session } from './clients';

let server: TestServer;
let clients: Clients;
let alice: Session;

beforeAll(async () => {
  server = await startTestServer({ cluster: true });
  clients = await clientsFor(server);
  alice = await clients.mint('sc_alice');
}, 60_000);
afterAll(async () => {
  await clients?.close();
  await server?.stop();
});

const search = async (term: string): Promise<Json> => {
  const r = await clients.call(alice, 'POST', '/search', { search_categories: { room_events: { search_term: term, order_by: 'recent' } } });
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  return r.body.search_categories.room_events;
};

describe('POST /search on Redis Cluster', () => {
  it('indexes and finds messages of rooms on several shards; edits and redactions apply', async () => {
    const sent: string[] = [];
    const rooms: string[] = [];
    for (let i = 0; i < 6; i++) {
      const r = await clients.call(alice, 'POST', '/createRoom', { preset: 'private_chat' });
      expect(r.status).toBe(200);
      rooms.push(r.body.room_id);
      const s = await clients.call(alice, 'PUT', `/rooms/${enc(r.body.room_id)}/send/m.room.message/${txn()}`, { msgtype: 'm.text', body: `flamingo report ${i}` });
      expect(s.status).toBe(200);
      sent.push(s.body.event_id);
    }
    const all = await eventually(() => search('flamin'), (r) => r.count === 6, 20_000);
    expect(new Set(all.results.map((x: Json) => x.result.event_id))).toEqual(new Set(sent));
    await clients.call(alice, 'PUT', `/rooms/${enc(rooms[0]!)}/send/m.room.message/${txn()}`, { msgtype: 'm.text', body: '* heron', 'm.new_content': { msgtype: 'm.text', body: 'heron report' }, 'm.relates_to': { rel_type: 'm.replace', event_id: sent[0] } });
    expect((await clients.call(alice, 'PUT', `/rooms/${enc(rooms[1]!)}/redact/${enc(sent[1]!)}/${txn()}`, {})).status).toBe(200);
    const left = await eventually(() => search('flamingo'), (r) => r.count === 4, 20_000);
    expect(new Set(left.results.map((x: Json) => x.result.event_id))).toEqual(new Set(sent.slice(2)));
    const heron = await eventually(() => search('heron'), (r) => r.count === 1, 20_000);
    expect(heron.results[0].result.event_id).toBe(sent[0]);
  });
});
