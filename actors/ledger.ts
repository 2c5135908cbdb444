/**
 * LedgerActor: an append-only ledger per id, with per-producer sequence checking. It is the
 * runtime's reference actor: `scripts/bench-runtime` drives it to measure the inbox → actor →
 * outbox → reply path, and the fault tests use its sequence checks to prove that every message
 * is applied exactly once and in order per actor, across crashes and shard moves.
 */
import type { ActorKind, ActorMessage, Decision } from '../src/runtime/actor';
import type { Family } from '../src/store/shards';

export interface LedgerState {
  /** Entries applied so far. */
  count: number;
  /** Sum of appended values (a cheap checksum of what was applied). */
  sum: number;
  /** Last sequence number seen per producer. */
  lastSeq: Record<string, number>;
  /** Appends whose sequence was not last+1 for their producer (duplicates or reordering). */
  outOfOrder: number;
}

export type LedgerMessage =
  | { op: 'append'; producer: string; seq: number; value: number }
  | { op: 'read' }
  /**
   * Writes `items` fields into one hash and `items` members into one set in a single commit: the
   * runtime's check that one decision may write as much as a 10,000-member room's state (the
   * commit's argument list then runs past what a spread call or Lua's unpack takes).
   */
  | { op: 'bulk'; items: number }
  /**
   * Counts as an entry and writes `name` → `value` into a global hash outside the shard
   * (`ledger-index`) as a derived write: the runtime's check that a Cluster's derived writes, which
   * cannot be part of the commit, still survive a worker dying right after it.
   */
  | { op: 'index'; name: string; value: string };

export type LedgerReply = { count: number; sum: number; outOfOrder: number; lastSeq?: Record<string, number> };

export interface LedgerOutput {
  actor: string;
  producer: string;
  seq: number;
  count: number;
}

/** The global hash of the `index` op (a name relative to the key prefix). */
export const LEDGER_INDEX = 'ledger-index';

export function initialLedger(): LedgerState {
  return { count: 0, sum: 0, lastSeq: {}, outOfOrder: 0 };
}

/** Pure: the whole behaviour of the actor. */
export function decideLedger(state: LedgerState, msg: ActorMessage<LedgerMessage>): Decision<LedgerState, LedgerReply> {
  const body = msg.body;
  switch (body?.op) {
    case 'append': {
      if (typeof body.producer !== 'string' || !Number.isInteger(body.seq) || typeof body.value !== 'number') {
        throw new TypeError('ledger append needs producer, seq and value');
      }
      const last = state.lastSeq[body.producer] ?? 0;
      const next: LedgerState = {
        count: state.count + 1,
        sum: state.sum + body.value,
        lastSeq: { ...state.lastSeq, [body.producer]: body.seq },
        outOfOrder: state.outOfOrder + (body.seq === last + 1 ? 0 : 1),
      };
      const output: LedgerOutput = { actor: msg.actorId, producer: body.producer, seq: body.seq, count: next.count };
      return { state: next, reply: { count: next.count, sum: next.sum, outOfOrder: next.outOfOrder }, outputs: [output] };
    }
    case 'bulk': {
      if (!Number.isInteger(body.items) || body.items < 1 || body.items > 200_000) throw new TypeError('ledger bulk needs 1..200000 items');
      const fields: string[] = [];
      const members: string[] = [];
      for (let i = 0; i < body.items; i++) {
        fields.push(`f${i}`, String(i));
        members.push(`m${i}`);
      }
      const next: LedgerState = { ...state, count: state.count + 1 };
      return {
        state: next,
        reply: { count: next.count, sum: next.sum, outOfOrder: next.outOfOrder },
        writes: [
          { cmd: 'HSET', key: `ledger:${msg.actorId}:bulk-hash`, args: fields },
          { cmd: 'SADD', key: `ledger:${msg.actorId}:bulk-set`, args: members },
        ],
      };
    }
    case 'index': {
      if (typeof body.name !== 'string' || typeof body.value !== 'string') throw new TypeError('ledger index needs name and value');
      const next: LedgerState = { ...state, count: state.count + 1 };
      return {
        state: next,
        reply: { count: next.count, sum: next.sum, outOfOrder: next.outOfOrder },
        // `ordered`: fenced per name on a Cluster. The fence assumes one writer per member; the
        // tests give each name to one ledger actor.
        derivedWrites: [{ cmd: 'HSET', key: LEDGER_INDEX, args: [body.name, body.value], ordered: true }],
      };
    }
    case 'read':
      return { state, reply: { count: state.count, sum: state.sum, outOfOrder: state.outOfOrder, lastSeq: state.lastSeq } };
    default:
      // A message this actor cannot understand is a bug upstream: fail it, so the runtime
      // retries and then dead-letters it, instead of guessing.
      throw new TypeError(`ledger: unknown op ${JSON.stringify((body as { op?: unknown } | undefined)?.op)}`);
  }
}

export function ledgerActor(family: Family = 'user'): ActorKind<LedgerState, LedgerMessage, LedgerReply> {
  return { kind: 'ledger', family, initialState: initialLedger, decide: decideLedger };
}
