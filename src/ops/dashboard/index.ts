/**
 * The operator dashboard on the metrics port: a page (plain HTML, CSS and JS from ./assets, no
 * framework) and its API under `/dashboard/api/`, for a server admin's access token:
 *
 *   GET  /dashboard                     the page (it asks for the token, keeps it in sessionStorage)
 *   GET  /dashboard/app.js, /app.css    its script and style
 *   GET  /dashboard/api/state           the cluster now (ClusterSnapshot) and the last operation
 *   GET  /dashboard/api/events          server-sent events: `snapshot` every poll, `move` per shard
 *                                       move seen, `operation` when one starts or ends
 *   POST /dashboard/api/move-shard      {family, shard, to}
 *   POST /dashboard/api/rebalance       {}
 *   POST /dashboard/api/drain           {worker}
 *
 * The API wants `Authorization: Bearer <token>` of a server admin, checked as the admin API checks
 * it (adminFromToken): 401 without a valid token, 403 `M_FORBIDDEN` for anyone else. The page reads
 * the event stream with fetch (EventSource cannot send that header).
 *
 * The buttons run what the cluster scripts run (src/runtime/cluster-admin.ts: moveShard, rebalance,
 * drain), one operation at a time; the request answers 202 at once and the operation's end comes
 * as an `operation` event, since a drain of a thousand shards takes longer than a request should.
 */
import { readFileSync } from 'node:fs';
import type http from 'node:http';
import type { Logger } from 'pino';
import { adminFromToken } from '../../api/admin/common';
import { MatrixError, errors } from '../../http/errors';
import { ClusterAdminError, drain, moveShard, rebalance } from '../../runtime/cluster-admin';
import type { KeySpace } from '../../store/keys';
import type { RedisClient } from '../../store/redis';
import type { Family } from '../../store/shards';
import type { MetricsRouteHandler } from '../metrics-server';
import { ClusterWatch, type ClusterSnapshot, type ObservedMove } from './cluster-watch';

export interface DashboardOptions {
  redis: RedisClient;
  keys: KeySpace;
  shardCounts: Record<Family, number>;
  leaseTtlMs: number;
  log: Logger;
  /** How often the cluster state is read while someone watches (ms; default 1000). */
  pollMs?: number;
}

/** The operation the buttons started last (one at a time). */
export interface DashboardOperation {
  id: number;
  kind: 'move-shard' | 'rebalance' | 'drain';
  args: Record<string, unknown>;
  by: string;
  state: 'running' | 'done' | 'failed';
  startedAt: number;
  finishedAt: number | null;
  /** Shards moved, when done. */
  moved: number | null;
  error: string | null;
}

export interface Dashboard {
  handler: MetricsRouteHandler;
  close(): void;
}

const MAX_BODY = 4096;
const asset = (name: string) => readFileSync(new URL(`./assets/${name}`, import.meta.url));
const ASSETS: Record<string, { type: string; body: Buffer }> = {
  '/dashboard': { type: 'text/html; charset=utf-8', body: asset('index.html') },
  '/dashboard/app.js': { type: 'text/javascript; charset=utf-8', body: asset('app.js') },
  '/dashboard/app.css': { type: 'text/css; charset=utf-8', body: asset('app.css') },
};

function sendJson(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', ...headers });
  res.end(JSON.stringify(body));
}

function bearer(req: http.IncomingMessage): string | null {
  const header = req.headers.authorization;
  if (!header) return null;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (!m) throw new MatrixError(401, 'M_MISSING_TOKEN', 'Malformed Authorization header');
  return m[1]!;
}

async function readJsonObject(req: http.IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY) throw errors.tooLarge();
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (text.trim() === '') return {};
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw errors.notJson();
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw errors.badJson('Request body must be a JSON object');
  return v as Record<string, unknown>;
}

export function createDashboard(o: DashboardOptions): Dashboard {
  const watch = new ClusterWatch({ redis: o.redis, keys: o.keys, shardCounts: o.shardCounts, leaseTtlMs: o.leaseTtlMs, log: o.log, pollMs: o.pollMs });
  const auth = { redis: o.redis, keys: o.keys, shardCounts: o.shardCounts };
  const streams = new Set<http.ServerResponse>();
  let operation: DashboardOperation | null = null;
  let nextId = 1;

  const broadcast = (event: string, data: unknown) => {
    const frame = `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
    for (const res of streams) res.write(frame);
  };

  /** Start an operation in the background; its end is logged and told to every stream. */
  const start = (kind: DashboardOperation['kind'], args: Record<string, unknown>, by: string, run: () => Promise<number>): DashboardOperation => {
    if (operation?.state === 'running') throw new MatrixError(409, 'M_UNKNOWN', `An operation is already running: ${operation.kind} (started ${new Date(operation.startedAt).toISOString()})`);
    const op: DashboardOperation = { id: nextId++, kind, args, by, state: 'running', startedAt: Date.now(), finishedAt: null, moved: null, error: null };
    operation = op;
    o.log.info({ operation: kind, args, user_id: by }, 'dashboard: operation started');
    broadcast('operation', op);
    void run().then(
      (moved) => {
        Object.assign(op, { state: 'done', moved, finishedAt: Date.now() });
        o.log.info({ operation: kind, args, moved, ms: op.finishedAt! - op.startedAt }, 'dashboard: operation done');
        broadcast('operation', op);
      },
      (err: unknown) => {
        Object.assign(op, { state: 'failed', error: err instanceof Error ? err.message : String(err), finishedAt: Date.now() });
        o.log.warn({ operation: kind, args, err }, 'dashboard: operation failed');
        broadcast('operation', op);
      },
    );
    return op;
  };

  const actions: Record<string, (body: Record<string, unknown>, by: string) => Promise<DashboardOperation>> = {
    async 'move-shard'(body, by) {
      const { family, shard, to } = body;
      if (typeof family !== 'string' || typeof to !== 'string' || typeof shard !== 'number') throw errors.badJson('Expected {"family": string, "shard": integer, "to": string}');
      // Checked before answering, so a bad request is a 400 rather than a failed operation;
      // moveShard checks again (the cluster may change in between).
      const [, problem] = await moveShardProblem(family, shard, to);
      if (problem) throw errors.invalidParam(problem);
      return start('move-shard', { family, shard, to }, by, async () => {
        await moveShard(o.redis, o.keys, o.shardCounts, o.leaseTtlMs, family, shard, to);
        return 1;
      });
    },
    async rebalance(_body, by) {
      return start('rebalance', {}, by, async () => (await rebalance(o.redis, o.keys, o.shardCounts, o.leaseTtlMs)).length);
    },
    async drain(body, by) {
      const { worker } = body;
      if (typeof worker !== 'string' || !worker) throw errors.badJson('Expected {"worker": string}');
      const snap = await watch.current();
      const row = snap.workers.find((w) => w.worker === worker);
      if (!row?.alive) throw errors.invalidParam(`Worker ${worker} is not alive`);
      if (!snap.workers.some((w) => w.worker !== worker && w.alive && w.state === 'running')) throw errors.invalidParam(`No other live worker to take ${worker}'s shards`);
      return start('drain', { worker }, by, async () => (await drain(o.redis, o.keys, o.shardCounts, o.leaseTtlMs, worker)).length);
    },
  };

  /** Why a move cannot be done as asked, or null (the checks moveShard makes, answered as 400s). */
  async function moveShardProblem(family: string, shard: number, to: string): Promise<[ClusterSnapshot, string | null]> {
    const snap = await watch.current();
    if (!(family in o.shardCounts)) return [snap, `family must be one of ${Object.keys(o.shardCounts).join(', ')}`];
    if (!Number.isInteger(shard) || shard < 0 || shard >= o.shardCounts[family as Family]) return [snap, `shard must be 0..${o.shardCounts[family as Family] - 1}`];
    const target = snap.workers.find((w) => w.worker === to);
    if (!target?.alive || target.state !== 'running') return [snap, `worker ${to} is not alive and accepting shards`];
    return [snap, null];
  }

  const openStream = async (req: http.IncomingMessage, res: http.ServerResponse) => {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' });
    res.write(`event: hello\ndata: ${JSON.stringify({ operation })}\n\n`);
    streams.add(res);
    const unfollow = watch.follow(
      (s) => res.write(`event: snapshot\ndata: ${JSON.stringify(s)}\n\n`),
      (m: ObservedMove) => res.write(`event: move\ndata: ${JSON.stringify(m)}\n\n`),
    );
    // A comment now and then keeps proxies from closing a quiet stream.
    const keepAlive = setInterval(() => res.write(': keep-alive\n\n'), 15_000);
    keepAlive.unref();
    const end = () => {
      clearInterval(keepAlive);
      streams.delete(res);
      unfollow();
    };
    req.on('close', end);
    res.on('error', end);
  };

  const handler: MetricsRouteHandler = async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://dashboard');
    const path = url.pathname.replace(/\/+$/, '') || '/';
    if (path !== '/dashboard' && !path.startsWith('/dashboard/')) return false;
    try {
      const page = ASSETS[path];
      if (page) {
        if (req.method !== 'GET' && req.method !== 'HEAD') throw errors.methodNotAllowed();
        // The page holds an admin's token: no framing by other sites, no scripts but its own.
        res.writeHead(200, {
          'content-type': page.type,
          'cache-control': 'no-store',
          'x-frame-options': 'DENY',
          'content-security-policy': "default-src 'self'; frame-ancestors 'none'",
          'referrer-policy': 'no-referrer',
        });
        res.end(req.method === 'HEAD' ? undefined : page.body);
        return true;
      }
      if (!path.startsWith('/dashboard/api/')) throw errors.unrecognized();
      const name = path.slice('/dashboard/api/'.length);
      const admin = await adminFromToken(auth, bearer(req));
      if (name === 'state') {
        if (req.method !== 'GET') throw errors.methodNotAllowed();
        sendJson(res, 200, { user_id: admin.userId, cluster: await watch.current(), operation });
        return true;
      }
      if (name === 'events') {
        if (req.method !== 'GET') throw errors.methodNotAllowed();
        await openStream(req, res);
        return true;
      }
      const action = actions[name];
      if (!action) throw errors.unrecognized();
      if (req.method !== 'POST') throw errors.methodNotAllowed();
      const op = await action(await readJsonObject(req), admin.userId);
      sendJson(res, 202, { operation: op });
      return true;
    } catch (e) {
      if (e instanceof MatrixError) {
        sendJson(res, e.status, e.toJSON(), e.headers);
      } else if (e instanceof ClusterAdminError) {
        sendJson(res, 400, { errcode: 'M_INVALID_PARAM', error: e.message });
      } else {
        o.log.error({ err: e, path }, 'dashboard: request failed');
        sendJson(res, 500, { errcode: 'M_UNKNOWN', error: 'Internal server error' });
      }
      return true;
    }
  };

  return {
    handler,
    close() {
      watch.stop();
      for (const res of streams) res.end();
      streams.clear();
    },
  };
}
