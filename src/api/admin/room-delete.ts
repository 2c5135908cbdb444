/**
 * Deleting rooms (Synapse's admin API):
 * - `DELETE /_synapse/admin/v1/rooms/{roomId}`: the deletion inline, answering its result;
 * - `DELETE /_synapse/admin/v2/rooms/{roomId}`: the same as a bullmq job (`delete_room` in the
 *   `admin-rooms` queue), answering `{delete_id}` at once; `GET /v2/rooms/{roomId}/delete_status`
 *   and `/v2/rooms/delete_status/{delete_id}` report it.
 *
 * The workflow is src/rooms/room-deletion.ts. The job's progress holds the result so far, so a
 * retried job (its process died) resumes with it; the delete id is the job id. The jobs run in
 * the front processes: the workflow is a client of the actors like any request handler (it sends
 * events, creates a room), which is what a front has everything for; bullmq hands each job to one
 * front, and a front that dies mid-job leaves it stalled for another to take.
 *
 * bullmq (~12-17 MB PSS with its own code) is loaded only when a front has deletions to deal with:
 * the front that queues one starts its job worker then, and every front looks every
 * `WATCH_MS` (one pipelined round trip: the lengths of the queue's unfinished-job keys) and
 * starts its job worker when the queue has unfinished jobs (one queued by a front that died, one
 * stalled by a front killed mid-job, a retry waiting for its backoff). Once started a job worker
 * stays: deletions are rare, and a front that had one may have another.
 */
import { randomBytes } from 'node:crypto';
import type { Queue, Worker as BullWorker, Job } from 'bullmq';
import { MatrixError, errors } from '../../http/errors';
import type { Front } from '../../http/server';
import type { JsonObject } from '../../protocol/json';
import { MembershipIndex } from '../../readers/membership-index';
import { AliasStore } from '../../rooms/aliases';
import { deleteRoom, emptyShutdownResult, parseRoomDeletionBody, type RoomDeletionDeps, type RoomDeletionParams, type ShutdownResult } from '../../rooms/room-deletion';
import { bullConnection } from '../../runtime/bull-connection';
import { jsonBody } from '../client/accounts-common';
import type { ApiContext } from '../context';
import { requireAdmin } from './common';
import { legalRoomId } from './rooms';

export const ADMIN_ROOMS_QUEUE = 'admin-rooms';
/** How long a finished deletion's status is kept (Synapse keeps its tasks' a week; a day is plenty to read it). */
const STATUS_KEPT_S = 7 * 24 * 3600;
/** How often a front without a job worker looks for unfinished deletions (a front that died with one). */
const WATCH_MS = 10_000;

interface DeletionJob {
  roomId: string;
  params: RoomDeletionParams;
}

interface DeletionProgress {
  phase: 'shutting_down' | 'purging';
  result: ShutdownResult;
}

/** The queue and the bullmq worker that runs the deletions in this front: bullmq is loaded and both are opened at their first use. */
class RoomDeletionJobs {
  private queue: Promise<Queue<DeletionJob>> | null = null;
  private worker: Promise<BullWorker<DeletionJob>> | null = null;
  private readonly connections: ReturnType<typeof bullConnection>[] = [];
  private watch: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(
    private readonly ctx: ApiContext,
    private readonly deps: RoomDeletionDeps,
  ) {}

  private prefix(): string {
    return this.ctx.keys.adminJobsPrefix();
  }

  q(): Promise<Queue<DeletionJob>> {
    this.queue ??= import('bullmq').then(({ Queue }) => {
      const c = bullConnection(this.ctx.config);
      this.connections.push(c);
      const queue = new Queue<DeletionJob>(ADMIN_ROOMS_QUEUE, { connection: c, prefix: this.prefix() });
      queue.on('error', (err) => this.ctx.log.warn({ err }, 'admin room jobs: queue error'));
      return queue;
    });
    // A failed load (it should not) is tried again at the next use.
    this.queue.catch(() => {
      this.queue = null;
    });
    return this.queue;
  }

  /** Look for unfinished deletions now and every WATCH_MS until this front has a job worker. */
  watchForJobs(): void {
    const look = async (): Promise<void> => {
      if (this.worker || this.closed) return;
      const { lists, sortedSets } = this.ctx.keys.bullUnfinishedJobs(this.prefix(), ADMIN_ROOMS_QUEUE);
      const p = this.ctx.redis.pipeline();
      for (const k of lists) p.llen(k);
      for (const k of sortedSets) p.zcard(k);
      const counts = (await p.exec()) ?? [];
      if (counts.some(([err, n]) => !err && Number(n) > 0)) await this.startWorker();
    };
    const tick = (): void => {
      look()
        .catch((err) => this.ctx.log.warn({ err }, 'admin room jobs: could not look for deletions'))
        .finally(() => {
          if (!this.worker && !this.closed) this.watch = setTimeout(tick, WATCH_MS).unref();
        });
    };
    tick();
  }

  /** Start taking jobs in this front (bullmq gives a job to one of the fronts that do). */
  startWorker(): Promise<BullWorker<DeletionJob>> {
    this.worker ??= import('bullmq').then(({ Worker }) => {
      const c = bullConnection(this.ctx.config);
      this.connections.push(c);
      const worker = new Worker<DeletionJob>(ADMIN_ROOMS_QUEUE, (job) => this.run(job), { connection: c, prefix: this.prefix(), concurrency: 2 });
      worker.on('error', (err) => this.ctx.log.warn({ err }, 'admin room jobs: worker error'));
      worker.on('failed', (job, err) => this.ctx.log.warn({ err, room_id: job?.data.roomId, delete_id: job?.id }, 'admin room jobs: deletion failed'));
      if (this.closed) void worker.close().catch(() => undefined);
      return worker;
    });
    this.worker.catch(() => {
      this.worker = null;
    });
    return this.worker;
  }

  private async run(job: Job<DeletionJob>): Promise<ShutdownResult> {
    const before = job.progress as DeletionProgress | number | undefined;
    const result = typeof before === 'object' && before?.result ? before.result : emptyShutdownResult();
    try {
      return await deleteRoom(this.ctx, this.deps, job.data.roomId, job.data.params, result, (r, phase) => job.updateProgress({ phase, result: r } satisfies DeletionProgress));
    } catch (e) {
      // An answer the request itself earns (a remote new_room_user_id, an unknown room) is the same on every attempt.
      if (e instanceof MatrixError && e.status < 500 && e.status !== 429) throw new (await import('bullmq')).UnrecoverableError(`${e.errcode}: ${e.message}`);
      throw e;
    }
  }

  close(): void {
    this.closed = true;
    if (this.watch) clearTimeout(this.watch);
    const worker = this.worker;
    const queue = this.queue;
    this.worker = null;
    this.queue = null;
    void (async () => {
      await worker?.then((w) => w.close()).catch(() => undefined);
      await queue?.then((q) => q.close()).catch(() => undefined);
      for (const c of this.connections) c.disconnect();
    })();
  }
}

/**
 * Synapse's task status of a job: scheduled, active, complete or failed. The state is read before
 * the job, so a job that finishes in between is reported as it was (active), never as complete
 * without its result.
 */
async function statusOf(queue: Queue<DeletionJob>, id: string): Promise<JsonObject | null> {
  const state = await queue.getJobState(id);
  const job = await queue.getJob(id);
  if (!job || job.name !== 'delete_room') return null;
  const status = state === 'completed' ? 'complete' : state === 'failed' ? 'failed' : state === 'active' ? 'active' : 'scheduled';
  const progress = job.progress as DeletionProgress | number | undefined;
  const result = state === 'completed' ? (job.returnvalue as ShutdownResult) : typeof progress === 'object' && progress ? progress.result : null;
  const body: JsonObject = { delete_id: String(job.id), room_id: job.data.roomId, status, shutdown_room: (result ?? null) as unknown as JsonObject };
  if (state === 'failed' && job.failedReason) body.error = job.failedReason;
  return body;
}

export function registerAdminRoomDeleteRoutes(front: Front, ctx: ApiContext): void {
  const deps: RoomDeletionDeps = { aliases: new AliasStore(ctx), index: new MembershipIndex(ctx.redis, ctx.keys, ctx.shardCounts.user) };
  const jobs = new RoomDeletionJobs(ctx, deps);
  jobs.watchForJobs();
  (ctx.closers ??= []).push(() => jobs.close());

  front.route('DELETE', '/_synapse/admin/v1/rooms/:roomId', async (req) => {
    const me = await requireAdmin(ctx, req);
    const params = parseRoomDeletionBody(jsonBody(req), me.userId);
    const roomId = legalRoomId(req.params.roomId);
    // Kicking a big room's users and purging it takes a while: the request may wait for it.
    req.allowWait(10 * 60_000);
    return { body: (await deleteRoom(ctx, deps, roomId, params)) as unknown as JsonObject };
  });

  front.route('DELETE', '/_synapse/admin/v2/rooms/:roomId', async (req) => {
    const me = await requireAdmin(ctx, req);
    const params = parseRoomDeletionBody(jsonBody(req), me.userId);
    const roomId = legalRoomId(req.params.roomId);
    // One deletion of a room at a time (Synapse: "Purge already in progress").
    for (const id of await ctx.redis.zrange(ctx.keys.roomDeletions(roomId), 0, -1)) {
      const job = await (await jobs.q()).getJob(id);
      const state = job ? await job.getState() : 'unknown';
      if (state === 'active' || state === 'waiting' || state === 'delayed' || state === 'prioritized' || state === 'waiting-children') throw new MatrixError(400, 'M_UNKNOWN', `Purge already in progress for ${roomId}`);
    }
    const deleteId = randomBytes(12).toString('base64url').replace(/[-_]/g, 'x');
    await ctx.redis.multi().zadd(ctx.keys.roomDeletions(roomId), Date.now(), deleteId).expire(ctx.keys.roomDeletions(roomId), STATUS_KEPT_S).exec();
    // This front takes jobs from now on: the deletion does not wait for another front to look.
    await jobs.startWorker();
    await (await jobs.q()).add('delete_room', { roomId, params }, { jobId: deleteId, attempts: 5, backoff: { type: 'exponential', delay: 2000 }, removeOnComplete: { age: STATUS_KEPT_S }, removeOnFail: { age: STATUS_KEPT_S } });
    return { body: { delete_id: deleteId } };
  });

  front.route('GET', '/_synapse/admin/v2/rooms/:roomId/delete_status', async (req) => {
    await requireAdmin(ctx, req);
    const roomId = legalRoomId(req.params.roomId);
    const results: JsonObject[] = [];
    for (const id of await ctx.redis.zrange(ctx.keys.roomDeletions(roomId), 0, -1)) {
      const status = await statusOf(await jobs.q(), id);
      if (status) results.push(status);
    }
    if (!results.length) throw errors.notFound(`No delete task for room_id '${roomId}' found`);
    return { body: { results } };
  });

  front.route('GET', '/_synapse/admin/v2/rooms/delete_status/:deleteId', async (req) => {
    await requireAdmin(ctx, req);
    const deleteId = req.params.deleteId ?? '';
    const status = /^[A-Za-z0-9]{1,64}$/.test(deleteId) ? await statusOf(await jobs.q(), deleteId) : null;
    if (!status) throw errors.notFound(`delete id '${deleteId}' not found`);
    return { body: status };
  });
}
