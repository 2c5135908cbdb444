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
 * twice is listed once). Feeds keep their newest FEED_MAXLEN entries.
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
/** Changes whose watchers a flush reads at once. */
const WATCHER_READS = 64;

export type FeedKind = 'd' | 'p';

type Fanout = NonNullable<ReturnType<typeof fanoutOf>>;

/** Separates the users of a kind's field in a feed entry (no user id holds it: see `feedFields`). */
export const FEED_SEPARATOR = '\u0000';

/**
 * A feed entry's fields for its changes: per kind one field named by the kind (`d`, `p`) whose
 * value is the users, separated by FEED_SEPARATOR — two fields for a thousand changes, where the
 * first format (`k <kind> u <user>` pairs, one per change: still read, src/sync/device-lists.ts)
 * made every watcher's /sync read, parse and drop 4,000 strings when a thousand members of a room
 * came online. An entry naming a user whose id holds the separator (a remote server's odd id) is
 * written in the pair format.
 */
export function feedFields(changes: [FeedKind, string][]): string[] {
  const byKind = new Map<FeedKind, Set<string>>();
  for (const [k, u] of changes) {
    if (u.includes(FEED_SEPARATOR)) return changes.flatMap(([kind, user]) => ['k', kind, 'u', user]);
    let users = byKind.get(k);
    if (!users) byKind.set(k, (users = new Set()));
    users.add(u);
  }
  const out: string[] = [];
  for (const [k, users] of byKind) out.push(k, [...users].join(FEED_SEPARATOR));
  return out;
}

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
   *
   * And across shards: a user's changes come in the outbox of their own user shard, so a thousand
   * members coming online are a few changes in each of ~256 shards, each shard's pump applying
   * its own batch — each batch a feed entry (`XADD`) for every member of the room and a wake-up of
   * all of them (in workload B, 219,251 `XADD`s in a 21 s window and the members' /sync reading
   * feeds of hundreds of entries). So the batches of all shards go through one group commit
   * (`flush`): the batches that arrive while a flush writes are written together by the next one,
   * one entry per watcher for all of them. A batch's `apply` resolves only once the flush holding
   * its changes has written them (it is acknowledged after), and fails when that flush fails (the
   * batch stays pending and is applied again, as before).
   */
  protected async apply(_shard: number, entries: { id: string; entry: OutboxEntry | null }[]): Promise<void> {
    const changes: Fanout[] = [];
    for (const { entry } of entries) {
      if (!entry) continue;
      let out: unknown;
      try {
        out = decode(entry.body);
      } catch {
        continue;
      }
      const f = fanoutOf(entry.kind, out);
      if (f) changes.push(f);
    }
    if (!changes.length) return;
    return new Promise<void>((resolve, reject) => {
      this.queued.push({ changes, resolve, reject });
      if (!this.flushing) {
        this.flushing = true;
        // The batches of the other shards' pumps read in this same turn join this flush.
        setImmediate(() => void this.flush());
      }
    });
  }

  private queued: { changes: Fanout[]; resolve: () => void; reject: (e: unknown) => void }[] = [];
  private flushing = false;

  /** Write what is queued, one round at a time, until nothing is (see `apply`). */
  private async flush(): Promise<void> {
    while (this.queued.length) {
      const round = this.queued;
      this.queued = [];
      try {
        await this.write(round.flatMap((q) => q.changes));
        for (const q of round) q.resolve();
      } catch (e) {
        for (const q of round) q.reject(e);
      }
    }
    this.flushing = false;
  }

  /** The changes of one flush: each said once, to each of its watchers in one entry. */
  private async write(changes: Fanout[]): Promise<void> {
    const byWatcher = new Map<string, [FeedKind, string][]>();
    const membersCache = new Map<string, Promise<Record<string, string>>>();
    const seen = new Set<string>();
    const distinct: Fanout[] = [];
    for (const f of changes) {
      // The same change twice (a user's presence flapping) is said once.
      const dedupe = `${f.kind}\u0000${f.userId}\u0000${f.selfOnly ? 1 : 0}\u0000${f.changed?.join('\u0000') ?? ''}`;
      if (seen.has(dedupe)) continue;
      seen.add(dedupe);
      distinct.push(f);
    }
    // The watchers of every change, read concurrently (each room's members once per flush).
    const watchersOf: Set<string>[] = [];
    for (let i = 0; i < distinct.length; i += WATCHER_READS) {
      const part = distinct.slice(i, i + WATCHER_READS);
      watchersOf.push(...(await Promise.all(part.map((f) => (f.selfOnly ? Promise.resolve(new Set([f.userId])) : sharedRoomUsers(this.redis, this.keys, this.shardCounts, this.index, f.userId, membersCache))))));
    }
    distinct.forEach((f, i) => {
      for (const w of watchersOf[i]!) {
        let list = byWatcher.get(w);
        if (!list) byWatcher.set(w, (list = []));
        for (const changed of f.changed ?? [f.userId]) list.push([f.kind, changed]);
      }
    });
    if (byWatcher.size) await this.append(byWatcher);
  }

  /** One feed entry per watcher (fields: `feedFields`). */
  private async append(byWatcher: Map<string, [FeedKind, string][]>): Promise<void> {
    const feedKey = (u: string) => this.keys.shard('user', shardOf(u, this.shardCounts.user)).data(userData.feed(u));
    const watchers = [...byWatcher.keys()];
    if (isCluster(this.redis)) {
      await Promise.all(watchers.map((u) => this.redis.xadd(feedKey(u), 'MAXLEN', '~', FEED_MAXLEN, '*', ...feedFields(byWatcher.get(u)!))));
    } else {
      for (let i = 0; i < watchers.length; i += 1000) {
        const p = this.redis.pipeline();
        for (const u of watchers.slice(i, i + 1000)) p.xadd(feedKey(u), 'MAXLEN', '~', FEED_MAXLEN, '*', ...feedFields(byWatcher.get(u)!));
        const res = (await p.exec()) ?? [];
        for (const [err] of res) if (err) throw err;
      }
    }
    for (let i = 0; i < watchers.length; i += NOTIFY_CHUNK) {
      await this.redis.publish(this.keys.syncNotify(), encodeNotification({ users: watchers.slice(i, i + NOTIFY_CHUNK), userData: [] })).catch(() => undefined);
    }
  }
}
