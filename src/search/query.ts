/**
 * Running a query over the search index of some rooms: every query term must occur in an event
 * (the last one as a prefix too), each match scored by BM25 with the document frequencies and
 * lengths of all the rooms searched together (so ranks compare across rooms).
 */
import { bm25, parseQuery, type ParsedQuery } from '../protocol/search-text';
import type { KeyCode, Posting, SearchIndexStore } from './index-store';

/** At most this many indexed words count as completions of a prefix term in one room. */
const PREFIX_EXPANSIONS = 100;
/** Rooms read at once. */
const ROOM_CONCURRENCY = 16;

export interface SearchMatch {
  roomId: string;
  eventId: string;
  score: number;
  pos: number;
  ts: number;
}

interface RoomMatches {
  roomId: string;
  documents: number;
  totalLength: number;
  /** Per query term, how many of the room's documents have it. */
  df: number[];
  /** Documents with every term: per term its frequency, and the document's length and place. */
  hits: { eventId: string; tf: number[]; length: number; pos: number; ts: number }[];
}

async function matchRoom(store: SearchIndexStore, roomId: string, query: ParsedQuery, keys: ReadonlySet<KeyCode>): Promise<RoomMatches> {
  const { documents, totalLength } = await store.stats(roomId);
  const empty: RoomMatches = { roomId, documents, totalLength, df: query.terms.map(() => 0), hits: [] };
  if (documents <= 0) return empty;
  const lists: Map<string, Posting>[] = [];
  for (let i = 0; i < query.terms.length; i++) {
    const term = query.terms[i]!;
    if (i === query.terms.length - 1 && query.lastIsPrefix) {
      // A prefix term: the union of its completions' postings (a document's best frequency counts).
      const words = await store.termsWithPrefix(roomId, term, PREFIX_EXPANSIONS);
      const merged = new Map<string, Posting>();
      for (const postings of await Promise.all(words.map((w) => store.postings(roomId, w)))) {
        for (const [id, p] of postings) {
          const had = merged.get(id);
          if (!had || had.tf < p.tf) merged.set(id, p);
        }
      }
      lists.push(merged);
    } else {
      lists.push(await store.postings(roomId, term));
    }
    if (lists[i]!.size === 0) return empty;
  }
  const df = lists.map((l) => l.size);
  // Walk the shortest list, look the others up.
  const order = lists.map((l, i) => i).sort((a, b) => lists[a]!.size - lists[b]!.size);
  const hits: RoomMatches['hits'] = [];
  for (const [eventId, first] of lists[order[0]!]!) {
    if (!keys.has(first.key)) continue;
    const tf: number[] = new Array(lists.length).fill(0);
    let all = true;
    for (const i of order) {
      const p = lists[i]!.get(eventId);
      if (!p) {
        all = false;
        break;
      }
      tf[i] = p.tf;
    }
    if (all) hits.push({ eventId, tf, length: first.length, pos: first.pos, ts: first.ts });
  }
  return { roomId, documents, totalLength, df, hits };
}

/** Every event of `roomIds` matching `searchTerm` under one of `keys`, scored; unordered. */
export async function searchRooms(store: SearchIndexStore, roomIds: readonly string[], searchTerm: string, keys: ReadonlySet<KeyCode>): Promise<{ query: ParsedQuery; matches: SearchMatch[] }> {
  const query = parseQuery(searchTerm);
  if (query.terms.length === 0) return { query, matches: [] };
  const rooms: RoomMatches[] = [];
  for (let i = 0; i < roomIds.length; i += ROOM_CONCURRENCY) {
    rooms.push(...(await Promise.all(roomIds.slice(i, i + ROOM_CONCURRENCY).map((r) => matchRoom(store, r, query, keys)))));
  }
  let documents = 0;
  let totalLength = 0;
  const df = query.terms.map(() => 0);
  for (const r of rooms) {
    documents += r.documents;
    totalLength += r.totalLength;
    r.df.forEach((n, i) => {
      df[i]! += n;
    });
  }
  const corpus = { documents, averageLength: documents > 0 ? totalLength / documents : 0 };
  const matches: SearchMatch[] = [];
  for (const r of rooms) {
    for (const h of r.hits) {
      const score = bm25(
        h.tf.map((tf, i) => ({ tf, df: df[i]! })),
        h.length,
        corpus,
      );
      matches.push({ roomId: r.roomId, eventId: h.eventId, score, pos: h.pos, ts: h.ts });
    }
  }
  return { query, matches };
}

/** `rank`: best score first (newer first among equals); `recent`: newest first (origin_server_ts, then timeline position). */
export function orderMatches(matches: SearchMatch[], orderBy: 'rank' | 'recent'): SearchMatch[] {
  const recent = (a: SearchMatch, b: SearchMatch) => b.ts - a.ts || b.pos - a.pos || (a.eventId < b.eventId ? -1 : a.eventId > b.eventId ? 1 : 0);
  return [...matches].sort(orderBy === 'rank' ? (a, b) => b.score - a.score || recent(a, b) : recent);
}
