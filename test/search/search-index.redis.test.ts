/**
 * The search index (format 2: binary postings, block bounds) and its query engine on a real
 * redis-server, against a reference computed by brute force from the same texts: every page of
 * `rank` and `recent` results, read with early exit and block-max pruning from a cursor, must
 * concatenate to exactly the reference order (same documents, same scores), over lists long
 * enough to have many blocks; also after edits (old terms taken out by tokenising the old text
 * again), redactions whose text is gone (skipped through the dead set), and with documents
 * arriving after the search began (left out of its pages). Indexing twice changes nothing.
 */
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { bm25, parseQuery, termFrequencies } from '../../src/protocol/search-text';
import { SearchIndexStore, type DocRecord, type KeyCode } from '../../src/search/index-store';
import { nextCandidates, planSearch, startSearch, type Candidate, type CandidateBatch, type Cursor } from '../../src/search/query';
import { KeySpace, searchData } from '../../src/store/keys';
import { connectRedis, type RedisClient } from '../../src/store/redis';
import { shardOf } from '../../src/store/shards';

let redis: RedisClient;
beforeAll(() => {
  redis = connectRedis({ url: inject('redisUrl') });
});
afterAll(() => redis.disconnect());

const SHARDS = 4;
const keys = new KeySpace(`sidx${Date.now()}:`);
const ROOMS = ['!a:test', '!b:test', '!c:test'];
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
  for (let n = 0; n < 200; n++) {
    const batch: CandidateBatch = n === 0 && started ? started.batch : await nextCandidates(store, plan, cursor, want, inline);
    if (count < 0) count = batch.count;
    all.push(...batch.candidates);
    cursor = batch.cursor;
    if (between) await between();
    if (batch.exhausted || batch.candidates.length === 0) break;
  }
  return { all, count, tops: plan.tops };
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
});
