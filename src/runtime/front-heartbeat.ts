/**
 * Fronts report themselves in Redis, as workers do (Worker.heartbeat), so `npm run cluster --
 * status` can show each one and whether it is ready: every `FRONT_HEARTBEAT_MS` while Redis
 * answers its PINGs, a front writes its heartbeat time to the `fronts` sorted set and a hash of what
 * it knows about itself. A front that cannot reach Redis cannot write, so its heartbeat ages: the
 * status reader counts a front alive while its heartbeat is recent and ready when it also said so.
 */
import { hostname } from 'node:os';
import type { KeySpace } from '../store/keys';
import type { RedisClient } from '../store/redis';

export const FRONT_HEARTBEAT_MS = 2_000;
/** A heartbeat older than this: the front is gone, stuck, or cannot reach Redis. */
export const FRONT_ALIVE_MS = 3 * FRONT_HEARTBEAT_MS;
/** Front records not written for this long are dropped (fronts that died without saying so). */
const FRONT_RECORD_TTL_MS = 24 * 3600_000;

export interface FrontSelf {
  /** Redis answers its PINGs and the front is serving (not shutting down). */
  ready(): boolean;
  /** Round trip of its last PING (ms). */
  pingMs(): number | null;
  /** Requests being handled now. */
  inFlight(): number;
}

export interface FrontHeartbeat {
  stop(): Promise<void>;
}

export function startFrontHeartbeat(redis: RedisClient, keys: KeySpace, frontId: string, port: number, self: FrontSelf): FrontHeartbeat {
  const started = Date.now();
  let writing = false;
  const beat = async () => {
    if (writing || !self.ready()) return;
    writing = true;
    const now = Date.now();
    try {
      await Promise.all([
        redis.zadd(keys.fronts(), now, frontId),
        redis.hset(keys.frontInfo(frontId), { pid: process.pid, host: hostname(), port, started, heartbeat: now, state: 'serving', ready: self.ready() ? 1 : 0, ping_ms: self.pingMs() ?? '', in_flight: self.inFlight() }),
        redis.pexpire(keys.frontInfo(frontId), FRONT_RECORD_TTL_MS),
        redis.zremrangebyscore(keys.fronts(), '-inf', `(${now - FRONT_RECORD_TTL_MS}`),
      ]);
    } catch {
      /* Redis unreachable: the heartbeat ages, which is what status shows */
    } finally {
      writing = false;
    }
  };
  void beat();
  const timer = setInterval(() => void beat(), FRONT_HEARTBEAT_MS);
  timer.unref();
  return {
    async stop() {
      clearInterval(timer);
      await Promise.all([
        redis.zrem(keys.fronts(), frontId),
        redis.hset(keys.frontInfo(frontId), { state: 'stopped', ready: 0 }),
      ]).catch(() => undefined);
    },
  };
}

export interface FrontInfo {
  id: string;
  /** Heartbeat within FRONT_ALIVE_MS. */
  alive: boolean;
  /** Alive, and its last heartbeat said it reaches Redis and serves. */
  ready: boolean;
  heartbeatAgoMs: number;
  state: string;
  pid: number | null;
  host: string;
  port: number | null;
  pingMs: number | null;
  inFlight: number;
}

export async function readFronts(redis: RedisClient, keys: KeySpace): Promise<FrontInfo[]> {
  const now = Date.now();
  const rows = (await redis.zrange(keys.fronts(), 0, -1, 'WITHSCORES')) as string[];
  const out: FrontInfo[] = [];
  for (let i = 0; i < rows.length; i += 2) {
    const id = rows[i]!;
    const beat = Number(rows[i + 1]);
    const info = await redis.hgetall(keys.frontInfo(id));
    const alive = now - beat <= FRONT_ALIVE_MS;
    out.push({
      id,
      alive,
      ready: alive && info.ready === '1' && info.state === 'serving',
      heartbeatAgoMs: now - beat,
      state: info.state ?? 'unknown',
      pid: info.pid ? Number(info.pid) : null,
      host: info.host ?? '',
      port: info.port ? Number(info.port) : null,
      pingMs: info.ping_ms ? Number(info.ping_ms) : null,
      inFlight: Number(info.in_flight ?? 0),
    });
  }
  return out.sort((a, b) => a.id.localeCompare(b.id, undefined, { numeric: true }));
}
