/**
 * What the operator scripts do to a running cluster: read its state (workers, leases, inbox lag,
 * pending and dead-letter counts) and move shards live — in batches of up to 1,024 at once, via
 * reservations the current holders honour after finishing their in-flight messages (see
 * Worker.handOff), each shard's move independent of the others'.
 */
import { FAMILIES, isFamily, shardName, type Family } from '../store/shards';
import { holdingLeft, holdingsLeft, reserveShards } from './worker';
import { INBOX_GROUP, type KeySpace } from '../store/keys';
import type { RedisClient } from '../store/redis';
import { groupBy } from '../store/turn-batcher';
import { readsPacked } from './envelope';

export interface WorkerInfo {
  id: string;
  alive: boolean;
  heartbeatAgoMs: number;
  state: string;
  pid: number | null;
  host: string;
  shards: number;
  /** Alive, and its last heartbeat said its previous lease round reached Redis within the lease TTL. */
  ready: boolean;
  /** How long its previous lease round took (ms), or null when it has not said. */
  leaseRoundMs: number | null;
  /** The newest inbox entry format its heartbeat says it reads (1: a worker of an earlier version; askers write format 2 only when every live worker reads it). */
  inboxFormat: 1 | 2;
}

export interface ShardInfo {
  family: Family;
  shard: number;
  owner: string;
  token: number;
  /** Time since the current holder acquired it (ms), or null. */
  leaseAgeMs: number | null;
  expiresInMs: number;
  target: string;
  inboxLength: number;
  /** Entries not yet delivered to the group (Redis 7 XINFO GROUPS lag). */
  lag: number;
  pending: number;
  dead: number;
  /** Inbox entries the worker group has read since the stream began (Redis 7 `entries-read`): a counter, for rates. */
  entriesRead: number;
  /** Entries ever appended to the outbox (its readers' `entries-read` + `lag`), with `outputs` only: a counter, for rates. */
  outputsAdded: number;
}

export interface Move {
  family: Family;
  shard: number;
  from: string;
  to: string;
}

export async function readWorkers(redis: RedisClient, keys: KeySpace, leaseTtlMs: number): Promise<WorkerInfo[]> {
  const now = Date.now();
  const rows = (await redis.zrange(keys.workers(), 0, -1, 'WITHSCORES')) as string[];
  const out: WorkerInfo[] = [];
  for (let i = 0; i < rows.length; i += 2) {
    const id = rows[i]!;
    const beat = Number(rows[i + 1]);
    const info = await redis.hgetall(keys.workerInfo(id));
    const alive = now - beat <= leaseTtlMs;
    out.push({
      id,
      alive,
      // Workers from before readiness was reported say nothing: alive counts as ready.
      ready: alive && info.ready !== '0' && info.state !== 'stopped',
      leaseRoundMs: info.lease_round_ms ? Number(info.lease_round_ms) : null,
      heartbeatAgoMs: now - beat,
      state: info.state ?? 'unknown',
      pid: info.pid ? Number(info.pid) : null,
      host: info.host ?? '',
      shards: Number(info.shards ?? 0),
      inboxFormat: readsPacked(info.inbox_format, info.heartbeat) ? 2 : 1,
    });
  }
  return out.sort((a, b) => a.id.localeCompare(b.id, undefined, { numeric: true }));
}

/** Live workers that accept shards (not draining). */
export async function acceptingWorkers(redis: RedisClient, keys: KeySpace, leaseTtlMs: number): Promise<string[]> {
  return (await readWorkers(redis, keys, leaseTtlMs)).filter((w) => w.alive && w.state === 'running').map((w) => w.id);
}

/** XINFO GROUPS of a stream, each group's fields as a map (none when the stream does not exist). */
async function xinfoGroups(redis: RedisClient, stream: string): Promise<Map<string, unknown>[]> {
  const groups = await (redis.xinfo('GROUPS', stream) as Promise<unknown[][]>).catch(() => [] as unknown[][]);
  return groups.map((g) => {
    const m = new Map<string, unknown>();
    for (let i = 0; i + 1 < g.length; i += 2) m.set(String(g[i]), g[i + 1]);
    return m;
  });
}

/**
 * Every shard's lease; with `details` also its inbox length, lag, pending and dead-letter counts
 * and read counter; with `outputs` too, its outbox's append counter (one more call per shard).
 */
export async function readShards(redis: RedisClient, keys: KeySpace, shardCounts: Record<Family, number>, opts: { details?: boolean; outputs?: boolean } = {}): Promise<ShardInfo[]> {
  const now = Date.now();
  const refs = FAMILIES.flatMap((family) => Array.from({ length: shardCounts[family] }, (_x, shard) => ({ family, shard })));
  const leases = await Promise.all(refs.map((r) => redis.hmget(keys.shard(r.family, r.shard).lease, 'owner', 'epoch', 'token', 'acquired', 'target', 'target_expires')));
  // A lease is held while its holder's epoch is live (one look per worker and epoch).
  const left = await holdingsLeft(redis, keys, leases.map(([owner, epoch]) => ({ owner: owner ?? '', epoch: epoch ?? '' })));
  const jobs: Promise<ShardInfo>[] = [];
  for (const [i, { family, shard }] of refs.entries()) {
    const k = keys.shard(family, shard);
    jobs.push(
      (async () => {
        const [owner, epoch, token, acquired, target, targetExpires] = leases[i]!;
        const expiresIn = holdingLeft(left, owner ?? '', epoch ?? '');
        const held = expiresIn > 0;
        const info: ShardInfo = {
          family, shard,
          owner: held ? owner! : '',
          token: Number(token ?? 0),
          leaseAgeMs: held && acquired ? now - Number(acquired) : null,
          expiresInMs: held ? expiresIn : 0,
          target: target && Number(targetExpires) > now ? target : '',
          inboxLength: 0, lag: 0, pending: 0, dead: 0, entriesRead: 0, outputsAdded: 0,
        };
        if (opts.details) {
          const [len, dead, groups, outboxGroups] = await Promise.all([
            redis.xlen(k.inbox),
            redis.xlen(k.dead),
            xinfoGroups(redis, k.inbox),
            opts.outputs ? xinfoGroups(redis, k.outbox) : Promise.resolve([]),
          ]);
          info.inboxLength = len;
          info.dead = dead;
          for (const m of groups) {
            if (m.get('name') !== INBOX_GROUP) continue;
            info.pending = Number(m.get('pending') ?? 0);
            info.lag = m.get('lag') === null || m.get('lag') === undefined ? 0 : Number(m.get('lag'));
            info.entriesRead = Number(m.get('entries-read') ?? 0);
          }
          // Every reader group has read up to `entries-read` and has `lag` left: their sum is
          // what was ever added (Redis leaves lag null when it cannot tell; that group is skipped).
          for (const m of outboxGroups) {
            const lag = m.get('lag');
            if (lag === null || lag === undefined) continue;
            info.outputsAdded = Math.max(info.outputsAdded, Number(m.get('entries-read') ?? 0) + Number(lag));
          }
        }
        return info;
      })(),
    );
  }
  return Promise.all(jobs);
}

/** One worker as `npm run cluster -- status` and the dashboard show it: its record and its shards summed. */
export interface WorkerRow {
  worker: string;
  alive: boolean;
  ready: boolean;
  leaseRoundMs: number | null;
  state: string;
  pid: number | null;
  host: string;
  heartbeatAgoMs: number | null;
  /** The inbox entry format it reads (WorkerInfo.inboxFormat), null for an owner with no record. */
  inboxFormat: 1 | 2 | null;
  shards: Record<Family, number>;
  /** Youngest and oldest lease among its shards (ms since acquired), or null when it holds none. */
  leaseAgeMs: { min: number; max: number } | null;
  inboxLag: number;
  pending: number;
  deadLetters: number;
}

/** A row per worker known from heartbeats or leases (shards nobody holds: the `(unowned)` row). */
export function workerRows(workers: WorkerInfo[], shards: ShardInfo[]): WorkerRow[] {
  const byOwner = new Map<string, ShardInfo[]>();
  for (const s of shards) {
    const k = s.owner || '(unowned)';
    if (!byOwner.has(k)) byOwner.set(k, []);
    byOwner.get(k)!.push(s);
  }
  return [...new Set([...workers.map((w) => w.id), ...byOwner.keys()])].map((id) => {
    const w = workers.find((x) => x.id === id);
    const mine = byOwner.get(id) ?? [];
    const ages = mine.map((s) => s.leaseAgeMs ?? 0);
    return {
      worker: id,
      alive: w?.alive ?? false,
      ready: w?.ready ?? false,
      leaseRoundMs: w?.leaseRoundMs ?? null,
      state: w?.state ?? (id === '(unowned)' ? '-' : 'unknown'),
      pid: w?.pid ?? null,
      host: w?.host ?? '',
      heartbeatAgoMs: w?.heartbeatAgoMs ?? null,
      inboxFormat: w?.inboxFormat ?? null,
      shards: Object.fromEntries(FAMILIES.map((f) => [f, mine.filter((s) => s.family === f).length])) as Record<Family, number>,
      leaseAgeMs: mine.length ? { min: Math.min(...ages), max: Math.max(...ages) } : null,
      inboxLag: mine.reduce((n, s) => n + s.lag, 0),
      pending: mine.reduce((n, s) => n + s.pending, 0),
      deadLetters: mine.reduce((n, s) => n + s.dead, 0),
    };
  });
}

/** An operator's request that cannot be carried out as asked (bad shard, unknown target): say why. */
export class ClusterAdminError extends Error {}

/**
 * Move one shard to a live worker that accepts shards (`npm run cluster -- move-shard`, the
 * dashboard's move button). Throws ClusterAdminError for a request that cannot be done.
 */
export async function moveShard(redis: RedisClient, keys: KeySpace, shardCounts: Record<Family, number>, leaseTtlMs: number, family: string, shard: number, target: string, opts: { timeoutMs?: number } = {}): Promise<{ move: Move; ms: number }> {
  if (!isFamily(family)) throw new ClusterAdminError(`family must be one of ${FAMILIES.join(', ')}`);
  if (!Number.isInteger(shard) || shard < 0 || shard >= shardCounts[family]) throw new ClusterAdminError(`shard must be 0..${shardCounts[family] - 1}`);
  if (!target) throw new ClusterAdminError('name the worker to move it to');
  if (!(await acceptingWorkers(redis, keys, leaseTtlMs)).includes(target)) throw new ClusterAdminError(`worker ${target} is not alive and accepting shards`);
  const [owner] = await redis.hmget(keys.shard(family, shard).lease, 'owner');
  const [result] = await executeMoves(redis, keys, [{ family, shard, from: owner ?? '', to: target }], opts);
  return result!;
}

/**
 * Even out shard counts: per family, every accepting worker ends with floor or ceil of
 * shards/workers; shards move from the fullest to the emptiest, fewest moves first. Unowned
 * shards are assigned too. Pure.
 */
export function planRebalance(shards: { family: Family; shard: number; owner: string }[], workers: string[]): Move[] {
  if (workers.length === 0) return [];
  const moves: Move[] = [];
  for (const family of FAMILIES) {
    const mine = shards.filter((s) => s.family === family);
    if (mine.length === 0) continue;
    const byWorker = new Map<string, number[]>(workers.map((w) => [w, []]));
    const homeless: { shard: number; from: string }[] = [];
    for (const s of mine) {
      const list = byWorker.get(s.owner);
      if (list) list.push(s.shard);
      else homeless.push({ shard: s.shard, from: s.owner });
    }
    const base = Math.floor(mine.length / workers.length);
    let extra = mine.length % workers.length;
    // Workers that already hold the most keep the extra shards (fewer moves).
    const order = [...workers].sort((a, b) => byWorker.get(b)!.length - byWorker.get(a)!.length || a.localeCompare(b));
    const quota = new Map<string, number>();
    for (const w of order) quota.set(w, base + (extra-- > 0 ? 1 : 0));
    const surplus: { shard: number; from: string }[] = [...homeless];
    for (const w of order) {
      const list = byWorker.get(w)!;
      while (list.length > quota.get(w)!) surplus.push({ shard: list.pop()!, from: w });
    }
    for (const w of [...order].reverse()) {
      const list = byWorker.get(w)!;
      while (list.length < quota.get(w)! && surplus.length) {
        const s = surplus.shift()!;
        list.push(s.shard);
        moves.push({ family, shard: s.shard, from: s.from, to: w });
      }
    }
  }
  return moves;
}

/** Shards of `from` spread evenly over `to` (for drain). Pure. */
export function planDrain(shards: { family: Family; shard: number; owner: string }[], from: string, to: string[]): Move[] {
  if (to.length === 0) return [];
  const counts = new Map<string, number>(to.map((w) => [w, shards.filter((s) => s.owner === w).length]));
  const moves: Move[] = [];
  for (const s of shards.filter((x) => x.owner === from)) {
    const target = [...counts.entries()].sort((a, b) => a[1] - b[1] || a[0].localeCompare(b[0]))[0]![0];
    counts.set(target, counts.get(target)! + 1);
    moves.push({ family: s.family, shard: s.shard, from, to: target });
  }
  return moves;
}

/**
 * Shards reserved at once by a drain or rebalance (their holders hand them off in parallel, the
 * targets take them all at once): a whole worker's share at the default shard counts.
 */
const MOVE_BATCH = 1024;

/**
 * Carry out moves in batches of `batch` (default MOVE_BATCH): reserve every shard of a batch for
 * its target at once (one nudge per worker involved), then wait until each target holds and runs
 * its shards (its lease names the target, and the target has taken the shard's name off its
 * incoming set, which it does once the shard's runner has started), reading the leases of the
 * batch's shards still waiting every 50 ms (every 250 ms while more than 64 wait). Resolves with how long each move took
 * (from its batch's start); rejects when a batch has not finished within `timeoutMs`.
 */
export async function executeMoves(
  redis: RedisClient,
  keys: KeySpace,
  moves: Move[],
  opts: { timeoutMs?: number; batch?: number; onMoved?: (m: Move, ms: number) => void; onPhase?: (phase: DrainPhase) => void } = {},
): Promise<{ move: Move; ms: number }[]> {
  const results: { move: Move; ms: number }[] = [];
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const size = Math.max(1, opts.batch ?? MOVE_BATCH);
  for (let i = 0; i < moves.length; i += size) {
    const batch = moves.slice(i, i + size);
    const started = Date.now();
    await reserveShards(redis, keys, batch);
    opts.onPhase?.('reserved');
    let waiting = batch;
    for (;;) {
      // The target took it (it takes shards only in a live epoch of its own)...
      const leases = await Promise.all(waiting.map((m) => redis.hget(keys.shard(m.family, m.shard).lease, 'owner')));
      // ...and runs it: a target takes a shard's name off its incoming set only once the shard's
      // runner has started (one SMISMEMBER per target among the shards it holds).
      const starting = await stillIncoming(redis, keys, waiting.filter((m, j) => leases[j] === m.to));
      const now = Date.now();
      const left: Move[] = [];
      waiting.forEach((m, j) => {
        const owner = leases[j];
        if (owner === m.to && !starting.has(moveKey(m))) {
          results.push({ move: m, ms: now - started });
          opts.onMoved?.(m, now - started);
        } else left.push(m);
      });
      waiting = left;
      if (waiting.length === 0) break;
      if (now - started > timeoutMs) {
        const m = waiting[0]!;
        const [owner] = await redis.hmget(keys.shard(m.family, m.shard).lease, 'owner');
        throw new Error(`${waiting.length} shard${waiting.length === 1 ? '' : 's'} did not reach ${waiting.length === 1 ? 'its target' : 'their targets'} within ${timeoutMs} ms (${m.family}:${m.shard} to ${m.to}: owner now ${owner || 'none'})`);
      }
      // Every 50 ms near the end; every 250 ms while hundreds are waiting (a poll of a whole
      // batch is a command per shard: 20,000 a second at 50 ms, on the Redis the moves need).
      await new Promise((r) => setTimeout(r, waiting.length > 64 ? 250 : 50));
    }
  }
  return results;
}

function moveKey(m: Move): string {
  return `${m.to}\u0000${shardName(m)}`;
}

/** The moves among `moves` whose shard's name is still in its target's incoming set (moveKey). */
async function stillIncoming(redis: RedisClient, keys: KeySpace, moves: Move[]): Promise<Set<string>> {
  const out = new Set<string>();
  await Promise.all(
    groupBy(moves, (m) => m.to).map(async (ms) => {
      const flags = await redis.smismember(keys.workerIncoming(ms[0]!.to), ...ms.map((m) => shardName(m)));
      ms.forEach((m, i) => {
        if (flags[i]) out.add(moveKey(m));
      });
    }),
  );
  return out;
}

export async function rebalance(redis: RedisClient, keys: KeySpace, shardCounts: Record<Family, number>, leaseTtlMs: number, opts: { timeoutMs?: number } = {}) {
  const workers = await acceptingWorkers(redis, keys, leaseTtlMs);
  const moves = planRebalance(await readShards(redis, keys, shardCounts), workers);
  return executeMoves(redis, keys, moves, opts);
}

/**
 * Steps of a drain, reported as they end (`npm run cluster -- drain --json` gives their times):
 * the worker reported it takes no new shards, the moves were planned (every lease read), a batch
 * was reserved (its holders nudged), every shard reached its target.
 */
export type DrainPhase = 'acknowledged' | 'planned' | 'reserved' | 'moved';

/**
 * How long a drain's word to its worker lasts unless the drain renews it (it does, every quarter of
 * this, while it runs): an operator that dies mid-drain does not leave the worker refusing shards
 * for good; it takes shards again once the word has expired.
 */
const DRAIN_CONTROL_TTL_MS = 60_000;

/**
 * Move every shard off `workerId`, then ask it to stop. A drain that fails (a target that never
 * takes its shards, a worker that never acknowledges) is called off before the error is thrown:
 * the worker takes shards again (the moves already made stay made).
 */
export async function drain(redis: RedisClient, keys: KeySpace, shardCounts: Record<Family, number>, leaseTtlMs: number, workerId: string, opts: { timeoutMs?: number; stop?: boolean; batch?: number; onMoved?: (m: Move, ms: number) => void; onPhase?: (phase: DrainPhase) => void } = {}) {
  // Checked before the worker is told: a drain it cannot finish would leave it refusing shards.
  const workers = await readWorkers(redis, keys, leaseTtlMs);
  if (!workers.some((w) => w.id === workerId && w.alive)) throw new ClusterAdminError(`worker ${workerId} is not alive`);
  if (!workers.some((w) => w.id !== workerId && w.alive && w.state === 'running')) throw new ClusterAdminError(`no other live worker to take ${workerId}'s shards`);
  const control = keys.workerControl(workerId);
  await redis.set(control, 'drain', 'PX', DRAIN_CONTROL_TTL_MS);
  const renew = setInterval(() => void redis.pexpire(control, DRAIN_CONTROL_TTL_MS).catch(() => undefined), DRAIN_CONTROL_TTL_MS / 4);
  let results: { move: Move; ms: number }[];
  try {
    // Its next lease round reads the control key: run it now rather than up to a round later.
    await redis.publish(keys.workerNudge(workerId), 'drain');
    // Wait until the worker has seen the drain (it reports it in its heartbeat).
    const deadline = Date.now() + (opts.timeoutMs ?? 30_000);
    while ((await redis.hget(keys.workerInfo(workerId), 'state')) !== 'draining') {
      if (Date.now() > deadline) throw new Error(`worker ${workerId} did not acknowledge the drain`);
      await new Promise((r) => setTimeout(r, 50));
    }
    opts.onPhase?.('acknowledged');
    const others = (await acceptingWorkers(redis, keys, leaseTtlMs)).filter((w) => w !== workerId);
    if (others.length === 0) throw new ClusterAdminError(`no other live worker to take ${workerId}'s shards`);
    const moves = planDrain(await readShards(redis, keys, shardCounts), workerId, others);
    opts.onPhase?.('planned');
    results = await executeMoves(redis, keys, moves, opts);
    opts.onPhase?.('moved');
  } catch (e) {
    clearInterval(renew);
    // Called off: the worker reads no word at its next round and takes shards again.
    if ((await redis.get(control).catch(() => null)) === 'drain') await redis.del(control).catch(() => undefined);
    throw e;
  }
  clearInterval(renew);
  // Drained: the stop word lasts (a worker restarted under this id clears it when it starts).
  await redis.set(control, opts.stop ?? true ? 'stop' : 'drain');
  return results;
}
