/**
 * The search index (format 2: binary postings, block bounds) and its query engine on a real
 * redis-server, against a reference computed by brute force from the same texts: every page of
 * `rank` and `recent` results, read with early exit and block-max pruning from a cursor, must
 * concatenate to exactly the reference order (same documents, same scores), over lists long
 * enough to have many blocks; also after edits (old terms taken out by tokenising the old text
 * again), redactions whose text is gone (skipped through the dead set), and with documents
 * arriving after the search began (left out of its pages). Indexing twice changes nothing.
 * Long terms' best postings (what ranked queries stop early with) keep their invariant — at most
 * 64 of the term's own postings, every other one bounded by the frontier — through edits,
 * redactions and a lazy first build, and ranked pages read with them equal the brute-force order.
 */
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { bm25, parseQuery, termFrequencies } from '../../src/protocol/search-text';
import { parseTop, SearchIndexStore, type DocRecord, type KeyCode } from '../../src/search/index-store';
import { nextCandidates, planSearch, startSearch, type Candidate, type CandidateBatch, type Cursor } from '../../src/search/query';
import { KeySpace, roomData, searchData } from '../../src/store/keys';
import { connectRedis, type RedisClient } from '../../src/store/redis';
import { shardOf } from '../../src/store/shards';

const SHARDS = 4;
const keys = new KeySpace(`sidx${Date.now()}:`);
const ROOMS = ['!a:test', '!b:test', '!c:test'];

let redis: RedisClient;
beforeAll(async () => {
  redis = connectRedis({ url: inject('redisUrl') });
  // The rooms exist (search-index-5.lua indexes nothing of a room without its members hash).
  for (const roomId of ROOMS) await redis.hset(keys.shard('room', shardOf(roomId, SHARDS)).data(roomData.members(roomId)), '@a:test', 'join');
});
afterAll(() => redis.disconnect());
const WORDS = ['alpha', 'alpine', 'alps', 'beta', 'gamma', 'delta', 'epsilon', 'zeta', 'eta', 'theta', 'iota', 'kappa', 'lambda'];

/** The texts indexed now, per room and position (null: redacted). */
const texts = ROOMS.map(() => new Map<number, string | null>());
/** Redacted texts whose terms the index could not know: their postings stay, and count in the frequencies. */
const ghosts = ROOMS.map(() => new Map<number, string>());
const tsOf = (room: number, pos: number) => 1_700_000_000_000 + pos * 10 + room;

function seeded(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

/** What the index should answer, from the texts: every match, scored, in order. */
function reference(searchTerm: string, orderBy: 'rank' | 'recent', tops: number[]): Candidate[] {
  const q = parseQuery(searchTerm);
  const docs: { room: number; pos: number; tf: Map<string, number>; length: number }[] = [];
  const vocab = ROOMS.map(() => new Map<string, number>());
  ROOMS.forEach((_, room) => {
    for (const [pos, text] of texts[room]!) {
      if (text === null || pos > tops[room]!) continue;
      const { terms, length } = termFrequencies(text);
      docs.push({ room, pos, tf: terms, length });
      for (const t of terms.keys()) vocab[room]!.set(t, (vocab[room]!.get(t) ?? 0) + 1);
    }
    for (const [pos, text] of ghosts[room]!) if (pos <= tops[room]!) for (const t of termFrequencies(text).terms.keys()) vocab[room]!.set(t, (vocab[room]!.get(t) ?? 0) + 1);
  });
  const isLast = (i: number) => i === q.terms.length - 1 && q.lastIsPrefix;
  const df = q.terms.map((t, i) => vocab.reduce((n, v) => n + [...v].filter(([w]) => (isLast(i) ? w.startsWith(t) : w === t)).reduce((a, [, c]) => a + c, 0), 0));
  const documents = docs.length;
  for (let i = 0; i < df.length; i++) df[i] = Math.min(df[i]!, documents);
  const averageLength = docs.reduce((n, d) => n + d.length, 0) / documents;
  const out: Candidate[] = [];
  for (const d of docs) {
    const tfs = q.terms.map((t, i) => (isLast(i) ? Math.max(0, ...[...d.tf].filter(([w]) => w.startsWith(t)).map(([, c]) => Math.min(c, 63))) : Math.min(d.tf.get(t) ?? 0, 63)));
    if (tfs.some((tf) => tf === 0)) continue;
    const score = orderBy === 'rank' ? bm25(tfs.map((tf, i) => ({ tf, df: df[i]! })), d.length, { documents, averageLength }) : 0;
    out.push({ room: d.room, pos: d.pos, score });
  }
  return out.sort((a, b) => (orderBy === 'rank' ? b.score - a.score : tsOf(b.room, b.pos) - tsOf(a.room, a.pos)) || b.pos - a.pos || a.room - b.room);
}

/**
 * Every page of a search: the first from `startSearch` (the API's path: one first look at the
 * rooms, few postings read with it) or, with `planned`, from `planSearch` then `nextCandidates`;
 * `inline`: how many postings a word may have to be read with a room's first look (0: none).
 */
async function pages(store: SearchIndexStore, searchTerm: string, orderBy: 'rank' | 'recent', want: number, between?: () => Promise<void>, inline?: number, planned = false): Promise<{ all: Candidate[]; count: number; tops: number[] }> {
  const started = planned ? null : await startSearch(store, ROOMS, searchTerm, new Set<KeyCode>(['b']), orderBy, want, inline);
  const plan = started?.plan ?? (await planSearch(store, ROOMS, searchTerm, new Set<KeyCode>(['b']), orderBy));
  const all: Candidate[] = [];
  let cursor: Cursor = null;
  let count = -1;
  for (let n = 0; n < 1000; n++) {
    const batch: CandidateBatch = n === 0 && started ? started.batch : await nextCandidates(store, plan, cursor, want, inline);
    if (count < 0) count = batch.count;
    all.push(...batch.candidates);
    cursor = batch.cursor;
    if (between) await between();
    if (batch.exhausted || batch.candidates.length === 0) break;
  }
  return { all, count, tops: plan.tops };
}

/** A room's postings and best postings in Redis: checks the best postings' invariant for every long term; returns them. */
async function checkTops(roomId: string): Promise<Map<string, Set<number>>> {
  const shard = keys.shard('room', shardOf(roomId, SHARDS));
  const out = new Map<string, Set<number>>();
  for (const w of await redis.zrange(shard.data(searchData.terms(roomId)), 0, -1)) {
    const postings = (await redis.getBuffer(shard.data(`${searchData.postingsPrefix(roomId)}${w}`)))!;
    const raw = await redis.getBuffer(shard.data(`${searchData.topPrefix(roomId)}${w}`));
    if (postings.length / 6 <= 128) {
      expect(raw, w).toBeNull();
      continue;
    }
    expect(raw, w).not.toBeNull();
    const top = parseTop(raw!);
    const entries = new Map<number, string>();
    for (let o = 0; o < top.entries.length; o += 6) entries.set(top.entries.readInt32BE(o), top.entries.subarray(o, o + 6).toString('hex'));
    expect(entries.size * 6, w).toBe(top.entries.length);
    expect(entries.size, w).toBeLessThanOrEqual(64);
    let inList = 0;
    for (let o = 0; o < postings.length; o += 6) {
      const pos = postings.readInt32BE(o);
      const tf = postings[o + 4]! >> 2;
      const length = postings[o + 5]!;
      if (entries.has(pos)) {
        expect(entries.get(pos), `${w} ${pos}`).toBe(postings.subarray(o, o + 6).toString('hex'));
        inList++;
      } else expect(top.front.some(([f, l]) => f >= tf && l <= length), `${w} ${pos} bounded`).toBe(true);
    }
    expect(inList, w).toBe(entries.size);
    out.set(w, new Set(entries.keys()));
  }
  return out;
}

function expectSame(got: Candidate[], want: Candidate[], label = ''): void {
  expect(got.map((c) => `${c.room}:${c.pos}`), label).toEqual(want.map((c) => `${c.room}:${c.pos}`));
  got.forEach((c, i) => expect(c.score).toBeCloseTo(want[i]!.score, 9));
}

/** The old terms of a document, from the texts (as the reader finds them from the stored event). */
const termsOf = (room: number) => async (r: DocRecord) => {
  const t = texts[room]!.get(r.pos);
  return t ? [...termFrequencies(t).terms.keys()] : null;
};

describe('search index format 2 and its query engine', () => {
  const store = () => new SearchIndexStore(redis, keys, SHARDS);

  it('pages of rank and recent results equal the brute-force order, over many blocks', async () => {
    const s = store();
    const rand = seeded(7);
    // Zipf-like: "alpha" in most documents, so its postings run to several blocks per room.
    const word = () => WORDS[Math.min(WORDS.length - 1, Math.floor(Math.exp(rand() * Math.log(WORDS.length * 3)) - 1))]!;
    const writes: Promise<unknown>[] = [];
    for (let pos = 1; pos <= 700; pos++) {
      ROOMS.forEach((roomId, room) => {
        const text = Array.from({ length: 2 + Math.floor(rand() * 12) }, word).join(' ');
        texts[room]!.set(pos, text);
        writes.push(s.index({ roomId, sourcePos: pos, pos, ts: tsOf(room, pos), key: 'b', text }, termsOf(room)));
      });
    }
    await Promise.all(writes);
    expect(await s.postingCount(ROOMS[0]!, 'alpha')).toBeGreaterThan(3 * 128);
    for (const roomId of ROOMS) expect((await checkTops(roomId)).has('alpha')).toBe(true);
    for (const [q, want] of [['alpha', 25], ['alp', 40], ['beta alpha', 30], ['gamma delta', 17], ['lambda', 10], ['nothing', 10]] as const) {
      for (const order of ['rank', 'recent'] as const) {
        // Postings read with the first look (all of them here) or by range, block by block.
        for (const [inline, planned] of [[undefined, false], [0, false], [0, true]] as const) {
          const { all, count, tops } = await pages(s, q, order, want, undefined, inline, planned);
          const ref = reference(q, order, tops);
          expectSame(all, ref, `${q} ${order} inline ${inline} planned ${planned}`);
          expect(count).toBeGreaterThanOrEqual(ref.length);
        }
      }
    }
  }, 300_000);

  it('indexing a document again changes nothing; an older content after a newer one changes nothing', async () => {
    const s = store();
    const roomId = ROOMS[0]!;
    const shard = keys.shard('room', shardOf(roomId, SHARDS));
    const snapshot = async () => [await redis.hgetall(shard.data(searchData.stats(roomId))), (await redis.getBuffer(shard.data(`${searchData.postingsPrefix(roomId)}alpha`)))?.toString('hex')];
    const before = await snapshot();
    expect(await s.index({ roomId, sourcePos: 5, pos: 5, ts: tsOf(0, 5), key: 'b', text: texts[0]!.get(5)! }, termsOf(0))).toBe(false);
    expect(await snapshot()).toEqual(before);
  });

  it('edits replace terms, redactions drop documents, later documents stay out of a running search', async () => {
    const s = store();
    // Edit: position 10 of room b gets new text (from an edit event at 9000); its old terms go.
    const old = texts[1]!.get(10)!;
    texts[1]!.set(10, 'alpha omega omega');
    await s.index({ roomId: ROOMS[1]!, sourcePos: 9000, pos: 10, ts: tsOf(1, 10), key: 'b', text: 'alpha omega omega' }, async () => [...termFrequencies(old).terms.keys()]);
    // Redactions: one whose text is gone (dead set), one whose terms are known.
    await s.remove(ROOMS[2]!, 20, async () => null);
    ghosts[2]!.set(20, texts[2]!.get(20)!);
    texts[2]!.set(20, null);
    const known = texts[0]!.get(30)!;
    await s.remove(ROOMS[0]!, 30, async () => [...termFrequencies(known).terms.keys()]);
    texts[0]!.set(30, null);
    // Indexing a redacted document does nothing.
    expect(await s.index({ roomId: ROOMS[2]!, sourcePos: 9001, pos: 20, ts: 0, key: 'b', text: 'alpha' }, termsOf(2))).toBe(false);
    for (const q of ['alpha', 'omega', 'alpha ome', 'beta']) {
      for (const order of ['rank', 'recent'] as const) {
        const { all, tops } = await pages(s, q, order, 50);
        expectSame(all, reference(q, order, tops));
      }
    }
    expect((await pages(s, 'omega', 'rank', 10)).count).toBe(1);
    // New documents while paging: not in this search's pages.
    let next = 5000;
    const { all, tops } = await pages(s, 'alpha', 'recent', 60, async () => {
      next++;
      texts[0]!.set(next, 'alpha late');
      await s.index({ roomId: ROOMS[0]!, sourcePos: next, pos: next, ts: tsOf(0, next), key: 'b', text: 'alpha late' }, termsOf(0));
    });
    expect(all.every((c) => c.pos < 5000)).toBe(true);
    expectSame(all, reference('alpha', 'recent', tops));
  }, 300_000);

  it('best postings: edits and redactions keep them true, a missing one is built lazily, ranked pages from them equal the brute-force order', async () => {
    const s = store();
    const roomId = ROOMS[0]!;
    const shard = keys.shard('room', shardOf(roomId, SHARDS));
    // A redaction whose terms are known takes the document out of the best postings too.
    const tops = await checkTops(roomId);
    const victim = [...tops.get('alpha')!].find((p) => p > 50 && texts[0]!.get(p))!;
    expect(victim).toBeDefined();
    const text = texts[0]!.get(victim)!;
    await s.remove(roomId, victim, async () => [...termFrequencies(text).terms.keys()]);
    texts[0]!.set(victim, null);
    expect((await checkTops(roomId)).get('alpha')!.has(victim)).toBe(false);
    // Edits that move documents in and out of the best postings (a short text: high impact).
    for (const [pos, next] of [[41, 'alpha alpha'], [42, 'alpha alpha alpha alpha'], [43, 'gamma']] as const) {
      const old = texts[0]!.get(pos)!;
      texts[0]!.set(pos, next);
      await s.index({ roomId, sourcePos: 9100 + pos, pos, ts: tsOf(0, pos), key: 'b', text: next }, async () => [...termFrequencies(old).terms.keys()]);
    }
    const after = await checkTops(roomId);
    expect(after.get('alpha')!.has(42)).toBe(true);
    // An index from before best postings: the first write to the term builds them.
    await redis.del(shard.data(`${searchData.topPrefix(roomId)}alpha`));
    for (const order of ['rank', 'recent'] as const) {
      const { all, tops: t } = await pages(s, 'alpha', order, 13);
      expectSame(all, reference('alpha', order, t), `alpha ${order} without best postings`);
    }
    texts[0]!.set(6001, 'alpha rebuilt');
    await s.index({ roomId, sourcePos: 6001, pos: 6001, ts: tsOf(0, 6001), key: 'b', text: 'alpha rebuilt' }, termsOf(0));
    expect((await checkTops(roomId)).has('alpha')).toBe(true);
    for (const r of ROOMS) await checkTops(r);
    // A rare word with a common one: the common one comes back cut down to the rare one's positions.
    for (const r of ROOMS) texts[ROOMS.indexOf(r)]!.set(6100, 'omega alpha zeta');
    for (const [room, r] of ROOMS.entries()) await s.index({ roomId: r, sourcePos: 6100, pos: 6100, ts: tsOf(room, 6100), key: 'b', text: 'omega alpha zeta' }, termsOf(room));
    for (const q of ['omega alpha', 'alpha omeg', 'zeta omega alpha']) {
      for (const order of ['rank', 'recent'] as const) {
        const { all, tops: t } = await pages(s, q, order, 2);
        expectSame(all, reference(q, order, t), `${q} ${order}`);
        expect(all.length).toBeGreaterThan(1);
      }
    }
    // Small pages (many cursors past the best postings), a prefix, two words, a key left out.
    for (const [q, want] of [['alpha', 7], ['alpha', 64], ['alp', 9], ['al', 5], ['beta alpha', 11], ['alpha beta gam', 6]] as const) {
      for (const [inline, planned] of [[undefined, false], [0, false], [0, true]] as const) {
        const { all, count, tops: t } = await pages(s, q, 'rank', want, undefined, inline, planned);
        const ref = reference(q, 'rank', t);
        expectSame(all, ref, `${q} rank ${want} inline ${inline} planned ${planned}`);
        expect(count).toBeGreaterThanOrEqual(ref.length);
      }
    }
    // New documents with the word (short: they would enter the best postings) while paging: left out.
    let next = 7000;
    const { all, tops: t } = await pages(s, 'alpha', 'rank', 10, async () => {
      next++;
      texts[0]!.set(next, 'alpha alpha');
      await s.index({ roomId, sourcePos: next, pos: next, ts: tsOf(0, next), key: 'b', text: 'alpha alpha' }, termsOf(0));
    });
    expect(all.every((c) => c.pos < 7000)).toBe(true);
    expectSame(all, reference('alpha', 'rank', t));
    await checkTops(roomId);
  }, 300_000);
});
