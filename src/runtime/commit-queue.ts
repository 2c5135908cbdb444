/**
 * Group commit across actors (issue 23 item 1): the commits a worker's actors decide in the same
 * turn of the event loop go to Redis together, in one script call (commit-many-1.lua) — on a
 * single Redis for every shard of the worker, on a Cluster for the actors of one shard (its keys
 * share a hash tag, so one slot). With `appendfsync always`, one call is one AOF write and one
 * fsync for all of them, and one round trip instead of one per actor.
 *
 * A unit is one actor's commit (one message, or a group of its waiting messages decided in order):
 * what commit-2.lua applies for one message, for one or more. Each unit is fenced, deduped and applied all or
 * nothing on its own inside the call, so putting units together changes nothing of their
 * guarantees; a unit refused (stale lease, duplicate) does not hold back the others.
 *
 * Units are queued while the event loop turns and sent from `setImmediate`: the actors woken by
 * one inbox read, or answered by one Redis reply, decide in the same turn and commit together.
 * Nothing waits for a timer: a lone commit goes out at the end of its turn.
 */
import type { RedisClient } from '../store/redis';
import { isCluster, runScriptBuffer } from '../store/redis';

export interface CommitMessage {
  /** Inbox entry id. */
  id: string;
  /** The message's done key (full name). */
  doneKey: string;
  reply: Buffer;
  /** '1': ack here; '0': the caller acks after replying; 'r': reply to `replyTo` and ack here. */
  mode: '0' | '1' | 'r';
  replyTo?: string;
  mid: string;
}

export interface CommitUnit {
  /** Groups units that may share a call on a Cluster (the shard's name). */
  shard: string;
  lease: string;
  token: string;
  inbox: string;
  outbox: string;
  stateKey: string;
  messages: CommitMessage[];
  state: Buffer | null;
  outputs: Buffer[];
  actorId: string;
  kind: string;
  /** Writes with full key names. */
  writes: { cmd: string; key: string; args: (string | number | Buffer)[] }[];
}

export type CommitResult = { status: 'ok' } | { status: 'stale'; owner: string } | { status: 'dup'; reply?: Buffer };

interface Queued {
  unit: CommitUnit;
  resolve: (r: CommitResult) => void;
  reject: (e: unknown) => void;
}

/** Arguments one call carries at most (beyond that the queue splits): keeps a call's Redis time short. */
const MAX_CALL_ARGS = 50_000;
const MAX_CALL_UNITS = 256;
/**
 * Units queued this long ago (ms) are sent at once rather than at the end of the turn: a turn that
 * decides a hundred room events spends ~20 ms in decide, and sending the first ones early lets
 * Redis's fsync and the askers' next sends overlap the rest.
 */
const EAGER_MS = 2;

export class CommitQueue {
  private queued: Queued[] = [];
  private scheduled = false;
  private firstQueuedAt = 0;
  /** Calls made and units committed through them (for the benchmarks' figures). */
  calls = 0;
  units = 0;

  constructor(
    private readonly redis: RedisClient,
    private readonly workerId: string,
    private readonly group: string,
    private readonly dedupeTtlSec: number,
    private readonly replyMaxLen: number,
  ) {}

  /** Whether a reply may be delivered inside the commit (the reply stream is on the same server). */
  get repliesInCommit(): boolean {
    return !isCluster(this.redis);
  }

  submit(unit: CommitUnit): Promise<CommitResult> {
    return new Promise((resolve, reject) => {
      if (this.queued.length === 0) this.firstQueuedAt = performance.now();
      this.queued.push({ unit, resolve, reject });
      if (performance.now() - this.firstQueuedAt >= EAGER_MS) {
        // Deciding has taken a while already (a burst of expensive decisions in one turn): send
        // what is decided now, so Redis and the askers work on it while the rest is decided.
        this.flush();
        return;
      }
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  private flush(): void {
    this.scheduled = false;
    const queued = this.queued;
    this.queued = [];
    if (queued.length === 0) return;
    // On a Cluster a call holds the keys of one slot: one call per shard.
    let groups: Queued[][] = [queued];
    if (isCluster(this.redis)) {
      const byShard = new Map<string, Queued[]>();
      for (const q of queued) {
        const g = byShard.get(q.unit.shard);
        if (g) g.push(q);
        else byShard.set(q.unit.shard, [q]);
      }
      groups = [...byShard.values()];
    }
    for (const g of groups) {
      let call: Queued[] = [];
      let size = 0;
      for (const q of g) {
        const n = unitArgs(q.unit);
        if (call.length > 0 && (size + n > MAX_CALL_ARGS || call.length >= MAX_CALL_UNITS)) {
          void this.send(call);
          call = [];
          size = 0;
        }
        call.push(q);
        size += n;
      }
      if (call.length) void this.send(call);
    }
  }

  private async send(call: Queued[]): Promise<void> {
    const keys: string[] = [];
    const index = new Map<string, number>();
    const k = (name: string): number => {
      let i = index.get(name);
      if (i === undefined) {
        keys.push(name);
        i = keys.length;
        index.set(name, i);
      }
      return i;
    };
    const args: (string | number | Buffer)[] = [this.workerId, this.group, this.dedupeTtlSec, this.replyMaxLen, call.length];
    for (const { unit: u } of call) {
      args.push(k(u.lease), u.token, k(u.inbox), k(u.outbox), k(u.stateKey), u.messages.length);
      for (const m of u.messages) args.push(m.id, k(m.doneKey), m.reply, m.mode, m.mode === 'r' ? k(m.replyTo!) : 0, m.mid);
      args.push(u.state ? 's' : 'k', u.state ?? '', u.outputs.length);
      for (const o of u.outputs) args.push(o);
      args.push(u.actorId, u.kind, u.writes.length);
      for (const w of u.writes) {
        args.push(w.cmd, k(w.key), w.args.length);
        // A loop, not push(...w.args): a write may carry more values than a call's arguments can.
        for (const a of w.args) args.push(a);
      }
    }
    let res: Buffer[][];
    try {
      res = (await runScriptBuffer(this.redis, 'commitMany', keys, args)) as Buffer[][];
    } catch (e) {
      for (const q of call) q.reject(e);
      return;
    }
    this.calls++;
    this.units += call.length;
    call.forEach((q, i) => {
      const r = res[i];
      const status = r?.[0]?.toString();
      if (status === 'ok') q.resolve({ status: 'ok' });
      else if (status === 'stale') q.resolve({ status: 'stale', owner: r![1]?.toString() ?? '' });
      else if (status === 'dup') q.resolve(r![1] ? { status: 'dup', reply: r![1] } : { status: 'dup' });
      else q.reject(new Error(`commit-many: unexpected result ${JSON.stringify(status)}`));
    });
  }
}

function unitArgs(u: CommitUnit): number {
  let n = 9 + 6 * u.messages.length + u.outputs.length;
  for (const w of u.writes) n += 3 + w.args.length;
  return n;
}
