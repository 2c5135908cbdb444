/**
 * The joined-rooms index: per user, every room the user has a membership in and the latest
 * membership, kept in the user's shard (`membershipIndexData`) so `/joined_rooms` and `/sync`
 * read one hash instead of scanning rooms.
 *
 * It is fed from the room shards' outbox streams by `MembershipIndexReader`, a consumer group
 * reader that workers run for the room shards they own — so local and federated membership
 * changes both land. Fronts also record a membership change they sent as soon as the room actor
 * confirms it (read-your-writes for the client that made it). Both go through
 * membership-index-2.lua, which keeps the entry with the highest room stream position, so
 * re-delivery and either order of arrival give the same index.
 *
 * The same reader keeps two server-wide sets derived from room state: the rooms whose members
 * the user directory shows (`directoryVisibleRooms`), and the rooms published in the room
 * directory (`publicRooms`, from the flag each room actor owns, announced by its
 * `set_directory_visibility` entries).
 */
import type { OutboxEntry } from '../runtime/envelope';
import type { Logger } from 'pino';
import type { RoomDirectoryOutput, RoomOutput } from '../rooms/model';
import { OutboxGroupReader } from './outbox-group-reader';
import { shardOf } from '../store/shards';
import { decode } from '../store/codec';
import { MEMBERSHIP_INDEX_GROUP, membershipIndexData, roomData, type KeySpace } from '../store/keys';
import type { StoredEvent } from '../rooms/model';
import { stateKeyOf } from '../protocol/pdu';
import { effectiveHistoryVisibility } from '../protocol/history-visibility';
import type { JsonObject } from '../protocol/json';
import { runScript, type RedisClient } from '../store/redis';
import { encodeNotification } from '../sync/notify';

export interface IndexedMembership {
  roomId: string;
  membership: string;
  /** Stream position of the membership event in its room. */
  pos: number;
  /** Redis TIME (µs) at which the index wrote this entry (0 for entries written before it was kept). */
  writtenAt: number;
}

export class MembershipIndex {
  constructor(
    private readonly redis: RedisClient,
    private readonly keys: KeySpace,
    private readonly userShards: number,
  ) {}

  private userKeys(userId: string) {
    return this.keys.shard('user', shardOf(userId, this.userShards));
  }

  /** Record a membership (kept only if newer than the indexed one). Returns whether it was written. */
  async record(userId: string, roomId: string, pos: number, membership: string): Promise<boolean> {
    const k = this.userKeys(userId);
    const res = await runScript(this.redis, 'membershipIndex', [k.data(membershipIndexData.rooms(userId)), k.data(membershipIndexData.forgotten(userId)), k.data(membershipIndexData.writtenAt(userId))], [roomId, pos, membership]);
    const written = Number(res) === 1;
    // Wake this user's waiting /sync requests: the index now shows the room (src/sync/notify.ts).
    if (written) await this.redis.publish(this.keys.syncNotify(), encodeNotification({ users: [userId] })).catch(() => undefined);
    return written;
  }

  /**
   * Record the memberships of many users in one room at one position, without waking anyone's
   * /sync: for the members of a remote room this server just joined, whose membership events
   * arrived as the join's state (no outputs of their own), so that the users who share a room
   * with them (device list updates, presence, typing for those users) are known here. Several
   * scripts in flight at a time (one connection pipelines them); each is the same idempotent write
   * as `record`.
   */
  async recordMany(roomId: string, members: [userId: string, membership: string][], pos: number): Promise<void> {
    const CONCURRENCY = 256;
    for (let i = 0; i < members.length; i += CONCURRENCY) {
      await Promise.all(
        members.slice(i, i + CONCURRENCY).map(([userId, membership]) => {
          const k = this.userKeys(userId);
          return runScript(this.redis, 'membershipIndex', [k.data(membershipIndexData.rooms(userId)), k.data(membershipIndexData.forgotten(userId)), k.data(membershipIndexData.writtenAt(userId))], [roomId, pos, membership]);
        }),
      );
    }
  }

  /**
   * Write the entry's time again (the membership stays): /sync then gives the room in full, as
   * newly joined — a room whose full state has just arrived after a partial-state join, which
   * non-lazy-loading syncs held back until now (src/rooms/partial-state.ts).
   */
  async markFresh(userId: string, roomId: string): Promise<void> {
    const k = this.userKeys(userId);
    const [s, us] = await this.redis.time();
    await this.redis.hset(k.data(membershipIndexData.writtenAt(userId)), roomId, String(Number(s) * 1_000_000 + Number(us)));
    await this.redis.publish(this.keys.syncNotify(), encodeNotification({ users: [userId] })).catch(() => undefined);
  }

  /** Every room the user has a membership in, optionally only one membership. */
  async rooms(userId: string, membership?: string): Promise<IndexedMembership[]> {
    const k = this.userKeys(userId);
    const [raw, times] = await Promise.all([this.redis.hgetall(k.data(membershipIndexData.rooms(userId))), this.redis.hgetall(k.data(membershipIndexData.writtenAt(userId)))]);
    return parseIndexed(raw, times, membership);
  }

  async isForgotten(userId: string, roomId: string): Promise<boolean> {
    return (await this.redis.sismember(this.userKeys(userId).data(membershipIndexData.forgotten(userId)), roomId)) === 1;
  }
}

/** Index hashes (rooms, write times) as read: `HGETALL` of both (see `membershipIndexData`). */
export function parseIndexed(raw: Record<string, string>, times: Record<string, string>, membership?: string): IndexedMembership[] {
  const out: IndexedMembership[] = [];
  for (const [roomId, value] of Object.entries(raw)) {
    const i = value.indexOf(':');
    const m = value.slice(i + 1);
    if (membership === undefined || m === membership) out.push({ roomId, membership: m, pos: Number(value.slice(0, i)), writtenAt: Number(times[roomId] ?? 0) });
  }
  return out;
}

/** The membership change an output entry carries, if any. */
export function membershipOf(out: RoomOutput): { userId: string; membership: string } | null {
  const e = out.event;
  if (e.type !== 'm.room.member' || typeof e.state_key !== 'string') return null;
  const content = e.content as Record<string, unknown> | undefined;
  const membership = content && typeof content.membership === 'string' ? content.membership : null;
  return membership ? { userId: e.state_key, membership } : null;
}

/**
 * Reads the outboxes of the room shards a worker owns with the `membership-index` consumer group
 * (the loop: src/readers/outbox-group-reader.ts). The index writes are idempotent, so an entry applied
 * twice (a crash between write and ack, two holders during a handoff) changes nothing.
 */
export class MembershipIndexReader extends OutboxGroupReader {
  override readonly kinds: readonly string[] = ['room'];
  private readonly index: MembershipIndex;

  constructor(redis: RedisClient, keys: KeySpace, userShards: number, consumer: string, log: Logger) {
    super('room', MEMBERSHIP_INDEX_GROUP, redis, keys, consumer, log);
    this.index = new MembershipIndex(redis, keys, userShards);
  }

  /**
   * Whether the user directory shows the room's members to everyone: a public join rule or
   * world_readable history, read from the room's current state (not from the entry, which may be
   * older than what is current by the time it is read), so applying entries again is harmless.
   */
  private async updateDirectoryVisibility(shard: number, roomId: string): Promise<void> {
    const k = this.keys.shard('room', shard);
    const current = async (type: string): Promise<JsonObject | undefined> => {
      const id = await this.redis.hget(k.data(roomData.state(roomId)), stateKeyOf(type, ''));
      const blob = id ? await this.redis.getBuffer(k.data(roomData.event(id))) : null;
      if (!blob) return undefined;
      return (JSON.parse(decode<StoredEvent>(blob).j) as { content?: JsonObject }).content;
    };
    const visible = (await current('m.room.join_rules'))?.join_rule === 'public' || effectiveHistoryVisibility(await current('m.room.history_visibility')) === 'world_readable';
    if (visible) await this.redis.sadd(this.keys.directoryVisibleRooms(), roomId);
    else await this.redis.srem(this.keys.directoryVisibleRooms(), roomId);
  }

  /**
   * Whether the room is in the published room directory: the room's own flag as it is now (not
   * the entry's, which may be older), so applying entries again or out of order is harmless.
   */
  private async updatePublished(shard: number, roomId: string): Promise<void> {
    const published = (await this.redis.exists(this.keys.shard('room', shard).data(roomData.published(roomId)))) === 1;
    if (published) await this.redis.sadd(this.keys.publicRooms(), roomId);
    else await this.redis.srem(this.keys.publicRooms(), roomId);
  }

  /**
   * Whether the room still has its members hash: a room being purged has not (purge_begin deletes
   * it, actors/room.ts), and its users' index entries are dropped by their purge_room after that
   * (src/rooms/room-deletion.ts). A reader running behind the purge — the deletion's own leave
   * events are on the outbox when it begins — would otherwise write them again, for good. Checked
   * per membership event, just before its write; what remains is a write whose check came just
   * before purge_begin and that lands after that user's purge_room (one round trip). On a Cluster
   * the hash is in another slot than the user's keys, so no script can check it with the write.
   */
  private async roomStored(shard: number, roomId: string): Promise<boolean> {
    return (await this.redis.exists(this.keys.shard('room', shard).data(roomData.members(roomId)))) === 1;
  }

  protected async apply(shard: number, entries: { id: string; entry: OutboxEntry | null }[]): Promise<void> {
    for (const { entry } of entries) {
      const out = parseOutput(entry);
      if (!out) continue; // not a room output (or trimmed): nothing for this index
      if (!('event' in out)) {
        await this.updatePublished(shard, out.roomId);
        continue;
      }
      const m = membershipOf(out);
      if (m && (await this.roomStored(shard, out.roomId))) await this.index.record(m.userId, out.roomId, out.pos, m.membership);
      if (affectsDirectoryVisibility(out)) await this.updateDirectoryVisibility(shard, out.roomId);
    }
  }
}

/** Join rules and history visibility decide whether the user directory lists a room's members. */
function affectsDirectoryVisibility(out: RoomOutput): boolean {
  const e = out.event;
  return e.state_key === '' && (e.type === 'm.room.join_rules' || e.type === 'm.room.history_visibility');
}

/** A room output (or directory entry) from an outbox entry; null for anything else or malformed. */
export function parseOutput(entry: OutboxEntry | null): RoomOutput | RoomDirectoryOutput | null {
  if (!entry || entry.kind !== 'room') return null;
  const body = entry.body;
  try {
    const out = decode<RoomOutput | RoomDirectoryOutput>(body);
    if (!out || typeof out.roomId !== 'string') return null;
    if ('directory' in out) return out.directory === 'public' || out.directory === 'private' ? out : null;
    return typeof out.pos === 'number' && out.event ? out : null;
  } catch {
    return null;
  }
}
