/**
 * The hand-over from the push evaluator to the push sender (issue 19): per pusher, a sorted set
 * of what is still to be sent (`userData.pushQueue`, in the user's shard, scored by the outbox
 * entry that caused it, so sends keep the room's order), and a bullmq job that says "this pusher
 * has something to send". bullmq is the project's tool for independent retryable jobs
 * (DESIGN.md): here it brings the work to a worker process and, when a gateway fails, runs the
 * retry after its backoff as a delayed job (src/push/sender.ts).
 *
 * Idempotent: the evaluator enqueues before it acknowledges its batch, so a batch applied again
 * (a worker died) adds the same members (ZADD NX: nothing new) and the same job ids (bullmq keeps
 * one job per id). A job is only a wake-up; the set is the truth, so a lost or duplicate job
 * neither loses nor doubles a notification.
 *
 * bullmq is imported at the first job, not with this module: fronts import this module (through
 * the push evaluator's, for /notifications) but never queue, and bullmq
 * with its dependencies cost a front ~12–17 MB PSS (README, "Memory").
 */
import { createHash } from 'node:crypto';
import type { Queue } from 'bullmq';
import type { Cluster, Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { AxonConfig } from '../../cluster.config';
import { pusherKey } from '../../actors/user';
import { bullConnection } from '../runtime/bull-connection';
import { shardOf, type Family } from '../store/shards';
import { userData, type KeySpace } from '../store/keys';
import type { RedisClient } from '../store/redis';

export const PUSH_QUEUE = 'push';
/** The member of a pusher's set that stands for "send the current badge" (at most one pending). */
export const BADGE_MEMBER = 'badge';

/** A pusher's id in keys and job ids: short, and unique across users. */
export function pusherIdOf(userId: string, appId: string, pushkey: string): string {
  return createHash('sha256').update(`${userId}\u0000${pusherKey(appId, pushkey)}`).digest('base64url').slice(0, 24);
}

export function pushQueuePrefix(config: AxonConfig): string {
  return `${config.redis.keyPrefix}{push-jobs}`;
}

/** A notification waiting in a pusher's set. */
export interface QueuedNotification {
  /** Room, event, and the actions the user's rules gave it. */
  r: string;
  e: string;
  a: unknown[];
}

/** The job's data: which pusher has something to send. */
export interface DrainJob {
  userId: string;
  pusherId: string;
  /** The pusher's key among the user's (`pusherKey`). */
  key: string;
}

export class PushQueue {
  private queue: Promise<Queue> | null = null;
  private connection: Redis | Cluster | null = null;

  constructor(
    private readonly redis: RedisClient,
    private readonly keys: KeySpace,
    private readonly shardCounts: Record<Family, number>,
    private readonly config: AxonConfig,
    private readonly log: Logger,
  ) {}

  private q(): Promise<Queue> {
    this.queue ??= import('bullmq').then(({ Queue }) => {
      this.connection = bullConnection(this.config);
      const queue = new Queue(PUSH_QUEUE, { connection: this.connection, prefix: pushQueuePrefix(this.config) });
      queue.on('error', (err) => this.log.warn({ err }, 'push queue: error'));
      return queue;
    });
    this.queue.catch(() => {
      this.queue = null;
    });
    return this.queue;
  }

  private userKey(userId: string, name: string): string {
    return this.keys.shard('user', shardOf(userId, this.shardCounts.user)).data(name);
  }

  /**
   * Queue a notification (or, with `BADGE_MEMBER`, a badge update) for one pusher at `score`, and
   * wake a sender. A badge already pending moves to the later score (only the newest count matters).
   */
  async enqueue(userId: string, appId: string, pushkey: string, member: string, score: number): Promise<void> {
    const pusherId = pusherIdOf(userId, appId, pushkey);
    const key = this.userKey(userId, userData.pushQueue(userId, pusherId));
    if (member === BADGE_MEMBER) await this.redis.zadd(key, score, member);
    else await this.redis.zadd(key, 'NX', score, member);
    const job: DrainJob = { userId, pusherId, key: pusherKey(appId, pushkey) };
    await (await this.q()).add('drain', job, { jobId: `d_${pusherId}_${score}_${member === BADGE_MEMBER ? 'b' : 'n'}`, removeOnComplete: { age: 3600, count: 10_000 }, removeOnFail: { age: 24 * 3600 }, attempts: 5, backoff: { type: 'exponential', delay: 1000 } });
  }

  /** A wake-up after `delayMs` (a gateway's backoff), one per pusher and retry time. */
  async retryLater(job: DrainJob, retryAt: number): Promise<void> {
    await (await this.q()).add('drain', job, { jobId: `r_${job.pusherId}_${retryAt}`, delay: Math.max(0, retryAt - Date.now()), removeOnComplete: { age: 3600, count: 10_000 }, removeOnFail: { age: 24 * 3600 }, attempts: 5, backoff: { type: 'exponential', delay: 1000 } });
  }

  /**
   * A look at the pusher's queue when another sender's lock expires (in case that sender died):
   * at most one booked per pusher and second.
   */
  async lookAgain(job: DrainJob, at: number): Promise<void> {
    const second = Math.ceil(at / 1000);
    await (await this.q()).add('drain', job, { jobId: `l_${job.pusherId}_${second}`, delay: Math.max(0, second * 1000 - Date.now()), removeOnComplete: { age: 3600, count: 10_000 }, removeOnFail: { age: 24 * 3600 }, attempts: 5, backoff: { type: 'exponential', delay: 1000 } });
  }

  async close(): Promise<void> {
    const q = this.queue;
    this.queue = null;
    if (q) await q.then((queue) => queue.close()).catch(() => undefined);
    this.connection?.disconnect();
    this.connection = null;
  }
}
