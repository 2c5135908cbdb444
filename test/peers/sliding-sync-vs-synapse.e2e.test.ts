/**
 * Simplified sliding sync on Axon and on Synapse 1.163.2, the same journey on both, compared field
 * by field: which fields each room entry has, list counts and order, timelines, required state,
 * counts, and what an incremental answer carries. Room ids differ between the servers, so rooms
 * are named by their role in the journey.
 *
 * Skipped outside CI when Synapse is not installed (scripts/lib/ensure.sh installs it).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { enc, txn, type Json } from '../e2e/clients';
import { startTestServer, type TestServer } from '../e2e/server-harness';
import { clientsFor, type Clients } from '../e2e/clients';
import { loopbackServerName, startSynapse, synapseInstallation, type SynapsePeer } from './synapse';
import { createTestCa, type TestCa } from './test-ca';

const install = synapseInstallation();
const skip = !install.ok && !process.env.CI;
if (skip && !install.ok) console.warn(`sliding-sync-vs-synapse.e2e: skipped. ${install.reason}`);

const PATH = '/_matrix/client/unstable/org.matrix.simplified_msc3575/sync';

interface Side {
  call(who: 'alice' | 'bob', method: string, path: string, body?: unknown): Promise<{ status: number; body: Json }>;
  userId(who: 'alice' | 'bob'): string;
}

/** The journey: three rooms (two named, one with bob and unnamed), messages in an order. */
async function journey(side: Side): Promise<Record<string, string>> {
  const create = async (body: Json) => {
    const r = await side.call('alice', 'POST', '/createRoom', body);
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    return r.body.room_id as string;
  };
  const say = async (who: 'alice' | 'bob', roomId: string, text: string) => {
    const r = await side.call(who, 'PUT', `/rooms/${enc(roomId)}/send/m.room.message/${txn()}`, { msgtype: 'm.text', body: text });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
  };
  const first = await create({ name: 'First', preset: 'public_chat' });
  const second = await create({ name: 'Second', preset: 'public_chat' });
  const third = await create({ preset: 'public_chat' });
  expect((await side.call('bob', 'POST', `/join/${enc(third)}`, {})).status).toBe(200);
  await say('alice', first, 'one');
  await say('bob', third, 'three');
  await say('alice', second, 'two');
  return { [first]: 'first', [second]: 'second', [third]: 'third' };
}

const request = {
  lists: { all: { ranges: [[0, 1]], timeline_limit: 3, required_state: [['m.room.name', ''], ['m.room.member', '$LAZY'], ['m.room.create', '']] } },
};

/** An answer with room ids replaced by roles and values that must differ (ids, times, tokens) by their kind. */
function normalize(body: Json, roles: Record<string, string>): Json {
  const rooms: Json = {};
  for (const [id, r] of Object.entries(body.rooms ?? {}) as [string, Json][]) {
    rooms[roles[id] ?? id] = {
      fields: Object.keys(r).sort(),
      initial: r.initial,
      name: r.name,
      heroes: (r.heroes ?? []).map((h: Json) => Object.keys(h).sort()),
      joined_count: r.joined_count,
      invited_count: r.invited_count,
      limited: r.limited,
      num_live: r.num_live,
      // Counts: Synapse 1.163.2 always sends 0 here (not implemented); Axon sends the real ones
      // (test/e2e/sliding-sync.e2e.test.ts checks them). Compared as present, not by value.
      has_counts: typeof r.notification_count === 'number' && typeof r.highlight_count === 'number',
      // Presets write their initial state in different orders; the messages and the length compare.
      timeline: (r.timeline ?? []).map((e: Json) => (e.type === 'm.room.message' || e.type === 'm.room.member' ? `${e.type}:${e.content?.body ?? e.content?.membership}` : 'state')),
      timeline_fields: [...new Set((r.timeline ?? []).flatMap((e: Json) => Object.keys(e)))].sort(),
      required_state: (r.required_state ?? []).map((e: Json) => `${e.type}|${e.state_key?.startsWith('@') ? e.state_key.split(':')[0].replace('@cmp-', '@') : e.state_key}`).sort(),
    };
  }
  const lists: Json = {};
  for (const [name, l] of Object.entries(body.lists ?? {}) as [string, Json][]) lists[name] = { count: l.count, ops: (l.ops ?? []).map((o: Json) => ({ op: o.op, range: o.range, rooms: o.room_ids.map((id: string) => roles[id] ?? id) })) };
  return { fields: Object.keys(body).sort(), lists, rooms };
}

describe.skipIf(skip)('simplified sliding sync: Axon beside Synapse 1.163.2', () => {
  let ca: TestCa;
  let synapse: SynapsePeer;
  let server: TestServer;
  let c: Clients;
  let axonSide: Side;
  let synapseSide: Side;

  beforeAll(async () => {
    ca = createTestCa();
    const [s, a] = await Promise.all([loopbackServerName('127.0.0.61').then((serverName) => startSynapse({ serverName, ca, logLevel: 'WARNING' })), startTestServer()]);
    synapse = s;
    server = a;
    c = await clientsFor(server);
    const sAlice = await synapse.registerUser('alice', 'alice password');
    const sBob = await synapse.registerUser('bob', 'bob password');
    const aAlice = await c.mint('cmp-alice');
    const aBob = await c.mint('cmp-bob');
    synapseSide = { call: (who, m, p, b) => synapse.call(who === 'alice' ? sAlice : sBob, m, p, b), userId: (who) => (who === 'alice' ? sAlice : sBob).userId };
    axonSide = { call: (who, m, p, b) => c.call(who === 'alice' ? aAlice : aBob, m, p, b).then((r) => ({ status: r.status, body: r.body })), userId: (who) => (who === 'alice' ? aAlice : aBob).userId };
  }, 240_000);

  afterAll(async () => {
    await c?.close();
    await Promise.all([synapse?.stop(), server?.stop()]);
    ca?.cleanup();
  });

  it('answers the same first and incremental requests with the same shape, counts and order', async () => {
    const [aRoles, sRoles] = await Promise.all([journey(axonSide), journey(synapseSide)]);
    const ask = async (side: Side, roles: Record<string, string>, query = '') => {
      for (let i = 0; ; i++) {
        const r = await side.call('alice', 'POST', `${PATH}${query}`, request);
        expect(r.status, JSON.stringify(r.body)).toBe(200);
        if (query || (r.body.lists.all.count === 3 && roles[r.body.lists.all.ops[0].room_ids[0]] === 'second') || i > 100) return r.body;
        await new Promise((res) => setTimeout(res, 100));
      }
    };
    const [aFirst, sFirst] = await Promise.all([ask(axonSide, aRoles), ask(synapseSide, sRoles)]);
    const na = normalize(aFirst, aRoles);
    const ns = normalize(sFirst, sRoles);
    console.log('first answer, Axon:', JSON.stringify(na), '\nSynapse:', JSON.stringify(ns));
    expect(na).toEqual(ns);

    // Incremental: bob speaks in the unnamed room; both answer with the same fields.
    const third = (roles: Record<string, string>) => Object.keys(roles).find((id) => roles[id] === 'third')!;
    for (const [side, roles] of [[axonSide, aRoles], [synapseSide, sRoles]] as const) {
      const r = await side.call('bob', 'PUT', `/rooms/${enc(third(roles))}/send/m.room.message/${txn()}`, { msgtype: 'm.text', body: 'again' });
      expect(r.status).toBe(200);
    }
    await new Promise((res) => setTimeout(res, 500));
    const [aInc, sInc] = await Promise.all([ask(axonSide, aRoles, `?pos=${encodeURIComponent(aFirst.pos)}&timeout=5000`), ask(synapseSide, sRoles, `?pos=${encodeURIComponent(sFirst.pos)}&timeout=5000`)]);
    const ia = normalize(aInc, aRoles);
    const is = normalize(sInc, sRoles);
    console.log('incremental answer, Axon:', JSON.stringify(ia), '\nSynapse:', JSON.stringify(is));
    expect(ia).toEqual(is);
  }, 240_000);

  it('gives the same extension sections, with the same fields, for the same data', async () => {
    const ext = { to_device: { enabled: true }, e2ee: { enabled: true }, account_data: { enabled: true }, typing: { enabled: true }, receipts: { enabled: true } };
    const body = { lists: { all: { ranges: [[0, 9]], timeline_limit: 1, required_state: [] } }, extensions: ext };
    const shapeOf = (x: Json): Json => ({
      sections: Object.keys(x.extensions).sort(),
      to_device: Object.keys(x.extensions.to_device ?? {}).sort(),
      to_device_events: (x.extensions.to_device?.events ?? []).map((e: Json) => [e.type, Object.keys(e).sort(), e.content]),
      e2ee: Object.keys(x.extensions.e2ee ?? {}).sort(),
      account_data: Object.keys(x.extensions.account_data ?? {}).sort(),
      global_types: (x.extensions.account_data?.global ?? []).map((e: Json) => e.type).filter((t: string) => t.startsWith('org.example')),
      typing_rooms: Object.values(x.extensions.typing?.rooms ?? {}).map((e) => [(e as Json).type, (e as Json).content.user_ids.length]),
      receipt_rooms: Object.values(x.extensions.receipts?.rooms ?? {}).map((e) => (e as Json).type),
    });
    const run = async (side: Side) => {
      const rooms = await side.call('alice', 'GET', '/joined_rooms');
      const room = (rooms.body.joined_rooms as string[])[0]!;
      const first = await side.call('alice', 'POST', PATH, body);
      expect(first.status).toBe(200);
      // Bob types and sends alice a to-device message; alice writes account data and a receipt.
      expect((await side.call('bob', 'POST', `/join/${enc(room)}`, {})).status).toBe(200);
      expect((await side.call('bob', 'PUT', `/rooms/${enc(room)}/typing/${enc(side.userId('bob'))}`, { typing: true, timeout: 30000 })).status).toBe(200);
      const dev = (await side.call('alice', 'GET', '/account/whoami')).body.device_id as string;
      expect((await side.call('bob', 'PUT', `/sendToDevice/org.example.ping/${txn()}`, { messages: { [side.userId('alice')]: { [dev]: { n: 1 } } } })).status).toBe(200);
      expect((await side.call('alice', 'PUT', `/user/${enc(side.userId('alice'))}/account_data/org.example.cmp`, { v: 1 })).status).toBe(200);
      const msgs = await side.call('alice', 'GET', `/rooms/${enc(room)}/messages?dir=b&limit=1`);
      const ev = (msgs.body.chunk as Json[])[0]!.event_id as string;
      expect((await side.call('bob', 'POST', `/rooms/${enc(room)}/receipt/m.read/${enc(ev)}`, {})).status).toBe(200);
      await new Promise((res) => setTimeout(res, 1000));
      const next = await side.call('alice', 'POST', `${PATH}?pos=${encodeURIComponent(first.body.pos)}&timeout=0`, body);
      expect(next.status).toBe(200);
      return { first: shapeOf(first.body), next: shapeOf(next.body) };
    };
    const [a, s] = await Promise.all([run(axonSide), run(synapseSide)]);
    console.log('extensions, Axon:', JSON.stringify(a), '\nSynapse:', JSON.stringify(s));
    expect(a.first).toEqual(s.first);
    expect(a.next).toEqual(s.next);
  }, 240_000);
});
