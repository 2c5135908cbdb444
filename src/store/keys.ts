/**
 * Every Redis key and stream name Axon uses, built here and nowhere else (DESIGN rule 2).
 * A shard's keys all carry its hash tag, so one Lua script can touch them on Redis Cluster.
 */
import { shardTag, type Family } from '../runtime/shards';

export class KeySpace {
  constructor(readonly prefix: string) {}

  /** Keys of one shard. */
  shard(family: Family, shard: number): ShardKeys {
    return new ShardKeys(`${this.prefix}${shardTag(family, shard)}:`);
  }

  /** Sorted set: worker id → last heartbeat (ms). */
  workers(): string {
    return `${this.prefix}workers`;
  }

  /** Hash: what a worker reports about itself (pid, host, start time, state). */
  workerInfo(workerId: string): string {
    return `${this.prefix}worker:${workerId}`;
  }

  /** Control requests to a worker (e.g. `stop` after a drain). */
  workerControl(workerId: string): string {
    return `${this.prefix}worker:${workerId}:control`;
  }

  /** Pub/sub channel that makes a worker run its lease round now (after a reservation). */
  workerNudge(workerId: string): string {
    return `${this.prefix}nudge:${workerId}`;
  }

  /** Set of shard names (`room:417`) reserved for a worker by move-shard/rebalance/drain. */
  workerIncoming(workerId: string): string {
    return `${this.prefix}worker:${workerId}:incoming`;
  }

  /** Stream a front process reads its replies from. Its own hash tag keeps it on one node. */
  replies(frontId: string): string {
    return `${this.prefix}{replies:${frontId}}`;
  }

  /** Pub/sub channel that wakes the owner of a shard when its inbox gets a message. */
  wakeChannel(family: Family, shard: number): string {
    return `${this.prefix}wake:${family}:${shard}`;
  }
}

export class ShardKeys {
  constructor(private readonly base: string) {}
  /** Hash: owner, token (fencing counter, never reset), expires, target (handoff reservation). */
  get lease(): string {
    return `${this.base}lease`;
  }
  /** Stream of commands for the shard's actors. */
  get inbox(): string {
    return `${this.base}inbox`;
  }
  /** Stream of what the shard's actors produced, read by the readers' consumer groups. */
  get outbox(): string {
    return `${this.base}outbox`;
  }
  /** Stream of messages that failed too often, with their error. */
  get dead(): string {
    return `${this.base}dead`;
  }
  /** Marks a message id as applied, holding its reply (expires after the dedupe window). */
  done(messageId: string): string {
    return `${this.base}done:${messageId}`;
  }
  /** An actor's state blob. */
  state(kind: string, actorId: string): string {
    return `${this.base}state:${kind}:${actorId}`;
  }
  /** Any other key an actor writes: `name` is relative to the shard. */
  data(name: string): string {
    return `${this.base}d:${name}`;
  }
}

/** The consumer group workers read shard inboxes with. */
export const INBOX_GROUP = 'workers';

/**
 * Names of a room's data, relative to the room's shard (wrap with `ShardKeys.data`). Events live
 * in their room's shard, so every read and write of a room stays on one Redis Cluster slot.
 */
export const roomData = {
  /** An event: msgpack { j: JSON text, p: stream position, d: depth, sb/sa: state snapshot before/after, rej?, rb? }. */
  event: (eventId: string) => `ev:${eventId}`,
  /** Hash: current state, `type\0state_key` → event id. */
  state: (roomId: string) => `room:${roomId}:state`,
  /** Hash: user id → current membership. */
  members: (roomId: string) => `room:${roomId}:members`,
  /** Sorted set: event ids by stream position. */
  timeline: (roomId: string) => `room:${roomId}:timeline`,
  /** A state snapshot: msgpack { p: parent snapshot | null, d: [[state key, event id | null]], n: chain length }. */
  snapshot: (roomId: string, id: number) => `room:${roomId}:snap:${id}`,
  /** Hash: client transaction key → event id (idempotent PUT /send). */
  txns: (roomId: string) => `room:${roomId}:txn`,
};
