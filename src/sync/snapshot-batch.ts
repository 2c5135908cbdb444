/**
 * The /sync snapshot reads of computations that start together, in one script call with one cut
 * (single Redis; sync-snapshot-3.lua).
 *
 * One message in a room wakes every member's long-poll at once, and each computation begins with
 * the same kind of read: Redis TIME (its cut), the user's membership index and the device's own
 * streams, and the part of the shared outbox cache's streams past its end. Asked one call each,
 * a wake-up of a thousand members cost a thousand script calls — each a command for the front to
 * build, write and parse, and for Redis to run — and a thousand cuts. Here the reads asked in one
 * turn of the event loop go out as one call (up to MAX_BATCH computations): one TIME for all of
 * them, and each outbox stream read once for the batch (the computations of one room ask for the
 * same streams from the same point). Their answers then carry the same cut, so the next polls of
 * those members share a `since` too, and with it their windows.
 *
 * Nothing about a computation changes but the call it rides in: its reads are the ones it would
 * have made alone, all in one atomic script, after its request was made.
 */
import { runScriptBuffer, type RedisClient } from '../store/redis';
import { chunks, TurnBatcher } from '../store/turn-batcher';

/** Computations per script call at most (a call runs alone in Redis). */
const MAX_BATCH = 64;

/** Stream entries as the script returns them: `[id, [field, value, …]]`. */
export type Rows = [Buffer, Buffer[]][];

/** What one computation asks (the keys and arguments of its segment: see sync-snapshot-3.lua). */
export interface SnapshotRequest {
  /** Index, written-at, forgotten, partial-state rooms, feed, to-device inbox. */
  keys: [string, string, string, string, string, string];
  /** Feed window start, to-device start, to-device count, to-device acknowledgement bound. */
  args: [string, string, string, string];
  /** Outbox streams to read from `<fromMs>-0` up to the cut. */
  outboxes: { stream: string; fromMs: number }[];
}

export interface SnapshotReply {
  /** Redis TIME: seconds, microseconds. */
  time: [Buffer, Buffer];
  /** Index, written-at, forgotten, partial-state count, feed check, feed entries, to-device entries, ack. */
  own: [Buffer[], Buffer[], Buffer[], number, number, Rows, Rows, number];
  /** Per `outboxes` of the request, its entries. */
  outboxes: Rows[];
}

export class SnapshotBatcher {
  // Sent at the end of the turn: after every computation this turn started has asked (a wake-up
  // resumes its long-polls in microtasks of the same turn), not after the first.
  private readonly batcher = new TurnBatcher<SnapshotRequest, SnapshotReply>({
    send: (batch) => this.call(batch),
    split: (queued) => chunks(queued, () => 1, MAX_BATCH),
  });

  constructor(private readonly redis: RedisClient) {}

  /** The request's reads, in the next call (made once this turn of the event loop is over). */
  read(req: SnapshotRequest): Promise<SnapshotReply> {
    return this.batcher.add(req);
  }

  private async call(batch: SnapshotRequest[]): Promise<SnapshotReply[]> {
    const keys: string[] = [];
    const args: string[] = [String(batch.length), ''];
    /** Each (stream, from) once: its index among the outbox reads. */
    const streamIndex = new Map<string, Map<number, number>>();
    const streams: { stream: string; fromMs: number }[] = [];
    for (const req of batch) {
      keys.push(...req.keys);
      args.push(...req.args);
      for (const o of req.outboxes) {
        let byFrom = streamIndex.get(o.stream);
        if (!byFrom) streamIndex.set(o.stream, (byFrom = new Map()));
        if (!byFrom.has(o.fromMs)) {
          byFrom.set(o.fromMs, streams.length);
          streams.push(o);
        }
      }
    }
    args[1] = String(streams.length);
    for (const o of streams) {
      keys.push(o.stream);
      args.push(String(o.fromMs));
    }
    const res = (await runScriptBuffer(this.redis, 'syncSnapshot', keys, args)) as [[Buffer, Buffer], SnapshotReply['own'][], Rows[]];
    return batch.map((req, i) => ({ time: res[0], own: res[1][i]!, outboxes: req.outboxes.map((o) => res[2][streamIndex.get(o.stream)!.get(o.fromMs)!] ?? []) }));
  }
}

const batchers = new WeakMap<RedisClient, SnapshotBatcher>();

/** The batcher of a Redis client (one per client, so each call goes out on it). */
export function snapshotBatcher(redis: RedisClient): SnapshotBatcher {
  let b = batchers.get(redis);
  if (!b) batchers.set(redis, (b = new SnapshotBatcher(redis)));
  return b;
}
