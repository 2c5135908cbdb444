/**
 * Initial-sync slices (src/sync/initial-slices.ts) end to end: a front that answers rooms given in
 * full from its slices, against a front of the same server with slices off (`caches.syncSlicesBytes`
 * 0), on the same rooms — for several viewers (the sender's own device and another of theirs,
 * a member who joined later under `joined` history visibility, one who left), with the default
 * filter, lazy-loading members, a small timeline limit and MSC4222's state_after; and that the
 * slices follow the rooms: a redaction, a state change and new messages are in the next answer;
 * and that a front started afterwards answers from the slices the first one wrote to Redis.
 * Then the slices a front builds ahead of any sync for the rooms it changed, once they are quiet
 * (src/sync/slice-prebuild.ts): a new front's first initial sync answers from them, exactly as the
 * plain front, and not after a redaction made since (the slice is for the room's older version).
 */
import { randomBytes } from 'node:crypto';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signingKeyFromSeed } from '../../src/protocol/crypto';
import { startFront, type RunningFront } from '../../src/front';
import { KeySpace, roomData } from '../../src/store/keys';
import { shardOf } from '../../src/store/shards';
import { initialSliceStats } from '../../src/sync/initial-slices';
import { freePort } from '../setup/free-port';
import { clientsFor, enc, txn, type Clients, type Json, type Session } from './clients';
import { startTestServer, type TestServer } from './server-harness';

let server: TestServer;
let c: Clients;
let plain: RunningFront;
let plainUrl: string;

beforeAll(async () => {
  server = await startTestServer();
  c = await clientsFor(server);
  const port = await freePort();
  plain = await startFront({ ...server.config, clientPort: port, caches: { ...server.config.caches, syncSlicesBytes: 0 } }, server.redis, [signingKeyFromSeed('ed25519:plain', randomBytes(32))], pino({ level: 'silent' }), 'no-slices');
  plainUrl = `http://127.0.0.1:${port}`;
}, 60_000);

afterAll(async () => {
  await plain?.close();
  await c?.close();
  await server?.stop();
});

/** What may differ between two answers of the same sync: ages, the token, presence activity. */
function normalised(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(normalised);
  if (v === null || typeof v !== 'object') return v;
  const out: Json = {};
  for (const [k, x] of Object.entries(v as Json)) {
    if (k === 'age' || k === 'next_batch' || k === 'last_active_ago') continue;
    out[k] = normalised(x);
  }
  return out;
}

async function initialSync(s: Session, query: Record<string, string>, baseUrl = server.baseUrl): Promise<Json> {
  const qs = new URLSearchParams({ set_presence: 'offline', ...query }).toString();
  const r = await c.call(s, 'GET', `/sync?${qs}`, undefined, baseUrl);
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  return r.body;
}

async function ok(s: Session, method: string, path: string, body?: unknown): Promise<Json> {
  const r = await c.call(s, method, path, body);
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  return r.body;
}

const say = async (s: Session, roomId: string, body: string) => (await ok(s, 'PUT', `/rooms/${enc(roomId)}/send/m.room.message/${txn()}`, { msgtype: 'm.text', body })).event_id as string;

const noPresence = { presence: { types: [] } };
const FILTERS: Record<string, Record<string, string>> = {
  default: { filter: JSON.stringify(noPresence) },
  lazy: { filter: JSON.stringify({ ...noPresence, room: { state: { lazy_load_members: true } } }) },
  'limit 3': { filter: JSON.stringify({ ...noPresence, room: { timeline: { limit: 3 } } }) },
  'no timeline': { filter: JSON.stringify({ ...noPresence, room: { timeline: { limit: 0 } } }) },
  'state_after': { filter: JSON.stringify(noPresence), 'org.matrix.msc4222.use_state_after': 'true' },
};

/** The slice front's answer (twice: the second from its slices) and the plain front's, normalised. */
async function threeWays(s: Session, query: Record<string, string>): Promise<{ first: unknown; second: unknown; plain: unknown; reused: number }> {
  const first = normalised(await initialSync(s, query));
  const before = initialSliceStats.reused;
  const second = normalised(await initialSync(s, query));
  const reused = initialSliceStats.reused - before;
  return { first, second, plain: normalised(await initialSync(s, query, plainUrl)), reused };
}

describe('initial sync from slices', () => {
  it('answers as the reads without slices do, viewer by viewer, and follows redactions, state changes and new events', async () => {
    const tag = randomBytes(3).toString('hex');
    const alice = await c.mint(`slice_a${tag}`, 'PHONE');
    const aliceLaptop = await c.mint(`slice_a${tag}`, 'LAPTOP');
    const bob = await c.mint(`slice_b${tag}`);
    const carol = await c.mint(`slice_c${tag}`);
    // A room whose history only members see from their join on; and a plain one.
    const guarded = (await ok(alice, 'POST', '/createRoom', { preset: 'public_chat', name: 'guarded', initial_state: [{ type: 'm.room.history_visibility', state_key: '', content: { history_visibility: 'joined' } }] })).room_id as string;
    const open = (await ok(alice, 'POST', '/createRoom', { preset: 'public_chat', name: 'open', topic: 'a "quoted" topic' })).room_id as string;
    for (let i = 0; i < 12; i++) await say(alice, guarded, `early ${i}`);
    await ok(bob, 'POST', `/join/${enc(guarded)}`, {});
    await ok(bob, 'POST', `/join/${enc(open)}`, {});
    await ok(carol, 'POST', `/join/${enc(open)}`, {});
    for (let i = 0; i < 4; i++) await say(bob, guarded, `bob ${i}`);
    const doomed = await say(alice, open, 'to be redacted');
    for (let i = 0; i < 6; i++) await say(i % 2 ? carol : alice, open, `open ${i}`);
    await ok(alice, 'PUT', `/rooms/${enc(open)}/state/m.room.topic/`, { topic: 'changed' });
    await ok(carol, 'POST', `/rooms/${enc(open)}/leave`, {});

    const compareAll = async () => {
      for (const viewer of [alice, aliceLaptop, bob, carol]) {
        for (const [name, query] of Object.entries(FILTERS)) {
          const q = viewer === carol ? { ...query, filter: JSON.stringify({ ...JSON.parse(query.filter!), room: { ...JSON.parse(query.filter!).room, include_leave: true } }) } : query;
          const r = await threeWays(viewer, q);
          expect(r.second, `${viewer.userId}/${viewer.deviceId} ${name}: from slices`).toEqual(r.first);
          expect(r.second, `${viewer.userId}/${viewer.deviceId} ${name}: against no slices`).toEqual(r.plain);
          // Carol left both rooms she had (none is given to her in full as joined).
          if (viewer !== carol) expect(r.reused, `${viewer.userId} ${name}: slices reused`).toBeGreaterThan(0);
        }
      }
    };
    await compareAll();

    // What the comparison covered: the sender's own transaction id on one device only, bob not
    // seeing the guarded room's history before his join, alice's seeing all of it.
    const mine = (await initialSync(alice, FILTERS.default!)).rooms.join;
    const other = (await initialSync(aliceLaptop, FILTERS.default!)).rooms.join;
    const bobs = (await initialSync(bob, FILTERS.default!)).rooms.join;
    expect((mine[open].timeline.events as Json[]).some((e) => typeof e.unsigned.transaction_id === 'string')).toBe(true);
    expect((other[open].timeline.events as Json[]).some((e) => e.unsigned.transaction_id !== undefined)).toBe(false);
    expect((mine[guarded].timeline.events as Json[]).map((e) => e.content.body).filter(Boolean)).toContain('early 11');
    expect((bobs[guarded].timeline.events as Json[]).map((e) => e.content.body).filter((b) => typeof b === 'string' && b.startsWith('early'))).toEqual([]);
    // The topic changed within the timeline: the state has it as of the timeline's start.
    expect((mine[open].state.events as Json[]).find((e) => e.type === 'm.room.topic')?.content.topic).toBe('a "quoted" topic');
    expect((mine[open].timeline.events as Json[]).find((e) => e.type === 'm.room.topic')?.content.topic).toBe('changed');

    // A redaction: the slice gives way to the room's new version.
    await ok(alice, 'PUT', `/rooms/${enc(open)}/redact/${enc(doomed)}/${txn()}`, { reason: 'gone' });
    const afterRedaction = (await initialSync(alice, { filter: JSON.stringify({ ...noPresence, room: { timeline: { limit: 20 } } }) })).rooms.join[open];
    const redacted = (afterRedaction.timeline.events as Json[]).find((e) => e.event_id === doomed)!;
    expect(redacted.content).toEqual({});
    expect(redacted.unsigned.redacted_because.content.reason).toBe('gone');
    // A state change and new messages.
    await ok(alice, 'PUT', `/rooms/${enc(open)}/state/m.room.name/`, { name: 'renamed' });
    for (let i = 0; i < 11; i++) await say(bob, open, `later ${i}`);
    const later = (await initialSync(alice, FILTERS.default!)).rooms.join[open];
    expect((later.state.events as Json[]).find((e) => e.type === 'm.room.name')?.content.name).toBe('renamed');
    expect((later.state.events as Json[]).find((e) => e.type === 'm.room.name')?.unsigned.prev_content).toEqual({ name: 'open' });
    expect((later.timeline.events as Json[]).map((e) => e.content.body)).toEqual(Array.from({ length: 10 }, (_x, i) => `later ${i + 1}`));
    await compareAll();

    // A front started now has no slice of its own: it reads those the first front wrote to Redis,
    // and its very first answers are the same as the plain front's.
    const port = await freePort();
    const fresh = await startFront({ ...server.config, clientPort: port }, server.redis, [signingKeyFromSeed('ed25519:fresh', randomBytes(32))], pino({ level: 'silent' }), 'fresh-slices');
    try {
      const freshUrl = `http://127.0.0.1:${port}`;
      const read = initialSliceStats.sharedRead;
      for (const viewer of [alice, aliceLaptop, bob]) {
        for (const [name, query] of Object.entries(FILTERS)) {
          const made = initialSliceStats.made;
          const answer = normalised(await initialSync(viewer, query, freshUrl));
          expect(answer, `${viewer.userId}/${viewer.deviceId} ${name}: a new front from the shared slices`).toEqual(normalised(await initialSync(viewer, query, plainUrl)));
          // Alice's two rooms: both slices came from Redis with her first sync (no filter here
          // asks for more events than the default's page of 11), none was built again.
          if (viewer === alice) expect(initialSliceStats.made, `${name}: no slice built again`).toBe(made);
          if (viewer === alice && name === 'default') expect(initialSliceStats.sharedRead - read, 'slices read from Redis').toBe(2);
        }
      }
    } finally {
      await fresh.close();
    }
  }, 120_000);

  it('builds the slices of the rooms a front changed once they are quiet, and a new front answers from them as without', async () => {
    const tag = randomBytes(3).toString('hex');
    const dave = await c.mint(`slice_d${tag}`, 'PHONE');
    const erin = await c.mint(`slice_e${tag}`);
    const keys = new KeySpace(server.config.redis.keyPrefix);
    const sliceKey = (roomId: string) => keys.shard('room', shardOf(roomId, server.config.shards!.rooms)).data(roomData.syncSlice(roomId));
    const rooms: string[] = [];
    for (const name of ['one', 'two']) {
      const roomId = (await ok(dave, 'POST', '/createRoom', { preset: 'public_chat', name, initial_state: [{ type: 'org.example.x', state_key: 'k', content: { n: 1 } }] })).room_id as string;
      await ok(erin, 'POST', `/join/${enc(roomId)}`, {});
      for (let i = 0; i < 14; i++) await say(i % 3 ? dave : erin, roomId, `${name} ${i}`);
      await ok(dave, 'PUT', `/rooms/${enc(roomId)}/state/org.example.x/k`, { n: 2 });
      rooms.push(roomId);
    }
    const doomed = await say(erin, rooms[0]!, 'to be redacted');
    // Nobody has synced: the slices come from the front the commands went through, once the rooms
    // have been quiet (1 s), written to Redis.
    const quietSince = Date.now();
    for (const roomId of rooms) {
      while (!(await server.redis.exists(sliceKey(roomId)))) {
        expect(Date.now() - quietSince, 'a slice written for a quiet room').toBeLessThan(60_000);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    const readFromRedis = async () => {
      const port = await freePort();
      const fresh = await startFront({ ...server.config, clientPort: port }, server.redis, [signingKeyFromSeed('ed25519:fresh', randomBytes(32))], pino({ level: 'silent' }), `prebuilt-${randomBytes(2).toString('hex')}`);
      try {
        const out: { name: string; made: number; answer: unknown; plain: unknown }[] = [];
        for (const viewer of [dave, erin]) {
          for (const [name, query] of Object.entries(FILTERS)) {
            const made = initialSliceStats.made;
            const answer = normalised(await initialSync(viewer, query, `http://127.0.0.1:${port}`));
            out.push({ name: `${viewer.userId} ${name}`, made: initialSliceStats.made - made, answer, plain: normalised(await initialSync(viewer, query, plainUrl)) });
          }
        }
        return out;
      } finally {
        await fresh.close();
      }
    };
    for (const r of await readFromRedis()) {
      expect(r.answer, `${r.name}: a new front from the prebuilt slices`).toEqual(r.plain);
      // Both rooms' slices were there before any sync: none built by a sync.
      expect(r.made, `${r.name}: no slice built by the sync`).toBe(0);
    }
    // A redaction: the prebuilt slice of that room is for its older version — a new front's next
    // answers (before the room is quiet again, or after) show the redaction, as the plain front's.
    await ok(dave, 'PUT', `/rooms/${enc(rooms[0]!)}/redact/${enc(doomed)}/${txn()}`, { reason: 'gone' });
    for (const r of await readFromRedis()) expect(r.answer, `${r.name}: after a redaction`).toEqual(r.plain);
    const redacted = ((await initialSync(dave, FILTERS.default!)).rooms.join[rooms[0]!].timeline.events as Json[]).find((e) => e.event_id === doomed)!;
    expect(redacted.content).toEqual({});
  }, 180_000);
});
