/**
 * Running a query over the search index of some rooms: every query term must occur in an event
 * (the last one as a prefix too: the union of the room's words starting with it), each match
 * scored by BM25 with the document frequencies and lengths of all the rooms searched together (so
 * ranks compare across rooms).
 *
 * A page costs what it shows, not what the query matches: in each room the term with the fewest
 * postings drives, and only as much of it is read as the page needs —
 *  - `recent`: its postings are read newest first (they are sorted by timeline position), a block
 *    at a time, until the room has enough matches; rooms are then merged by origin_server_ts;
 *  - `rank`: a long word's best postings (the highest-impact ones the index keeps, with a bound
 *    of all its others) are scored first, then its blocks in order of their best possible score
 *    (from the block bounds: highest frequency, shortest length; capped by the word's bound for
 *    postings not among its best), and reading stops when no unread block can beat the page's
 *    last result (max-score pruning, exact: the page is the one scoring every match gives).
 * The other terms are looked up by binary search: the first look (search-view-2.lua) returns them
 * cut down to the driver's positions when the driver has few postings, else they are read whole. A
 * prefix with several completions in a room scores a document by its best completion.
 *
 * Later pages continue from a cursor under the same frozen statistics (document counts, lengths,
 * frequencies, and each room's newest position at the first page), so they neither repeat nor
 * skip results while new events arrive.
 */
import { BM25_B, BM25_K1, idf, parseQuery } from '../protocol/search-text';
import { BLOCK, KEY_BITS, POSTING_BYTES, type KeyCode, type SearchIndexStore, type TopPostings } from './index-store';

/** At most this many indexed words count as completions of a prefix term in one room. */
const PREFIX_EXPANSIONS = 100;
/** Blocks read per round trip of a ranked query. */
const RANK_BATCH = 64;
/** A word with at most this many postings in a room is read whole with the room's first look (6 KB). */
const INLINE_POSTINGS = 1024;

/** What stays fixed between the pages of one search. */
export interface SearchPlan {
  terms: string[];
  lastIsPrefix: boolean;
  rooms: string[];
  /** Per room, the newest indexed position when the search began (later documents are left out). */
  tops: number[];
  documents: number;
  averageLength: number;
  /** Per query term, how many postings it has in all the rooms (a prefix: all its completions'). */
  df: number[];
  /** Key bits allowed (KEY_BITS). */
  keys: number[];
  orderBy: 'rank' | 'recent';
}

export interface Candidate {
  room: number;
  pos: number;
  score: number;
}

/** Where the next candidates start: after a ranked result, or below a position in each room. */
export type Cursor = { score: number; pos: number; room: number } | { below: number[] } | null;

export interface CandidateBatch {
  candidates: Candidate[];
  cursor: Cursor;
  /** Nothing follows these. */
  exhausted: boolean;
  /** Matches of the whole search: exact when every posting was read, else an upper bound. */
  count: number;
}

/** One query term in one room: its word (or a prefix's completions), their posting counts, and their postings when few. */
interface TermWords {
  words: string[];
  counts: number[];
  total: number;
  /**
   * Per word, its postings read with the room's first look (a word with at most INLINE_POSTINGS;
   * for a term not driving, only its entries at the driver's positions), else null.
   */
  postings: (Buffer | null)[];
  /** Per word of a ranked search's driver, its best postings and block bounds when it is long. */
  tops: ({ best: TopPostings; bounds: Buffer } | null)[];
}

interface RoomView {
  room: number;
  roomId: string;
  top: number;
  dead: Set<number>;
  /** Documents' origin_server_ts, when the room was read from its stored events (else from the document records). */
  ts?: Map<number, number>;
  /** The driving term, when the first look chose it (it then cut the other terms down to its positions). */
  driver?: number;
  terms: TermWords[];
}

/** The first look at every room of a search: one script call per shard (`SearchIndexStore.views`). */
async function viewRooms(store: SearchIndexStore, roomIds: readonly string[], terms: string[], lastIsPrefix: boolean, inline: number, mode: 'counts' | 'recent' | 'rank', tops?: readonly number[]): Promise<{ views: RoomView[]; documents: number; totalLength: number }> {
  const found = await store.views(roomIds, terms, lastIsPrefix, PREFIX_EXPANSIONS, inline, mode);
  let documents = 0;
  let totalLength = 0;
  const views = found.map((f, i): RoomView => {
    documents += f.documents;
    totalLength += f.totalLength;
    return {
      room: i,
      roomId: roomIds[i]!,
      // The script reads the totals with the postings: every posting counted is at or below the room's top.
      top: tops ? tops[i]! : f.top,
      dead: f.dead,
      ...(f.ts ? { ts: f.ts } : {}),
      ...(f.driver !== undefined && f.driver >= 0 ? { driver: f.driver } : {}),
      terms: f.terms.map((t) => ({ words: t.words, counts: t.counts, total: t.counts.reduce((a, b) => a + b, 0), postings: t.postings, tops: t.tops ?? t.words.map(() => null) })),
    };
  });
  return { views, documents, totalLength };
}

/** Entries [from, to) of a word's postings in a room: from its first look when they were read then, else from Redis. */
function postingsOf(store: SearchIndexStore, view: RoomView, term: number, word: number, from = 0, to = -1): Promise<Buffer> | Buffer {
  const t = view.terms[term]!;
  const inline = t.postings[word];
  if (!inline) return store.postings(view.roomId, t.words[word]!, from, to);
  if (from === 0 && to < 0) return inline;
  return inline.subarray(from * POSTING_BYTES, Math.max(from, to) * POSTING_BYTES);
}

/** A word's block bounds (highest frequency, shortest length per block), computed from its postings when they were read with the first look. */
async function boundsOf(store: SearchIndexStore, view: RoomView, term: number, word: number): Promise<Buffer> {
  const inline = view.terms[term]!.postings[word];
  if (!inline) return store.blockBounds(view.roomId, view.terms[term]!.words[word]!);
  const n = inline.length / POSTING_BYTES;
  const out = Buffer.alloc(2 * Math.ceil(n / BLOCK));
  for (let b = 0; b * BLOCK < n; b++) {
    let maxTf = 0;
    let minLen = 255;
    for (let i = b * BLOCK; i < Math.min(n, (b + 1) * BLOCK); i++) {
      maxTf = Math.max(maxTf, inline[i * POSTING_BYTES + 4]! >> 2);
      minLen = Math.min(minLen, inline[i * POSTING_BYTES + 5]!);
    }
    out[2 * b] = maxTf;
    out[2 * b + 1] = minLen;
  }
  return out;
}

function planOf(query: { terms: string[]; lastIsPrefix: boolean }, roomIds: readonly string[], views: RoomView[], documents: number, totalLength: number, keys: ReadonlySet<KeyCode>, orderBy: 'rank' | 'recent'): SearchPlan {
  const df = query.terms.map(() => 0);
  for (const v of views) {
    v.terms.forEach((t, i) => {
      df[i]! += t.total;
    });
  }
  // A prefix's completions can hold the same document: its frequency is bounded by the documents.
  for (let i = 0; i < df.length; i++) df[i] = Math.min(df[i]!, documents);
  return {
    terms: query.terms,
    lastIsPrefix: query.lastIsPrefix,
    rooms: [...roomIds],
    tops: views.map((v) => v.top),
    documents,
    averageLength: documents > 0 ? totalLength / documents : 0,
    df,
    keys: [...keys].map((k) => KEY_BITS[k]),
    orderBy,
  };
}

/** Freeze what a search's pages share: the rooms' newest positions and the corpus statistics. */
export async function planSearch(store: SearchIndexStore, roomIds: readonly string[], searchTerm: string, keys: ReadonlySet<KeyCode>, orderBy: 'rank' | 'recent'): Promise<SearchPlan> {
  const query = parseQuery(searchTerm);
  const { views, documents, totalLength } = await viewRooms(store, roomIds, query.terms, query.lastIsPrefix, 0, 'counts');
  return planOf(query, roomIds, views, documents, totalLength, keys, orderBy);
}

/**
 * A search's plan and its first `want` candidates, from one first look at the rooms (what
 * `planSearch` then `nextCandidates` find, with fewer reads). `inline`: words with at most this
 * many postings in a room are read with the first look (tests set 0 to read every one by range).
 */
export async function startSearch(store: SearchIndexStore, roomIds: readonly string[], searchTerm: string, keys: ReadonlySet<KeyCode>, orderBy: 'rank' | 'recent', want: number, inline = INLINE_POSTINGS): Promise<{ plan: SearchPlan; batch: CandidateBatch }> {
  const query = parseQuery(searchTerm);
  const { views, documents, totalLength } = await viewRooms(store, roomIds, query.terms, query.lastIsPrefix, inline, orderBy);
  const plan = planOf(query, roomIds, views, documents, totalLength, keys, orderBy);
  const empty: CandidateBatch = { candidates: [], cursor: null, exhausted: true, count: 0 };
  if (plan.terms.length === 0) return { plan, batch: empty };
  return { plan, batch: await candidatesFrom(store, plan, await prepare(store, plan, inline, views), null, want) };
}

/** A term's BM25 weight for one posting. */
function weight(plan: SearchPlan, term: number, tf: number, length: number): number {
  if (tf <= 0) return 0;
  const avg = plan.averageLength > 0 ? plan.averageLength : 1;
  const w = idf(plan.documents, plan.df[term]!);
  return (w * (tf * (BM25_K1 + 1))) / (tf + BM25_K1 * (1 - BM25_B + (BM25_B * length) / avg));
}

/** The entry of `buf` at position `pos` (binary search), or -1. */
function find(buf: Buffer, pos: number): number {
  let lo = 0;
  let hi = buf.length / POSTING_BYTES;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    const p = buf.readInt32BE(mid * POSTING_BYTES);
    if (p === pos) return mid;
    if (p < pos) lo = mid + 1;
    else hi = mid;
  }
  return -1;
}

/** The terms other than the driving one, read whole: per term, its words' postings. */
type Lookups = { term: number; bufs: Buffer[] }[];

/** A document's frequency of each looked-up term (null when one is missing). */
function lookUp(lookups: Lookups, pos: number): number[] | null {
  const tfs: number[] = [];
  for (const { bufs } of lookups) {
    let best = 0;
    for (const b of bufs) {
      const i = find(b, pos);
      if (i >= 0) best = Math.max(best, b[i * POSTING_BYTES + 4]! >> 2);
    }
    if (best === 0) return null;
    tfs.push(best);
  }
  return tfs;
}

interface Prepared {
  view: RoomView;
  driver: number;
  lookups: Lookups;
}

/** Choose each room's driving term and read the others whole; rooms lacking a term drop out. */
async function prepare(store: SearchIndexStore, plan: SearchPlan, inline: number, first?: RoomView[]): Promise<Prepared[]> {
  const views = first ?? (await viewRooms(store, plan.rooms, plan.terms, plan.lastIsPrefix, inline, plan.orderBy, plan.tops)).views;
  const rooms = await Promise.all(
    views.map(async (view): Promise<Prepared | null> => {
      if (plan.terms.length === 0 || view.terms.some((t) => t.total === 0)) return null;
      // The first look's choice when it made one (it cut the other terms down to the driver's positions).
      let driver = view.driver ?? 0;
      if (view.driver === undefined) {
        view.terms.forEach((t, i) => {
          if (t.total < view.terms[driver]!.total) driver = i;
        });
      }
      const lookups: Lookups = await Promise.all(
        view.terms.flatMap((t, i) => (i === driver ? [] : [{ term: i, bufs: Promise.all(t.words.map((_, w) => postingsOf(store, view, i, w))) }])).map(async (l) => ({ term: l.term, bufs: await l.bufs })),
      );
      return { view, driver, lookups };
    }),
  );
  return rooms.filter((r): r is Prepared => r !== null);
}

/** Upper bound of matches: per room, its rarest term's postings. */
function estimate(rooms: Prepared[]): number {
  return rooms.reduce((n, r) => n + r.view.terms[r.driver]!.total, 0);
}

/** The next candidates of a search after `cursor`, at least `want` of them unless the search runs out. */
export async function nextCandidates(store: SearchIndexStore, plan: SearchPlan, cursor: Cursor, want: number, inline = INLINE_POSTINGS): Promise<CandidateBatch> {
  return candidatesFrom(store, plan, await prepare(store, plan, inline), cursor, want);
}

function candidatesFrom(store: SearchIndexStore, plan: SearchPlan, rooms: Prepared[], cursor: Cursor, want: number): Promise<CandidateBatch> {
  return plan.orderBy === 'recent' ? recent(store, plan, rooms, cursor && 'below' in cursor ? cursor.below : null, want) : ranked(store, plan, rooms, cursor && 'score' in cursor ? cursor : null, want);
}

/** A driving word's reading state, newest first: entries [lo, hi) read so far, of n. */
interface WordTail {
  word: number;
  n: number;
  lo: number;
  /** Position of entry `lo`. */
  lowest: number;
}

/** `recent`: each room's newest matches below its cursor position, merged across rooms by origin_server_ts. */
async function recent(store: SearchIndexStore, plan: SearchPlan, rooms: Prepared[], below: number[] | null, want: number): Promise<CandidateBatch> {
  const limitOf = (r: Prepared) => Math.min(below ? below[r.view.room]! : Number.POSITIVE_INFINITY, r.view.top + 1);
  let allRead = true;
  const perRoom = await Promise.all(
    rooms.map(async (r) => {
      const limit = limitOf(r);
      const term = r.view.terms[r.driver]!;
      const tails: WordTail[] = term.words.map((_, i) => ({ word: i, n: term.counts[i]!, lo: term.counts[i]!, lowest: Number.POSITIVE_INFINITY }));
      /** Matches so far: position → per-term frequencies (the driver's the best of its words). */
      const found = new Map<number, { tf: number; length: number }>();
      let chunk = BLOCK;
      for (;;) {
        const reading = tails.filter((t) => t.lo > 0);
        const bufs = await Promise.all(reading.map((t) => postingsOf(store, r.view, r.driver, t.word, Math.max(0, t.lo - chunk), t.lo)));
        reading.forEach((t, k) => {
          const buf = bufs[k]!;
          t.lo = Math.max(0, t.lo - chunk);
          if (buf.length >= POSTING_BYTES) t.lowest = buf.readInt32BE(0);
          for (let o = 0; o + POSTING_BYTES <= buf.length; o += POSTING_BYTES) {
            const pos = buf.readInt32BE(o);
            if (pos >= limit || r.view.dead.has(pos)) continue;
            const tk = buf[o + 4]!;
            if (!plan.keys.includes(tk & 3)) continue;
            const had = found.get(pos);
            if (!had || had.tf < tk >> 2) found.set(pos, { tf: tk >> 2, length: buf[o + 5]! });
          }
        });
        // Complete down to the lowest position every unfinished word has been read to.
        const unfinished = tails.filter((t) => t.lo > 0);
        let safe = Number.NEGATIVE_INFINITY;
        for (const t of unfinished) safe = Math.max(safe, t.lowest);
        const matches = [...found.keys()].filter((p) => p >= safe && lookUp(r.lookups, p) !== null).sort((a, b) => b - a);
        if (unfinished.length === 0 || matches.length >= want) {
          if (unfinished.length > 0) allRead = false;
          return { r, matches: matches.slice(0, want), exhausted: unfinished.length === 0 && matches.length <= want, total: matches.length };
        }
        chunk *= 2;
      }
    }),
  );
  const records = await Promise.all(perRoom.map(async (p) => p.r.view.ts ?? new Map([...(await store.records(p.r.view.roomId, p.matches))].map(([pos, r]) => [pos, r.ts]))));
  // Merge: the newest head (origin_server_ts, then position) goes first; each room's list is by position.
  const heads = perRoom.map((p, i) => ({ p, i, at: 0, ts: (pos: number) => records[i]!.get(pos) ?? 0 }));
  const out: Candidate[] = [];
  const nextBelow = below ? [...below] : plan.tops.map((t) => t + 1);
  while (out.length < want) {
    let best: (typeof heads)[number] | null = null;
    for (const h of heads) {
      if (h.at >= h.p.matches.length) continue;
      if (!best) {
        best = h;
        continue;
      }
      const a = h.p.matches[h.at]!;
      const b = best.p.matches[best.at]!;
      const ta = h.ts(a);
      const tb = best.ts(b);
      if (ta > tb || (ta === tb && (a > b || (a === b && h.p.r.view.room < best.p.r.view.room)))) best = h;
    }
    if (!best) break;
    const pos = best.p.matches[best.at++]!;
    out.push({ room: best.p.r.view.room, pos, score: 0 });
    nextBelow[best.p.r.view.room] = pos;
  }
  const exhausted = heads.every((h) => h.p.exhausted && h.at >= h.p.matches.length);
  const count = allRead && !below ? perRoom.reduce((n, p) => n + p.total, 0) : estimate(rooms);
  return { candidates: out, cursor: { below: nextBelow }, exhausted, count };
}

/** Whether ranked result a comes before b: higher score, then newer, then the room listed first. */
function before(a: Candidate, b: Candidate): boolean {
  return a.score > b.score || (a.score === b.score && (a.pos > b.pos || (a.pos === b.pos && a.room < b.room)));
}

interface RankBlock {
  r: Prepared;
  word: number;
  /** Entries [from, to) of the word's postings. */
  from: number;
  to: number;
  bound: number;
}

/** A document's key among a search's: its room's index and its position. */
const docKey = (room: number, pos: number) => room * 2 ** 32 + pos;

/**
 * `rank`: the best-scoring matches after `after`. Long driving words come with their best postings
 * (the postings of highest impact, and a bound of all their others): those are scored first; then
 * blocks are read in order of their best possible score — a block's bounds (highest frequency,
 * shortest length), capped by its word's bound of the postings not among its best — and reading
 * stops when no unread block can beat the page's last result. A first page of a common word is
 * then often found from the best postings alone.
 */
async function ranked(store: SearchIndexStore, plan: SearchPlan, rooms: Prepared[], after: { score: number; pos: number; room: number } | null, want: number): Promise<CandidateBatch> {
  const keyAllowed = [0, 1, 2, 3].map((k) => plan.keys.includes(k));
  // Per room: the most the looked-up terms can add to a score.
  const extra = rooms.map((r) => {
    let sum = 0;
    for (const { term, bufs } of r.lookups) {
      let best = 0;
      for (const b of bufs) for (let o = 0; o < b.length; o += POSTING_BYTES) best = Math.max(best, weight(plan, term, b[o + 4]! >> 2, b[o + 5]!));
      sum += best;
    }
    return sum;
  });
  /** Every document scored, at its best score so far (a prefix's completions may each hold it). */
  const best = new Map<number, Candidate>();
  /** Documents scored (for an exact count when everything was read) and those dropped from `best` as out of the page. */
  const scored = new Set<number>();
  const dropped = new Set<number>();
  const tfs = new Array<number>(plan.terms.length).fill(0);
  /** Score one posting of a room's driver (entry `o` of `buf`); documents the search leaves out are skipped. */
  const score = (r: Prepared, buf: Buffer, o: number) => {
    const { view } = r;
    const pos = buf.readInt32BE(o);
    if (pos > view.top || view.dead.has(pos)) return;
    const tk = buf[o + 4]!;
    if (!keyAllowed[tk & 3]) return;
    const found = lookUp(r.lookups, pos);
    if (!found) return;
    // Summed in the query's term order, so a document scores the same whichever term drives.
    tfs[r.driver] = tk >> 2;
    r.lookups.forEach((l, j) => {
      tfs[l.term] = found[j]!;
    });
    const length = buf[o + 5]!;
    let sum = 0;
    for (let t = 0; t < tfs.length; t++) sum += weight(plan, t, tfs[t]!, length);
    const key = docKey(view.room, pos);
    scored.add(key);
    const had = best.get(key);
    if (!had) {
      best.set(key, { room: view.room, pos, score: sum });
      dropped.delete(key);
    } else if (had.score < sum) had.score = sum;
  };
  const blocks: RankBlock[] = [];
  /** Whether some room's driver has several words (a prefix): its documents' scores are the best of its words' read so far. */
  let several = false;
  await Promise.all(
    rooms.map(async (r, ri) => {
      const term = r.view.terms[r.driver]!;
      if (term.words.length > 1) several = true;
      await Promise.all(
        term.words.map(async (_, wi) => {
          const n = term.counts[wi]!;
          const top = term.tops[wi] ?? null;
          // The most a posting not among the word's best can score (no best postings: no bound).
          let rest = Number.POSITIVE_INFINITY;
          let bounds: Buffer;
          if (top) {
            rest = Number.NEGATIVE_INFINITY;
            for (const [tf, length] of top.best.front) rest = Math.max(rest, weight(plan, r.driver, tf, length));
            for (let o = 0; o + POSTING_BYTES <= top.best.entries.length; o += POSTING_BYTES) score(r, top.best.entries, o);
            bounds = top.bounds;
          } else if (n > BLOCK || term.postings[wi]) {
            // Bounds kept for a long word, or worked out from postings read with the first look
            // (so a prefix's many short completions are scored only when they can enter the page).
            bounds = await boundsOf(store, r.view, r.driver, wi);
          } else bounds = Buffer.alloc(0);
          for (let b = 0; b * BLOCK < n; b++) {
            // A block without bounds (a short list, or bounds being rewritten) is read first, unless its word's best postings bound the rest.
            const bound = Math.min(rest, 2 * b + 1 < bounds.length ? weight(plan, r.driver, bounds[2 * b]!, bounds[2 * b + 1]!) : Number.POSITIVE_INFINITY);
            // Nothing but best postings (all scored already) there.
            if (bound === Number.NEGATIVE_INFINITY) continue;
            blocks.push({ r, word: wi, from: b * BLOCK, to: Math.min(n, (b + 1) * BLOCK), bound: bound + extra[ri]! });
          }
        }),
      );
    }),
  );
  blocks.sort((a, b) => b.bound - a.bound);
  const order = (a: Candidate, b: Candidate) => (before(a, b) ? -1 : before(b, a) ? 1 : 0);
  const pending = () => [...best.values()].filter((c) => !after || before(after, c));
  // A document of a prefix with several words may have been scored by one word and not yet by a
  // better one: after a cursor, that lower score could pass for one after it while its true one
  // was on an earlier page, so nothing is dropped then (a first page may drop: scores only grow).
  const mayDrop = !(several && after);
  let i = 0;
  let stopped = false;
  for (;;) {
    if (i >= blocks.length || Number.isFinite(blocks[i]!.bound)) {
      // Past the blocks without bounds every document read has its final score (or, for a prefix,
      // one that no unread block can raise above the page): keep the best `want`, stop if no block can beat them.
      const open = pending().sort(order);
      if (mayDrop) {
        best.clear();
        for (const c of open.slice(0, want)) best.set(docKey(c.room, c.pos), c);
        for (const c of open.slice(want)) dropped.add(docKey(c.room, c.pos));
      }
      if (i >= blocks.length) break;
      if (open.length >= want && blocks[i]!.bound < open[want - 1]!.score) {
        stopped = true;
        break;
      }
    }
    const batch = blocks.slice(i, i + RANK_BATCH);
    i += batch.length;
    const bufs = await Promise.all(batch.map((b) => postingsOf(store, b.r.view, b.r.driver, b.word, b.from, b.to)));
    batch.forEach((b, k) => {
      const buf = bufs[k]!;
      for (let o = 0; o + POSTING_BYTES <= buf.length; o += POSTING_BYTES) score(b.r, buf, o);
    });
  }
  const open = pending().sort(order);
  const kept = open.slice(0, want);
  const last = kept[kept.length - 1];
  const exhausted = !stopped && open.length + dropped.size <= want;
  const count = !stopped && !after ? scored.size : estimate(rooms);
  return { candidates: kept, cursor: last ? { score: last.score, pos: last.pos, room: last.room } : after, exhausted, count };
}
