/**
 * The room component's contract: the room actor's messages and replies, what it persists and what
 * it writes to its shard's output stream, and the pure helpers other layers read events with.
 * Types apart from behaviour (actors/room.ts): the API, readers, the store's room reader and
 * federation import these without importing the actor.
 */
import type { SigningKey } from '../protocol/crypto';
import { isJsonObject, type JsonObject } from '../protocol/json';
import type { LayeredMap } from '../protocol/layered-map';
import type { Pdu, StateMap } from '../protocol/pdu';
import type { IngestOutcome, PduPrecheck, RemoteKeys } from './ingest';

export interface RoomConfig {
  serverName: string;
  signingKey: SigningKey;
}

/** What is persisted as the actor's state blob (small; the current state lives in its hash). */
export interface RoomMeta {
  roomId: string;
  version: string | null;
  createId: string;
  /** Last stream position used in this room. */
  seq: number;
  /** Greatest depth in the room. */
  depth: number;
  extremities: string[];
  /** Snapshot id of the current state, and the length of its delta chain. */
  snap: number;
  snapChain: number;
  snapSeq: number;
  /** Published in the room directory (absent: not published). */
  published?: true;
  /**
   * The latest upgrade claimed for this room (`claim_upgrade`): which room replaces it, who asked
   * and when. While it is recent, other upgrades get the same answer or are refused, so racing
   * requests make one replacement room.
   */
  upgrade?: { to: string; by: string; at: number };
  /** Lowest stream position given to a backfilled event (absent or 0: none; backfilled ones are negative). */
  low?: number;
  /**
   * Joined over federation with partial state (MSC3706): the resident left out the member events
   * of the state before our join. Until `complete_partial_state` brings the full state, events
   * received are checked against the partial state completed by their own auth events, and none
   * is soft-failed (as Synapse does); see decideCompletePartialState.
   */
  partial?: PartialStateInfo;
  /**
   * An admin's purge of the room has begun (`purge_begin`, src/rooms/room-deletion.ts): the room
   * takes nothing but `purge` batches until they have deleted all it stored, then it is empty.
   */
  purging?: true;
  /**
   * While purging, until the first `purge` batch: the local users of the room's member list as
   * `purge_begin` deleted it (any membership), which a repeated `purge_begin` answers again. The
   * deletion asks each of them to drop what they kept for the room (actors/user.ts `purge_room`)
   * after purge_begin and before the first batch, so a deletion run again after dying in between
   * still knows whom to ask though the member list is gone.
   */
  purgeUsers?: string[];
}

/** A partial-state room's join and the servers the resident said were in the room. */
export interface PartialStateInfo {
  join: string;
  servers: string[];
}

export interface RoomState extends RoomMeta {
  /** Current state: state key → event id. */
  current: LayeredMap<string>;
  /** Current state events (the authorization rules read their content). */
  events: LayeredMap<Pdu>;
}

export interface EventTemplate {
  type: string;
  state_key?: string;
  sender: string;
  content: JsonObject;
  /** The event a redaction redacts. */
  redacts?: string;
}

export type RoomMessage =
  | { op: 'create'; event: JsonObject }
  | { op: 'send'; event: EventTemplate; txn?: string }
  /**
   * Events built by other servers (federation /send, backfill, auth chains): checked in the
   * spec's order (src/rooms/ingest.ts). `outlier` stores them without placing them in the room's
   * history (auth chains and state fetched for a join). Ordered so each event comes after the
   * events it references.
   */
  | {
      op: 'ingest';
      pdus: JsonObject[];
      keys: RemoteKeys;
      outlier?: boolean;
      state?: SuppliedState;
      /**
       * The server that gave us these events through a membership endpoint (send_join,
       * send_leave, send_knock), which only tells the resident server: we send the accepted ones
       * to the room's other servers on its behalf (RoomOutput.onBehalfOf), as Synapse does.
       * Absent for /send: the origin of a transaction sends its events to everyone itself.
       */
      onBehalfOf?: string;
      /**
       * The id of our own user's join that a resident server answered send_join for (a join over
       * federation): it is not soft-failed against this room's current state, which is stale when
       * we had left the room (a ban lifted since, say, never reached us: the resident no longer
       * sent us the room's events).
       */
      ownJoin?: string;
      /**
       * The send_join answer for `ownJoin` omitted the member events (`members_omitted`): the
       * room is partial-state from that join on, and these are the servers in it (`servers_in_room`).
       */
      partialState?: { servers: string[] };
    }
  /**
   * The full state before our partial-state join (`join`), fetched from a resident in the
   * background (`stateIds`: every event already stored, as outliers, by an `ingest` before): the
   * room's state, and the state of every event since the join, are completed with the member
   * events the join's answer left out; events since the join are checked again against it, and
   * the room stops being partial-state.
   */
  | { op: 'complete_partial_state'; join: string; stateIds: string[] }
  /**
   * History older than what the room knows, as a federation /backfill response brings it (any
   * order; newest first is fine), with the state for its oldest events (see `decideRemote`).
   */
  | { op: 'backfill'; pdus: JsonObject[]; keys: RemoteKeys; state?: SuppliedState }
  | { op: 'set_directory_visibility'; visibility: DirectoryVisibility }
  /** `present`: whether the alias now points at this room. */
  | { op: 'alias_index'; alias: string; present: boolean }
  /**
   * Claim the right to upgrade the room to `replacement` (a room the front has built the create
   * event of, not created yet). Serialized here, so of racing upgrades one wins: see decideClaimUpgrade.
   */
  | { op: 'claim_upgrade'; replacement: string; sender: string }
  /** Give a claim back (the upgrade failed before the replacement room existed). */
  | { op: 'release_upgrade'; replacement: string }
  /**
   * An admin purges the room: its members hash goes now, and from now on it takes only `purge`
   * (idempotent). Answers PurgeBegun: the local users to ask for `purge_room` before the first batch.
   */
  | { op: 'purge_begin' }
  /**
   * One batch of the purge: the shell finds up to a batch of the room's keys from `cursor` (a
   * SCAN position of the shard, `0` to start) and decide deletes them in one commit. The reply's
   * `cursor` is where the next batch starts; `done` when the scan is complete, the room's
   * in-memory state is then reset to nothing (as a room the server never had).
   */
  | { op: 'purge'; cursor: string };

export type DirectoryVisibility = 'public' | 'private';

/**
 * The state before events whose prev_events the room does not have, as a remote supplies it: its
 * /state_ids at such an event (`before`: event id → the ids of the state before it) and the
 * events among those and their auth chains that the room may lack (`events`, taken as outliers).
 */
export interface SuppliedState {
  events: JsonObject[];
  before: Record<string, string[]>;
}

export type RoomReply = { event_id: string; room_id: string; pos: number } | IngestReply | { ok: true } | UpgradeClaim | PartialStateCompleted | PurgeBegun | PurgeProgress;

/** `purge_begin`'s answer: the local users of the room's member list as the purge began (`RoomMeta.purgeUsers`; none once a batch has run). */
export interface PurgeBegun {
  ok: true;
  users: string[];
  /** The room has nothing stored (never here, or its purge already finished): nothing was begun, there are no batches to run. */
  nothing?: true;
}

/** A `purge` batch's answer. */
export interface PurgeProgress {
  cursor: string;
  deleted: number;
  done: boolean;
}

/** `complete_partial_state`'s answer: how many member events were added, which events failed the new checks. */
export interface PartialStateCompleted {
  completed: true;
  added: number;
  rejected: { event_id: string; reason: string }[];
}

/** `claim_upgrade`'s answer: the replacement room, and whether this request is the one to build it. */
export interface UpgradeClaim {
  replacement: string;
  fresh: boolean;
}

/**
 * How long a claimed upgrade holds (as Synapse's response cache of upgrades): the same user asking
 * again gets the same replacement room, anyone else is told an upgrade is in progress.
 */
export const UPGRADE_CLAIM_MS = 5 * 60_000;

export interface IngestReply {
  results: { event_id: string | null; status: IngestOutcome['status'] | 'duplicate'; reason?: string; missing?: string[] }[];
}

/** One entry of the room shard's output stream. */
export interface RoomOutput {
  roomId: string;
  eventId: string;
  pos: number;
  event: JsonObject;
  /**
   * The snapshot of the state before the event (its stored record's `sb`): who was in the room
   * when it was sent (the federation sender's destinations). Absent in outputs of older workers.
   */
  stateBefore?: number;
  /**
   * Sent while the room had partial state (MSC3706): `stateBefore` then lacks the members the
   * resident left out, and the event's record gets its full state once the room's is in.
   */
  partialState?: true;
  /** For state events: the state key and the event it replaced (null if none). */
  state?: { key: string; replaces: string | null };
  /** For an applied redaction: the event it redacted. */
  redacted?: string;
  /** A remote server's event we pass on to the room's other servers for it (see the `ingest` op). */
  onBehalfOf?: string;
}

/**
 * The other kind of entry on a room shard's output stream: the room's directory visibility was
 * set (the membership index reader keeps `keys.publicRooms()` from it).
 */
export interface RoomDirectoryOutput {
  roomId: string;
  directory: DirectoryVisibility;
}

/** What the shell loads before decide: stored events the message refers to, and a prior txn. */
export interface RoomPrepared {
  redactionTarget?: StoredEvent;
  txnEventId?: string;
  /** For ingest: stored events referenced by the batch (and the auth chains state resolution may walk). */
  known?: Map<string, { pdu: Pdu; stored: StoredEvent }>;
  /** For ingest: full state maps of the snapshots involved, by snapshot id. */
  snapshots?: Map<number, StateMap>;
  /** For ingest: chain length of those snapshots. */
  snapshotChains?: Map<number, number>;
  /** Snapshots whose chain is about to reach its bound, as deltas on their roots (see chooseSnapshot). */
  roots?: Map<number, RootDelta>;
  /** For ingest: steps 2–3 and the event id of every event of the message (supplied and batch), by object. */
  prechecks?: Map<JsonObject, PduPrecheck>;
  /** For complete_partial_state: the timeline events from the join on, in order, with their records. */
  sinceJoin?: { eventId: string; pdu: Pdu; stored: StoredEvent }[];
  /** For purge: the room's keys found in this batch (relative to the shard's data prefix), its events' ids, and where the scan goes on. */
  purge?: { keys: string[]; eventIds: string[]; cursor: string };
}

export interface StoredEvent {
  /** JSON text as persisted (redacted JSON once redacted). */
  j: string;
  /** Stream position (0: not in the timeline — rejected, outlier or soft-failed). */
  p: number;
  d: number;
  /** Snapshots of the state before and after (0 for outliers and rejected events). */
  sb: number;
  sa: number;
  /** Why it was rejected; rejected events are never served or built upon. */
  rej?: string;
  /** Redacted by this event. */
  rb?: string;
  /** Stored without its place in the room's history. */
  o?: 1;
  /** Soft-failed: part of the DAG, hidden from clients, not built upon. */
  sf?: string;
}

export interface StoredSnapshot {
  p: number | null;
  d: [string, string | null][];
  n: number;
}

/** A snapshot's state as a delta against the full snapshot at the root of its chain. */
export interface RootDelta {
  root: number;
  delta: Map<string, string | null>;
}

/** The relation an event declares (`content['m.relates_to']` with a rel_type and an event_id), if any. */
export function relationOf(raw: JsonObject): { relType: string; parent: string } | null {
  const content = raw.content;
  if (!isJsonObject(content)) return null;
  const rel = content['m.relates_to'];
  if (!isJsonObject(rel) || typeof rel.rel_type !== 'string' || typeof rel.event_id !== 'string' || !rel.event_id.startsWith('$')) return null;
  return { relType: rel.rel_type, parent: rel.event_id };
}
