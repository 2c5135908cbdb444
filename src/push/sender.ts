/**
 * The push sender (issue 19): sends what the push evaluator queued for each pusher
 * (src/push/queue.ts) to the pusher's gateway, `POST <data.url>` (`/_matrix/push/v1/notify`), in
 * the shape Synapse sends (src/protocol/push-gateway.ts).
 *
 * One pusher, one sender at a time, in order: a drain job takes the pusher's lock
 * (`userData.pushLock`, SET NX with an expiry renewed while it works) and sends the set's head
 * until the set is empty; a job that finds the lock taken ends at once, and the holder looks at
 * the set again after letting the lock go, so nothing added meanwhile is left behind.
 *
 * Gateway failures (no answer within `push.timeoutMs`, a non-2xx answer, a refused address) keep
 * the head where it is: the pusher is marked failing with a backoff doubling from 1 s to 1 h
 * (Synapse's numbers), and a delayed bullmq job runs the retry; drain jobs for the pusher meanwhile
 * end at once. A pusher failing for more than a day gives up on the notification at the head and
 * goes on with the next (as Synapse: a gateway fixed later does not get a day of old pushes at
 * once). A pushkey the gateway answers in `rejected` removes the pusher (through its user actor).
 *
 * Delivery is at least once, as the spec allows: a sender killed between the gateway's answer and
 * the removal of the head sends that notification again.
 *
 * Outbound safety: the gateway's name is resolved here and refused when any address is in the
 * federation IP blocklist and not in `push.ipRangeAllowlist`; the connection goes to exactly the
 * checked addresses; redirects are not followed (safeFetch with no redirects).
 */
import { randomBytes } from 'node:crypto';
import { Worker as BullWorker, type Job } from 'bullmq';
import type { Logger } from 'pino';
import type { AxonConfig } from '../../cluster.config';
import type { StoredPusher, UserMessage } from '../../actors/user';
import { safeFetch } from '../media/preview/fetch';
import { UrlPreviewError } from '../media/processing-errors';
import { federationIpBlocklist, IpRangeSet } from '../protocol/ip-ranges';
import { isJsonObject, type JsonObject, type JsonValue } from '../protocol/json';
import { badgeNotification, eventNotification, memberName, presentableRoomName, type GatewayPusher, type NamingMember } from '../protocol/push-gateway';
import { MembershipIndex } from '../readers/membership-index';
import { ActorClient } from '../runtime/actor-client';
import { bullConnection } from '../runtime/bull-connection';
import { redisTargetFor, shardCountsFor } from '../runtime/cluster-settings';
import { KeySpace, userData } from '../store/keys';
import { connectRedis, type RedisClient } from '../store/redis';
import { RoomReader } from '../store/room-reader';
import { shardOf, type Family } from '../store/shards';
import { unreadCounts } from '../sync/unread-counts';
import { BADGE_MEMBER, PUSH_QUEUE, PushQueue, pushQueuePrefix, type DrainJob, type QueuedNotification } from './queue';
import { pushesFailed, pushesGivenUp, pushesProcessed, pushkeysRejected } from '../ops/metrics';

/** A sender's hold on a pusher; renewed after each send (a send takes at most `push.timeoutMs`). */
const LOCK_MS = 30_000;
/** Synapse's HttpPusher backoff: 1 s doubling to 1 h; after a day of failures a notification is given up. */
export const INITIAL_BACKOFF_MS = 1000;
export const MAX_BACKOFF_MS = 3600_000;
export const GIVE_UP_AFTER_MS = 24 * 3600_000;
/** A gateway's answer is small (`{"rejected": []}`); more is not read. */
const MAX_ANSWER_BYTES = 64 * 1024;

/** How one send went. */
type Outcome = { kind: 'sent' } | { kind: 'rejected' } | { kind: 'failed'; reason: string } | { kind: 'skipped' };

/** What the sender needs around it; the tests build one over their own Redis. */
export interface PushSenderDeps {
  redis: RedisClient;
  keys: KeySpace;
  shardCounts: Record<Family, number>;
  config: AxonConfig;
  actors: ActorClient;
  queue: PushQueue;
  log: Logger;
  /** Name resolution for gateways (tests); default the system resolver. */
  resolve?: (hostname: string) => Promise<string[]>;
  /** Extra CAs for https gateways (tests). */
  caCertificates?: readonly string[];
}

export class PushSender {
  private readonly rooms: RoomReader;
  private readonly memberships: MembershipIndex;
  private readonly blocklist: IpRangeSet;
  private readonly allowlist: IpRangeSet;

  constructor(private readonly d: PushSenderDeps) {
    this.rooms = new RoomReader(d.redis, d.keys, d.shardCounts.room);
    this.memberships = new MembershipIndex(d.redis, d.keys, d.shardCounts.user);
    this.blocklist = federationIpBlocklist(d.config.federation.ipRangeBlocklist);
    this.allowlist = new IpRangeSet(d.config.push.ipRangeAllowlist);
  }

  private userKey(userId: string, name: string): string {
    return this.d.keys.shard('user', shardOf(userId, this.d.shardCounts.user)).data(name);
  }

  /** A drain job: send what the pusher has queued, unless another sender is at it or it waits for a retry. */
  async drain(job: DrainJob, isRetry: boolean): Promise<void> {
    const lock = this.userKey(job.userId, userData.pushLock(job.userId, job.pusherId));
    const queue = this.userKey(job.userId, userData.pushQueue(job.userId, job.pusherId));
    const state = this.userKey(job.userId, userData.pushState(job.userId, job.pusherId));
    let retry = isRetry;
    for (;;) {
      const token = randomBytes(9).toString('base64url');
      if ((await this.d.redis.set(lock, token, 'PX', LOCK_MS, 'NX')) !== 'OK') {
        // A live holder looks at the queue again after letting go; a holder that died (kill -9)
        // never will, so a look is also booked for when its lock expires.
        const ttl = await this.d.redis.pttl(lock);
        if (ttl > 0) await this.d.queue.lookAgain(job, Date.now() + ttl + 100);
        return;
      }
      let waiting = false;
      try {
        waiting = await this.sendQueued(job, queue, state, lock, retry);
      } finally {
        // Let go only of our own lock (it may have expired and been taken by another sender).
        if ((await this.d.redis.get(lock)) === token) await this.d.redis.del(lock);
      }
      retry = false;
      if (waiting || (await this.d.redis.zcard(queue)) === 0) return;
    }
  }

  /** Send the queue's head until it is empty; answers true when the pusher now waits for a retry. */
  private async sendQueued(job: DrainJob, queue: string, stateKey: string, lock: string, isRetry: boolean): Promise<boolean> {
    const r = this.d.redis;
    const state = await r.hgetall(stateKey);
    const retryAt = Number(state.retry_at ?? 0);
    if (!isRetry && retryAt > Date.now()) return true;
    if (retryAt) await r.hdel(stateKey, 'retry_at');
    for (;;) {
      const head = await r.zrange(queue, 0, 0, 'WITHSCORES');
      if (head.length < 2) return false;
      const [member] = head as [string, string];
      const raw = await r.hget(this.userKey(job.userId, userData.pushers(job.userId)), job.key);
      const pusher = raw ? (JSON.parse(raw) as StoredPusher) : null;
      if (!pusher || pusher.kind !== 'http') {
        // The pusher is gone (deleted, its device logged out), or is not one that is sent to.
        await r.del(queue, stateKey);
        return false;
      }
      const outcome = await this.sendOne(job.userId, pusher, member);
      if (outcome.kind === 'sent') pushesProcessed.inc();
      else if (outcome.kind === 'failed') pushesFailed.inc();
      else if (outcome.kind === 'rejected') pushkeysRejected.inc();
      if (outcome.kind === 'rejected') {
        this.d.log.info({ user_id: job.userId, app_id: pusher.app_id }, 'push: the gateway rejected the pushkey; removing the pusher');
        await this.d.actors.ask('user', 'user', job.userId, { op: 'delete_pusher', appId: pusher.app_id, pushkey: pusher.pushkey } satisfies UserMessage).catch(() => undefined);
        await r.del(queue, stateKey);
        return false;
      }
      if (outcome.kind === 'failed') {
        const now = Date.now();
        const failingSince = Number(state.failing_since ?? 0) || now;
        if (now - failingSince > GIVE_UP_AFTER_MS) {
          this.d.log.warn({ user_id: job.userId, app_id: pusher.app_id, reason: outcome.reason }, 'push: giving up on a notification after a day of failures');
          pushesGivenUp.inc();
          await r.zrem(queue, member);
          await r.del(stateKey);
          delete state.failing_since;
          delete state.backoff;
          continue;
        }
        const backoff = Math.min(MAX_BACKOFF_MS, state.backoff ? Number(state.backoff) * 2 : INITIAL_BACKOFF_MS);
        const at = now + backoff;
        await r.hset(stateKey, { failing_since: String(failingSince), backoff: String(backoff), retry_at: String(at) });
        await this.d.queue.retryLater(job, at);
        this.d.log.info({ user_id: job.userId, app_id: pusher.app_id, reason: outcome.reason, retry_in_ms: backoff }, 'push: the gateway failed; retrying later');
        return true;
      }
      await r.zrem(queue, member);
      if (state.failing_since) {
        await r.del(stateKey);
        delete state.failing_since;
        delete state.backoff;
      }
      await r.pexpire(lock, LOCK_MS);
    }
  }

  /** Build and send one queued item. */
  private async sendOne(userId: string, pusher: StoredPusher, member: string): Promise<Outcome> {
    const gp: GatewayPusher = { app_id: pusher.app_id, pushkey: pusher.pushkey, ts: pusher.ts, data: pusher.data };
    const badge = await this.badge(userId);
    if (member === BADGE_MEMBER) return this.post(pusher, badgeNotification(gp, badge), true);
    let item: QueuedNotification;
    try {
      item = JSON.parse(member) as QueuedNotification;
    } catch {
      return { kind: 'skipped' };
    }
    // A room being purged (purge_begin deleted its members hash, actors/room.ts) or purged: its
    // events are not pushed, though the batches may not have deleted this one yet, and though the
    // evaluator behind the purge may still queue some (the guard of its counts and lists does not
    // hold back pushes). Synapse's purge deletes the push actions its pushers send from. A send
    // whose look came just before purge_begin still goes: as if it had gone a moment earlier.
    if ((await this.rooms.membership(item.r, userId)) === null) return { kind: 'skipped' };
    const stored = await this.rooms.event(item.r, item.e);
    if (!stored) return { kind: 'skipped' };
    const event: JsonObject = { ...stored.event, room_id: item.r };
    const sender = typeof event.sender === 'string' ? event.sender : '';
    const [senderMember] = await this.rooms.currentState(item.r, { type: 'm.room.member', stateKey: sender });
    const senderContent = senderMember && isJsonObject(senderMember.event.content as JsonValue) ? (senderMember.event.content as JsonObject) : {};
    const body = eventNotification(event, item.e, userId, gp, item.a as JsonValue[], {
      badge,
      senderDisplayName: memberName({ userId: sender, displayname: typeof senderContent.displayname === 'string' ? senderContent.displayname : null }),
      roomName: await this.roomName(item.r, userId),
      includeContent: this.d.config.push.includeContent,
    });
    return this.post(pusher, body, false);
  }

  private async post(pusher: StoredPusher, body: JsonObject, badgeOnly: boolean): Promise<Outcome> {
    const url = typeof pusher.data.url === 'string' ? pusher.data.url : '';
    try {
      const res = await safeFetch(url, {
        post: { body: JSON.stringify(body) },
        blocklist: this.blocklist,
        allowlist: this.allowlist,
        timeoutMs: this.d.config.push.timeoutMs,
        maxRedirects: 0,
        maxBytes: MAX_ANSWER_BYTES,
        userAgent: 'Axon (push)',
        ...(this.d.resolve ? { resolve: this.d.resolve } : {}),
        ...(this.d.caCertificates ? { caCertificates: this.d.caCertificates } : {}),
      });
      let answer: unknown = {};
      try {
        answer = JSON.parse(res.body.toString('utf8'));
      } catch {
        // Synapse takes any 2xx as delivered; so does this.
      }
      const rejected = isJsonObject(answer as JsonValue) && Array.isArray((answer as JsonObject).rejected) ? ((answer as JsonObject).rejected as JsonValue[]) : [];
      return rejected.includes(pusher.pushkey) ? { kind: 'rejected' } : { kind: 'sent' };
    } catch (e) {
      // A badge that does not get through is not retried (Synapse logs it and moves on): the
      // next notification or badge carries the count again.
      if (badgeOnly) return { kind: 'skipped' };
      if (e instanceof UrlPreviewError) return { kind: 'failed', reason: `${e.reason}: ${e.message}` };
      return { kind: 'failed', reason: (e as Error).message };
    }
  }

  /** Rooms with unread notifications plus pending invites (Synapse's `group_unread_count_by_room`). */
  private async badge(userId: string): Promise<number> {
    const rooms = await this.memberships.rooms(userId);
    const joined = rooms.filter((m) => m.membership === 'join').map((m) => m.roomId);
    const invites = rooms.filter((m) => m.membership === 'invite').length;
    // Counted from the join, as /sync counts. (Synapse's badge query has no cut at the join: the
    // invite into a room joined since still counts there until the user reads the room.)
    const counts = await unreadCounts({ redis: this.d.redis, keys: this.d.keys, shardCounts: this.d.shardCounts }, userId, joined);
    let badge = invites;
    for (const c of counts.values()) if (c.notification_count > 0) badge++;
    return badge;
  }

  /** The room's name for the user as a notification gives it (src/protocol/push-gateway.ts). */
  private async roomName(roomId: string, userId: string): Promise<string | null> {
    const [name] = await this.rooms.currentState(roomId, { type: 'm.room.name', stateKey: '' });
    const [alias] = await this.rooms.currentState(roomId, { type: 'm.room.canonical_alias', stateKey: '' });
    const text = (e: typeof name, field: string): string | null => {
      const c = e?.event.content as JsonValue | undefined;
      return isJsonObject(c) && typeof c[field] === 'string' ? (c[field] as string) : null;
    };
    const state = { name: text(name, 'name'), canonicalAlias: text(alias, 'alias') };
    if (state.name || state.canonicalAlias) return presentableRoomName({ ...state, members: [] }, userId);
    const members: NamingMember[] = (await this.rooms.currentState(roomId, { type: 'm.room.member' })).map((m) => {
      const c = isJsonObject(m.event.content as JsonValue) ? (m.event.content as JsonObject) : {};
      return {
        userId: String(m.event.state_key ?? ''),
        membership: typeof c.membership === 'string' ? c.membership : '',
        displayname: typeof c.displayname === 'string' ? c.displayname : null,
        sender: String(m.event.sender ?? ''),
        ts: Number(m.event.origin_server_ts ?? 0),
      };
    });
    return presentableRoomName({ ...state, members }, userId);
  }
}

export interface RunningPushSender {
  close(): Promise<void>;
}

/** The workers' side: process the push queue. Started by each worker process; bullmq hands each job to one of them. */
export async function startPushSender(config: AxonConfig, log: Logger, workerId: string, extra: Pick<PushSenderDeps, 'resolve' | 'caCertificates'> = {}): Promise<RunningPushSender> {
  const keys = new KeySpace(config.redis.keyPrefix);
  const shardCounts = shardCountsFor(config);
  const redis = connectRedis(redisTargetFor(config));
  const plog = log.child({ component: 'push' });
  const actors = new ActorClient(redis, keys, shardCounts, `push-${workerId}-${process.pid}`);
  await actors.start();
  const queue = new PushQueue(redis, keys, shardCounts, config, plog);
  const sender = new PushSender({ redis, keys, shardCounts, config, actors, queue, log: plog, ...extra });
  const connection = bullConnection(config);
  const worker = new BullWorker(
    PUSH_QUEUE,
    async (job: Job<DrainJob>) => {
      if (job.name !== 'drain') return null;
      // Retries (r_) go ahead even though the pusher is marked as waiting for them.
      await sender.drain(job.data, String(job.id).startsWith('r_'));
      return null;
    },
    // Many pushers at once; each one's sends stay in order under its lock.
    { connection, prefix: pushQueuePrefix(config), concurrency: 16 },
  );
  worker.on('error', (err) => plog.warn({ err }, 'push: worker error'));
  worker.on('failed', (job, err) => plog.warn({ err, id: job?.id }, 'push: job failed'));
  return {
    async close() {
      await worker.close();
      connection.disconnect();
      await queue.close();
      await actors.close();
      redis.disconnect();
    },
  };
}
