/**
 * A watchdog on each node connection of a command client (one for a single Redis, one per node a
 * Cluster client holds): a connection that stays silent gets a fresh one.
 *
 * Why: after a network partition heals, a connection that was silent through it can stay silent
 * for tens of seconds more — TCP's backed-off retransmissions, or a connect attempt whose SYN was
 * lost waiting out its timeout — while a new connection would answer at once (issue 24: a front
 * answered 503 for 37 s after a heal on the multi-host bed). ioredis notices neither: the socket
 * is neither reset nor closed.
 *
 * How: every `intervalMs`, each connection that is ready and has no PING outstanding gets one. A
 * connection is silent when its PING has been outstanding for `stallMs` and not one byte arrived
 * on its socket meanwhile (a Redis that is only slow, or answering a long queue of this process's
 * commands, keeps sending bytes: it is left alone), or when it has been trying to connect for
 * `stallMs`. The commands a silent connection had sent fail (SILENT_CONNECTION_DROPPED: a 503 for
 * a front's request; not sent again, since they may still arrive on the old connection) and its
 * socket is destroyed: a single Redis client reconnects at once, and a Cluster drops that node's
 * connection and makes a new one for the next command to its slots (or at its next slot-map
 * refresh). A Redis paused outright (SIGSTOP) is silent too: its connection is remade every
 * `stallMs` until it answers. Decisions are made after the event loop's I/O phase, so a process
 * whose own event loop was blocked past `stallMs` does not mistake unread answers for silence.
 */
import type { Logger } from 'pino';
import type { Redis } from 'ioredis';
import { isCluster, SILENT_CONNECTION_DROPPED, type RedisClient } from './redis';

export interface WatchdogOptions {
  /** How long a connection may stay silent (PING unanswered, no byte read) or stay connecting (ms). */
  stallMs: number;
  /** Time between PINGs on each connection (ms, default 1000). */
  intervalMs?: number;
  log?: Logger;
  /** Called after a silent connection was dropped (tests, metrics). */
  onReconnect?: (node: string, why: string) => void;
}

interface NodeWatch {
  /** The PING outstanding: when sent, and the socket's bytesRead then. */
  ping: { at: number; bytesRead: number } | null;
  /** Since when the connection has been connecting (null while ready or otherwise). */
  connectingSince: number | null;
}

/** Start watching `client`'s node connections. Returns a function that stops the watchdog. */
export function watchConnections(client: RedisClient, o: WatchdogOptions): () => void {
  const state = new WeakMap<Redis, NodeWatch>();
  const nodes = (): Redis[] => (isCluster(client) ? client.nodes() : [client]);
  const name = (n: Redis) => `${n.options.host ?? ''}:${n.options.port ?? ''}`;
  let stopped = false;

  const drop = (n: Redis, why: string) => {
    const w = state.get(n);
    if (w) {
      w.ping = null;
      w.connectingSince = null;
    }
    o.log?.warn({ node: name(n), reason: why }, 'redis connection silent: dropping it for a fresh one');
    // The commands it had sent fail (their requests answer 503) rather than being sent again on
    // the new connection: they may still reach Redis on the old one (its bytes are in flight),
    // and must not run twice. Those not yet sent wait for the new connection.
    if (n.status === 'ready') (n as unknown as { flushQueue(e: Error, o: { offlineQueue: boolean }): void }).flushQueue(new Error(SILENT_CONNECTION_DROPPED), { offlineQueue: false });
    // Destroyed rather than ended: ending waits for a FIN the silent peer never acknowledges.
    const stream = (n as unknown as { stream?: { destroy(): void } }).stream;
    if (stream) stream.destroy();
    else n.disconnect(true);
    o.onReconnect?.(name(n), why);
  };

  const check = () => {
    if (stopped) return;
    const now = performance.now();
    for (const n of nodes()) {
      let w = state.get(n);
      if (!w) state.set(n, (w = { ping: null, connectingSince: null }));
      const status = n.status;
      if (status === 'connecting' || status === 'connect') {
        w.ping = null;
        w.connectingSince ??= now;
        if (now - w.connectingSince >= o.stallMs) drop(n, `connecting for ${Math.round(now - w.connectingSince)} ms`);
        continue;
      }
      w.connectingSince = null;
      if (status !== 'ready') {
        w.ping = null; // reconnecting (ioredis's own short wait), ended: not ours to judge
        continue;
      }
      const bytesRead = (n as unknown as { stream?: { bytesRead?: number } }).stream?.bytesRead ?? 0;
      if (w.ping) {
        if (bytesRead !== w.ping.bytesRead) {
          // Bytes came in: the connection lives (perhaps the PING is queued behind other replies).
          w.ping.bytesRead = bytesRead;
          w.ping.at = now;
        } else if (now - w.ping.at >= o.stallMs) drop(n, `no byte read for ${Math.round(now - w.ping.at)} ms after a PING`);
        continue;
      }
      const sent = { at: now, bytesRead };
      w.ping = sent;
      // A PING that fails (a command timeout) leaves `ping` set: the silence goes on being timed.
      n.ping().then(
        () => {
          if (w.ping === sent) w.ping = null;
        },
        () => undefined,
      );
    }
  };

  const timer = setInterval(() => setImmediate(check), o.intervalMs ?? 1000);
  timer.unref();
  return () => {
    stopped = true;
    clearInterval(timer);
  };
}
