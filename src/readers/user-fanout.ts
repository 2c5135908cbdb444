/**
 * Fan-out of per-user changes to the users who can see them: device list changes (for
 * `device_lists.changed` in /sync and `/keys/changes`) and presence changes (for `presence`).
 *
 * A consumer group (`user-fanout`) over the outboxes of the user shards a worker owns. For each
 * entry that changes what others see of a user U — new or deleted devices (user actor),
 * device/cross-signing key changes (device keys actor), presence changes (presence actor) — it
 * finds U's watchers: U and every user joined to a room U is joined to (the membership index
 * gives U's rooms, each room's member hash its members), and appends one entry to each watcher's
 * feed stream (`userData.feed`, in the watcher's shard, id from Redis's clock) and wakes their
 * /sync. So a change costs work proportional to the users who can see it, not to all rooms or all
 * users (issue 7), and a sync reads only its own feed window: `[since, cut)` of one stream.
 *
 * Redelivery appends the same fact again, which readers treat as a set (a user listed as changed
 * twice is listed once). Feeds keep their newest FEED_MAXLEN entries. An entry's fields are `d`
 * (device lists changed) and/or `p` (presence changed), each the users separated by spaces (a
 * user id holds no space); entries written before that are `k <kind> u <user>` pairs, one per
 * change, and are still read.
 */
import type { Logger } from 'pino';
import type { OutboxEntry } from '../runtime/envelope';
import { shardOf, type Family } from '../store/shards';
import { decode } from '../store/codec';
import { roomData, userData, type KeySpace } from '../store/keys';
import { isCluster, type RedisClient } from '../store/redis';
import { encodeNotification } from '../sync/notify';
import { MembershipIndex } from './membership-index';
import { OutboxGroupReader } from './outbox-group-reader';

export const USER_FANOUT_GROUP = 'user-fanout';
/** Entries a feed keeps (approximate trimming). */
export const FEED_MAXLEN = 5000;
/** Watchers woken per notification message. */
const NOTIFY_CHUNK = 500;
/** Feed appends sent at once (one pipeline on a single Redis). */
const FEED_WRITE_CHUNK = 1000;

export type FeedKind = 'd' | 'p';

/**
 * What a user-shard output means for others, if anything. `changed`: the users the change is
 * about when they are not (only) `userId`: a user's signatures of other users' master keys make
 * those users' keys look different to that user alone (Synapse lists them in the signer's
 * `device_lists.changed`, so the signer's devices query them again and see the signature).
 */
export function fanoutOf(kind: string, out: unknown): { kind: FeedKind; userId: string; selfOnly: boolean; changed?: string[] } | null {
  if (!out || typeof out !== 'object') return null;
  const o = out as { type?: unknown; user_id?: unknown; self_only?: unknown; signed_users?: unknown };
  if (typeof o.user_id !== 'string') return null;
  if (kind === 'user' && o.type === 'device') return { kind: 'd', userId: o.user_id, selfOnly: false };
  if (kind === 'keys' && o.type === 'device_list') {
    const signed = Array.isArray(o.signed_users) ? o.signed_users.filter((u): u is string => typeof u === 'string') : [];
    return signed.length ? { kind: 'd', userId: o.user_id, selfOnly: true, changed: [o.user_id, ...signed] } : { kind: 'd', userId: o.user_id, selfOnly: o.self_only === true };
  }
  if (kind === 'presence' && o.type === 'presence') return { kind: 'p', userId: o.user_id, selfOnly: false };
  return null;
}

/** Users joined to any room `userId` is joined to, and `userId`. */
export async function sharedRoomUsers(
  redis: RedisClient,
  keys: KeySpace,
  shardCounts: Record<Family, number>,
  index: MembershipIndex,
  userId: string,
  /** Rooms' joined members already read (shared across the changes of one batch). */
  membersCache?: Map<string, Promise<Record<string, string>>>,
): Promise<Set<string>> {
  const users = new Set<string>([userId]);
  const rooms = await index.rooms(userId, 'join');
  const membersOf = (roomId: string) => {
    let m = membersCache?.get(roomId);
    if (!m) {
      m = redis.hgetall(keys.shard('room', shardOf(roomId, shardCounts.room)).data(roomData.members(roomId)));
      membersCache?.set(roomId, m);
    }
    return m;
  };
  for (let i = 0; i < rooms.length; i += 50) {
    const batch = await Promise.all(rooms.slice(i, i + 50).map((r) => membersOf(r.roomId)));
    for (const members of batch) for (const [u, m] of Object.entries(members)) if (m === 'join') users.add(u);
  }
  return users;
}

export class UserFanoutReader extends OutboxGroupReader {
  override readonly kinds: readonly string[] = ['user', 'keys', 'presence'];
  private readonly index: MembershipIndex;
  /** The feed write in progress, and the next one, gathering the batches that arrive meanwhile. */
  private writing: Promise<void> | null = null;
  private nextWrite: { changes: Map<string, Record<FeedKind, Set<string>>>; done: Promise<void> } | null = null;

  constructor(
    redis: RedisClient,
    keys: KeySpace,
    private readonly shardCounts: Record<Family, number>,
    consumer: string,
    log: Logger,
  ) {
    super('user', USER_FANOUT_GROUP, redis, keys, consumer, log);
    this.index = new MembershipIndex(redis, keys, shardCounts.user);
  }

  /**
   * A batch's changes are coalesced per watcher: one feed entry per watcher naming every change
   * of the batch they should see, and one wake-up each. When a thousand members of a room come
   * online together, that is a thousand entries per batch instead of a thousand per member, and
   * each room's members are read once per batch.
   */
  protected async apply(_shard: number, entries: { id: string; entry: OutboxEntry | null }[]): Promise<void> {
    const byWatcher = new Map<string, [FeedKind, string][]>();
    const membersCache = new Map<string, Promise<Record<string, string>>>();
    const seen = new Set<string>();
    for (const { entry } of entries) {
      if (!entry) continue;
      let out: unknown;
      try {
        out = decode(entry.body);
      } catch {
        continue;
      }
      const f = fanoutOf(entry.kind, out);
      if (!f) continue;
      // The same change twice in a batch (a user's presence flapping) is said once.
      const dedupe = `${f.kind}\u0000${f.userId}\u0000${f.selfOnly ? 1 : 0}\u0000${f.changed?.join('\u0000') ?? ''}`;
      if (seen.has(dedupe)) continue;
      seen.add(dedupe);
      const watchers = f.selfOnly ? new Set([f.userId]) : await sharedRoomUsers(this.redis, this.keys, this.shardCounts, this.index, f.userId, membersCache);
      for (const w of watchers) {
        let list = byWatcher.get(w);
        if (!list) byWatcher.set(w, (list = []));
        for (const changed of f.changed ?? [f.userId]) list.push([f.kind, changed]);
      }
    }
    if (byWatcher.size) await this.append(byWatcher);
  }

  /**
   * Queue the batch's changes for the shared feed write and wait until it is written (entries are
   * acknowledged only after this returns). The batches of every shard this worker reads that
   * arrive while a write runs go into the next one, merged per watcher: one entry per watcher per
   * write, each changed user named once. So a burst (1,000 members of a room coming online at
   * once, spread over every user shard) costs each watcher a few entries instead of one per shard
   * batch, and the worker has at most one write's commands in flight (FEED_WRITE_CHUNK at a time)
   * instead of one pipeline per shard: in B's setup the 256 shards' pipelines held 100,000 XADDs,
   * 214 MB of heap, in one worker.
   */
  private append(byWatcher: Map<string, [FeedKind, string][]>): Promise<void> {
    let next = this.nextWrite;
    if (!next) {
      next = this.nextWrite = { changes: new Map(), done: null as unknown as Promise<void> };
      const batch = next;
      // Starts after the write in progress (if any), with everything queued until then.
      batch.done = (this.writing ?? Promise.resolve()).catch(() => undefined).then(() => {
        if (this.nextWrite === batch) this.nextWrite = null;
        this.writing = this.writeFeeds(batch.changes);
        return this.writing;
      });
    }
    for (const [w, list] of byWatcher) {
      let kinds = next.changes.get(w);
      if (!kinds) next.changes.set(w, (kinds = { d: new Set(), p: new Set() }));
      for (const [k, u] of list) kinds[k].add(u);
    }
    return next.done;
  }

  /** One feed entry per watcher: field `d` (device lists) and/or `p` (presence), each the changed users separated by spaces. */
  private async writeFeeds(changes: Map<string, Record<FeedKind, Set<string>>>): Promise<void> {
    const feedKey = (u: string) => this.keys.shard('user', shardOf(u, this.shardCounts.user)).data(userData.feed(u));
    const fields = (kinds: Record<FeedKind, Set<string>>) => {
      const out: string[] = [];
      for (const k of ['d', 'p'] as const) if (kinds[k].size) out.push(k, [...kinds[k]].join(' '));
      return out;
    };
    const watchers = [...changes.keys()];
    for (let i = 0; i < watchers.length; i += FEED_WRITE_CHUNK) {
      const chunk = watchers.slice(i, i + FEED_WRITE_CHUNK);
      if (isCluster(this.redis)) {
        await Promise.all(chunk.map((u) => this.redis.xadd(feedKey(u), 'MAXLEN', '~', FEED_MAXLEN, '*', ...fields(changes.get(u)!))));
      } else {
        const p = this.redis.pipeline();
        for (const u of chunk) p.xadd(feedKey(u), 'MAXLEN', '~', FEED_MAXLEN, '*', ...fields(changes.get(u)!));
        const res = (await p.exec()) ?? [];
        for (const [err] of res) if (err) throw err;
      }
    }
    for (let i = 0; i < watchers.length; i += NOTIFY_CHUNK) {
      await this.redis.publish(this.keys.syncNotify(), encodeNotification({ users: watchers.slice(i, i + NOTIFY_CHUNK), userData: [] })).catch(() => undefined);
    }
  }
}
