/**
 * The search index in Redis (keys: src/store/keys.ts `searchData`, on each room's shard): what
 * the search reader writes for an event, and what `POST /search` reads for a query. Writes go
 * through search-index-1.lua, which makes each of them idempotent (see the script).
 */
import { isJsonObject, type JsonObject, type JsonValue } from '../protocol/json';
import { termFrequencies } from '../protocol/search-text';
import { searchData, type KeySpace } from '../store/keys';
import { runScript, type RedisClient } from '../store/redis';
import type { RoomReader } from '../store/room-reader';
import type { RoomOutput } from '../rooms/model';
import { shardOf } from '../store/shards';

/** The searchable keys (`keys` of the request) and the event type each belongs to. */
export const SEARCH_KEYS = { 'content.body': 'b', 'content.name': 'n', 'content.topic': 't' } as const;
export type SearchKey = keyof typeof SEARCH_KEYS;
export type KeyCode = (typeof SEARCH_KEYS)[SearchKey];

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
  eventId: string;
  /** Timeline position of the event whose content this is (the event's own, or its edit's). */
  sourcePos: number;
  pos: number;
  ts: number;
  key: KeyCode;
  text: string;
}

export class SearchIndexStore {
  constructor(
    private readonly redis: RedisClient,
    private readonly keys: KeySpace,
    private readonly roomShards: number,
  ) {}

  private name(roomId: string, name: string): string {
    return this.keys.shard('room', shardOf(roomId, this.roomShards)).data(name);
  }

  private scriptKeys(roomId: string): string[] {
    return [this.name(roomId, searchData.docs(roomId)), this.name(roomId, searchData.terms(roomId)), this.name(roomId, searchData.stats(roomId))];
  }

  /** Index a document's text (replacing older content of the same event; newer content already there wins). */
  async index(doc: IndexedDocument): Promise<boolean> {
    const { terms, length } = termFrequencies(doc.text);
    const args: (string | number)[] = ['index', this.name(doc.roomId, searchData.postingsPrefix(doc.roomId)), doc.eventId, doc.sourcePos, doc.pos, doc.ts, doc.key, length];
    for (const [term, tf] of terms) args.push(term, tf);
    return (await runScript(this.redis, 'searchIndex', this.scriptKeys(doc.roomId), args)) === 1;
  }

  /** Take an event out of the index for good (it was redacted). */
  async remove(roomId: string, eventId: string): Promise<boolean> {
    return (await runScript(this.redis, 'searchIndex', this.scriptKeys(roomId), ['remove', this.name(roomId, searchData.postingsPrefix(roomId)), eventId])) === 1;
  }

  /** A room's document count and total length in words. */
  async stats(roomId: string): Promise<{ documents: number; totalLength: number }> {
    const [n, l] = await this.redis.hmget(this.name(roomId, searchData.stats(roomId)), 'n', 'l');
    return { documents: Number(n ?? 0), totalLength: Number(l ?? 0) };
  }

  /** Terms of a room starting with `prefix` (at most `limit`, in byte order). */
  async termsWithPrefix(roomId: string, prefix: string, limit: number): Promise<string[]> {
    return this.redis.zrangebylex(this.name(roomId, searchData.terms(roomId)), `[${prefix}`, `[${prefix}\u{10FFFF}`, 'LIMIT', 0, limit);
  }

  /** A term's postings in a room: event id → { tf, length, pos, ts, key }. */
  async postings(roomId: string, term: string): Promise<Map<string, Posting>> {
    const raw = await this.redis.hgetall(this.name(roomId, `${searchData.postingsPrefix(roomId)}${term}`));
    const out = new Map<string, Posting>();
    for (const [eventId, v] of Object.entries(raw)) {
      const [tf, length, pos, ts, key] = v.split(':');
      out.set(eventId, { tf: Number(tf), length: Number(length), pos: Number(pos), ts: Number(ts), key: key as KeyCode });
    }
    return out;
  }

  /** Drop a room's whole index (before a rebuild). */
  async clearRoom(roomId: string): Promise<void> {
    const terms = await this.redis.zrange(this.name(roomId, searchData.terms(roomId)), 0, -1);
    const prefix = this.name(roomId, searchData.postingsPrefix(roomId));
    for (let i = 0; i < terms.length; i += 500) await this.redis.del(...terms.slice(i, i + 500).map((t) => `${prefix}${t}`));
    await this.redis.del(...this.scriptKeys(roomId));
  }
}

export interface Posting {
  tf: number;
  length: number;
  pos: number;
  ts: number;
  key: KeyCode;
}

/** What one room output changes in the index (the reader's step, and the rebuild's). */
export async function indexRoomOutput(store: SearchIndexStore, rooms: RoomReader, out: Pick<RoomOutput, 'roomId' | 'eventId' | 'pos' | 'event' | 'redacted'>): Promise<void> {
  if (out.redacted) {
    await store.remove(out.roomId, out.redacted);
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
    await store.index({ roomId: out.roomId, eventId: edit.target, sourcePos: out.pos, pos: original.pos, ts: originalTs, key: found.key, text: found.text });
    return;
  }
  const found = searchableText(event);
  if (!found) return;
  await store.index({ roomId: out.roomId, eventId: out.eventId, sourcePos: out.pos, pos: out.pos, ts, key: found.key, text: found.text });
}
