/**
 * The recency index of simplified sliding sync (issue 18, item 5): per local user, the rooms they
 * are joined to scored by `bump_stamp` (`recencyIndexData.rooms`, a sorted set on the user's shard,
 * so it lives on one Redis Cluster slot with the user's other keys). A list's first rooms are then
 * the top of one sorted set (src/sync/sliding/recency.ts) instead of a stamp look-up per room and
 * a sort of all of them, which is what a user in 5,000 rooms paid per request before.
 *
 * Fed from the room shards' outboxes by the `recency-index` consumer group (the loop every reader
 * shares: src/readers/outbox-group-reader.ts). Per batch:
 * - an event of a bumping type (Synapse's default bump types, BUMP_EVENT_TYPES) raises the room's
 *   stamp on its shard (`recencyIndexData.roomStamps`) and in the index of every local member
 *   joined to the room now;
 * - a membership change of a local user puts the room in (joined: with the room's stamp) or takes
 *   it out of (anything else) that user's index, by the room's membership as it is NOW (its
 *   `members` hash), not as the entry says, so applying entries twice or late changes nothing.
 * Stamps only go up (ZADD GT), so every write is idempotent: a crash between the writes and the
 * acknowledgement, or a handoff that applies a batch twice, leaves the same index.
 *
 * A joined room the index does not hold (a room older than the index, an account from before it,
 * a remote room joined with no bumping event seen here) is found and added by the front that lists
 * it (the lazy backfill in src/sync/sliding/recency.ts).
 *
 * The index lags the room actor by a batch. After each batch the reader stores and announces how
 * far it got on the shard (`recencyIndexData.upTo`, `recency` on the sync channel), and a sliding
 * sync waits for that to reach the outbox's end before it reads an index (as /sync waits for the
 * push evaluator's counts), so an answer's order has every event committed before it. When a
 * room's place among a user's rooms may have moved, the reader also wakes that user's sliding
 * syncs (`bumped`, which /sync v2 ignores): the net under a wait that gave up (capped).
 */
import type { Logger } from 'pino';
import type { OutboxEntry } from '../runtime/envelope';
import { serverNameOf } from '../protocol/event-hashing';
import { shardOf, type Family } from '../store/shards';
import { RECENCY_INDEX_GROUP, recencyIndexData, roomData, type KeySpace } from '../store/keys';
import { isCluster, runScript, type RedisClient } from '../store/redis';
import { encodeNotification } from '../sync/notify';
import { BUMP_EVENT_TYPES } from '../sync/sliding/lists';
import { membershipOf, parseOutput } from './membership-index';
import { OutboxGroupReader } from './outbox-group-reader';

/** Users named per wake-up message. */
const NOTIFY_CHUNK = 500;
/** Index writes in flight at a time (one connection pipelines them). */
const CONCURRENCY = 256;
/** Users per script call (a call runs alone in Redis: a huge room is split). */
const USERS_PER_CALL = 500;

/** The stamp an event gives its room, or null when it does not bump (its type, or no usable time). */
export function bumpStampOf(event: { type?: unknown; origin_server_ts?: unknown }): number | null {
  if (typeof event.type !== 'string' || !BUMP_EVENT_TYPES.has(event.type)) return null;
  const ts = event.origin_server_ts;
  return typeof ts === 'number' && Number.isSafeInteger(ts) && ts > 0 ? ts : null;
}

export class RecencyIndexReader extends OutboxGroupReader {
  override readonly kinds: readonly string[] = ['room'];
  constructor(
    redis: RedisClient,
    keys: KeySpace,
    private readonly shardCounts: Record<Family, number>,
    private readonly serverName: string,
    consumer: string,
    log: Logger,
  ) {
    super('room', RECENCY_INDEX_GROUP, redis, keys, consumer, log);
  }

  private indexKey(userId: string): string {
    return this.keys.shard('user', shardOf(userId, this.shardCounts.user)).data(recencyIndexData.rooms(userId));
  }

  private isLocal(userId: string): boolean {
    return serverNameOf(userId) === this.serverName;
  }

  protected async apply(shard: number, entries: { id: string; entry: OutboxEntry | null }[]): Promise<void> {
    // The batch coalesced: each room's newest stamp, and the local users whose membership moved.
    const bumps = new Map<string, number>();
    const moved = new Map<string, Set<string>>();
    for (const { entry } of entries) {
      const out = parseOutput(entry);
      if (!out || !('event' in out)) continue;
      const stamp = bumpStampOf(out.event);
      if (stamp !== null) bumps.set(out.roomId, Math.max(stamp, bumps.get(out.roomId) ?? 0));
      const m = membershipOf(out);
      if (m && this.isLocal(m.userId)) (moved.get(out.roomId) ?? moved.set(out.roomId, new Set()).get(out.roomId)!).add(m.userId);
    }
    const sk = this.keys.shard('room', shard);
    const stampsKey = sk.data(recencyIndexData.roomStamps());
    const wake = new Set<string>();
    /** Per room and stamp, the users whose index gets it (one script call per slot group). */
    const bumpsFor: { roomId: string; stamp: number; users: string[] }[] = [];
    const removals: [string, string][] = [];

    for (const [roomId, stamp] of bumps) {
      const members = await this.redis.hgetall(sk.data(roomData.members(roomId)));
      // No members hash: the room is being purged (purge_begin deleted it), and its stamp goes
      // with the purge's last batch; written again here it would stay for good.
      if (Object.keys(members).length === 0) continue;
      await this.redis.zadd(stampsKey, 'GT', stamp, roomId);
      const users = Object.entries(members)
        .filter(([userId, membership]) => membership === 'join' && this.isLocal(userId))
        .map(([userId]) => userId);
      bumpsFor.push({ roomId, stamp, users });
    }
    for (const [roomId, users] of moved) {
      const list = [...users];
      const [now, stamp] = await Promise.all([this.redis.hmget(sk.data(roomData.members(roomId)), ...list), this.redis.zscore(stampsKey, roomId)]);
      const joined: string[] = [];
      list.forEach((userId, i) => {
        if (now[i] !== 'join') removals.push([userId, roomId]);
        // No stamp known for the room yet: the front that lists it adds it (lazy backfill).
        else if (stamp !== null) joined.push(userId);
      });
      if (joined.length) bumpsFor.push({ roomId, stamp: Number(stamp), users: joined });
    }
    // One call per room for the users whose keys may share it: all of them on a single Redis; on
    // a Cluster, those of one user shard (a call's keys must share a hash slot).
    const writes: (() => Promise<void>)[] = [];
    const byPlace = isCluster(this.redis);
    for (const { roomId, stamp, users } of bumpsFor) {
      const places = new Map<number, string[]>();
      for (const userId of users) {
        const place = byPlace ? shardOf(userId, this.shardCounts.user) : 0;
        (places.get(place) ?? places.set(place, []).get(place)!).push(userId);
      }
      for (const group of places.values()) {
        for (let i = 0; i < group.length; i += USERS_PER_CALL) {
          const chunk = group.slice(i, i + USERS_PER_CALL);
          writes.push(async () => {
            const moved = (await runScript(this.redis, 'recencyBump', chunk.map((u) => this.indexKey(u)), [stamp, roomId])) as number[];
            chunk.forEach((u, k) => {
              if (Number(moved[k]) === 1) wake.add(u);
            });
          });
        }
      }
    }
    for (const [userId, roomId] of removals) {
      writes.push(async () => {
        if ((await this.redis.zrem(this.indexKey(userId), roomId)) > 0) wake.add(userId);
      });
    }
    for (let i = 0; i < writes.length; i += CONCURRENCY) await Promise.all(writes.slice(i, i + CONCURRENCY).map((w) => w()));
    const users = [...wake];
    for (let i = 0; i < users.length; i += NOTIFY_CHUNK) {
      await this.redis.publish(this.keys.syncNotify(), encodeNotification({ bumped: users.slice(i, i + NOTIFY_CHUNK) })).catch(() => undefined);
    }
    const last = entries[entries.length - 1];
    if (last) await this.recordProgress(shard, last.id);
  }

  /**
   * The batch ending at entry `upto` is written: store and announce how far the shard's index is
   * (a failure fails the batch, applied again). Sliding syncs wait for this before reading an
   * index, so an answer's order includes every event committed before it (read-your-writes).
   */
  private async recordProgress(shard: number, upto: string): Promise<void> {
    const stored = await runScript(this.redis, 'pushProgress', [this.keys.shard('room', shard).data(recencyIndexData.upTo())], [upto]);
    if (stored !== upto) return; // another holder got further and announced it
    await this.redis.publish(this.keys.syncNotify(), encodeNotification({ recency: [{ shard, upto }] })).catch(() => undefined);
  }
}
