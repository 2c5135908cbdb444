/**
 * Room deletions as background jobs (`DELETE /_synapse/admin/v2/rooms/{roomId}`, the workflow of
 * src/rooms/room-deletion.ts), run by the worker processes beside their other bullmq jobs (media,
 * push); the fronts never load bullmq for them.
 *
 * A deletion is a record of our own, `keys.roomDeletion(deleteId)` (room, parameters, status,
 * result so far, error), which the front writes (`scheduleRoomDeletion`) in one MULTI with the
 * room's list of deletions, the pending set and a wake-up; the status endpoints read the record
 * alone (`roomDeletionStatus`). A worker (`startRoomDeletionJobs`) waits on the wake-up list
 * (BLPOP, one worker takes each wake-up) and looks at the pending set when woken, at its start and
 * every 30 s (a wake-up taken by a worker that died, deletions asked while no worker ran): each
 * pending deletion becomes a bullmq job whose id is the delete id, then leaves the set — added
 * twice (a worker died in between, two workers at once) it is still one job. bullmq gives the job
 * to one worker, retries it with backoff, and hands a job whose worker died (stalled) to another;
 * the workflow's steps are idempotent and the job starts from the record's result so far.
 */
import { randomBytes } from 'node:crypto';
import type { Job } from 'bullmq';
import type { Logger } from 'pino';
import type { AxonConfig } from '../../cluster.config';
import type { ApiContext } from '../api/context';
import { MatrixError } from '../http/errors';
import type { SigningKey } from '../protocol/crypto';
import type { JsonObject } from '../protocol/json';
import { MembershipIndex } from '../readers/membership-index';
import { ActorClient } from '../runtime/actor-client';
import { bullConnection } from '../runtime/bull-connection';
import { redisTargetFor, shardCountsFor } from '../runtime/cluster-settings';
import { KeySpace } from '../store/keys';
import { connectRedis, type RedisClient } from '../store/redis';
import { RoomReader } from '../store/room-reader';
import { AliasStore } from './aliases';
import { deleteRoom, emptyShutdownResult, type RoomDeletionParams, type ShutdownResult } from './room-deletion';

export const ADMIN_ROOMS_QUEUE = 'admin-rooms';
/** How long a deletion's record is kept after it was asked for or last changed (Synapse keeps its tasks' a week). */
const RECORD_KEPT_S = 7 * 24 * 3600;
/** How often a worker looks at the pending set without a wake-up. */
const SWEEP_MS = 30_000;
/** Wake-ups kept at most: each one only makes a worker look at the pending set. */
const WAKE_UPS_KEPT = 16;
/** How long a stopping worker waits for its deletions under way. */
const CLOSE_WAIT_MS = 5_000;

/** Synapse's task statuses. */
export type RoomDeletionStatus = 'scheduled' | 'active' | 'complete' | 'failed';

interface DeletionJob {
  /** Absent in a job queued by a front before deletions had records (see fromFrontJob). */
  deleteId?: string;
}

/**
 * Record a deletion of `roomId` and wake a worker for it; answers its delete id. Refused (400, as
 * Synapse: "Purge already in progress") while another deletion of the room is scheduled or active.
 */
export async function scheduleRoomDeletion(redis: RedisClient, keys: KeySpace, roomId: string, params: RoomDeletionParams): Promise<string> {
  for (const id of await redis.zrange(keys.roomDeletions(roomId), 0, -1)) {
    const status = await redis.hget(keys.roomDeletion(id), 'status');
    if (status === 'scheduled' || status === 'active') throw new MatrixError(400, 'M_UNKNOWN', `Purge already in progress for ${roomId}`);
  }
  const deleteId = randomBytes(12).toString('base64url').replace(/[-_]/g, 'x');
  const now = Date.now();
  // One hash tag ({admin}): one MULTI on a Redis Cluster too.
  await redis
    .multi()
    .zadd(keys.roomDeletions(roomId), now, deleteId)
    .expire(keys.roomDeletions(roomId), RECORD_KEPT_S)
    .hset(keys.roomDeletion(deleteId), { room_id: roomId, status: 'scheduled' satisfies RoomDeletionStatus, params: JSON.stringify(params) })
    .expire(keys.roomDeletion(deleteId), RECORD_KEPT_S)
    .zadd(keys.roomDeletionsPending(), now, deleteId)
    .rpush(keys.roomDeletionsWake(), '1')
    .ltrim(keys.roomDeletionsWake(), -WAKE_UPS_KEPT, -1)
    .exec();
  return deleteId;
}

/** The deletions of a room, oldest first. */
export function roomDeletionIds(redis: RedisClient, keys: KeySpace, roomId: string): Promise<string[]> {
  return redis.zrange(keys.roomDeletions(roomId), 0, -1);
}

/** Synapse's answer for a deletion (`delete_id`, `room_id`, `status`, `shutdown_room`, `error` when failed), or null when there is none by that id. */
export async function roomDeletionStatus(redis: RedisClient, keys: KeySpace, deleteId: string): Promise<JsonObject | null> {
  const rec = await redis.hgetall(keys.roomDeletion(deleteId));
  if (!rec.room_id || !rec.status) return null;
  const body: JsonObject = { delete_id: deleteId, room_id: rec.room_id, status: rec.status, shutdown_room: rec.result ? (JSON.parse(rec.result) as JsonObject) : null };
  if (rec.status === 'failed' && rec.error) body.error = rec.error;
  return body;
}

export interface RunningRoomDeletionJobs {
  close(): Promise<void>;
}

/**
 * The workers' side: hand pending deletions to bullmq and run them. `signingKey`: the server's (a
 * deletion with `new_room_user_id` creates a room).
 */
export async function startRoomDeletionJobs(config: AxonConfig, log: Logger, workerId: string, signingKey: SigningKey): Promise<RunningRoomDeletionJobs> {
  const { Queue, Worker: BullWorker, UnrecoverableError } = await import('bullmq');
  const keys = new KeySpace(config.redis.keyPrefix);
  const shardCounts = shardCountsFor(config);
  const redis = connectRedis(redisTargetFor(config));
  // BLPOP blocks its connection: one of its own.
  const waiter = connectRedis(redisTargetFor(config));
  const actors = new ActorClient(redis, keys, shardCounts, `rd-${workerId}-${process.pid}`);
  await actors.start();
  const jlog = log.child({ component: 'room-deletion-jobs' });
  // What the workflow calls (room creation, joins, aliases, sends) as a client of the actors, like
  // a front's request handlers; no federation client: a deletion's new room is local.
  const ctx: ApiContext = { config, redis, keys, shardCounts, actors, rooms: new RoomReader(redis, keys, shardCounts.room), signingKey, log: jlog };
  const deps = { aliases: new AliasStore(ctx), index: new MembershipIndex(redis, keys, shardCounts.user) };
  const prefix = keys.adminJobsPrefix();
  const queueConnection = bullConnection(config);
  const workerConnection = bullConnection(config);
  const queue = new Queue<DeletionJob>(ADMIN_ROOMS_QUEUE, { connection: queueConnection, prefix });
  queue.on('error', (err) => jlog.warn({ err }, 'room deletion jobs: queue error'));

  const update = async (deleteId: string, fields: Record<string, string>): Promise<void> => {
    await redis.multi().hset(keys.roomDeletion(deleteId), fields).expire(keys.roomDeletion(deleteId), RECORD_KEPT_S).exec();
  };

  const run = async (job: Job<DeletionJob>): Promise<ShutdownResult | null> => {
    const deleteId = job.data.deleteId ?? (await fromFrontJob(job));
    if (!deleteId) return null;
    const rec = await redis.hgetall(keys.roomDeletion(deleteId));
    // Expired, or done already (a job added again after it finished).
    if (!rec.room_id || !rec.params || rec.status === 'complete' || rec.status === 'failed') return null;
    const params = JSON.parse(rec.params) as RoomDeletionParams;
    const before = rec.result ? (JSON.parse(rec.result) as ShutdownResult) : emptyShutdownResult();
    await update(deleteId, { status: 'active' });
    try {
      const result = await deleteRoom(ctx, deps, rec.room_id, params, before, (r, phase) => update(deleteId, { result: JSON.stringify(r), phase }));
      await update(deleteId, { status: 'complete', result: JSON.stringify(result) });
      return result;
    } catch (e) {
      // An answer the request itself earns (a remote new_room_user_id, an unknown room) is the same on every attempt.
      const final = e instanceof MatrixError && e.status < 500 && e.status !== 429;
      const reason = final ? `${e.errcode}: ${e.message}` : (e as Error).message;
      const lastAttempt = final || job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
      await update(deleteId, lastAttempt ? { status: 'failed', error: reason } : { status: 'scheduled' }).catch(() => undefined);
      if (final) throw new UnrecoverableError(reason);
      throw e;
    }
  };
  /**
   * A job a front queued before deletions had records of their own (its data the room and the
   * parameters, its progress the result so far, its id the delete id): its record is made from it,
   * so a deletion asked before an upgrade still runs and reports.
   */
  const fromFrontJob = async (job: Job<DeletionJob>): Promise<string | null> => {
    const old = job.data as unknown as { roomId?: string; params?: RoomDeletionParams };
    if (!job.id || typeof old.roomId !== 'string' || !old.params) return null;
    if (!(await redis.exists(keys.roomDeletion(job.id)))) {
      const progress = job.progress as { result?: ShutdownResult } | number | undefined;
      const result: Record<string, string> = typeof progress === 'object' && progress?.result ? { result: JSON.stringify(progress.result) } : {};
      await update(job.id, { room_id: old.roomId, status: 'scheduled', params: JSON.stringify(old.params), ...result });
    }
    return job.id;
  };
  const worker = new BullWorker<DeletionJob>(ADMIN_ROOMS_QUEUE, run, { connection: workerConnection, prefix, concurrency: 2 });
  worker.on('error', (err) => jlog.warn({ err }, 'room deletion jobs: worker error'));
  worker.on('failed', (job, err) => {
    jlog.warn({ err, delete_id: job?.data.deleteId ?? job?.id }, 'room deletion jobs: deletion failed');
    // A job bullmq gave up on without a last run of ours (stalled too often: its workers died
    // mid-run) is failed in the record too.
    if (job) void markGivenUp(job, err.message).catch(() => undefined);
  });
  const markGivenUp = async (job: Job<DeletionJob>, reason: string): Promise<void> => {
    const deleteId = job.data.deleteId ?? job.id;
    if (!deleteId || (await job.getState()) !== 'failed') return;
    const status = await redis.hget(keys.roomDeletion(deleteId), 'status');
    if (status === 'scheduled' || status === 'active') await update(deleteId, { status: 'failed', error: reason });
  };

  /** Every pending deletion into bullmq (the job id is the delete id: adding one twice is one job). */
  const handOver = async (): Promise<void> => {
    for (;;) {
      const ids = await redis.zrange(keys.roomDeletionsPending(), 0, 99);
      for (const deleteId of ids) {
        await queue.add('delete_room', { deleteId }, { jobId: deleteId, attempts: 5, backoff: { type: 'exponential', delay: 2000 }, removeOnComplete: true, removeOnFail: { age: RECORD_KEPT_S } });
        await redis.zrem(keys.roomDeletionsPending(), deleteId);
      }
      if (ids.length < 100) return;
    }
  };
  let closed = false;
  const loop = (async () => {
    while (!closed) {
      try {
        await handOver();
        await waiter.blpop(keys.roomDeletionsWake(), SWEEP_MS / 1000);
      } catch (err) {
        if (closed) return;
        jlog.warn({ err }, 'room deletion jobs: could not look for deletions');
        await new Promise((res) => setTimeout(res, 1000).unref());
      }
    }
  })();

  return {
    async close() {
      closed = true;
      waiter.disconnect();
      await loop;
      // A deletion under way may take minutes: it gets a few seconds to end, then is left to
      // bullmq's stall check (another worker resumes it from its record).
      await Promise.race([worker.close(), new Promise((res) => setTimeout(res, CLOSE_WAIT_MS).unref())]);
      await queue.close();
      queueConnection.disconnect();
      workerConnection.disconnect();
      await actors.close();
      redis.disconnect();
    },
  };
}
