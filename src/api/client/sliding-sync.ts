// POST /_matrix/client/unstable/org.matrix.simplified_msc3575/sync
// POST /_matrix/client/v4/sync
/**
 * Simplified sliding sync (MSC4186): as Synapse 1.163 serves it on the unstable path (`pos` and
 * `timeout` as query parameters), and in the merged MSC's shape at v4 (everything in the body;
 * src/sync/sliding/request.ts lists the differences). One engine answers both. The HTTP side — parsing, the
 * connection's state, the long-poll — is here; what an answer holds is the engine's
 * (src/sync/sliding/engine.ts).
 *
 * An answer with nothing new for the client keeps the `pos` it was asked with (the connection's
 * state is unchanged, so nothing is written); a new `pos` comes with news. A `pos` the server no
 * longer knows (expired, evicted, or never given) answers 400 `M_UNKNOWN_POS`: clients start the
 * connection again without `pos`.
 */
import type { Front, Request } from '../../http/server';
import { MatrixError, errors } from '../../http/errors';
import { SAME_MS_MARGIN, SYNC_OUTBOX_RETENTION_MS, SyncNotifier, type SyncWaiter } from '../../sync/notify';
import { OutboxWindowCache } from '../../sync/outbox-cache';
import { ComputeGate } from '../../sync/compute-gate';
import { E2eCountsCache } from '../../sync/e2e-counts';
import { MAX_WINDOW_ENTRIES } from '../../sync/engine';
import { BumpStampCache } from '../../sync/sliding/bump-stamps';
import { loadConnection, saveConnection, UnknownPos, type ConnectionState, type Loaded } from '../../sync/sliding/connection-store';
import { computeSlidingSync, type SlidingAnswer } from '../../sync/sliding/engine';
import { InvalidParam, parseSlidingRequest, RequestProblem, type Shape, type SlidingRequest } from '../../sync/sliding/request';
import { presenceOnSync } from './presence';
import type { PresenceState } from '../../../actors/presence';
import { setTimeout as sleep } from 'node:timers/promises';
import { requireUser } from './auth';
import type { ApiContext } from '../context';

export const SLIDING_SYNC_UNSTABLE_PATH = '/_matrix/client/unstable/org.matrix.simplified_msc3575/sync';
/** The merged MSC's path: parameters in the body, `range`, `stripped_state`, … (see request.ts). */
export const SLIDING_SYNC_V4_PATH = '/_matrix/client/v4/sync';
const MAX_TIMEOUT_MS = 5 * 60_000;
const MAX_CONCURRENT_COMPUTES = 32;

function parseTimeout(raw: string | undefined): number {
  if (raw === undefined || raw === '') return 0;
  if (!/^\d{1,12}$/.test(raw)) throw errors.invalidParam('timeout must be a non-negative integer (ms)');
  return Math.min(Number(raw), MAX_TIMEOUT_MS);
}

function unknownPos(): MatrixError {
  return new MatrixError(400, 'M_UNKNOWN_POS', 'Unknown position; start the connection again without pos');
}

/** The state without its cut: equal when an answer changed nothing the connection remembers. */
function sameState(a: ConnectionState, b: ConnectionState): boolean {
  return JSON.stringify({ ...a, cut: 0 }) === JSON.stringify({ ...b, cut: 0 });
}

export function registerSlidingSyncRoutes(front: Front, ctx: ApiContext): void {
  // A front's own subscription and caches (as /sync has its own): wake-ups, outbox windows,
  // one-time-key counts, bump stamps.
  const notifier = new SyncNotifier(ctx.redis, ctx.keys, { wakeOnBumped: true });
  const windows = new OutboxWindowCache(ctx.redis, { retentionMs: SYNC_OUTBOX_RETENTION_MS, maxEntries: 50_000, maxStreams: 4096, maxWindow: MAX_WINDOW_ENTRIES, maxBytes: ctx.config.caches?.syncOutboxBytes });
  const gate = new ComputeGate(MAX_CONCURRENT_COMPUTES);
  const e2e = new E2eCountsCache(notifier);
  const bumps = new BumpStampCache();
  (ctx.keysChanged ??= []).push((userId) => e2e.forget(userId));
  ctx.closers?.push(() => notifier.close());

  const handle = async (req: Request, shape: Shape) => {
    const user = await requireUser(ctx, req);
    let request: SlidingRequest;
    try {
      request = parseSlidingRequest(req.json(), shape);
    } catch (e) {
      if (e instanceof InvalidParam) throw errors.invalidParam(e.message);
      if (e instanceof RequestProblem) throw errors.badJson(e.message);
      throw e;
    }
    // The unstable shape takes `pos` and `timeout` from the query; v4 from the body.
    const timeout = shape === 'v4' ? Math.min(request.timeout ?? 0, MAX_TIMEOUT_MS) : parseTimeout(req.query.timeout);
    const rawPos = shape === 'v4' ? request.pos : req.query.pos;
    const pos = rawPos !== undefined && rawPos !== '' ? rawPos : undefined;
    let loaded: Loaded;
    try {
      loaded = await loadConnection(ctx, user.userId, user.deviceId, request.connId, pos);
    } catch (e) {
      if (e instanceof UnknownPos) throw unknownPos();
      throw e;
    }
    // v4's set_presence: polling marks the user online unless it says otherwise (as /v3/sync).
    if (shape === 'v4') presenceOnSync(ctx, user.userId, request.setPresence as PresenceState | undefined, timeout);
    req.allowWait(timeout);
    await notifier.start();
    const waits = pos !== undefined && timeout > 0;
    let waiter: SyncWaiter | null = null;
    const deadline = Date.now() + timeout;
    const finish = async (r: SlidingAnswer) => {
      let nextPos = pos;
      if (nextPos === undefined || r.news || !sameState(r.state, loaded.state)) nextPos = await saveConnection(ctx, user.userId, user.deviceId, request.connId, loaded, r.state);
      r.body.pos = nextPos;
      return { body: r.body };
    };
    try {
      if (waits) waiter = await notifier.waiter(user.userId);
      for (;;) {
        if (ctx.storeReady && !ctx.storeReady()) throw errors.unavailable('The server cannot reach its database right now; try again shortly');
        let markAt = 0;
        let markSeq = 0;
        const r = await gate.run((outside) => {
          if (waiter) waiter.dirty = false;
          ({ seq: markSeq, at: markAt } = notifier.changeMark);
          return computeSlidingSync(ctx, user, request, loaded.state, { windows, pushProgress: notifier.pushProgress, recencyProgress: notifier.recencyProgress, e2e, bumps, outside });
        });
        if (!waiter || r.news || req.signal.aborted || Date.now() >= deadline) return await finish(r);
        waiter.setRooms(r.listen);
        const mark = { seq: markSeq, at: markAt };
        if (waiter.lastPokeAt > mark.at - SAME_MS_MARGIN || notifier.changedNear(user.userId, r.listen, mark, SAME_MS_MARGIN)) {
          // Something arrived while computing, possibly in the cut's own millisecond: look again
          // once the clock has moved on.
          await sleep(SAME_MS_MARGIN);
          continue;
        }
        await waiter.wait(deadline - Date.now(), req.signal);
        if (req.signal.aborted) return await finish(r);
      }
    } finally {
      waiter?.close();
    }
  };
  front.route('POST', SLIDING_SYNC_UNSTABLE_PATH, (req: Request) => handle(req, 'unstable'));
  front.route('POST', SLIDING_SYNC_V4_PATH, (req: Request) => handle(req, 'v4'));
}
