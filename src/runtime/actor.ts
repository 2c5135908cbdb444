/**
 * What an actor kind is (DESIGN: "one actor kind per file in actors/"): a pure
 * `decide(state, message, prepared) → decision` plus a thin shell (`prepare`) that reads what the
 * decision needs from the store. The runtime owns everything with effects: it loads and caches
 * state, calls the shell and decide, and applies the decision atomically (commit-many-7.lua, src/runtime/commit-queue.ts).
 */
import type { Logger } from 'pino';
import type { RedisClient } from '../store/redis';
import type { ShardKeys } from '../store/keys';
import type { Family } from '../store/shards';

export interface ActorMessage<M> {
  /** Producer-chosen message id: the dedupe key. */
  mid: string;
  actorId: string;
  body: M;
  /** When the producer enqueued it (ms). */
  enqueuedAt: number;
}

/** A write into the actor's shard, applied in the same script as the rest of the decision. */
export interface StoreWrite {
  cmd: 'SET' | 'DEL' | 'HSET' | 'HDEL' | 'HINCRBY' | 'ZADD' | 'ZREM' | 'SADD' | 'SREM' | 'RPUSH' | 'LTRIM' | 'XADD' | 'XTRIM' | 'PEXPIRE' | 'INCRBY';
  /** Key name relative to the shard (built with ShardKeys.data). */
  key: string;
  args: (string | number | Buffer)[];
  /**
   * Derived writes only (Decision.derivedWrites): the members this write sets or removes change
   * over time (set, then removed, then set again…), so an old write must not land after a newer
   * one. On a Cluster it is applied member by member only where no later holding of the shard
   * wrote the member already (src/store/scripts/derived-fenced-1.lua): a holder that stalled past
   * its lease between its commit and its derived writes cannot put an old value back. HSET, HDEL,
   * SADD, SREM, ZADD, ZREM; each member written by one actor only. On one Redis derived writes are
   * part of the fenced commit anyway.
   */
  ordered?: true;
}

export interface Decision<S, R> {
  /** The next state; returning the same object means "unchanged" (nothing is written). */
  state: S;
  reply?: R;
  /** Entries for the shard's output stream (what the readers consume). */
  outputs?: unknown[];
  writes?: StoreWrite[];
  /**
   * Messages this actor sends itself later (src/runtime/timers.ts): at `atMs` (wall clock, ms)
   * `body` is appended to the actor's inbox like any message; its `enqueuedAt` is the firing
   * time, which decide uses as "now". A timer with the same `key` replaces the pending one;
   * `atMs: null` cancels it. Stored with the commit, so they survive crashes and shard moves.
   */
  timers?: { key: string; atMs: number | null; body?: unknown }[];
  /**
   * Writes to keys outside the actor's shard (names relative to the key prefix), of derived data whose readers
   * fall back to the authoritative data when an entry is missing — a global index (e.g. event id
   * → room). On one Redis they are part of the commit, atomic with it; on a Cluster they live in
   * other slots, so they go out right after the commit, before the reply, and the commit also
   * records them in the shard (ShardKeys.derivedPending) until they are applied. When they fail,
   * or the commit's answer was lost, the message is retried: its commit answers 'dup' and the
   * holder applies the record (not the retry's decision). A worker that dies in between leaves
   * them to the shard's next holder, which applies them before anything else (so they are applied
   * at least once; they must be idempotent — HSET, HDEL, SADD, SREM of fixed values — and those
   * whose members change over time are marked `ordered`, so a stale holder's cannot land over a
   * newer holder's). A record
   * Redis keeps refusing (e.g. WRONGTYPE) is dead-lettered (ShardKeys.derivedDead) once the
   * message's retries run out or after a few tries at takeover: the derived data then lacks it.
   */
  derivedWrites?: StoreWrite[];
}

/**
 * Thrown by decide (or prepare) to answer the sender with an error without failing: e.g. a
 * forbidden event. The message is done; nothing else is written.
 */
export class ActorRejection extends Error {
  constructor(
    readonly errcode: string,
    message: string,
    readonly status = 400,
  ) {
    super(message);
    this.name = 'ActorRejection';
  }
}

/** What the shell may use to read the store. Reads only: writes go through the decision. */
export interface ShellContext {
  redis: RedisClient;
  keys: ShardKeys;
  family: Family;
  shard: number;
  /** The worker's logger, for what a shell notices (e.g. messages it had to drop). */
  log?: Logger;
  /**
   * Inside a group commit (ActorKind.batch): the writes the batch's earlier messages decided,
   * in order, not yet in the store. A shell reads the store as it was before the batch, so
   * whatever it reads that those messages may have written (a room's transaction ids, an event
   * a redaction targets) it must look up here first, newest last. Undefined outside a batch.
   */
  pending?: readonly StoreWrite[];
  /**
   * Inside a group commit whose kind reads ahead (ActorKind.batch.prefetch): hash fields read for
   * the whole batch in one round trip before its first `prepare`, as the store held them then —
   * hash name (relative to the shard) → field → value (null: absent). `pending` still comes first.
   */
  prefetched?: PrefetchedFields;
}

/** Hash fields a batch read ahead: hash name (relative to the shard) → field → value (null: absent). */
export type PrefetchedFields = ReadonlyMap<string, ReadonlyMap<string, string | null>>;

export interface ActorKind<S = unknown, M = unknown, R = unknown, P = undefined> {
  /** Name carried in inbox entries (`k`), e.g. `room`, `user`, `ledger`. */
  kind: string;
  family: Family;
  initialState(actorId: string): S;
  /**
   * What of the state is written to the actor's state key (default: all of it). Actors whose
   * state includes large derived data (a room's current state map) keep that out of the blob and
   * persist it through `writes` instead.
   */
  serialize?(state: S): unknown;
  /**
   * Build the in-memory state from the stored blob (undefined for a new actor) when the worker
   * first needs it (default: the blob itself, or initialState). Runs once per actor per holding.
   */
  hydrate?(ctx: ShellContext, stored: unknown, actorId: string): Promise<S>;
  prepare?(ctx: ShellContext, state: S, msg: ActorMessage<M>): Promise<P>;
  decide(state: S, msg: ActorMessage<M>, prepared: P): Decision<S, R>;
  /**
   * Opt-in group commit: when several messages the kind `accepts` wait in one actor's mailbox,
   * the runtime decides up to `max` of them one after the other in memory and commits them as
   * ONE unit (src/runtime/commit-queue.ts, commit-many-7.lua) — the same effects as committing each in turn (each keeps
   * its message id, dedupe record and reply), at the cost of one commit instead of many. For
   * actors that receive many small messages whose commits, not their decisions, are the cost
   * (a federation destination queueing EDUs, a busy room's client sends). A message that fails
   * or is a duplicate falls back to the one-at-a-time path. `prepare` runs for each message
   * against the state its predecessors in the batch left, with their writes in `ctx.pending`:
   * a kind whose shell reads what its own decisions write must consult them (actors/room.ts).
   */
  batch?: {
    max: number;
    accepts(body: M): boolean;
    /**
     * What every message's `prepare` in the batch would read one round trip at a time, read at
     * once before the first (ShellContext.prefetched): a batch of sends waited for one Redis round
     * trip per message — each behind the fsync of the commits in flight — before its own commit.
     */
    prefetch?(ctx: ShellContext, state: S, msgs: ActorMessage<M>[]): Promise<PrefetchedFields>;
  };
}

/**
 * An actor kind of any state, message, reply and prepared types: what the runtime holds in its
 * registry of kinds (each kind's own types are checked where it is defined).
 */
// biome-ignore lint/suspicious/noExplicitAny: a registry of heterogeneous kinds; `unknown` would make every kind's decide/prepare parameters contravariantly incompatible
export type AnyActorKind = ActorKind<any, any, any, any>;

/** The reply envelope carried on reply streams and kept in done keys. */
export type ReplyEnvelope<R = unknown> = { ok: true; value: R } | { ok: false; errcode: string; error: string; status: number };
