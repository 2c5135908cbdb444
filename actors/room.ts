/**
 * RoomActor: the single writer of one room's events and state (Axon's room server).
 *
 * Messages:
 * - `create`: the room's m.room.create event, built and signed by the front (for v12 rooms the
 *   room id is derived from it, so it must exist before the room can be addressed);
 * - `send`: a new local event from a template: the actor picks prev_events (the forward
 *   extremities), depth, auth_events, signs it, checks the authorization rules against the
 *   current state, and persists it — or answers M_FORBIDDEN and writes nothing;
 * - `set_directory_visibility`: publish the room in the room directory or take it out (who may
 *   is the front's call); the flag is the room's, and an output entry lets the membership index
 *   reader keep the server's set of published rooms in step;
 * - `alias_index`: add or remove a local alias in the room's alias set, told by the front after
 *   the alias's own actor (actors/alias.ts) created or deleted it. Idempotent;
 * - `ingest`: events built by other servers (live, or outliers), through the spec's receipt
 *   checks; with supplied state, also the first events of a room this server joins over
 *   federation;
 * - `backfill`: older history (a /backfill response), placed before everything the room knows.
 *
 * State is stored as shared snapshots with deltas: a state event makes a new snapshot that is its
 * parent plus one entry; other events point at the snapshot they were sent in. Storage therefore
 * grows with state changes, not with events × members. Each accepted event goes to the shard's
 * output stream annotated with the state change it caused, so readers never ask for it.
 */
import { createHash } from 'node:crypto';
import { ActorRejection, type ActorKind, type ActorMessage, type Decision, type PrefetchedFields, type ShellContext, type StoreWrite } from '../src/runtime/actor';
import { checkEventAuth, authEventSelection } from '../src/protocol/auth-rules';
import { encodeBase64Url } from '../src/protocol/base64';
import { computeEventId, hashAndIdentify, hashAndSignEvent, ownSignatureBytes, roomIdFromCreateEvent, serverNameOf, verifyEventSignature, type SignedEvent } from '../src/protocol/event-hashing';
import { canonicalJson, isJsonObject, type JsonObject } from '../src/protocol/json';
import { LayeredMap } from '../src/protocol/layered-map';
import { checkPduFormat, checkPduSize } from '../src/protocol/pdu-limits';
import { stateKeyOf, toPdu, type Pdu, type StateLookup, type StateMap } from '../src/protocol/pdu';
import { namedLevel, requiredEventLevel, userPowerLevel } from '../src/protocol/power-levels';
import { redactEvent } from '../src/protocol/redaction';
import { requireRoomVersion, type RoomVersion } from '../src/protocol/room-versions';
import { decode, encode } from '../src/store/codec';
import { authorizeReceivedPdu, checkReceivedPdu, precheckPdus, type IngestView, type KnownEvent, type RemoteKeys } from '../src/rooms/ingest';
import { resolveState } from '../src/protocol/state-resolution';
import { readSnapshot } from '../src/store/room-reader';
import { Cluster } from 'ioredis';
import { KeySpace, PARTIAL_STATE_ROOMS, eventRoomIndex, legacySearchData, recencyIndexData, roomData, searchData } from '../src/store/keys';
import type { RedisClient } from '../src/store/redis';
import { completeCurrentState, recheckSinceJoin } from '../src/protocol/partial-state';
import { UPGRADE_CLAIM_MS, relationOf, type RoomConfig, type RoomMeta, type RoomState, type EventTemplate, type RoomMessage, type DirectoryVisibility, type SuppliedState, type RoomReply, type IngestReply, type RoomOutput, type RoomDirectoryOutput, type RoomPrepared, type PartialStateInfo, type StoredEvent, type StoredSnapshot, type RootDelta } from '../src/rooms/model';

/** How many forward extremities a new event references at most (Synapse uses 10). */
const MAX_PREV_EVENTS = 10;
/** A snapshot chain longer than this is written out in full, bounding the cost of a lookup. */
const MAX_SNAPSHOT_CHAIN = 64;

type RemoteMode = 'live' | 'outlier' | 'backfill';

/**
 * The snapshot to store for the state `full` = snapshot `parent` (chain length `parentChain`,
 * undefined: unknown) plus `delta`. Within the chain bound it is a delta on the parent. Past it,
 * it is re-based on the chain's full root with the chain's deltas merged (`parentRoot`, loaded by
 * the shell) as long as that merged delta stays small against the state (an eighth of it, at
 * least the chain bound); only then is the state written in full. In a 10,000-member room with
 * churn, this writes the full state once per ~1,000 changes instead of once per 64: storage
 * follows the state changes, not the changes × the members. Lookups still take at most
 * MAX_SNAPSHOT_CHAIN + 1 reads.
 */
export function chooseSnapshot(id: number, parent: number, parentChain: number | undefined, delta: [string, string | null][], full: () => StateMap, parentRoot: RootDelta | undefined): { snap: StoredSnapshot; root?: RootDelta } {
  const n = parent === 0 || parentChain === undefined ? Infinity : parentChain + 1;
  const merged = () => {
    const m = new Map(parentRoot!.delta);
    for (const [k, v] of delta) m.set(k, v);
    return m;
  };
  if (n <= MAX_SNAPSHOT_CHAIN) return { snap: { p: parent, d: delta, n }, ...(parentRoot ? { root: { root: parentRoot.root, delta: merged() } } : {}) };
  const state = full();
  if (parentRoot && parent !== 0) {
    const m = merged();
    if (m.size <= Math.max(MAX_SNAPSHOT_CHAIN, state.size >> 3)) return { snap: { p: parentRoot.root, d: [...m], n: 1 }, root: { root: parentRoot.root, delta: m } };
  }
  return { snap: { p: null, d: [...state], n: 0 }, root: { root: id, delta: new Map() } };
}

/** Walk snapshot `id`'s chain to its full root, merging the deltas on the way (newest wins). */
export async function loadRootDelta(fetch: (name: string) => Promise<Buffer | null>, roomId: string, id: number): Promise<RootDelta | undefined> {
  if (id === 0) return undefined;
  const chain: StoredSnapshot[] = [];
  let cur: number | null = id;
  for (let hops = 0; cur !== null && hops <= MAX_SNAPSHOT_CHAIN + 1; hops++) {
    const blob = await fetch(roomData.snapshot(roomId, cur));
    if (!blob) return undefined;
    const snap = decode<StoredSnapshot>(blob);
    if (snap.p === null) {
      const delta = new Map<string, string | null>();
      for (let i = chain.length - 1; i >= 0; i--) for (const [k, v] of chain[i]!.d) delta.set(k, v);
      return { root: cur, delta };
    }
    chain.push(snap);
    cur = snap.p;
  }
  return undefined;
}

export function emptyRoom(roomId: string): RoomState {
  return { roomId, version: null, createId: '', seq: 0, depth: 0, extremities: [], snap: 0, snapChain: 0, snapSeq: 0, current: LayeredMap.from(), events: LayeredMap.from() };
}

function lookup(state: RoomState): StateLookup {
  return { get: (type, key) => state.events.get(stateKeyOf(type, key)) };
}

/** Pure: everything the room actor does with a message. */
export function decideRoom(cfg: RoomConfig, state: RoomState, msg: ActorMessage<RoomMessage>, prepared: RoomPrepared): Decision<RoomState, RoomReply> {
  const body = msg.body;
  if (body?.op === 'purge_begin') return decidePurgeBegin(cfg, state);
  if (body?.op === 'purge') return decidePurgeBatch(state, prepared);
  // A room being purged is half gone: nothing may write to it or build on it.
  if (state.purging) throw new ActorRejection('M_NOT_FOUND', 'This room is being purged', 404);
  if (body?.op === 'create') return decideCreate(cfg, state, body.event);
  if (body?.op === 'send') return decideSend(cfg, state, msg, body.event, body.txn, prepared);
  if (body?.op === 'ingest') return decideRemote(state, body.outlier ? 'outlier' : 'live', body.pdus, body.keys, body.state, prepared, body.onBehalfOf, body.ownJoin, body.partialState);
  if (body?.op === 'complete_partial_state') return decideCompletePartialState(state, body.join, body.stateIds, prepared);
  if (body?.op === 'backfill') return decideRemote(state, 'backfill', body.pdus, body.keys, body.state, prepared);
  if (body?.op === 'set_directory_visibility') return decideDirectoryVisibility(state, body.visibility);
  if (body?.op === 'alias_index') return decideAliasIndex(state, body.alias, body.present);
  if (body?.op === 'claim_upgrade') return decideClaimUpgrade(state, body.replacement, body.sender, msg.enqueuedAt);
  if (body?.op === 'release_upgrade') return decideReleaseUpgrade(state, body.replacement);
  throw new TypeError(`room: unknown op ${JSON.stringify((body as { op?: unknown } | undefined)?.op)}`);
}

/**
 * Publish or unpublish the room. Written and announced even when unchanged, so the derived set
 * of published rooms heals if it ever disagrees (entries are applied idempotently).
 */
function decideDirectoryVisibility(state: RoomState, visibility: DirectoryVisibility): Decision<RoomState, RoomReply> {
  if (state.version === null) throw new ActorRejection('M_NOT_FOUND', 'Unknown room', 404);
  if (visibility !== 'public' && visibility !== 'private') throw new ActorRejection('M_INVALID_PARAM', 'visibility must be "public" or "private"', 400);
  const published = visibility === 'public';
  let next = state;
  if (published && !state.published) next = { ...state, published: true };
  else if (!published && state.published) {
    const { published: _p, ...rest } = state;
    next = rest;
  }
  const key = roomData.published(state.roomId);
  const output: RoomDirectoryOutput = { roomId: state.roomId, directory: visibility };
  return { state: next, reply: { ok: true }, writes: [published ? { cmd: 'SET', key, args: ['1'] } : { cmd: 'DEL', key, args: [] }], outputs: [output] };
}

/**
 * The purge of a room starts (src/rooms/room-deletion.ts): from this commit on the room refuses
 * everything but purge batches, so no event lands in a room whose keys are going. Idempotent.
 *
 * The room's members hash goes in this commit, not in whichever batch the scan meets it: it is
 * the purge guard of the push evaluator's scripts (push-log-1.lua, push-joins-2.lua,
 * push-sent-1.lua write nothing of a room without it) and of the search index's
 * (search-index-5.lua: the search reader, a rebuild), and a reader running behind the purge
 * must find it gone before the scan starts — a key it wrote while the hash was still there, in a
 * part of the keyspace the scan had already passed, would be left behind for good. The purge
 * needs it no more: room-deletion.ts reads it for the "still joined" check before it asks for
 * purge_begin, and the batches only scan. Deleted again by a repeated purge_begin: harmless, and a
 * purge begun by a version that left the hash to the scan loses it then. Only the room actor
 * writes the hash, and from here on it takes nothing but purge batches, so nothing puts it back.
 *
 * The local users of the list (any membership: the current state's member keys, which the hash
 * mirrors) are kept and answered (`purgeUsers`): room-deletion.ts asks each of them for
 * `purge_room` now, after the readers' guard is gone, so nothing the push evaluator writes for
 * them comes back after it; a repeated purge_begin answers the same list (a deletion run again
 * after dying before it had asked them all), until the first batch drops it.
 */
function decidePurgeBegin(cfg: RoomConfig, state: RoomState): Decision<RoomState, RoomReply> {
  // A room with nothing stored (never here, or purged to the end already: the last batch resets it
  // to this) has nothing to purge. Begun anyway it would stay purging, refusing a later create or
  // join of the id, with no deletion left to run its batches: RoomReader.meta answers null for it,
  // so a deletion run again (room-deletion.ts) stops at its missing-room check. A second deletion
  // racing the first (both past that check, the first done before the second's purge_begin) gets here.
  if (!state.purging && state.version === null) return { state, reply: { ok: true, users: [], nothing: true } };
  const writes: StoreWrite[] = [{ cmd: 'DEL', key: roomData.members(state.roomId), args: [] }];
  if (state.purging) return { state, reply: { ok: true, users: state.purgeUsers ?? [] }, writes };
  const users: string[] = [];
  const prefix = stateKeyOf('m.room.member', '');
  for (const [key] of state.current.entries()) {
    if (!key.startsWith(prefix)) continue;
    const user = key.slice(prefix.length);
    if (serverNameOf(user) === cfg.serverName) users.push(user);
  }
  users.sort();
  const next: RoomState = { ...state, purging: true };
  if (users.length) next.purgeUsers = users;
  return { state: next, reply: { ok: true, users }, writes };
}

/**
 * One batch of a purge: delete the keys the shell found (each commit is whole, so a worker dying
 * between batches leaves the room purging with fewer keys, and the next batch — or the job's
 * retry from the start — goes on). The last batch (scan complete) resets the room to nothing
 * and takes it out of the shard's room list and the server-wide indexes that name it.
 */
function decidePurgeBatch(state: RoomState, prepared: RoomPrepared): Decision<RoomState, RoomReply> {
  if (!state.purging) throw new ActorRejection('M_UNKNOWN', 'The purge of this room has not begun', 400);
  const found = prepared.purge ?? { keys: [], eventIds: [], cursor: '0' };
  const writes: StoreWrite[] = found.keys.map((key) => ({ cmd: 'DEL', key, args: [] }));
  const derivedWrites: StoreWrite[] = found.eventIds.map((id) => ({ cmd: 'HDEL', key: eventRoomIndex(id), args: [id] }));
  const done = found.cursor === '0';
  // The users purge_begin named were all asked before the first batch (room-deletion.ts): the
  // list goes, not stored again with every batch's commit.
  const { purgeUsers: _asked, ...rest } = state;
  if (!done) return { state: rest, reply: { cursor: found.cursor, deleted: found.keys.length, done }, writes, derivedWrites };
  // The shard's list of rooms, and its recency stamps (sliding sync's bump stamp of each room,
  // recency-index.ts: a shard-wide sorted set, not one of the room's keys the scan finds).
  writes.push({ cmd: 'ZREM', key: roomData.localRooms(), args: [state.roomId] }, { cmd: 'ZREM', key: recencyIndexData.roomStamps(), args: [state.roomId] });
  const global = new KeySpace('');
  derivedWrites.push(
    { cmd: 'HDEL', key: PARTIAL_STATE_ROOMS, args: [state.roomId], ordered: true },
    { cmd: 'SREM', key: global.publicRooms(), args: [state.roomId] },
    { cmd: 'SREM', key: global.directoryVisibleRooms(), args: [state.roomId] },
  );
  // Positions and snapshot ids go on from where they were: a room joined again after its purge
  // must not reuse them (readers keep snapshots and positions by room id and number).
  const reset: RoomState = { ...emptyRoom(state.roomId), seq: state.seq, snapSeq: state.snapSeq };
  return { state: reset, reply: { cursor: '0', deleted: found.keys.length, done }, writes, derivedWrites };
}

// `pl`: the push evaluator's keys of the room (pushData.roomLog…, roomList…, roomJoins, sentUpTo);
// `sslice`: its shared initial-sync slice (it has a TTL, but holds the room's events until then).
const ROOM_KEY_NAMES = new Set(['state', 'members', 'timeline', 'snap', 'txn', 'evtxn', 'aliases', 'published', 'rel', 'threads', 'ts', 'receipts', 'typing', 'pl', 'sslice']);
/** The search index's format 1 keys, `search:<id>:<name>…` (a room indexed before format 2 and never reindexed). */
const SEARCH_KEY_NAMES = new Set(['docs', 'terms', 'stats', 'p']);

/** How many keys a purge batch examines at most (one SCAN page of the shard); its deletes are one commit. */
const PURGE_SCAN_COUNT = 500;

/**
 * The shell of a purge batch: one SCAN page of the room's shard (keys of every room there), kept
 * to this room's: its per-room keys (`room:<id>:…`, its search index's, and format 1's `search:<id>:…`) and the records of its
 * events (`ev:<id>`, whose JSON names the room; a v12 create event names none, its id is the
 * room's `createId`). On a Cluster the shard's keys live on one node; the cursor says which node
 * the scan is at (`<node>:<cursor>`).
 */
async function preparePurge(ctx: ShellContext, state: RoomState, cursor: string): Promise<RoomPrepared> {
  const base = ctx.keys.data('');
  const nodes: RedisClient[] = ctx.redis instanceof Cluster ? (ctx.redis.nodes('master') as RedisClient[]) : [ctx.redis];
  const m = /^(?:(\d+):)?(\d+)$/.exec(cursor);
  let node = m?.[1] ? Number(m[1]) : 0;
  if (node >= nodes.length) return { purge: { keys: [], eventIds: [], cursor: '0' } };
  const [next, found] = await nodes[node]!.scan(m?.[2] ?? '0', 'MATCH', `${base.replace(/[*?[\]\\]/g, '\\$&')}*`, 'COUNT', PURGE_SCAN_COUNT);
  // `room:<id>:<name>…` and `search:<id>:<name>…`, where <name> is one of the names those keys
  // take: a room `!a:example.org` must not take the keys of `!a:example.org:8448`.
  const own: [string, Set<string>][] = [
    [roomData.state(state.roomId).slice(0, -'state'.length), ROOM_KEY_NAMES],
    [legacySearchData.docs(state.roomId).slice(0, -'docs'.length), SEARCH_KEY_NAMES],
  ];
  // The search index (format 2): the room's exact keys, and its postings, block bounds and long
  // terms' best postings, `<prefix><term>` (the best postings were left behind until 2026-12-06).
  // A longer room id (`!a:example.org:8448`) shares the prefix, but the rest is then `<port>:…`,
  // which no term starts with (a colon joins letters only, UAX #29).
  const searchExact = new Set([searchData.docs(state.roomId), searchData.terms(state.roomId), searchData.stats(state.roomId), searchData.dead(state.roomId)]);
  const searchPrefixes = [searchData.postingsPrefix(state.roomId), searchData.blockBoundsPrefix(state.roomId), searchData.topPrefix(state.roomId)];
  const ownSearchKey = (rel: string) => searchExact.has(rel) || searchPrefixes.some((p) => rel.startsWith(p) && !/^\d+:/.test(rel.slice(p.length)));
  const keys: string[] = [];
  const eventIds: string[] = [];
  const evPrefix = roomData.event('');
  const candidates: string[] = [];
  for (const full of found) {
    const rel = full.slice(base.length);
    if (own.some(([p, names]) => rel.startsWith(p) && names.has(rel.slice(p.length).split(':')[0]!)) || ownSearchKey(rel)) keys.push(rel);
    else if (rel.startsWith(evPrefix)) candidates.push(rel);
  }
  if (candidates.length) {
    const blobs = await ctx.redis.mgetBuffer(...candidates.map((rel) => ctx.keys.data(rel)));
    candidates.forEach((rel, i) => {
      const blob = blobs[i];
      if (!blob) return;
      const id = rel.slice(evPrefix.length);
      let roomId: unknown;
      try {
        roomId = (JSON.parse(decode<StoredEvent>(blob).j) as JsonObject).room_id;
      } catch {
        return;
      }
      if (roomId === state.roomId || (roomId === undefined && id === state.createId)) {
        keys.push(rel);
        eventIds.push(id);
      }
    });
  }
  let nextCursor: string;
  if (next !== '0') nextCursor = `${node}:${next}`;
  else if (++node < nodes.length) nextCursor = `${node}:0`;
  else nextCursor = '0';
  return { purge: { keys, eventIds, cursor: nextCursor } };
}

/** Keep the room's set of local aliases (the alias actor owns the aliases themselves). */
function decideAliasIndex(state: RoomState, alias: string, present: boolean): Decision<RoomState, RoomReply> {
  if (state.version === null) throw new ActorRejection('M_NOT_FOUND', 'Unknown room', 404);
  if (typeof alias !== 'string' || !alias.startsWith('#')) throw new ActorRejection('M_INVALID_PARAM', 'Not a room alias', 400);
  return { state, reply: { ok: true }, writes: [{ cmd: present ? 'SADD' : 'SREM', key: roomData.aliases(state.roomId), args: [alias] }] };
}

/**
 * Racing upgrades of one room (as Synapse answers them): while a claim is recent, its upgrader
 * asking again gets the same replacement room (`fresh: false`: not theirs to build again), and
 * anyone else 400 "An upgrade for this room is currently in progress". Otherwise the claim goes to
 * a joined member allowed to send the tombstone (the same check the tombstone itself meets later).
 */
function decideClaimUpgrade(state: RoomState, replacement: string, sender: string, now: number): Decision<RoomState, RoomReply> {
  if (state.version === null) throw new ActorRejection('M_NOT_FOUND', 'Unknown room', 404);
  if (typeof replacement !== 'string' || !replacement.startsWith('!')) throw new ActorRejection('M_INVALID_PARAM', 'replacement must be a room id', 400);
  const claim = state.upgrade;
  if (claim && now - claim.at < UPGRADE_CLAIM_MS) {
    if (claim.by === sender) return { state, reply: { replacement: claim.to, fresh: false } };
    throw new ActorRejection('M_UNKNOWN', 'An upgrade for this room is currently in progress', 400);
  }
  const version = requireRoomVersion(state.version);
  const st = lookup(state);
  if (st.get('m.room.member', sender)?.content.membership !== 'join') throw new ActorRejection('M_FORBIDDEN', 'You are not in this room', 403);
  if (userPowerLevel(sender, st, version) < requiredEventLevel('m.room.tombstone', true, st, version)) throw new ActorRejection('M_FORBIDDEN', 'You do not have the power to upgrade this room', 403);
  return { state: { ...state, upgrade: { to: replacement, by: sender, at: now } }, reply: { replacement, fresh: true } };
}

function decideReleaseUpgrade(state: RoomState, replacement: string): Decision<RoomState, RoomReply> {
  if (state.upgrade?.to !== replacement) return { state, reply: { ok: true } };
  const { upgrade: _released, ...rest } = state;
  return { state: rest as RoomState, reply: { ok: true } };
}

function decideCreate(cfg: RoomConfig, state: RoomState, raw: JsonObject): Decision<RoomState, RoomReply> {
  // A retried message is answered by the runtime's dedupe before it gets here, so a create for a
  // room that exists is another room with the same id — for v12, the same create event built
  // twice in one millisecond — and the sender must build a different one.
  if (state.version !== null) throw new ActorRejection('M_ROOM_IN_USE', 'Room already exists', 400);
  const content = isJsonObject(raw.content) ? raw.content : {};
  const versionId = typeof content.room_version === 'string' ? content.room_version : '1';
  let version: RoomVersion;
  try {
    version = requireRoomVersion(versionId);
  } catch {
    throw new ActorRejection('M_UNSUPPORTED_ROOM_VERSION', `Unsupported room version ${versionId}`, 400);
  }
  const problems = checkPduFormat(raw, version);
  if (problems.length) throw new ActorRejection('M_BAD_JSON', problems.join('; '), 400);
  const pdu = toPdu(raw, version);
  const roomId = version.roomIdFromCreateEvent ? roomIdFromCreateEvent(raw, version) : pdu.roomId;
  if (roomId !== state.roomId) throw new ActorRejection('M_INVALID_PARAM', 'The create event is for another room', 400);
  if (serverNameOf(pdu.sender) !== cfg.serverName) throw new ActorRejection('M_FORBIDDEN', 'Rooms are created by local users', 403);
  const signed = verifyEventSignature(raw, version, cfg.serverName, cfg.signingKey.keyId, cfg.signingKey.publicKey);
  if (!signed.ok) throw new ActorRejection('M_FORBIDDEN', 'The create event is not signed by this server', 403);
  const auth = checkEventAuth(pdu, lookup(state), version);
  if (!auth.allowed) throw new ActorRejection('M_FORBIDDEN', auth.reason, 403);
  const base: RoomState = { ...state, version: version.id, createId: pdu.eventId };
  return appendEvent(base, pdu, version, undefined);
}

function decideSend(cfg: RoomConfig, state: RoomState, msg: ActorMessage<RoomMessage>, template: EventTemplate, txn: string | undefined, prepared: RoomPrepared): Decision<RoomState, RoomReply> {
  if (state.version === null) throw new ActorRejection('M_NOT_FOUND', 'Unknown room', 404);
  if (txn && prepared.txnEventId) {
    // The same client transaction again: the same event, nothing new.
    return { state, reply: { event_id: prepared.txnEventId, room_id: state.roomId, pos: state.seq } };
  }
  const version = requireRoomVersion(state.version);
  if (serverNameOf(template.sender) !== cfg.serverName) throw new ActorRejection('M_FORBIDDEN', 'Only local users send through this server', 403);
  // The same state again (same sender, same content — a repeated PUT /state, a join of a room one
  // is already joined to): the event already in the state is the answer and nothing new is
  // written, as Synapse does. Redacted state differs from what a client sends, so it is replaced.
  if (template.state_key !== undefined) {
    const existing = state.events.get(stateKeyOf(template.type, template.state_key));
    if (existing && existing.sender === template.sender && canonicalJson(existing.content) === canonicalJson(template.content)) {
      return { state, reply: { event_id: existing.eventId, room_id: state.roomId, pos: state.seq } };
    }
  }
  // Hashed, identified and serialised in one pass (each part of the event serialised once); not
  // signed: the signature is added when the event leaves the server (src/rooms/own-signatures.ts),
  // and the size limit counts it.
  const built = buildEvent(cfg, state, version, template, msg);
  const size = checkPduSize(built.event, built.json, signatureBytesOf(cfg));
  if (!size.ok) throw new ActorRejection(size.errcode, size.error, size.errcode === 'M_TOO_LARGE' ? 413 : 400);
  const pdu = toPdu(built.event, version, built.eventId);
  const auth = checkEventAuth(pdu, lookup(state), version);
  if (!auth.allowed) throw new ActorRejection('M_FORBIDDEN', auth.reason, 403);
  const decision = appendEvent(state, pdu, version, prepared, built.json);
  if (txn) {
    decision.writes!.push({ cmd: 'HSET', key: roomData.txns(state.roomId), args: [txn, pdu.eventId] });
    // The reverse mapping lets reads give the sender's device its `unsigned.transaction_id`.
    decision.writes!.push({ cmd: 'HSET', key: roomData.eventTxns(state.roomId), args: [pdu.eventId, txn] });
  }
  return decision;
}

/** `ownSignatureBytes` of the server's key, worked out once per key (it is the same for every event). */
const signatureBytes = new Map<string, number>();
function signatureBytesOf(cfg: RoomConfig): number {
  const id = `${cfg.serverName}\u0000${cfg.signingKey.keyId}`;
  let n = signatureBytes.get(id);
  if (n === undefined) {
    n = ownSignatureBytes(cfg.serverName, cfg.signingKey.keyId);
    if (signatureBytes.size >= 64) signatureBytes.clear();
    signatureBytes.set(id, n);
  }
  return n;
}

/**
 * Build a local event on top of the room's current state and extremities, hashed, with its id and
 * canonical JSON. It is stored without our signature (`hashAndIdentify` says why): every path that
 * hands our events to another server signs them (src/rooms/own-signatures.ts).
 */
export function buildEvent(cfg: RoomConfig, state: RoomState, version: RoomVersion, t: EventTemplate, msg: ActorMessage<unknown>): SignedEvent {
  const prev = state.extremities.slice(-MAX_PREV_EVENTS);
  const authIds: string[] = [];
  for (const [type, key] of authEventSelection({ type: t.type, stateKey: t.state_key, sender: t.sender, content: t.content }, version)) {
    const id = state.current.get(stateKeyOf(type, key));
    if (id) authIds.push(id);
  }
  const raw: JsonObject = {
    room_id: state.roomId,
    sender: t.sender,
    type: t.type,
    content: t.content,
    origin_server_ts: msg.enqueuedAt,
    depth: state.depth + 1,
    prev_events: version.eventRefsWithHashes ? prev.map((id) => [id, {}]) : prev,
    auth_events: version.eventRefsWithHashes ? authIds.map((id) => [id, {}]) : authIds,
  };
  if (t.state_key !== undefined) raw.state_key = t.state_key;
  if (t.type === 'm.room.redaction' && t.redacts) {
    if (version.redactsInContent) raw.content = { ...t.content, redacts: t.redacts };
    else raw.redacts = t.redacts;
  }
  if (version.eventIdFormat === 'v1') {
    // v1/v2 ids are ours to choose: derived from the message id, so a retried message makes the same event.
    raw.event_id = `$${encodeBase64Url(createHash('sha256').update(msg.mid).digest()).slice(0, 24)}:${cfg.serverName}`;
  }
  return hashAndIdentify(raw, version);
}

/**
 * Persist an accepted event: timeline position, stored record, state snapshot and current state
 * for state events, redaction of its target when it applies, extremities, output entry.
 */
function appendEvent(state: RoomState, pdu: Pdu, version: RoomVersion, prepared: RoomPrepared | undefined, json?: string): Decision<RoomState, RoomReply> {
  const pos = state.seq + 1;
  const writes: StoreWrite[] = [];
  const roomId = state.roomId;
  let next: RoomState = { ...state, seq: pos, depth: Math.max(state.depth, pdu.depth), extremities: [...state.extremities.filter((id) => !pdu.prevEvents.includes(id)), pdu.eventId] };
  const before = state.snap;
  const output: RoomOutput = { roomId, eventId: pdu.eventId, pos, event: pdu.raw, stateBefore: before };
  if (state.partial) output.partialState = true;
  let after = before;
  if (pdu.stateKey !== undefined) {
    const key = stateKeyOf(pdu.type, pdu.stateKey);
    const replaces = state.current.get(key) ?? null;
    after = state.snapSeq + 1;
    const { snap: snapshot } = chooseSnapshot(after, before, state.snapChain, [[key, pdu.eventId]], () => state.current.with([[key, pdu.eventId]]).toMap(), prepared?.roots?.get(before));
    writes.push({ cmd: 'SET', key: roomData.snapshot(roomId, after), args: [encode(snapshot)] });
    writes.push({ cmd: 'HSET', key: roomData.state(roomId), args: [key, pdu.eventId] });
    if (pdu.type === 'm.room.member' && typeof pdu.content.membership === 'string') {
      writes.push({ cmd: 'HSET', key: roomData.members(roomId), args: [pdu.stateKey, pdu.content.membership] });
    }
    next = { ...next, snap: after, snapSeq: after, snapChain: snapshot.n, current: state.current.with([[key, pdu.eventId]]), events: state.events.with([[key, pdu]]) };
    output.state = { key, replaces };
  }
  const record: StoredEvent = { j: json ?? canonicalJson(pdu.raw), p: pos, d: pdu.depth, sb: before, sa: after };
  writes.push({ cmd: 'SET', key: roomData.event(pdu.eventId), args: [encode(record)] });
  writes.push({ cmd: 'ZADD', key: roomData.timeline(roomId), args: [pos, pdu.eventId] });
  writes.push(...indexWrites(roomId, pdu.eventId, pdu.raw, pos));

  // Redactions (v3+ "Handling redactions"; v1–v2 the auth rules already required this).
  const target = prepared?.redactionTarget;
  if (pdu.type === 'm.room.redaction' && pdu.redacts && target && !target.rb) {
    const targetPdu = toPdu(JSON.parse(target.j) as JsonObject, version);
    if (targetPdu.roomId === roomId && mayRedact(pdu, targetPdu, state, version)) {
      const redacted = redactEvent(targetPdu.raw, version);
      writes.push({ cmd: 'SET', key: roomData.event(targetPdu.eventId), args: [encode({ ...target, j: canonicalJson(redacted), rb: pdu.eventId } satisfies StoredEvent)] });
      output.redacted = targetPdu.eventId;
      // The redacted form has no m.relates_to: it no longer counts as a relation of its parent.
      const rel = relationOf(targetPdu.raw);
      if (rel) writes.push({ cmd: 'ZREM', key: roomData.relations(roomId, rel.parent), args: [targetPdu.eventId] });
      // A redacted state event that is current state keeps counting, in its redacted form.
      if (targetPdu.stateKey !== undefined) {
        const key = stateKeyOf(targetPdu.type, targetPdu.stateKey);
        if (next.current.get(key) === targetPdu.eventId) next = { ...next, events: next.events.with([[key, toPdu(redacted, version, targetPdu.eventId)]]) };
      }
    }
  }
  return { state: next, reply: { event_id: pdu.eventId, room_id: roomId, pos }, outputs: [output], writes };
}


/**
 * Take events built elsewhere. Each goes through the receipt checks (src/rooms/ingest.ts) in an
 * order where it comes after the events of the batch it references.
 *
 * - `live` (federation /send): accepted events join the timeline and move the current state
 *   (resolving it against the new branch when the event does not extend every forward
 *   extremity); soft-failed ones are kept in the DAG only.
 * - `outlier`: stored without a place in the room's history (auth chains, state fetched for a join).
 * - `backfill`: history older than what the room knows (a /backfill response). Accepted events get
 *   stream positions below every position the room has used, ordered by depth and then by the
 *   order they were taken in (Synapse gives backfilled events negative stream orderings the same
 *   way), so pagination backwards serves them after the known history, in topological order.
 *   They produce no output entries (so /sync does not deliver them as new), never become forward
 *   extremities (so no local event builds on them), do not move the current state, and are not
 *   soft-failed (as Synapse does not soft-fail backfilled events).
 *
 * In every mode, rejected events are stored as rejected; an event already stored is a
 * `duplicate` (nothing is written), except an outlier met again as part of the history, which
 * takes its place in it. `supplied` brings the state and auth chain events for events whose
 * prev_events the room does not have (what a remote's /state_ids and /event give): they are taken
 * as outliers first. A room this server does not know yet can be entered that way in `live` mode
 * (a join over federation: the state at the first event, with the create event among it).
 * `onBehalfOf` (live only): the server that handed us these events through a membership
 * endpoint; their output entries carry it, so the federation sender passes them on to the room's
 * other servers (src/federation/sender/reader.ts).
 */
function decideRemote(state: RoomState, mode: RemoteMode, pdus: JsonObject[], keys: RemoteKeys, supplied: SuppliedState | undefined, prepared: RoomPrepared, onBehalfOf?: string, ownJoin?: string, partialState?: { servers: string[] }): Decision<RoomState, RoomReply> {
  const fresh = state.version === null;
  const version = fresh ? freshRoomVersion(state, mode, supplied) : requireRoomVersion(state.version!);
  const known = new Map<string, KnownEvent & { stored: StoredEvent }>();
  const snapshots = new Map(prepared.snapshots ?? []);
  const chains = new Map(prepared.snapshotChains ?? []);
  if (state.snap !== 0 && !chains.has(state.snap)) chains.set(state.snap, state.snapChain);
  for (const [id, k] of prepared.known ?? []) {
    const stored = k.stored;
    known.set(id, { pdu: k.pdu, stored, rejected: !!stored.rej, outlier: !!stored.o, stateAfter: stored.rej || stored.o ? undefined : snapshots.get(stored.sa) });
  }
  const extra = new Map<string, Pdu>();
  for (const e of state.events.entries()) extra.set(e[1].eventId, e[1]);
  const view: IngestView = {
    version,
    roomId: state.roomId,
    known: (id) => known.get(id),
    getEvent: (id) => known.get(id)?.pdu ?? extra.get(id),
  };
  let next: RoomState = fresh ? { ...state, version: version.id } : state;
  const writes: StoreWrite[] = [];
  const derivedWrites: StoreWrite[] = [];
  const outputs: RoomOutput[] = [];
  const results: IngestReply['results'] = [];
  const backfilled: { pdu: Pdu; raw: JsonObject; stored: StoredEvent }[] = [];
  const roots = new Map(prepared.roots ?? []);
  const newSnapshot = (parent: number | null, delta: [string, string | null][], full: StateMap): number => {
    const id = next.snapSeq + 1;
    const { snap, root } = chooseSnapshot(id, parent ?? 0, parent === null ? undefined : chains.get(parent), delta, () => full, parent === null ? undefined : roots.get(parent));
    if (root) roots.set(id, root);
    writes.push({ cmd: 'SET', key: roomData.snapshot(state.roomId, id), args: [encode(snap)] });
    snapshots.set(id, full);
    chains.set(id, snap.n);
    next = { ...next, snapSeq: id };
    return id;
  };

  const take = (raw: JsonObject, asOutlier: boolean): void => {
    const pre = prepared.prechecks?.get(raw);
    const checked = checkReceivedPdu(raw, view, keys, pre);
    if (!checked.ok) {
      let id: string | null = pre?.eventId ?? null;
      try {
        id ??= computeEventId(raw, version);
      } catch {
        /* not even an event id: reported without one */
      }
      results.push({ event_id: id, status: 'dropped', reason: checked.reason });
      return;
    }
    // A redacted form has the same id (the id hashes the redacted event).
    const pdu = toPdu(checked.raw, version, pre?.eventId);
    const already = known.get(pdu.eventId);
    if (already && !(already.outlier && !asOutlier)) {
      results.push({ event_id: pdu.eventId, status: 'duplicate' });
      return;
    }
    // Prev events without known state: the state before the event must have been supplied.
    const prevsKnown = pdu.prevEvents.every((id) => known.get(id)?.stateAfter);
    let given: StateMap | undefined;
    if (!asOutlier && !prevsKnown && supplied?.before[pdu.eventId]) {
      const g = suppliedStateBefore(supplied.before[pdu.eventId]!, view);
      if (g.missing.length) {
        results.push({ event_id: pdu.eventId, status: 'missing', reason: 'unknown events in the state supplied for it', missing: g.missing });
        return;
      }
      if (g.problem) {
        results.push({ event_id: pdu.eventId, status: 'dropped', reason: g.problem });
        return;
      }
      given = g.state;
    }
    // Soft failing needs a current state: a room entered through supplied state has none until
    // its first event is accepted. Our own join from a send_join answer is not soft-failed: the
    // resident let it in on the room's state as it is now, and ours is what we saw before we left
    // (it is resolved with the join's state below, as two forks are).
    const hasCurrent = next.extremities.length > 0 && pdu.eventId !== ownJoin;
    // A partial-state room (our join's answer left the members out) judges events by what it has
    // and the events' own auth events, and soft-fails none: its current state lacks members (as
    // Synapse skips the soft-fail check there). The full state re-checks them (decideCompletePartialState).
    const partial = !asOutlier && mode === 'live' && (!!next.partial || (!!partialState && pdu.eventId === ownJoin));
    const current: StateLookup | null = mode === 'live' && !asOutlier && hasCurrent && !partial ? { get: (type, key) => next.events.get(stateKeyOf(type, key)) } : null;
    const outcome = authorizeReceivedPdu(pdu, view, current, asOutlier, given, partial);
    const base = { j: canonicalJson(checked.raw), d: pdu.depth };
    switch (outcome.status) {
      case 'dropped':
      case 'missing':
        results.push({ event_id: pdu.eventId, status: outcome.status, reason: outcome.reason, ...(outcome.status === 'missing' ? { missing: outcome.missing } : {}) });
        return;
      case 'rejected': {
        const stored: StoredEvent = { ...base, p: 0, sb: 0, sa: 0, rej: outcome.reason };
        writes.push({ cmd: 'SET', key: roomData.event(pdu.eventId), args: [encode(stored)] });
        known.set(pdu.eventId, { pdu, stored, rejected: true, outlier: false });
        results.push({ event_id: pdu.eventId, status: 'rejected', reason: outcome.reason });
        return;
      }
      case 'outlier': {
        const stored: StoredEvent = { ...base, p: 0, sb: 0, sa: 0, o: 1 };
        writes.push({ cmd: 'SET', key: roomData.event(pdu.eventId), args: [encode(stored)] });
        known.set(pdu.eventId, { pdu, stored, rejected: false, outlier: true });
        if (pdu.type === 'm.room.create' && pdu.stateKey === '' && !next.createId) next = { ...next, createId: pdu.eventId };
        results.push({ event_id: pdu.eventId, status: 'outlier' });
        return;
      }
    }
    if (pdu.type === 'm.room.create' && pdu.stateKey === '' && !next.createId) next = { ...next, createId: pdu.eventId };
    // Accepted or soft-failed: both get their state snapshots.
    const stateBefore = outcome.stateBefore;
    let sb: number;
    if (pdu.prevEvents.length === 0) sb = 0; // the create event: the empty state
    else if (given && !prevsKnown) sb = newSnapshot(null, [], stateBefore);
    else {
      const firstPrev = known.get(pdu.prevEvents[0]!)!.stored;
      sb = firstPrev.sa;
      if (pdu.prevEvents.length > 1) {
        const parent = snapshots.get(firstPrev.sa) ?? new Map();
        const delta: [string, string | null][] = [];
        for (const [k, v] of stateBefore) if (parent.get(k) !== v) delta.push([k, v]);
        for (const k of parent.keys()) if (!stateBefore.has(k)) delta.push([k, null]);
        sb = newSnapshot(firstPrev.sa, delta, stateBefore);
      }
    }
    let sa = sb;
    const stateAfter = new Map(stateBefore);
    if (pdu.stateKey !== undefined) {
      const key = stateKeyOf(pdu.type, pdu.stateKey);
      stateAfter.set(key, pdu.eventId);
      sa = newSnapshot(sb, [[key, pdu.eventId]], stateAfter);
    }
    if (outcome.status === 'soft_failed') {
      const stored: StoredEvent = { ...base, p: 0, sb, sa, sf: outcome.reason };
      writes.push({ cmd: 'SET', key: roomData.event(pdu.eventId), args: [encode(stored)] });
      known.set(pdu.eventId, { pdu, stored, rejected: false, outlier: false, stateAfter });
      results.push({ event_id: pdu.eventId, status: 'soft_failed', reason: outcome.reason });
      return;
    }
    if (mode === 'backfill') {
      // Positions are given once the whole batch is known (below).
      const stored: StoredEvent = { ...base, p: 0, sb, sa };
      known.set(pdu.eventId, { pdu, stored, rejected: false, outlier: false, stateAfter });
      backfilled.push({ pdu, raw: checked.raw, stored });
      results.push({ event_id: pdu.eventId, status: 'accepted' });
      return;
    }
    // Accepted: into the timeline, and the room's current state moves.
    const pos = next.seq + 1;
    const stored: StoredEvent = { ...base, p: pos, sb, sa };
    writes.push({ cmd: 'SET', key: roomData.event(pdu.eventId), args: [encode(stored)] });
    writes.push({ cmd: 'ZADD', key: roomData.timeline(state.roomId), args: [pos, pdu.eventId] });
    writes.push(...indexWrites(state.roomId, pdu.eventId, checked.raw, pos));
    known.set(pdu.eventId, { pdu, stored, rejected: false, outlier: false, stateAfter });
    extra.set(pdu.eventId, pdu);
    const extendsAll = next.extremities.every((id) => pdu.prevEvents.includes(id));
    const oldCurrent = next.current.toMap();
    const newCurrent = extendsAll ? stateAfter : resolveState({ version, stateSets: [oldCurrent, stateAfter], getEvent: view.getEvent, isRejected: (id) => known.get(id)?.rejected ?? false });
    const changes: [string, string | undefined][] = [];
    for (const [k, v] of newCurrent) if (oldCurrent.get(k) !== v) changes.push([k, v]);
    for (const k of oldCurrent.keys()) if (!newCurrent.has(k)) changes.push([k, undefined]);
    for (const [k, v] of changes) {
      if (v === undefined) writes.push({ cmd: 'HDEL', key: roomData.state(state.roomId), args: [k] });
      else writes.push({ cmd: 'HSET', key: roomData.state(state.roomId), args: [k, v] });
      const e = v === undefined ? undefined : view.getEvent(v);
      if (k.startsWith('m.room.member\u0000')) {
        const user = k.slice('m.room.member\u0000'.length);
        const m = e?.content.membership;
        if (typeof m === 'string') writes.push({ cmd: 'HSET', key: roomData.members(state.roomId), args: [user, m] });
        else writes.push({ cmd: 'HDEL', key: roomData.members(state.roomId), args: [user] });
      }
    }
    // The current state's snapshot: the event's own when it extends every extremity; otherwise
    // the resolution is a new state, stored as a delta on the previous current snapshot (local
    // events are built on it, and their state before is read from it).
    let currentSnap = extendsAll ? sa : next.snap;
    if (!extendsAll && changes.length > 0) currentSnap = newSnapshot(next.snap, changes.map(([k, v]) => [k, v ?? null]), newCurrent);
    next = {
      ...next,
      seq: pos,
      depth: Math.max(next.depth, pdu.depth),
      extremities: [...next.extremities.filter((id) => !pdu.prevEvents.includes(id)), pdu.eventId],
      current: next.current.with(changes),
      events: next.events.with(changes.map(([k, v]) => [k, v === undefined ? undefined : view.getEvent(v)])),
      snap: currentSnap,
      snapChain: chains.get(currentSnap) ?? next.snapChain,
    };
    const out: RoomOutput = { roomId: state.roomId, eventId: pdu.eventId, pos, event: checked.raw, stateBefore: sb };
    if (partial) out.partialState = true;
    if (onBehalfOf) out.onBehalfOf = onBehalfOf;
    if (pdu.stateKey !== undefined) {
      const key = stateKeyOf(pdu.type, pdu.stateKey);
      out.state = { key, replaces: oldCurrent.get(key) ?? null };
    }
    outputs.push(out);
    results.push({ event_id: pdu.eventId, status: 'accepted' });
    if (partialState && pdu.eventId === ownJoin && !next.partial) {
      const partial: PartialStateInfo = { join: pdu.eventId, servers: [...new Set(partialState.servers)].sort() };
      next = { ...next, partial };
      derivedWrites.push({ cmd: 'HSET', key: PARTIAL_STATE_ROOMS, args: [state.roomId, JSON.stringify(partial)], ordered: true });
    }
  };

  // The supplied state and auth chain first, as outliers, each after its auth events.
  const idOf = (raw: JsonObject) => prepared.prechecks?.get(raw)?.eventId ?? computeEventId(raw, version);
  for (const raw of dependencyOrder(supplied?.events ?? [], idOf)) take(raw, true);
  if (fresh && !next.createId) throw new ActorRejection('M_FORBIDDEN', 'The room is unknown here and its create event did not pass the checks', 403);
  for (const raw of dependencyOrder(pdus, idOf)) take(raw, mode === 'outlier');

  if (backfilled.length) {
    // Below everything the room has used: the batch's oldest event lowest, by depth then by the
    // order taken (which follows the prev edges).
    const order = backfilled.map((b, i) => ({ b, i })).sort((x, y) => x.b.pdu.depth - y.b.pdu.depth || x.i - y.i);
    const low = next.low ?? 0;
    order.forEach(({ b }, i) => {
      const pos = low - order.length + i;
      const stored: StoredEvent = { ...b.stored, p: pos };
      writes.push({ cmd: 'SET', key: roomData.event(b.pdu.eventId), args: [encode(stored)] });
      writes.push({ cmd: 'ZADD', key: roomData.timeline(state.roomId), args: [pos, b.pdu.eventId] });
      writes.push(...indexWrites(state.roomId, b.pdu.eventId, b.raw, pos, true));
    });
    next = { ...next, low: low - order.length };
  }
  return { state: next, reply: { results }, outputs, writes, ...(derivedWrites.length ? { derivedWrites } : {}) };
}

/**
 * The full state before our partial-state join is in (its events stored as outliers by the
 * resync's `ingest` just before): the room stops being partial-state. The state before and after
 * every event since the join is completed with what the partial state lacked and stored as new
 * snapshots (the full state once, the rest as deltas on it); each event is checked again against
 * its completed state, and one that fails is rejected and leaves the timeline; the current state
 * gains the missing members (src/protocol/partial-state.ts). Asked again once complete, it
 * answers that nothing was left to do.
 */
function decideCompletePartialState(state: RoomState, join: string, stateIds: string[], prepared: RoomPrepared): Decision<RoomState, RoomReply> {
  if (state.version === null) throw new ActorRejection('M_NOT_FOUND', 'Unknown room', 404);
  // Complete already: answered as such, and the room's entry in the partial-state list dropped
  // again. On a Redis Cluster that list is derived data written after commits, and a late write
  // (a worker cut off past its lease, replayed later) can put an entry back after the completion
  // dropped it: the resync that entry starts ends here, and the HDEL heals the list.
  if (!state.partial) return { state, reply: { completed: true, added: 0, rejected: [] }, derivedWrites: [{ cmd: 'HDEL', key: PARTIAL_STATE_ROOMS, args: [state.roomId], ordered: true }] };
  if (state.partial.join !== join) throw new ActorRejection('M_INVALID_PARAM', 'Not the join the room was entered with', 400);
  const version = requireRoomVersion(state.version);
  const known = prepared.known ?? new Map<string, { pdu: Pdu; stored: StoredEvent }>();
  const sinceJoin = prepared.sinceJoin ?? [];
  if (sinceJoin[0]?.eventId !== join) throw new ActorRejection('M_UNKNOWN', 'The join is not in the room\'s timeline', 500);
  const full: StateMap = new Map();
  for (const id of stateIds) {
    const k = known.get(id);
    if (!k) throw new ActorRejection('M_NOT_FOUND', `The state event ${id} is not stored here`, 400);
    if (k.stored.rej) throw new ActorRejection('M_INVALID_PARAM', `The state event ${id} was rejected`, 400);
    if (k.pdu.stateKey === undefined) throw new ActorRejection('M_INVALID_PARAM', `${id} is not a state event`, 400);
    const key = stateKeyOf(k.pdu.type, k.pdu.stateKey);
    if (full.has(key) && full.get(key) !== id) throw new ActorRejection('M_INVALID_PARAM', `The state names two events for ${JSON.stringify(k.pdu.type)} ${JSON.stringify(k.pdu.stateKey)}`, 400);
    full.set(key, id);
  }
  const byId = new Map<string, Pdu>();
  for (const [, pdu] of state.events.entries()) byId.set(pdu.eventId, pdu);
  const getEvent = (id: string) => known.get(id)?.pdu ?? byId.get(id);
  const snapshots = prepared.snapshots ?? new Map<number, StateMap>();
  const events = sinceJoin.map((e) => ({ eventId: e.eventId, pdu: e.pdu, before: snapshots.get(e.stored.sb) ?? new Map<string, string>() }));
  const recheck = recheckSinceJoin(full, events, (pdu, st) => checkEventAuth(pdu, { get: (type, key) => { const id = st.get(stateKeyOf(type, key)); return id === undefined ? undefined : getEvent(id); } }, version));

  const roomId = state.roomId;
  const writes: StoreWrite[] = [];
  let snapSeq = state.snapSeq;
  const base = recheck.events[0]!.before;
  const baseId = ++snapSeq;
  writes.push({ cmd: 'SET', key: roomData.snapshot(roomId, baseId), args: [encode({ p: null, d: [...base], n: 0 } satisfies StoredSnapshot)] });
  /** A snapshot of `st` as a delta on the full state before the join (one hop from its root). */
  const onBase = (st: StateMap): number => {
    if (st === base) return baseId;
    const d: [string, string | null][] = [];
    for (const [k, v] of st) if (base.get(k) !== v) d.push([k, v]);
    for (const k of base.keys()) if (!st.has(k)) d.push([k, null]);
    if (!d.length) return baseId;
    const id = ++snapSeq;
    writes.push({ cmd: 'SET', key: roomData.snapshot(roomId, id), args: [encode({ p: baseId, d, n: 1 } satisfies StoredSnapshot)] });
    return id;
  };
  const rejected: { event_id: string; reason: string }[] = [];
  recheck.events.forEach((r, i) => {
    const old = sinceJoin[i]!;
    let stored: StoredEvent;
    if (r.rejected) {
      // Rejected events have no place in the history (as ingest stores them): out of the timeline.
      stored = { ...old.stored, p: 0, sb: 0, sa: 0, rej: r.rejected };
      writes.push({ cmd: 'ZREM', key: roomData.timeline(roomId), args: [r.eventId] });
      rejected.push({ event_id: r.eventId, reason: r.rejected });
    } else {
      const sb = onBase(r.before);
      stored = { ...old.stored, sb, sa: old.pdu.stateKey === undefined ? sb : onBase(r.after) };
    }
    writes.push({ cmd: 'SET', key: roomData.event(r.eventId), args: [encode(stored)] });
  });
  const changes = completeCurrentState(state.current.toMap(), full, recheck);
  for (const [k, v] of changes) {
    if (v === undefined) writes.push({ cmd: 'HDEL', key: roomData.state(roomId), args: [k] });
    else writes.push({ cmd: 'HSET', key: roomData.state(roomId), args: [k, v] });
    if (k.startsWith('m.room.member\u0000')) {
      const user = k.slice('m.room.member\u0000'.length);
      const m = v === undefined ? undefined : getEvent(v)?.content.membership;
      if (typeof m === 'string') writes.push({ cmd: 'HSET', key: roomData.members(roomId), args: [user, m] });
      else writes.push({ cmd: 'HDEL', key: roomData.members(roomId), args: [user] });
    }
  }
  const current = state.current.with(changes);
  const currentSnap = onBase(current.toMap());
  // A rejected event is built upon no more: as a forward extremity it gives way to its prev events.
  const gone = new Set(rejected.map((r) => r.event_id));
  let extremities = state.extremities;
  if (extremities.some((id) => gone.has(id))) {
    const kept = extremities.filter((id) => !gone.has(id));
    for (const e of sinceJoin) if (gone.has(e.eventId) && state.extremities.includes(e.eventId)) for (const p of e.pdu.prevEvents) if (!gone.has(p) && !kept.includes(p)) kept.push(p);
    extremities = kept;
  }
  const { partial: _done, ...rest } = state;
  const next: RoomState = {
    ...rest,
    extremities,
    current,
    events: state.events.with([...changes].map(([k, v]) => [k, v === undefined ? undefined : getEvent(v)])),
    snap: currentSnap,
    snapChain: currentSnap === baseId ? 0 : 1,
    snapSeq,
  };
  return { state: next, reply: { completed: true, added: changes.size, rejected }, writes, derivedWrites: [{ cmd: 'HDEL', key: PARTIAL_STATE_ROOMS, args: [roomId], ordered: true }] };
}

/**
 * What completing a partial-state room needs: the full state's events, the timeline from the join
 * on with the snapshots of the states before its events, and the partial state's own events.
 */
async function prepareCompletePartialState(ctx: ShellContext, state: RoomState, join: string, stateIds: string[]): Promise<RoomPrepared> {
  if (state.version === null || state.partial?.join !== join) return {};
  const version = requireRoomVersion(state.version);
  const known = new Map<string, { pdu: Pdu; stored: StoredEvent }>();
  const load = async (ids: Iterable<string>) => {
    const want = [...new Set(ids)].filter((id) => !known.has(id));
    for (let i = 0; i < want.length; i += 500) {
      const batch = want.slice(i, i + 500);
      const blobs = await ctx.redis.mgetBuffer(...batch.map((id) => ctx.keys.data(roomData.event(id))));
      batch.forEach((id, j) => {
        const blob = blobs[j];
        if (!blob) return;
        const stored = decode<StoredEvent>(blob);
        known.set(id, { pdu: toPdu(JSON.parse(stored.j) as JsonObject, version, id), stored });
      });
    }
  };
  const joinStored = await loadStoredEvent(ctx, join);
  if (!joinStored || joinStored.p <= 0) return {};
  const ids = await ctx.redis.zrangebyscore(ctx.keys.data(roomData.timeline(state.roomId)), joinStored.p, '+inf');
  await load([...stateIds, ...ids]);
  const fetch = (name: string) => ctx.redis.getBuffer(ctx.keys.data(name));
  const cache = new Map<string, StateMap>();
  const snapshots = new Map<number, StateMap>();
  const sinceJoin: NonNullable<RoomPrepared['sinceJoin']> = [];
  for (const id of ids) {
    const k = known.get(id);
    if (!k || k.stored.p <= 0) continue;
    sinceJoin.push({ eventId: id, pdu: k.pdu, stored: k.stored });
    if (!snapshots.has(k.stored.sb)) snapshots.set(k.stored.sb, await readSnapshot(fetch, state.roomId, k.stored.sb, cache));
  }
  // A rejected state event falls back to what was there before it: those events too.
  const partialIds = new Set<string>();
  for (const snap of snapshots.values()) for (const v of snap.values()) partialIds.add(v);
  await load(partialIds);
  return { known, snapshots, sinceJoin };
}

/** The version of a room first heard of through supplied state: its create event says. */
function freshRoomVersion(state: RoomState, mode: RemoteMode, supplied: SuppliedState | undefined): RoomVersion {
  const create = supplied?.events.find((e) => e.type === 'm.room.create' && e.state_key === '');
  if (!create || mode === 'backfill') throw new ActorRejection('M_NOT_FOUND', 'Unknown room', 404);
  const content = isJsonObject(create.content) ? create.content : {};
  const versionId = typeof content.room_version === 'string' ? content.room_version : '1';
  let version: RoomVersion;
  try {
    version = requireRoomVersion(versionId);
  } catch {
    throw new ActorRejection('M_UNSUPPORTED_ROOM_VERSION', `Unsupported room version ${versionId}`, 400);
  }
  let roomId: unknown;
  try {
    roomId = version.roomIdFromCreateEvent ? roomIdFromCreateEvent(create, version) : create.room_id;
  } catch {
    roomId = undefined;
  }
  if (roomId !== state.roomId) throw new ActorRejection('M_INVALID_PARAM', 'The supplied create event is for another room', 400);
  return version;
}

/** A supplied state (event ids) as a state map, once every event in it is known and usable. */
function suppliedStateBefore(ids: string[], view: IngestView): { state: StateMap; missing: string[]; problem?: string } {
  const state: StateMap = new Map();
  const missing: string[] = [];
  let problem: string | undefined;
  for (const id of ids) {
    const k = view.known(id);
    if (!k) {
      missing.push(id);
      continue;
    }
    if (k.rejected) problem ??= `the supplied state names ${id}, which was rejected`;
    else if (k.pdu.stateKey === undefined) problem ??= `the supplied state names ${id}, which is not a state event`;
    else {
      const key = stateKeyOf(k.pdu.type, k.pdu.stateKey);
      if (state.has(key) && state.get(key) !== id) problem ??= `the supplied state names two events for ${JSON.stringify(k.pdu.type)} ${JSON.stringify(k.pdu.stateKey)}`;
      state.set(key, id);
    }
  }
  return { state, missing, ...(problem ? { problem } : {}) };
}

/**
 * The events in an order where each comes after the events of the same list it references
 * (prev_events and auth_events), taking the least deep ready event first and, among equals, the
 * earliest given: an already ordered list keeps its order; a /backfill response (newest first)
 * is turned around. Malformed entries keep their place; the checks drop them.
 */
function dependencyOrder(raws: JsonObject[], idOf: (raw: JsonObject) => string): JsonObject[] {
  if (raws.length < 2) return raws;
  const ids = raws.map((raw) => {
    try {
      return idOf(raw);
    } catch {
      return undefined;
    }
  });
  const index = new Map<string, number>();
  ids.forEach((id, i) => {
    if (id !== undefined && !index.has(id)) index.set(id, i);
  });
  const waiting = new Array<number>(raws.length).fill(0);
  const dependents: number[][] = raws.map(() => []);
  raws.forEach((raw, i) => {
    const refs = new Set([...toRefs(raw.prev_events), ...toRefs(raw.auth_events)]);
    for (const r of refs) {
      const j = index.get(r);
      if (j === undefined || j === i) continue;
      waiting[i]!++;
      dependents[j]!.push(i);
    }
  });
  const depth = (i: number) => (typeof raws[i]!.depth === 'number' ? (raws[i]!.depth as number) : 0);
  const before = (a: number, b: number) => depth(a) - depth(b) || a - b;
  // A binary heap: a 10,000-event send_join answer may have thousands ready at once (every
  // member event waits only on the create, power levels and join rules events).
  const ready: number[] = [];
  const push = (i: number) => {
    let k = ready.push(i) - 1;
    while (k > 0) {
      const up = (k - 1) >> 1;
      if (before(ready[up]!, ready[k]!) <= 0) break;
      [ready[up], ready[k]] = [ready[k]!, ready[up]!];
      k = up;
    }
  };
  const pop = (): number => {
    const top = ready[0]!;
    const last = ready.pop()!;
    if (ready.length) {
      ready[0] = last;
      for (let k = 0; ; ) {
        const l = 2 * k + 1;
        const r = l + 1;
        let m = k;
        if (l < ready.length && before(ready[l]!, ready[m]!) < 0) m = l;
        if (r < ready.length && before(ready[r]!, ready[m]!) < 0) m = r;
        if (m === k) break;
        [ready[m], ready[k]] = [ready[k]!, ready[m]!];
        k = m;
      }
    }
    return top;
  };
  raws.forEach((_, i) => {
    if (waiting[i] === 0) push(i);
  });
  const out: JsonObject[] = [];
  const placed = new Array<boolean>(raws.length).fill(false);
  while (ready.length) {
    const i = pop();
    placed[i] = true;
    out.push(raws[i]!);
    for (const d of dependents[i]!) if (--waiting[d]! === 0) push(d);
  }
  // A cycle (only malformed input makes one): the rest in the given order; the checks sort it out.
  raws.forEach((raw, i) => {
    if (!placed[i]) out.push(raw);
  });
  return out;
}

/**
 * The read indexes an event in the timeline joins, written with it: its timestamp (for
 * /timestamp_to_event), its relation to a parent (for /relations and bundled aggregations), and
 * for thread replies the thread's latest activity (for /threads).
 */
function indexWrites(roomId: string, eventId: string, raw: JsonObject, pos: number, backfilled = false): StoreWrite[] {
  const writes: StoreWrite[] = [];
  if (typeof raw.origin_server_ts === 'number' && Number.isSafeInteger(raw.origin_server_ts)) {
    writes.push({ cmd: 'ZADD', key: roomData.byTimestamp(roomId), args: [raw.origin_server_ts, eventId] });
  }
  const rel = relationOf(raw);
  if (rel && rel.parent !== eventId) {
    writes.push({ cmd: 'ZADD', key: roomData.relations(roomId, rel.parent), args: [pos, eventId] });
    // A backfilled reply is older than any the thread has: it must not move the thread's latest activity back.
    if (rel.relType === 'm.thread') writes.push({ cmd: 'ZADD', key: roomData.threads(roomId), args: backfilled ? ['GT', pos, rel.parent] : [pos, rel.parent] });
  }
  return writes;
}

/** "Handling redactions": the redact level, or the same server as the original sender. */
function mayRedact(redaction: Pdu, target: Pdu, state: RoomState, version: RoomVersion): boolean {
  const st = lookup(state);
  if (userPowerLevel(redaction.sender, st, version) >= namedLevel('redact', st, version)) return true;
  return serverNameOf(redaction.sender) === serverNameOf(target.sender);
}

/**
 * Every event record the decision stores (timeline, outlier, rejected, backfilled, redacted
 * again) also goes into the event id → room id index (src/store/keys.ts `eventRoomIndex`).
 */
export function withEventRoomIndex(decision: Decision<RoomState, RoomReply>, roomId: string): Decision<RoomState, RoomReply> {
  const index: StoreWrite[] = [];
  const prefix = roomData.event('');
  for (const w of decision.writes ?? []) {
    if (w.cmd !== 'SET' || !w.key.startsWith(prefix)) continue;
    const eventId = w.key.slice(prefix.length);
    index.push({ cmd: 'HSET', key: eventRoomIndex(eventId), args: [eventId, roomId] });
  }
  return index.length ? { ...decision, derivedWrites: [...(decision.derivedWrites ?? []), ...index] } : decision;
}

/** A room that comes into being here (created, or its first events taken) joins its shard's room list. */
function withRoomListed(before: RoomState, decision: Decision<RoomState, RoomReply>): Decision<RoomState, RoomReply> {
  if (before.version !== null || decision.state.version === null) return decision;
  return { ...decision, writes: [...(decision.writes ?? []), { cmd: 'ZADD', key: roomData.localRooms(), args: [0, before.roomId] }] };
}

/** The stored record of an event, or undefined. */
export async function loadStoredEvent(ctx: ShellContext, eventId: string): Promise<StoredEvent | undefined> {
  const blob = await ctx.redis.getBuffer(ctx.keys.data(roomData.event(eventId)));
  return blob ? decode<StoredEvent>(blob) : undefined;
}

/**
 * Load what ingesting a batch needs: every stored event the batch references, the state after
 * each referenced event, and — for state resolution — the events of every conflicted state
 * entry with their whole auth chains.
 */
async function prepareIngest(ctx: ShellContext, state: RoomState, mode: RemoteMode, batch: JsonObject[], keys: RemoteKeys, supplied: SuppliedState | undefined): Promise<RoomPrepared> {
  let version: RoomVersion;
  try {
    // A room not known yet is entered with supplied state: decide checks the create event.
    version = state.version !== null ? requireRoomVersion(state.version) : freshRoomVersion(state, mode, supplied);
  } catch {
    return {};
  }
  // The supplied events are taken first, then the batch: to the loader they are one batch.
  const pdus = [...(supplied?.events ?? []), ...batch];
  const suppliedIds = Object.values(supplied?.before ?? {}).flat();
  const known = new Map<string, { pdu: Pdu; stored: StoredEvent }>();
  // Signatures, content hashes and ids first, on the thread pool and in chunks (see precheckPdus).
  const prechecks = await precheckPdus(pdus, version, keys);
  const inBatch = new Set<string>();
  for (const raw of pdus) {
    const id = prechecks.get(raw)?.eventId;
    if (id) inBatch.add(id); // malformed: checks in decide drop it
  }
  const load = async (ids: Iterable<string>) => {
    const want = [...new Set(ids)].filter((id) => !known.has(id) && !inBatch.has(id));
    for (let i = 0; i < want.length; i += 500) {
      const batch = want.slice(i, i + 500);
      const blobs = await ctx.redis.mgetBuffer(...batch.map((id) => ctx.keys.data(roomData.event(id))));
      batch.forEach((id, j) => {
        const blob = blobs[j];
        if (!blob) return;
        const stored = decode<StoredEvent>(blob);
        known.set(id, { pdu: toPdu(JSON.parse(stored.j) as JsonObject, version, id), stored });
      });
    }
  };
  const refs = (raw: JsonObject) => [...toRefs(raw.prev_events), ...toRefs(raw.auth_events)];
  await load([...pdus.flatMap(refs), ...suppliedIds]);
  // The batch's own events, when already stored, are duplicates (or outliers to place).
  const batchIds = [...inBatch];
  inBatch.clear();
  await load(batchIds);
  if (version.roomIdFromCreateEvent) await load([state.createId]);
  const cache = new Map<string, StateMap>();
  const snapshots = new Map<number, StateMap>();
  const snapshotChains = new Map<number, number>();
  const fetch = (name: string) => ctx.redis.getBuffer(ctx.keys.data(name));
  for (const { stored } of known.values()) {
    if (stored.sa && !snapshots.has(stored.sa)) {
      snapshots.set(stored.sa, await readSnapshot(fetch, state.roomId, stored.sa, cache));
      const blob = await fetch(roomData.snapshot(state.roomId, stored.sa));
      if (blob) snapshotChains.set(stored.sa, decode<StoredSnapshot>(blob).n);
    }
  }
  // Snapshots a new one may extend past the chain bound within this batch: their root deltas.
  const roots = new Map<number, RootDelta>();
  const nearBound = MAX_SNAPSHOT_CHAIN - batch.length;
  const candidates = new Map(snapshotChains);
  if (mode === 'live' && state.snap !== 0) candidates.set(state.snap, state.snapChain);
  for (const [id, n] of candidates) {
    if (n < nearBound || roots.has(id)) continue;
    const root = await loadRootDelta(fetch, state.roomId, id);
    if (root) roots.set(id, root);
  }
  // State resolution walks the auth chains of every state event of the states it resolves (the
  // auth difference needs the chains of the unconflicted ones too). It runs only when an event
  // has several prev events or (live events only: backfill leaves the current state alone) does
  // not extend every forward extremity; then load those chains.
  const states = mode === 'live' ? [state.current.toMap(), ...snapshots.values()] : [...snapshots.values()];
  const extremities = new Set(state.extremities);
  const mayResolve = batch.some((raw) => {
    const prev = toRefs(raw.prev_events);
    return prev.length > 1 || (mode === 'live' && (prev.length !== extremities.size || prev.some((id) => !extremities.has(id))));
  });
  const stateEvents = new Set<string>();
  if (mayResolve) {
    for (const s of states) for (const v of s.values()) stateEvents.add(v);
    for (const id of suppliedIds) stateEvents.add(id);
  }
  // State resolution v1 (room version 1) reads only the state events themselves and the state
  // it builds up, never auth chains: there, the first level is all it needs.
  const followChains = version.stateRes !== 'v1';
  let frontier = [...stateEvents, ...pdus.flatMap((raw) => toRefs(raw.auth_events))];
  const walked = new Set<string>();
  while (frontier.length) {
    await load(frontier);
    const nextFrontier: string[] = [];
    for (const id of frontier) {
      if (walked.has(id)) continue;
      walked.add(id);
      const e = known.get(id)?.pdu;
      if (e && followChains) nextFrontier.push(...e.authEvents.filter((a) => !walked.has(a)));
    }
    frontier = nextFrontier;
  }
  return { known, snapshots, snapshotChains, roots, prechecks };
}

function toRefs(refs: unknown): string[] {
  if (!Array.isArray(refs)) return [];
  return refs.map((r) => (Array.isArray(r) ? r[0] : r)).filter((r): r is string => typeof r === 'string');
}

/** Load the room's in-memory state: its meta blob, current state ids and the current state events. */
export async function hydrateRoom(ctx: ShellContext, stored: unknown, roomId: string): Promise<RoomState> {
  if (!stored) return emptyRoom(roomId);
  const meta = stored as RoomMeta;
  if (meta.version === null) return { ...emptyRoom(roomId), ...meta };
  const version = requireRoomVersion(meta.version);
  const ids = await ctx.redis.hgetall(ctx.keys.data(roomData.state(roomId)));
  const entries = Object.entries(ids);
  const events: [string, Pdu][] = [];
  for (let i = 0; i < entries.length; i += 500) {
    const batch = entries.slice(i, i + 500);
    const blobs = await ctx.redis.mgetBuffer(...batch.map(([, id]) => ctx.keys.data(roomData.event(id))));
    batch.forEach(([key, id], j) => {
      const blob = blobs[j];
      if (!blob) throw new Error(`room ${roomId}: current state event ${id} is missing`);
      events.push([key, toPdu(JSON.parse(decode<StoredEvent>(blob).j) as JsonObject, version, id)]);
    });
  }
  return { ...meta, current: LayeredMap.from(entries), events: LayeredMap.from(events) };
}

export function roomActor(cfg: RoomConfig): ActorKind<RoomState, RoomMessage, RoomReply, RoomPrepared> {
  return {
    kind: 'room',
    family: 'room',
    initialState: emptyRoom,
    serialize: ({ current: _c, events: _e, ...meta }) => meta,
    hydrate: hydrateRoom,
    async prepare(ctx, state, msg) {
      if (msg.body?.op === 'ingest') return prepareIngest(ctx, state, msg.body.outlier ? 'outlier' : 'live', msg.body.pdus, msg.body.keys ?? {}, msg.body.state);
      if (msg.body?.op === 'backfill') return prepareIngest(ctx, state, 'backfill', msg.body.pdus, msg.body.keys ?? {}, msg.body.state);
      if (msg.body?.op === 'complete_partial_state') return prepareCompletePartialState(ctx, state, msg.body.join, msg.body.stateIds);
      if (msg.body?.op === 'purge') return state.purging ? preparePurge(ctx, state, String(msg.body.cursor ?? '0')) : {};
      if (msg.body?.op !== 'send') return {};
      return prepareSend(roomStoreView(ctx), state, msg.body);
    },
    decide: (state, msg, prepared) => withRoomListed(state, withEventRoomIndex(decideRoom(cfg, state, msg, prepared), state.roomId)),
    batch: { max: ROOM_BATCH_MAX, accepts: roomBatchAccepts, prefetch: prefetchSendTxns },
  };
}

/**
 * How many waiting messages of one room are committed together at most (ActorKind.batch): a
 * local message's commit is ~8 writes and ~1 KB, so a full batch is a script of some hundreds of
 * writes — short enough not to hold Redis up for the other shards.
 */
export const ROOM_BATCH_MAX = 64;

/**
 * The room messages that may share a group commit: local sends (messages and state events, the
 * bulk of a busy room) and the small bookkeeping ops whose decisions need no shell. Not the
 * create (it makes the room), federation ingest and backfill (their shells load what the batch
 * references and their decisions are heavy already, one per transaction), partial-state
 * completion, or purges (each purge batch scans the store as it is).
 */
export function roomBatchAccepts(body: RoomMessage): boolean {
  const op = body?.op;
  return op === 'send' || op === 'set_directory_visibility' || op === 'alias_index' || op === 'claim_upgrade' || op === 'release_upgrade';
}

/**
 * The transaction ids of a batch's sends, looked up in one HMGET before the first shell runs
 * (ActorKind.batch.prefetch): prepareSend's HGET one message after the other made a batch of n
 * sends wait n round trips — each answered only after the fsync of the commits then in flight —
 * before its commit went out, and the sends queued behind it waited for all of them.
 */
export async function prefetchSendTxns(ctx: ShellContext, state: RoomState, msgs: ActorMessage<RoomMessage>[]): Promise<PrefetchedFields> {
  const txns = [...new Set(msgs.flatMap((m) => (m.body?.op === 'send' && m.body.txn ? [m.body.txn] : [])))];
  if (!txns.length) return new Map();
  const name = roomData.txns(state.roomId);
  const values = await ctx.redis.hmget(ctx.keys.data(name), ...txns);
  return new Map([[name, new Map(txns.map((t, i) => [t, values[i] ?? null]))]]);
}

/** What a local send's shell reads of the room's shard (names relative to it). */
export interface RoomStoreView {
  get(name: string): Promise<Buffer | null>;
  hget(name: string, field: string): Promise<string | null>;
}

/**
 * The shard as the shell of a message sees it: the store, under the writes of the batch's
 * earlier messages when it runs inside a group commit (ShellContext.pending), which are not in
 * the store yet — a transaction id sent twice in one batch, a redaction of an event of the
 * batch, a snapshot chain the batch extended.
 */
export function roomStoreView(ctx: ShellContext): RoomStoreView {
  return overlayPending(ctx.pending, {
    get: (name) => ctx.redis.getBuffer(ctx.keys.data(name)),
    hget: (name, field) => {
      // Read ahead for the batch (prefetchSendTxns): the store's answer before the batch.
      const ahead = ctx.prefetched?.get(name)?.get(field);
      return ahead !== undefined ? Promise.resolve(ahead) : ctx.redis.hget(ctx.keys.data(name), field);
    },
  });
}

/** `store` as it reads once `pending` (writes in order, not yet applied) are applied. */
export function overlayPending(pending: readonly StoreWrite[] | undefined, store: RoomStoreView): RoomStoreView {
  if (!pending) return store;
  return {
    get: async (name) => {
      const v = pendingValue(pending, name);
      return v === undefined ? store.get(name) : v === null ? null : Buffer.from(v);
    },
    hget: async (name, field) => {
      const v = pendingValue(pending, name, field);
      return v === undefined ? store.hget(name, field) : v === null ? null : v.toString();
    },
  };
}

/** The shell of a local send: the event a repeated transaction made, the redaction's target, the root of a long snapshot chain. */
export async function prepareSend(view: RoomStoreView, state: RoomState, body: Extract<RoomMessage, { op: 'send' }>): Promise<RoomPrepared> {
  const prepared: RoomPrepared = {};
  const { event, txn } = body;
  if (txn) {
    const id = await view.hget(roomData.txns(state.roomId), txn);
    if (id) prepared.txnEventId = id;
  }
  if (event.type === 'm.room.redaction' && event.redacts) {
    const blob = await view.get(roomData.event(event.redacts));
    if (blob) prepared.redactionTarget = decode<StoredEvent>(blob);
  }
  if (event.state_key !== undefined && state.snap !== 0 && state.snapChain + 1 > MAX_SNAPSHOT_CHAIN) {
    // This state event ends the current snapshot's chain: re-base it on the chain's root.
    const root = await loadRootDelta((name) => view.get(name), state.roomId, state.snap);
    if (root) prepared.roots = new Map([[state.snap, root]]);
  }
  return prepared;
}

/**
 * What the pending writes of a group commit (ShellContext.pending) say about key `name` (and
 * hash `field`): the value last written, null when last deleted, undefined when they do not
 * touch it (then the store has the answer). Only the commands the room writes for what its
 * shell reads: SET/DEL of string keys, HSET/HDEL of hash fields.
 */
export function pendingValue(pending: readonly StoreWrite[] | undefined, name: string, field?: string): string | Buffer | null | undefined {
  if (!pending) return undefined;
  for (let i = pending.length - 1; i >= 0; i--) {
    const w = pending[i]!;
    if (w.key !== name) continue;
    if (w.cmd === 'DEL') return null;
    if (field === undefined) {
      if (w.cmd === 'SET') return w.args[0] as string | Buffer;
      continue;
    }
    if (w.cmd === 'HSET') {
      for (let j = w.args.length - 2; j >= 0; j -= 2) if (String(w.args[j]) === field) return w.args[j + 1] as string | Buffer;
    } else if (w.cmd === 'HDEL' && w.args.some((a) => String(a) === field)) return null;
  }
  return undefined;
}

/** Build the signed create event for a new room (fronts do this: v12 room ids come from it). */
export function buildCreateEvent(cfg: RoomConfig, opts: { roomVersion: string; creator: string; content?: JsonObject; roomLocalpart?: string; ts: number }): { roomId: string; event: JsonObject } {
  const version = requireRoomVersion(opts.roomVersion);
  const content: JsonObject = { ...(opts.content ?? {}), room_version: version.id };
  if (version.createHasCreator) content.creator = opts.creator;
  const raw: JsonObject = { type: 'm.room.create', state_key: '', sender: opts.creator, content, origin_server_ts: opts.ts, depth: 1, prev_events: [], auth_events: [] };
  let roomId: string | undefined;
  if (!version.roomIdFromCreateEvent) {
    if (!opts.roomLocalpart) throw new Error('rooms before v12 need a chosen room id');
    roomId = `!${opts.roomLocalpart}:${cfg.serverName}`;
    raw.room_id = roomId;
  }
  if (version.eventIdFormat === 'v1') raw.event_id = `$${opts.roomLocalpart}:${cfg.serverName}`;
  const signed = hashAndSignEvent(raw, version, cfg.serverName, cfg.signingKey);
  roomId ??= roomIdFromCreateEvent(signed, version);
  return { roomId, event: signed };
}
