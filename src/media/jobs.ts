/**
 * The media repository's background jobs, on bullmq (the project's tool for independent,
 * retryable jobs; DESIGN.md), in one queue on the cluster's Redis:
 * - `thumbnails` {mediaId}: pre-generate an uploaded image's thumbnails (`media.thumbnails.sizes`,
 *   else Synapse's defaults). A front adds it when it has recorded an upload, so the upload's
 *   answer never waits for libvips; the worker processes run it (a few attempts with backoff; the
 *   job id is the media id, so an upload is queued once). An image the thumbnailer refuses
 *   (a decompression bomb, not an image) is done, not retried.
 * - `retention`, repeated every `media.retention.intervalMs` (a bullmq job scheduler: one run per
 *   interval across all workers): delete local media not accessed for `media.retention.localMaxAgeDays`
 *   and cached remote media not accessed for `remoteMaxAgeDays`, through the media actors' delete, so a blob shared by several items goes with its last reference.
 *
 * Keys: `<redis.keyPrefix>{media-jobs}:media:…` — one hash tag, so the queue lives in one slot on
 * a Redis Cluster as bullmq requires.
 *
 * bullmq is imported when first used (`await import`): a front that never queues a job (no image
 * uploaded) does not load it (~12-17 MB PSS).
 */
import type { Queue, Job } from 'bullmq';
import type { Cluster, Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { AxonConfig, MediaConfig } from '../../cluster.config';
import { MatrixError } from '../http/errors';
import { ActorClient } from '../runtime/actor-client';
import { redisTargetFor, shardCountsFor } from '../runtime/cluster-settings';
import { bullConnection } from '../runtime/bull-connection';
import { KeySpace } from '../store/keys';
import { connectRedis } from '../store/redis';
import { createMediaStore } from './create-store';
import { MediaProcessingError } from './processing-errors';
import { MediaRepository } from './repository';
import { readAll } from './thumbnail-service';
import { DEFAULT_THUMBNAIL_SIZES, isThumbnailableType, Thumbnailer, thumbnailsToPregenerate, type ThumbnailSize } from './thumbnails';

export const MEDIA_QUEUE = 'media';
const RETENTION_SCHEDULER = 'media-retention';
const DAY_MS = 24 * 3600_000;

function queuePrefix(config: AxonConfig): string {
  return `${config.redis.keyPrefix}{media-jobs}`;
}

export function thumbnailSizes(config: MediaConfig): readonly ThumbnailSize[] {
  return config.thumbnails.sizes.length > 0 ? config.thumbnails.sizes : DEFAULT_THUMBNAIL_SIZES;
}

/** The fronts' side: queue jobs. The connection is opened at the first job. */
export class MediaJobQueue {
  private queue: Promise<Queue> | null = null;
  private connection: Redis | Cluster | null = null;

  constructor(
    private readonly config: AxonConfig,
    private readonly log: Logger,
  ) {}

  private q(): Promise<Queue> {
    this.queue ??= import('bullmq').then(({ Queue }) => {
      this.connection = bullConnection(this.config);
      const queue = new Queue(MEDIA_QUEUE, { connection: this.connection, prefix: queuePrefix(this.config) });
      queue.on('error', (err) => this.log.warn({ err }, 'media jobs: queue error'));
      return queue;
    });
    this.queue.catch(() => {
      this.queue = null;
    });
    return this.queue;
  }

  /** Queue the pre-generated thumbnails of an upload (images only). Never throws; a lost job only means on-demand thumbnails. */
  afterUpload(mediaId: string, contentType: string): void {
    if (!this.config.media.thumbnails.enabled || !isThumbnailableType(contentType)) return;
    this.q()
      .then((q) => q.add('thumbnails', { mediaId }, { jobId: `thumbs_${mediaId}`, attempts: 3, backoff: { type: 'exponential', delay: 2000 }, removeOnComplete: true, removeOnFail: 100 }))
      .catch((err) => this.log.warn({ err, media_id: mediaId }, 'media jobs: thumbnails not queued'));
  }

  async close(): Promise<void> {
    const q = this.queue;
    this.queue = null;
    if (q) await q.then((queue) => queue.close()).catch(() => undefined);
    this.connection?.disconnect();
    this.connection = null;
  }
}

/** Make and store the pre-generated thumbnails of one item that it does not have yet. Returns how many were stored. */
export async function pregenerateThumbnails(repo: MediaRepository, images: Thumbnailer, sizes: readonly ThumbnailSize[], mediaId: string, log: Logger): Promise<number> {
  const record = await repo.readRecord(mediaId);
  if (!record || record.q || !isThumbnailableType(record.t)) return 0;
  const original = await readAll(await repo.open(record));
  let todo: ReturnType<typeof thumbnailsToPregenerate>;
  let made: Awaited<ReturnType<Thumbnailer['thumbnailMany']>>;
  try {
    const probe = await images.check(original, record.t);
    const have = record.th ?? [];
    todo = thumbnailsToPregenerate(probe.width, probe.height, sizes).filter((s) => !have.some((t) => t.bw === s.box.width && t.bh === s.box.height && t.m === s.box.method && !t.an));
    if (todo.length === 0) return 0;
    made = await images.thumbnailMany(original, record.t, todo.map((s) => ({ width: s.box.width, height: s.box.height, method: s.box.method })));
  } catch (e) {
    // Not something a retry changes: the item gets no thumbnails (and the endpoint refuses with the same error).
    if (e instanceof MediaProcessingError) {
      log.info({ media_id: mediaId, reason: e.message }, 'media jobs: no thumbnails for this item');
      return 0;
    }
    throw e;
  }
  let stored = 0;
  for (const [i, size] of todo.entries()) {
    const t = made[i]!;
    const kept = await repo.storeThumbnail(mediaId, { bw: size.box.width, bh: size.box.height, m: size.box.method, w: t.width, h: t.height, t: t.contentType }, t.bytes);
    if (kept) stored++;
  }
  return stored;
}

/**
 * One retention pass: local media last accessed (else uploaded) before `now - localMaxAgeDays`,
 * and other servers' media cached here last accessed (else fetched) before `now -
 * remoteMaxAgeDays`, is deleted through the repository (media actor, then the blob's references:
 * a blob shared with a newer item stays). Returns how many items went.
 */
export async function runRetention(repo: MediaRepository, retention: MediaConfig['retention'], now: number, log: Logger): Promise<{ local: number; remote: number }> {
  const deleted = { local: 0, remote: 0 };
  if (retention.localMaxAgeDays <= 0 && retention.remoteMaxAgeDays <= 0) return deleted;
  const localCutoff = retention.localMaxAgeDays > 0 ? now - retention.localMaxAgeDays * DAY_MS : null;
  const remoteCutoff = retention.remoteMaxAgeDays > 0 ? now - retention.remoteMaxAgeDays * DAY_MS : null;
  for await (const { mediaId, record } of repo.scanRecords()) {
    const cutoff = record.m ? remoteCutoff : localCutoff;
    if (cutoff === null || (record.a ?? record.u) >= cutoff) continue;
    try {
      await repo.delete(mediaId);
      deleted[record.m ? 'remote' : 'local']++;
    } catch (err) {
      // Gone already (another pass, an admin): nothing to do. Anything else waits for the next pass.
      if (!(err instanceof MatrixError && err.status === 404)) log.warn({ err, media_id: mediaId }, 'media retention: item not deleted');
    }
  }
  if (deleted.local + deleted.remote > 0) log.info(deleted, 'media retention: deleted expired media');
  return deleted;
}

export interface RunningMediaJobs {
  close(): Promise<void>;
}

/**
 * The workers' side: process the media queue (and keep the retention schedule). Started by each
 * worker process; bullmq hands each job to one of them.
 */
export async function startMediaJobs(config: AxonConfig, log: Logger, workerId: string): Promise<RunningMediaJobs> {
  const { Queue, Worker: BullWorker } = await import('bullmq');
  const m = config.media;
  const keys = new KeySpace(config.redis.keyPrefix);
  const redis = connectRedis(redisTargetFor(config));
  const actors = new ActorClient(redis, keys, shardCountsFor(config), `mj-${workerId}-${process.pid}`);
  await actors.start();
  const store = await createMediaStore(config);
  const jlog = log.child({ component: 'media-jobs' });
  const repo = new MediaRepository({ store, actors, redis, keys, shardCounts: shardCountsFor(config), serverName: config.serverName, config: m, log: jlog });
  const images = new Thumbnailer({ maxPixels: m.thumbnails.maxPixels, maxConcurrent: m.thumbnails.maxConcurrent });
  const sizes = thumbnailSizes(m);
  const prefix = queuePrefix(config);
  const queueConnection = bullConnection(config);
  const workerConnection = bullConnection(config);
  const queue = new Queue(MEDIA_QUEUE, { connection: queueConnection, prefix });
  queue.on('error', (err) => jlog.warn({ err }, 'media jobs: queue error'));
  if (m.retention.localMaxAgeDays > 0 || m.retention.remoteMaxAgeDays > 0) {
    await queue.upsertJobScheduler(RETENTION_SCHEDULER, { every: m.retention.intervalMs }, { name: 'retention', data: {}, opts: { removeOnComplete: true, removeOnFail: 50 } });
  } else {
    await queue.removeJobScheduler(RETENTION_SCHEDULER).catch(() => undefined);
  }
  const worker = new BullWorker(
    MEDIA_QUEUE,
    async (job: Job) => {
      if (job.name === 'thumbnails') return { stored: await pregenerateThumbnails(repo, images, sizes, String(job.data.mediaId), jlog) };
      if (job.name === 'retention') return runRetention(repo, m.retention, Date.now(), jlog);
      jlog.warn({ name: job.name }, 'media jobs: unknown job');
      return null;
    },
    { connection: workerConnection, prefix, concurrency: m.thumbnails.maxConcurrent },
  );
  worker.on('error', (err) => jlog.warn({ err }, 'media jobs: worker error'));
  worker.on('failed', (job, err) => jlog.warn({ err, job: job?.name, id: job?.id }, 'media jobs: job failed'));
  return {
    async close() {
      await worker.close();
      await queue.close();
      queueConnection.disconnect();
      workerConnection.disconnect();
      await actors.close();
      store.close?.();
      redis.disconnect();
    },
  };
}
