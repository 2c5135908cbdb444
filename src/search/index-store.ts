/**
 * The search index in Redis (keys: src/store/keys.ts `searchData`, on each room's shard): what
 * the search reader writes for an event, and what `POST /search` reads for a query.
 *
 * Format 2, compact: per room and term, one string of 6-byte postings sorted by timeline position
 * (position, frequency and key, length), so a query reads a term's newest postings, or any block
 * of them, with one GETRANGE; per room, the documents' 16-byte records packed 64 positions to a
 * hash field. No per-document term lists are kept: to take a document's old terms out (an edit,
 * a redaction), the stored event that carried its content is tokenised again. A redacted
 * message's own text is gone by then, so its postings stay (skipped at query time through the
 * room's small set of dead positions) until the room is rebuilt.
 *
 * Writes go through search-index-5.lua, which makes each of them idempotent (see the script); new
 * documents (the search reader's usual case) go many to a call (`indexNew`). It writes nothing of a
 * room whose members hash is gone (a room being purged: actors/room.ts decidePurgeBegin), so the
 * search reader, or a rebuild, running behind a purge leaves no key of the room behind the purge's
 * scan; the hash is on the room's shard, in the same hash slot as the index.
 */
import { isJsonObject, type JsonObject, type JsonValue } from '../protocol/json';
import { termFrequencies } from '../protocol/search-text';
import { legacySearchData, roomData, searchData, searchShardData, type KeySpace } from '../store/keys';
import { isCluster, runScript, runScriptBuffer, type RedisClient } from '../store/redis';
import { RoomReader, servableToClients } from '../store/room-reader';
import type { RoomOutput } from '../rooms/model';
import { shardOf } from '../store/shards';

/** The searchable keys (`keys` of the request) and the code each is indexed under. */
export const SEARCH_KEYS = { 'content.body': 'b', 'content.name': 'n', 'content.topic': 't' } as const;
export type SearchKey = keyof typeof SEARCH_KEYS;
export type KeyCode = (typeof SEARCH_KEYS)[SearchKey];
/** A key code as stored in a posting's low two bits. */
export const KEY_BITS: Record<KeyCode, number> = { b: 0, n: 1, t: 2 };

/** Bytes per posting: int32 position, uint8 `tf << 2 | key`, uint8 length. */
export const POSTING_BYTES = 6;
/** Postings per block (a block's bounds are kept once a term has more than one block). */
export const BLOCK = 128;
const RECORD_BYTES = 16;
/** At most this many documents, and about this many script arguments, in one `indexNew` script call (each call blocks Redis while it runs). */
const BATCH_DOCS = 64;
const BATCH_ARGS = 4_000;
const RECORDS_PER_BUCKET = 64;

/** The text an event is found by, and under which key: messages by body, name and topic events by those (as Synapse indexes them). */
export function searchableText(event: JsonObject): { key: KeyCode; text: string } | null {
  const content = isJsonObject(event.content as JsonValue) ? (event.content as JsonObject) : null;
  if (!content) return null;
  const field = (name: string) => (typeof content[name] === 'string' ? (content[name] as string) : null);
  let found: { key: KeyCode; text: string | null };
  if (event.type === 'm.room.message') found = { key: 'b', text: field('body') };
  else if (event.type === 'm.room.name' && event.state_key === '') found = { key: 'n', text: field('name') };
  else if (event.type === 'm.room.topic' && event.state_key === '') found = { key: 't', text: field('topic') };
  else return null;
  return found.text === null ? null : { key: found.key, text: found.text };
}

/** An edit (`m.replace` with `m.new_content`): the event it edits and its new content. */
export function replacementOf(event: JsonObject): { target: string; newContent: JsonObject } | null {
  const content = isJsonObject(event.content as JsonValue) ? (event.content as JsonObject) : null;
  const rel = content && isJsonObject(content['m.relates_to'] as JsonValue) ? (content['m.relates_to'] as JsonObject) : null;
  if (!rel || rel.rel_type !== 'm.replace' || typeof rel.event_id !== 'string') return null;
  const newContent = content?.['m.new_content'];
  if (!isJsonObject(newContent as JsonValue)) return null;
  return { target: rel.event_id, newContent: newContent as JsonObject };
}

export interface IndexedDocument {
  roomId: string;
  /** Timeline position of the event whose content this is (the event's own, or its edit's). */
  sourcePos: number;
  /** The document: the event's timeline position. */
  pos: number;
  ts: number;
  key: KeyCode;
  text: string;
}

/** A document's record. */
export interface DocRecord {
  pos: number;
  /** Position of the event whose content is indexed. */
  source: number;
  ts: number;
  /** Length in words (at most 255). */
  length: number;
  redacted: boolean;
  /** Whether its terms are in the postings (and it counts in the room's totals). */
  counted: boolean;
  flags: number;
}

function parseRecords(buf: Buffer | null): DocRecord[] {
  const out: DocRecord[] = [];
  if (!buf) return out;
  for (let i = 0; i + RECORD_BYTES <= buf.length; i += RECORD_BYTES) {
    const flags = buf.readUInt8(i + 15);
    out.push({ pos: buf.readInt32BE(i), source: buf.readInt32BE(i + 4), ts: buf.readUIntBE(i + 8, 6), length: buf.readUInt8(i + 14), redacted: (flags & 1) !== 0, counted: (flags & 2) !== 0, flags });
  }
  return out;
}

const bucketOf = (pos: number) => String(Math.floor(pos / RECORDS_PER_BUCKET));

/** How the terms indexed now for a document are found: by tokenising its content's event again (null: that text is gone). */
export type TermsOf = (record: DocRecord) => Promise<string[] | null>;

export class SearchIndexStore {
  constructor(
    private readonly redis: RedisClient,
    private readonly keys: KeySpace,
    private readonly roomShards: number,
  ) {}

  private name(roomId: string, name: string): string {
    return this.keys.shard('room', shardOf(roomId, this.roomShards)).data(name);
  }

  /** The room's index keys the script names (docs, terms, stats, dead). */
  private indexKeys(roomId: string): string[] {
    return [this.name(roomId, searchData.docs(roomId)), this.name(roomId, searchData.terms(roomId)), this.name(roomId, searchData.stats(roomId)), this.name(roomId, searchData.dead(roomId))];
  }

  /** The script's KEYS: the index keys, then the room's members hash (its purge guard). */
  private scriptKeys(roomId: string): string[] {
    return [...this.indexKeys(roomId), this.name(roomId, roomData.members(roomId))];
  }

  private prefixes(roomId: string): string[] {
    return [this.name(roomId, searchData.postingsPrefix(roomId)), this.name(roomId, searchData.blockBoundsPrefix(roomId)), this.name(roomId, searchData.topPrefix(roomId))];
  }

  /** A document's record, or null when it was never indexed. */
  async record(roomId: string, pos: number): Promise<DocRecord | null> {
    const buf = await this.redis.hgetBuffer(this.name(roomId, searchData.docs(roomId)), bucketOf(pos));
    return parseRecords(buf).find((r) => r.pos === pos) ?? null;
  }

  /** The records of some documents of a room (those that exist). */
  async records(roomId: string, positions: readonly number[]): Promise<Map<number, DocRecord>> {
    const buckets = [...new Set(positions.map(bucketOf))];
    const out = new Map<number, DocRecord>();
    if (buckets.length === 0) return out;
    const want = new Set(positions);
    const bufs = await this.redis.hmgetBuffer(this.name(roomId, searchData.docs(roomId)), ...buckets);
    for (const buf of bufs) for (const r of parseRecords(buf)) if (want.has(r.pos)) out.set(r.pos, r);
    return out;
  }

  /**
   * Compare-and-set through the script: read the record, find the terms indexed now, write;
   * again if the record changed in between (another writer of the same document).
   */
  private async write(roomId: string, pos: number, termsOf: TermsOf, tail: (record: DocRecord | null) => (string | number)[] | null, op: 'index' | 'remove'): Promise<boolean> {
    for (let attempt = 0; attempt < 20; attempt++) {
      const record = await this.record(roomId, pos);
      if (record?.redacted) return false;
      const rest = tail(record);
      if (rest === null) return false;
      const old = record?.counted ? await termsOf(record) : [];
      const args: (string | number)[] = [op, ...this.prefixes(roomId), pos, record ? `${record.source}:${record.flags}` : '', old === null ? -1 : old.length, ...(old ?? []), ...rest];
      const result = Number(await runScript(this.redis, 'searchIndex', this.scriptKeys(roomId), args));
      if (result !== -1) return result === 1;
    }
    throw new Error(`search index: document ${pos} of ${roomId} kept changing`);
  }

  /** Index a document's text (replacing older content of the same event; newer content already there wins). */
  async index(doc: IndexedDocument, termsOf: TermsOf): Promise<boolean> {
    const { terms, length } = termFrequencies(doc.text);
    const rest: (string | number)[] = [doc.sourcePos, doc.ts, KEY_BITS[doc.key], length];
    for (const [term, tf] of terms) rest.push(term, tf);
    return this.write(doc.roomId, doc.pos, termsOf, (record) => (record && record.source >= doc.sourcePos ? null : rest), 'index');
  }

  /**
   * Index new documents, each by its own content (`sourcePos` = `pos`), as `index` would one by
   * one: a document the room has a record for already (indexed before — a redelivered entry — or
   * edited or redacted since) is left as it is. One script call per room for up to
   * BATCH_DOCS documents or BATCH_ARGS arguments, all sent at once. Returns how many were indexed.
   */
  async indexNew(docs: readonly IndexedDocument[]): Promise<number> {
    const byRoom = new Map<string, IndexedDocument[]>();
    for (const d of docs) {
      if (d.sourcePos !== d.pos) throw new Error('search index: indexNew takes documents by their own content');
      const list = byRoom.get(d.roomId);
      if (list) list.push(d);
      else byRoom.set(d.roomId, [d]);
    }
    const calls: Promise<unknown>[] = [];
    for (const [roomId, list] of byRoom) {
      let args: (string | number)[] = [];
      let n = 0;
      const flush = () => {
        if (n === 0) return;
        calls.push(runScript(this.redis, 'searchIndex', this.scriptKeys(roomId), ['batch', ...this.prefixes(roomId), ...args]));
        args = [];
        n = 0;
      };
      for (const d of list) {
        const { terms, length } = termFrequencies(d.text);
        if (n >= BATCH_DOCS || args.length + 5 + 2 * terms.size > BATCH_ARGS) flush();
        args.push(d.pos, d.ts, KEY_BITS[d.key], length, terms.size);
        for (const [term, tf] of terms) args.push(term, tf);
        n++;
      }
      flush();
    }
    const done = await Promise.all(calls);
    return done.reduce<number>((sum, x) => sum + Number(x), 0);
  }

  /** Take a document out of the index for good (its event was redacted). */
  async remove(roomId: string, pos: number, termsOf: TermsOf): Promise<boolean> {
    return this.write(roomId, pos, termsOf, () => [], 'remove');
  }

  /** A room's document count, total length in words, and newest indexed position. */
  async stats(roomId: string): Promise<{ documents: number; totalLength: number; top: number }> {
    const [n, l, p] = await this.redis.hmget(this.name(roomId, searchData.stats(roomId)), 'n', 'l', 'p');
    return { documents: Number(n ?? 0), totalLength: Number(l ?? 0), top: p === null ? -1 : Number(p) };
  }

  /** Terms of a room starting with `prefix` (at most `limit`, in byte order). */
  async termsWithPrefix(roomId: string, prefix: string, limit: number): Promise<string[]> {
    return this.redis.zrangebylex(this.name(roomId, searchData.terms(roomId)), `[${prefix}`, `[${prefix}\u{10FFFF}`, 'LIMIT', 0, limit);
  }

  /** How many postings a term has in a room. */
  async postingCount(roomId: string, term: string): Promise<number> {
    return (await this.redis.strlen(this.name(roomId, `${searchData.postingsPrefix(roomId)}${term}`))) / POSTING_BYTES;
  }

  /** A term's postings in a room, entries `from` (inclusive) to `to` (exclusive); all of them by default. */
  async postings(roomId: string, term: string, from = 0, to = -1): Promise<Buffer> {
    const key = this.name(roomId, `${searchData.postingsPrefix(roomId)}${term}`);
    if (from === 0 && to < 0) return (await this.redis.getBuffer(key)) ?? Buffer.alloc(0);
    if (to <= from) return Buffer.alloc(0);
    return this.redis.getrangeBuffer(key, from * POSTING_BYTES, to * POSTING_BYTES - 1);
  }

  /** A term's block bounds in a room (2 bytes a block: highest frequency, shortest length); empty for a single block. */
  async blockBounds(roomId: string, term: string): Promise<Buffer> {
    return (await this.redis.getBuffer(this.name(roomId, `${searchData.blockBoundsPrefix(roomId)}${term}`))) ?? Buffer.alloc(0);
  }

  /**
   * What a search first needs of some rooms (search-view-2.lua: one call on a single Redis, one per room shard on a Cluster): per room its
   * totals, dead positions and, per term, its words (a last prefix term's most frequent
   * completions, at most `expansions`) with their posting counts; with `mode` 'recent' or 'rank'
   * also the postings of words with at most `inlineMax` (a term not driving cut down to the
   * driver's positions when the driver has at most `inlineMax`), and for 'rank' the driver's long
   * words' best postings and block bounds (their postings are then left out).
   */
  async views(roomIds: readonly string[], terms: readonly string[], lastIsPrefix: boolean, expansions: number, inlineMax: number, mode: 'counts' | 'recent' | 'rank' = 'recent'): Promise<RoomTerms[]> {
    // On a Redis Cluster a script reads one slot: a call per room shard. A single Redis takes them all in one.
    const cluster = isCluster(this.redis);
    const groups = new Map<number, number[]>();
    roomIds.forEach((roomId, i) => {
      const s = cluster ? shardOf(roomId, this.roomShards) : 0;
      const list = groups.get(s);
      if (list) list.push(i);
      else groups.set(s, [i]);
    });
    const out = new Array<RoomTerms>(roomIds.length);
    await Promise.all(
      [...groups.values()].map(async (indexes) => {
        const args: (string | number)[] = [terms.length, lastIsPrefix ? 1 : 0, expansions, inlineMax, { counts: 0, recent: 1, rank: 2 }[mode], ...terms];
        for (const i of indexes) {
          const roomId = roomIds[i]!;
          const shardKeys = this.keys.shard('room', shardOf(roomId, this.roomShards));
          args.push(
            this.name(roomId, searchData.stats(roomId)),
            this.name(roomId, searchData.dead(roomId)),
            this.name(roomId, searchData.terms(roomId)),
            this.name(roomId, searchData.postingsPrefix(roomId)),
            this.name(roomId, searchData.topPrefix(roomId)),
            this.name(roomId, searchData.blockBoundsPrefix(roomId)),
            this.name(roomId, legacySearchData.stats(roomId)),
            roomId,
            shardKeys.data(searchShardData.format),
            shardKeys.data(searchShardData.pending),
          );
        }
        const first = roomIds[indexes[0]!]!;
        const routing = this.keys.shard('room', shardOf(first, this.roomShards)).data(searchShardData.format);
        const reply = (await runScriptBuffer(this.redis, 'searchView', [routing], args)) as [number, number, number, Buffer[], [Buffer[], number[], (Buffer | number)[], ([Buffer, Buffer] | number)[]][], number, number][];
        await Promise.all(
          reply.map(async ([documents, totalLength, top, dead, perTerm, incomplete, driver], k) => {
            const i = indexes[k]!;
            out[i] = incomplete
              ? await this.scan(roomIds[i]!, terms, lastIsPrefix, expansions)
              : {
                  documents,
                  totalLength,
                  top,
                  dead: new Set(dead.map((b) => Number(b.toString()))),
                  driver: driver - 1,
                  terms: perTerm.map(([words, counts, postings, tops]) => ({
                    words: words.map((w) => w.toString('utf8')),
                    counts,
                    postings: postings.map((p) => (typeof p === 'number' ? null : p)),
                    tops: tops.map((t) => (typeof t === 'number' ? null : { best: parseTop(t[0]), bounds: t[1] })),
                  })),
                };
          }),
        );
      }),
    );
    return out;
  }

  /**
   * A room whose index is not complete (format 1 still, or being rebuilt): what its index will
   * hold, from its stored events — the documents a rebuild indexes (src/search/rebuild.ts: each
   * message, name or topic by its own text or its sender's latest edit, redacted ones left out),
   * with every word's postings in memory. It reads the room's whole timeline: only while the
   * search reader migrates the room.
   */
  private async scan(roomId: string, terms: readonly string[], lastIsPrefix: boolean, expansions: number): Promise<RoomTerms> {
    const rooms = new RoomReader(this.redis, this.keys, this.roomShards);
    const docs = new Map<number, { key: KeyCode; text: string; ts: number }>();
    /** The room's messages so far, for the edits that follow them. */
    const messages = new Map<string, { pos: number; sender: unknown; isEdit: boolean; ts: number }>();
    const redacted = new Set<number>();
    let top = -1;
    let from: number | null = null;
    for (;;) {
      const page = await rooms.timeline(roomId, 'f', from, 500);
      for (const e of page.events) {
        top = Math.max(top, e.pos);
        if (!servableToClients(e)) continue;
        if (e.redactedBy) {
          redacted.add(e.pos);
          docs.delete(e.pos);
          continue;
        }
        const event = e.event;
        const ts = typeof event.origin_server_ts === 'number' ? event.origin_server_ts : 0;
        const edit = event.type === 'm.room.message' ? replacementOf(event) : null;
        if (event.type === 'm.room.message') messages.set(e.eventId, { pos: e.pos, sender: event.sender, isEdit: edit !== null, ts });
        if (edit) {
          // As the reader: only an edit of a plain message by its own sender counts.
          const original = messages.get(edit.target);
          const found = searchableText({ type: 'm.room.message', content: edit.newContent });
          if (!original || redacted.has(original.pos) || original.isEdit || original.sender !== event.sender || !found) continue;
          docs.set(original.pos, { key: found.key, text: found.text, ts: original.ts });
          continue;
        }
        const found = searchableText(event);
        if (found) docs.set(e.pos, { key: found.key, text: found.text, ts });
      }
      if (page.next === null) break;
      from = page.next;
    }
    let documents = 0;
    let totalLength = 0;
    const ts = new Map<number, number>();
    const perTerm = terms.map(() => new Map<string, number[]>());
    for (const [pos, d] of [...docs].sort((a, b) => a[0] - b[0])) {
      const { terms: tfs, length } = termFrequencies(d.text);
      if (tfs.size === 0) continue;
      documents++;
      totalLength += Math.min(length, 255);
      ts.set(pos, d.ts);
      terms.forEach((t, i) => {
        const prefix = i === terms.length - 1 && lastIsPrefix;
        for (const [word, tf] of tfs) {
          if (word !== t && !(prefix && word.startsWith(t))) continue;
          const list = perTerm[i]!.get(word) ?? [];
          list.push(pos, Math.min(tf, 63) * 4 + KEY_BITS[d.key], Math.min(length, 255));
          perTerm[i]!.set(word, list);
        }
      });
    }
    return {
      documents,
      totalLength,
      top,
      dead: new Set(),
      ts,
      terms: perTerm.map((byWord) => {
        // As the view script: the most frequent completions, in byte order.
        const byBytes = (a: string, b: string) => Buffer.compare(Buffer.from(a), Buffer.from(b));
        const words = [...byWord.keys()]
          .sort((a, b) => byWord.get(b)!.length - byWord.get(a)!.length || byBytes(a, b))
          .slice(0, expansions)
          .sort(byBytes);
        const postings = words.map((w) => {
          const list = byWord.get(w)!;
          const buf = Buffer.alloc((list.length / 3) * POSTING_BYTES);
          for (let j = 0; j < list.length; j += 3) {
            const o = (j / 3) * POSTING_BYTES;
            buf.writeInt32BE(list[j]!, o);
            buf[o + 4] = list[j + 1]!;
            buf[o + 5] = list[j + 2]!;
          }
          return buf;
        });
        return { words, counts: postings.map((p) => p.length / POSTING_BYTES), postings };
      }),
    };
  }

  /** Positions of a room's redacted documents whose postings are still there. */
  async deadPositions(roomId: string): Promise<Set<number>> {
    return new Set((await this.redis.smembers(this.name(roomId, searchData.dead(roomId)))).map(Number));
  }

  /** The event ids at some timeline positions of a room. */
  async eventIdsAt(roomId: string, positions: readonly number[]): Promise<Map<number, string>> {
    const key = this.name(roomId, roomData.timeline(roomId));
    const found = await Promise.all(positions.map((p) => this.redis.zrangebyscore(key, p, p)));
    const out = new Map<number, string>();
    positions.forEach((p, i) => {
      const id = found[i]?.[0];
      if (id !== undefined) out.set(p, id);
    });
    return out;
  }

  /** Drop a room's whole index (before a rebuild), in this format and in the first one. */
  async clearRoom(roomId: string): Promise<void> {
    const [postings, bounds, tops] = this.prefixes(roomId);
    const terms = await this.redis.zrange(this.name(roomId, searchData.terms(roomId)), 0, -1);
    for (let i = 0; i < terms.length; i += 500) await this.redis.del(...terms.slice(i, i + 500).flatMap((t) => [`${postings}${t}`, `${bounds}${t}`, `${tops}${t}`]));
    await this.redis.del(...this.indexKeys(roomId));
    const legacyTerms = await this.redis.zrange(this.name(roomId, legacySearchData.terms(roomId)), 0, -1);
    const legacyPrefix = this.name(roomId, legacySearchData.postingsPrefix(roomId));
    for (let i = 0; i < legacyTerms.length; i += 500) await this.redis.del(...legacyTerms.slice(i, i + 500).map((t) => `${legacyPrefix}${t}`));
    await this.redis.del(this.name(roomId, legacySearchData.docs(roomId)), this.name(roomId, legacySearchData.terms(roomId)), this.name(roomId, legacySearchData.stats(roomId)));
  }
}

/** A room as a search first sees it (`SearchIndexStore.views`). */
export interface RoomTerms {
  documents: number;
  totalLength: number;
  /** Newest indexed position (-1: none). */
  top: number;
  dead: Set<number>;
  /** Each document's origin_server_ts, when the room was read from its stored events (its index is not complete). */
  ts?: Map<number, number>;
  /** The term that drives in this room (the one with the fewest postings; the others are cut down to its positions when it has few), when the view script chose it. */
  driver?: number;
  /**
   * Per query term: the room's words for it, their posting counts, their postings when few (else
   * null), and (for the driver of a ranked search) their best postings and block bounds when long.
   */
  terms: { words: string[]; counts: number[]; postings: (Buffer | null)[]; tops?: ({ best: TopPostings; bounds: Buffer } | null)[] }[];
}

/** A long term's best postings in a room (`searchData.topPrefix`). */
export interface TopPostings {
  /** (frequency, length) pairs: every posting not in `entries` has a lower or equal frequency and a greater or equal length than one of them. */
  front: [number, number][];
  /** The best postings (6-byte entries, in no order). */
  entries: Buffer;
}

export function parseTop(buf: Buffer): TopPostings {
  const n = buf[1] ?? 0;
  const front: [number, number][] = [];
  for (let j = 0; j < n; j++) front.push([buf[4 + 2 * j]!, buf[5 + 2 * j]!]);
  return { front, entries: buf.subarray(4 + 2 * n) };
}

/** A posting, decoded. */
export interface Posting {
  pos: number;
  tf: number;
  key: number;
  length: number;
}

export function postingAt(buf: Buffer, i: number): Posting {
  const o = i * POSTING_BYTES;
  const tk = buf[o + 4]!;
  return { pos: buf.readInt32BE(o), tf: tk >> 2, key: tk & 3, length: buf[o + 5]! };
}

/** The distinct terms of an event's searchable content (as the reader indexed it), or null when it has none left. */
function termsOfEvent(event: JsonObject | undefined, asEdit: boolean): string[] | null {
  if (!event) return null;
  let found: { text: string } | null;
  if (asEdit) {
    const edit = replacementOf(event);
    found = edit ? searchableText({ type: 'm.room.message', content: edit.newContent }) : null;
  } else {
    found = searchableText(event);
  }
  return found ? [...termFrequencies(found.text).terms.keys()] : null;
}

/** The TermsOf of a room: the record's source event, read from the room's timeline and tokenised again. */
export function storedTerms(store: SearchIndexStore, rooms: RoomReader, roomId: string): TermsOf {
  return async (record) => {
    const id = (await store.eventIdsAt(roomId, [record.source])).get(record.source);
    const e = id ? await rooms.event(roomId, id) : null;
    if (!e || e.redactedBy) return null;
    return termsOfEvent(e.event, record.source !== record.pos);
  };
}

/**
 * A room output that is a new document by its own content (a message, name or topic that is
 * neither an edit nor a redaction), which `SearchIndexStore.indexNew` takes many at a time; null
 * for every other output (those go through `indexRoomOutput`).
 */
export function newDocumentOf(out: Pick<RoomOutput, 'roomId' | 'pos' | 'event' | 'redacted'>): IndexedDocument | null {
  if (out.redacted) return null;
  const event = out.event;
  if (event.type === 'm.room.message' && replacementOf(event)) return null;
  const found = searchableText(event);
  if (!found) return null;
  const ts = typeof event.origin_server_ts === 'number' ? event.origin_server_ts : 0;
  return { roomId: out.roomId, sourcePos: out.pos, pos: out.pos, ts, key: found.key, text: found.text };
}

/** What one room output changes in the index (the reader's step, and the rebuild's). */
export async function indexRoomOutput(store: SearchIndexStore, rooms: RoomReader, out: Pick<RoomOutput, 'roomId' | 'eventId' | 'pos' | 'event' | 'redacted'>): Promise<void> {
  const termsOf = storedTerms(store, rooms, out.roomId);
  if (out.redacted) {
    const target = await rooms.event(out.roomId, out.redacted);
    if (target) await store.remove(out.roomId, target.pos, termsOf);
    return;
  }
  const event = out.event;
  const ts = typeof event.origin_server_ts === 'number' ? event.origin_server_ts : 0;
  const edit = event.type === 'm.room.message' ? replacementOf(event) : null;
  if (edit) {
    // Only an edit of a plain message by its own sender counts (as clients apply edits).
    const original = await rooms.event(out.roomId, edit.target);
    if (!original || original.redactedBy || original.event.type !== 'm.room.message' || original.event.sender !== event.sender || replacementOf(original.event)) return;
    const found = searchableText({ type: 'm.room.message', content: edit.newContent });
    if (!found) return;
    const originalTs = typeof original.event.origin_server_ts === 'number' ? original.event.origin_server_ts : 0;
    await store.index({ roomId: out.roomId, sourcePos: out.pos, pos: original.pos, ts: originalTs, key: found.key, text: found.text }, termsOf);
    return;
  }
  const found = searchableText(event);
  if (!found) return;
  await store.index({ roomId: out.roomId, sourcePos: out.pos, pos: out.pos, ts, key: found.key, text: found.text }, termsOf);
}
