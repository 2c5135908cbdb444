/**
 * Group commit across actors (issue 23 item 1): the commits a worker's actors decide in the same
 * turn of the event loop go to Redis together, in one script call (commit-many-7.lua) — on a
 * single Redis for every shard of the worker, on a Cluster for the actors of one shard (its keys
 * share a hash tag, so one slot). With `appendfsync always`, one call is one AOF write and one
 * fsync for all of them, and one round trip instead of one per actor.
 *
 * A unit is one actor's commit (one message, or a group of its waiting messages decided in order).
 * Each unit is fenced, deduped and applied all or nothing on its own inside the call, so putting units together changes nothing of their
 * guarantees; a unit refused (stale lease, duplicate) does not hold back the others.
 *
 * Units are queued while the event loop turns and sent from `setImmediate` (TurnBatcher): the
 * actors woken by one inbox read, or answered by one Redis reply, decide in the same turn and
 * commit together. Nothing waits for a timer: a lone commit goes out at the end of its turn.
 */
import type { RedisClient } from '../store/redis';
import { isCluster, runScriptBuffer } from '../store/redis';
import { encodeScriptArgParts } from '../store/codec';
import type { ShardKeys } from '../store/keys';
import { chunks, groupBy, Rejected, TurnBatcher } from '../store/turn-batcher';
import { sendTrace } from './send-trace';

export interface CommitMessage {
  /** Inbox entry id. */
  id: string;
  reply: Buffer;
  /** '1': ack here; '0': the caller acks after replying; 'r': reply to `replyTo` and ack here. */
  mode: '0' | '1' | 'r';
  replyTo?: string;
  /** The message id (its done record is the shard's `done(mid)`). */
  mid: string;
}

export interface CommitUnit {
  /** The shard's keys: its lease, inbox, outbox, and the prefixes of its done records, states and data. */
  shard: ShardKeys;
  /** The fencing token of the shard's holding the unit was decided under. */
  token: string;
  messages: CommitMessage[];
  state: Buffer | null;
  outputs: Buffer[];
  actorId: string;
  kind: string;
  /** Writes: `key` a data name of the shard (ShardKeys.data), or a full key name where `absolute`. */
  writes: { cmd: string; key: string; absolute?: boolean; args: (string | number | Buffer)[] }[];
}

export type CommitResult = { status: 'ok' } | { status: 'stale'; owner: string } | { status: 'dup'; reply?: Buffer };

/** Arguments one call carries at most (beyond that the queue splits): keeps a call's Redis time short. */
const MAX_CALL_ARGS = 50_000;
const MAX_CALL_UNITS = 256;
/** Values per shard in a call's shard table (commit-many-7.lua): lease, token, inbox, outbox, three prefixes. */
const SHARD_ARGS = 7;
/**
 * Units queued this long ago (ms) are sent at once rather than at the end of the turn: a turn that
 * decides a hundred room events spends ~20 ms in decide, and sending the first ones early lets
 * Redis's fsync and the askers' next sends overlap the rest.
 */
const EAGER_MS = 2;

export class CommitQueue {
  private readonly batcher: TurnBatcher<CommitUnit, CommitResult>;

  constructor(
    private readonly redis: RedisClient,
    private readonly workerId: string,
    private readonly group: string,
    private readonly dedupeTtlSec: number,
    private readonly replyMaxLen: number,
  ) {
    this.batcher = new TurnBatcher<CommitUnit, CommitResult>({
      eagerMs: EAGER_MS,
      // On a Cluster a call holds the keys of one slot: one call per shard.
      split: (queued) => (isCluster(this.redis) ? groupBy(queued, (q) => q.item.shard.lease) : [queued]).flatMap((g) => chunks(g, (q) => unitArgs(q.item), MAX_CALL_ARGS, MAX_CALL_UNITS)),
      send: (units) => this.send(units),
    });
  }

  /** Calls made (for the benchmarks' figures). */
  get calls(): number {
    return this.batcher.calls;
  }

  /** Units committed through them. */
  get units(): number {
    return this.batcher.items;
  }

  /** Whether a reply may be delivered inside the commit (the reply stream is on the same server). */
  get repliesInCommit(): boolean {
    return !isCluster(this.redis);
  }

  submit(unit: CommitUnit): Promise<CommitResult> {
    return this.batcher.add(unit);
  }

  private async send(call: CommitUnit[]): Promise<(CommitResult | Rejected)[]> {
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
    // The shards of the call (with the token each unit was decided under: a shard's holding may
    // change between two units of a turn), numbered from 1 in the order first named.
    const shardArgs: (string | number)[] = [];
    const shardNo = new Map<ShardKeys, { token: string; no: number }[]>();
    const unitShard = (u: CommitUnit): number => {
      let l = shardNo.get(u.shard);
      if (!l) shardNo.set(u.shard, (l = []));
      for (const s of l) if (s.token === u.token) return s.no;
      const no = shardArgs.length / SHARD_ARGS + 1;
      l.push({ token: u.token, no });
      shardArgs.push(k(u.shard.lease), u.token, k(u.shard.inbox), k(u.shard.outbox), u.shard.donePrefix, u.shard.statePrefix, u.shard.dataPrefix);
      return no;
    };
    const unitPart: (string | number | Buffer)[] = [call.length];
    for (const u of call) {
      unitPart.push(unitShard(u), u.messages.length);
      for (const m of u.messages) unitPart.push(m.id, m.reply, m.mode, m.mode === 'r' ? k(m.replyTo!) : 0, m.mid);
      unitPart.push(u.state ? 's' : 'k', u.state ?? '', u.outputs.length);
      for (const o of u.outputs) unitPart.push(o);
      unitPart.push(u.actorId, u.kind, u.writes.length);
      for (const w of u.writes) {
        unitPart.push(w.cmd, w.key, w.absolute ? '1' : '0', w.args.length);
        // A loop, not push(...w.args): a write may carry more values than a call's arguments can.
        // Numbers as the strings Redis would get as separate arguments (encodeScriptArgParts would keep small integers numbers).
        for (const a of w.args) unitPart.push(typeof a === 'number' ? String(a) : a);
      }
    }
    const head: (string | number)[] = [this.workerId, this.group, this.dedupeTtlSec, this.replyMaxLen, shardArgs.length / SHARD_ARGS];
    // The arguments travel as one msgpack array (commit-many-7.lua decodes it): one argument for
    // the client to write and for Redis to turn into a Lua string, instead of thousands. Its three
    // parts are encoded in place, not copied into one list first.
    if (sendTrace) for (const u of call) for (const m of u.messages) sendTrace.mark(m.mid, 'sent');
    const res = (await runScriptBuffer(this.redis, 'commitMany', keys, [encodeScriptArgParts([head, shardArgs, unitPart])])) as Buffer[][];
    if (sendTrace) for (const u of call) for (const m of u.messages) sendTrace.end(m.mid, 'dur');
    return call.map((_, i): CommitResult | Rejected => {
      const r = res[i];
      const status = r?.[0]?.toString();
      if (status === 'ok') return { status: 'ok' };
      if (status === 'stale') return { status: 'stale', owner: r![1]?.toString() ?? '' };
      if (status === 'dup') return r![1] ? { status: 'dup', reply: r![1] } : { status: 'dup' };
      // A command of this unit failed (commit-many-7.lua): nothing of it counts as applied, the
      // runner decides its messages again (and dead-letters one that keeps failing).
      if (status === 'err') return new Rejected(new Error(`commit-many: a write of ${call[i]!.kind} ${call[i]!.actorId} failed: ${r![1]?.toString() ?? ''}`));
      return new Rejected(new Error(`commit-many: unexpected result ${JSON.stringify(status)}`));
    });
  }
}

/** The arguments a unit adds to a call (its shard's seven at most). */
function unitArgs(u: CommitUnit): number {
  let n = 13 + 5 * u.messages.length + u.outputs.length;
  for (const w of u.writes) n += 4 + w.args.length;
  return n;
}
