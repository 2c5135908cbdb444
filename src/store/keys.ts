/**
 * Every Redis key and stream name Axon uses, built here and nowhere else (DESIGN rule 2).
 * A shard's keys all carry its hash tag, so one Lua script can touch them on Redis Cluster.
 */
import { shardOf, shardTag, type Family } from './shards';

export class KeySpace {
  constructor(readonly prefix: string) {}

  /** The event id → room id index (see `eventRoomIndex`). */
  eventRoom(eventId: string): string {
    return `${this.prefix}${eventRoomIndex(eventId)}`;
  }

  /** Made once per family and shard: every request asks for a few shards' keys, many times. */
  private readonly shardKeys = new Map<Family, ShardKeys[]>();

  /** Keys of one shard (the same object every time: ShardKeys is immutable). */
  shard(family: Family, shard: number): ShardKeys {
    let byShard = this.shardKeys.get(family);
    if (!byShard) this.shardKeys.set(family, (byShard = []));
    return (byShard[shard] ??= new ShardKeys(`${this.prefix}${shardTag(family, shard)}:`, this.prefix));
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

  /**
   * Pub/sub channel of a worker's pushes: the new inbox entries of its shards, read into its
   * pending list by an asker's enqueue call (enqueue-many-6.lua, one message per holder and call).
   * `workerPush('')` is the prefix the script puts before a holder's consumer name.
   */
  workerPush(workerId: string): string {
    return `${this.prefix}push:${workerId}`;
  }

  /** Set of shard names (`room:417`) reserved for a worker by move-shard/rebalance/drain. */
  workerIncoming(workerId: string): string {
    return `${this.prefix}worker:${workerId}:incoming`;
  }

  /**
   * Hash: a worker's lease record — `epoch` (a number that only grows) and `expires` (ms, the
   * clock of the Redis node that holds it). Every shard lease names its holder and the holder's
   * epoch; the holding is live while this record has that epoch and has not expired. Renewed once
   * per round for all the worker's shards. Its own hash tag, shared with `workerHandoffs`, so the
   * renewal script can read both on Redis Cluster.
   */
  workerLease(workerId: string): string {
    return `${this.prefix}{w:${workerId}}:lease`;
  }

  /**
   * Hash: shard name → target worker, the handoffs asked of this worker (move-shard, rebalance,
   * drain). Read by the worker's renewal script each round (one HGETALL, empty when none).
   */
  workerHandoffs(workerId: string): string {
    return `${this.prefix}{w:${workerId}}:handoffs`;
  }

  /** Sorted set: front id → last heartbeat (ms), written while the front reaches Redis. */
  fronts(): string {
    return `${this.prefix}fronts`;
  }

  /** Hash: what a front reports about itself (pid, host, port, readiness, PING round trip). */
  frontInfo(frontId: string): string {
    return `${this.prefix}front:${frontId}`;
  }

  /** Stream a front process reads its replies from. Its own hash tag keeps it on one node. */
  replies(frontId: string): string {
    return `${this.prefix}{replies:${frontId}}`;
  }

  /** String: the answer of an asker's enqueue call once it ran (enqueue-many-6.lua; a single Redis only), kept for the dedupe window. */
  enqueueCall(callId: string): string {
    return `${this.prefix}enq:${callId}`;
  }

  /**
   * A user-interactive authentication session (msgpack, expires): which stages are done. Kept by
   * the fronts, not an actor: it is short-lived and belongs to no user yet during registration.
   */
  uiaSession(sessionId: string): string {
    return `${this.prefix}{uia:${sessionId}}`;
  }

  /**
   * Registration tokens made through the admin API (src/api/client/registration-tokens.ts), kept
   * by the fronts under one hash tag: the definitions, the completed counts, and per token the UIA
   * sessions holding a pending use.
   */
  registrationTokens(): string {
    return `${this.prefix}{regtokens}:defs`;
  }

  /**
   * Server notices (src/api/admin/server-notices.ts): hash user id → their notices room, and a
   * short-lived claim while a front creates someone's room (so concurrent first notices make one).
   */
  serverNoticeRooms(): string {
    return `${this.prefix}{servernotices}:rooms`;
  }

  serverNoticeRoomClaim(userId: string): string {
    return `${this.prefix}{servernotices}:claim:${userId}`;
  }

  registrationTokensCompleted(): string {
    return `${this.prefix}{regtokens}:completed`;
  }

  registrationTokenPending(token: string): string {
    return `${this.prefix}{regtokens}:pending:${token}`;
  }

  /**
   * A nonce of shared-secret admin registration (`/_synapse/admin/v1/register`): exists (with a
   * short expiry) until a registration uses it. Kept by the fronts: any front may see the POST.
   */
  adminRegisterNonce(nonce: string): string {
    return `${this.prefix}{regnonce:${nonce}}`;
  }

  /**
   * An OpenID token (`/user/{userId}/openid/request_token`), by sha256 of the token: the user id,
   * with the token's expiry as the key's. Kept by the fronts: a token is a short-lived credential
   * that any front issues and the federation listener reads (`/openid/userinfo`).
   */
  openIdToken(tokenHash: string): string {
    return `${this.prefix}{openid:${tokenHash}}`;
  }

  /**
   * String (JSON, expires): one search's results, kept for its `next_batch` pages so they do not
   * shift while new events arrive (src/api/client/search.ts). Own hash tag per search.
   */
  searchResults(id: string): string {
    return `${this.prefix}{search:${id}}`;
  }

  /**
   * Set: rooms published in the room directory (`visibility: public`). A derived index: each
   * room actor owns its own flag (`roomData.published`), and the membership index reader keeps
   * this set in step with it from the room outboxes.
   */
  publicRooms(): string {
    return `${this.prefix}directory:public`;
  }

  /**
   * Rooms application services published in their networks' directories
   * (`PUT /directory/list/appservice/{networkId}/{roomId}`): a set of JSON `[appservice id,
   * network id, room id]` entries. Written by the front (idempotent SADD/SREM; the appservice is
   * the only writer of its entries), read by `/publicRooms` with `third_party_instance_id` or
   * `include_all_networks`.
   */
  appserviceRoomList(): string {
    return `${this.prefix}directory:appservice`;
  }

  /**
   * Set: rooms whose joined members the user directory shows to every local user — rooms with a
   * `public` join rule or `world_readable` history (users.yaml). Kept by the membership index
   * reader from the rooms' current state whenever their join rules or history visibility change.
   */
  directoryVisibleRooms(): string {
    return `${this.prefix}directory:visible`;
  }

  /**
   * Pub/sub channel of /sync wake-ups (src/sync/notify.ts): workers publish the rooms and users
   * whose data changed after each commit with outputs; every front subscribes once.
   */
  syncNotify(): string {
    return `${this.prefix}sync:notify`;
  }

  /** Hash of the rooms this server joined with partial state (see PARTIAL_STATE_ROOMS). */
  partialStateRooms(): string {
    return `${this.prefix}${PARTIAL_STATE_ROOMS}`;
  }

  /**
   * A rate limit's state for one user or client address (src/http/rate-limit.ts): the GCRA
   * "theoretical arrival time" in ms, expiring when the bucket is full again. Shared by every
   * front, so a limit counts across them. Its own hash tag per key spreads keys over a cluster.
   */
  rateLimit(limit: string, subject: string): string {
    return `${this.prefix}{rl:${limit}:${subject}}`;
  }

  /**
   * Hash: another server's signing keys as we fetched them (src/federation/keys/key-store.ts),
   * shared by every process: `k:<keyId>` → JSON { key, validUntilTs, expiredTs? } (old keys stay
   * for checking old events), `doc` → the last verified key document as canonical JSON (what we
   * serve as a notary), `fetchedAt`, `validUntil`. Refreshed on each fetch, expires 30 days after.
   */
  remoteServerKeys(serverName: string): string {
    return `${this.prefix}{skeys:${serverName}}`;
  }

  /** String with a short expiry: the last key fetch for this server failed (why); no new fetch until it expires. */
  remoteServerKeysFailure(serverName: string): string {
    return `${this.prefix}{skeys:${serverName}}:failed`;
  }

  /**
   * String: an inbound federation transaction (src/federation/inbound/txn-dedupe.ts), per origin
   * and txn id: `p:<token>` while one front processes it, then the JSON response it got (kept a
   * day, so a replay is answered from here and processed nothing twice).
   */
  federationTxn(origin: string, txnId: string): string {
    return `${this.prefix}{ftxn:${origin}}:${txnId}`;
  }

  /**
   * Sorted set: a user's reserved, not yet uploaded media ids (`POST /media/v1/create`) → when the
   * reservation expires (ms). Kept by the fronts to count pending uploads against
   * `media.maxPendingUploads`; the reservations themselves belong to the media actors.
   */
  mediaPendingOf(userId: string): string {
    return `${this.prefix}{mpend:${userId}}`;
  }

  /** String (JSON, expiring with the page's cache lifetime): the URL preview of a URL, by its sha256 (src/media/preview-service.ts). */
  mediaPreview(urlHash: string): string {
    return `${this.prefix}{mprev}:${urlHash}`;
  }

  /** String: bytes a user has uploaded (kept by the fronts for `media.userQuotaBytes`). */
  mediaUsageOf(userId: string): string {
    return `${this.prefix}{mused:${userId}}`;
  }

  /**
   * Hash: rooms an admin blocked (`/_synapse/admin/v1/rooms/{roomId}/block`, room deletion):
   * room id → the admin's user id. Written by fronts (an operator's decision, not room data: a
   * room this server never had can be blocked too); joins and invites of local users are refused.
   */
  blockedRooms(): string {
    return `${this.prefix}{admin}:blocked-rooms`;
  }

  /**
   * Sorted set: the ids of a room's deletions (`DELETE /_synapse/admin/v2/rooms/{roomId}`) by when
   * they were asked for (ms), for `…/{roomId}/delete_status`. Written by fronts with the deletion's
   * record; expires a week after the last deletion asked.
   */
  roomDeletions(roomId: string): string {
    return `${this.prefix}{admin}:room-deletes:${roomId}`;
  }

  /**
   * Hash: one room deletion (src/rooms/room-deletion-jobs.ts): `room_id`, `params` (JSON),
   * `status` (scheduled, active, complete, failed), `result` (the result so far, JSON), `phase`,
   * `error`. Written by the front that schedules it, then by the worker running it; expires a week
   * after its last change.
   */
  roomDeletion(deleteId: string): string {
    return `${this.prefix}{admin}:room-delete:${deleteId}`;
  }

  /** Sorted set: deletions scheduled and not yet handed to bullmq (delete id, by when asked, ms); a worker hands them over. */
  roomDeletionsPending(): string {
    return `${this.prefix}{admin}:room-deletes-pending`;
  }

  /** List: wake-ups for the workers' room deletion jobs (one pushed per deletion scheduled, BLPOPed by a worker), at most a few. */
  roomDeletionsWake(): string {
    return `${this.prefix}{admin}:room-deletes-wake`;
  }

  /** bullmq's prefix for the admin jobs' queues (room deletion): one hash tag, one slot on a Redis Cluster as bullmq requires. */
  adminJobsPrefix(): string {
    return `${this.prefix}{admin-jobs}`;
  }

  /** Pub/sub channel that wakes the owner of a shard when its inbox gets a message. */
  wakeChannel(family: Family, shard: number): string {
    return `${this.prefix}wake:${family}:${shard}`;
  }
}

export class ShardKeys {
  constructor(
    private readonly base: string,
    private readonly prefix = '',
  ) {}
  /** A key outside any shard (a decision's derived writes): `name` is relative to the key prefix. */
  global(name: string): string {
    return `${this.prefix}${name}`;
  }
  /**
   * Hash: owner, epoch (the owner's lease epoch: the holding is live while `workerLease(owner)`
   * has it and has not expired), token (fencing counter, never reset, bumped on every new holding),
   * acquired, target and target_expires (handoff reservation).
   */
  get lease(): string {
    return `${this.base}lease`;
  }
  private inboxName: string | undefined;
  private outboxName: string | undefined;
  /** Stream of commands for the shard's actors. */
  get inbox(): string {
    return (this.inboxName ??= `${this.base}inbox`);
  }
  /** Stream of what the shard's actors produced, read by the readers' consumer groups. */
  get outbox(): string {
    return (this.outboxName ??= `${this.base}outbox`);
  }
  /** Stream of messages that failed too often, with their error. */
  get dead(): string {
    return `${this.base}dead`;
  }
  /** Marks a message id as applied, holding its reply (expires after the dedupe window). */
  done(messageId: string): string {
    return `${this.donePrefix}${messageId}`;
  }
  /** done(id) is this followed by the id (the commit script makes the names from it: commit-many-7.lua). */
  get donePrefix(): string {
    return (this.donePrefixName ??= `${this.base}done:`);
  }
  /** An actor's state blob. */
  state(kind: string, actorId: string): string {
    return `${this.statePrefix}${kind}:${actorId}`;
  }
  /** state(kind, actor id) is this followed by `<kind>:<actor id>` (as donePrefix). */
  get statePrefix(): string {
    return (this.statePrefixName ??= `${this.base}state:`);
  }
  private donePrefixName: string | undefined;
  private statePrefixName: string | undefined;
  private dataPrefixName: string | undefined;
  /**
   * Sorted set: the shard's pending actor timers (src/runtime/timers.ts), member
   * `<kind>\0<actor id>\0<timer key>`, score = when it is due (ms).
   */
  get timers(): string {
    return `${this.base}timers`;
  }
  /**
   * Hash, on a Redis Cluster only: inbox entry id of a commit → its derived writes (msgpack),
   * written by the commit and deleted once they are applied in their own slots — by the worker
   * after its commit, or after a retry of the message answered 'dup' (its first answer lost); a new
   * holder of the shard applies what is left (a worker that died in between). A group commit
   * records under its first message's entry id. See Decision.derivedWrites.
   */
  get derivedPending(): string {
    return `${this.base}derived`;
  }
  /**
   * Hash, on a Redis Cluster only: inbox entry id of a commit → its derived writes that could not
   * be applied (msgpack `{ writes, error, failedAt }`, `writes` as in derivedPending), moved here
   * from derivedPending by the shard's holder after a few failed tries (e.g. WRONGTYPE on the
   * global key) so one bad record neither blocks every takeover nor is replayed later over newer
   * values. Derived data may be missing by contract (Decision.derivedWrites); kept for an operator.
   */
  get derivedDead(): string {
    return `${this.base}derived-dead`;
  }
  /** Hash: timer member → the message body (msgpack) to deliver when it is due. */
  get timerBodies(): string {
    return `${this.base}timerbodies`;
  }
  /** Any other key an actor writes: `name` is relative to the shard. */
  data(name: string): string {
    return `${this.dataPrefix}${name}`;
  }
  /** data(name) is this followed by the name (as donePrefix). */
  get dataPrefix(): string {
    return (this.dataPrefixName ??= `${this.base}d:`);
  }
}

/**
 * Hash, relative to the key prefix: the rooms this server joined over federation with partial
 * state (MSC3706 "faster joins": the resident omitted the member events), room id → JSON
 * `{ join, servers }` (our join's event id; the servers the resident said are in the room). Written
 * by the room actor as a derived write when the join is taken and removed when the full state is
 * in; read by /members and /sync (which wait for or hold back such rooms), the federation sender
 * (which sends to `servers` until the membership is known) and the resync (src/rooms/partial-state.ts).
 */
export const PARTIAL_STATE_ROOMS = '{pstate}';

/** Buckets of the event id → room id index. */
export const EVENT_ROOM_BUCKETS = 4096;

/**
 * The event id → room id index, a key relative to the key prefix: a hash per bucket of event
 * ids (field: event id, value: room id), the bucket its own hash tag so the index spreads over a
 * Cluster's slots. Events live in their room's shard and a v3+ event id says nothing of its
 * room: `/_matrix/federation/v1/event/{eventId}` reads this instead of asking every room shard.
 * The room actor writes it with every event record it stores (a derived write: atomic with the
 * commit on one Redis, right after it on a Cluster); readers fall back to the shard probe on a miss.
 */
export function eventRoomIndex(eventId: string): string {
  return `{evroom:${shardOf(eventId, EVENT_ROOM_BUCKETS)}}`;
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
  /**
   * Sorted set (all scores 0, so ordered by id): the rooms this room shard has, added by the room
   * actor when a room comes into being here (created, or first events ingested) and removed when
   * it is purged. The admin API's room list merges every shard's (src/api/admin/room-list.ts);
   * `npm run backfill-room-list` adds rooms that predate it. Shard-relative, not per room.
   */
  localRooms: () => 'rooms',
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
  /** Hash: event id → the client transaction key it was sent with (for `unsigned.transaction_id`). */
  eventTxns: (roomId: string) => `room:${roomId}:evtxn`,
  /**
   * Set: the local aliases pointing at the room (GET /rooms/{roomId}/aliases). Written by the
   * room actor (`alias_index`) when told by the front after the alias actor answered.
   */
  aliases: (roomId: string) => `room:${roomId}:aliases`,
  /** `1` while the room is published in the room directory (absent: not published). */
  published: (roomId: string) => `room:${roomId}:published`,
  /**
   * Sorted set: the events that relate to `parentId` (`content['m.relates_to'].event_id`), by
   * stream position. Written by the room actor with the event; a redaction that strips the
   * relation removes its entry.
   */
  relations: (roomId: string, parentId: string) => `room:${roomId}:rel:${parentId}`,
  /** Sorted set: thread roots, scored by the stream position of their latest `m.thread` reply. */
  threads: (roomId: string) => `room:${roomId}:threads`,
  /** Sorted set: timeline event ids by `origin_server_ts` (GET /timestamp_to_event). */
  byTimestamp: (roomId: string) => `room:${roomId}:ts`,
  /**
   * Hash: the room's receipts, written by the receipt actor (actors/receipts.ts). Field
   * `<receipt type>\0<thread id, '' for unthreaded>\0<user id>`, value JSON
   * `{"event_id": …, "ts": ms, "pos": timeline position of the event}`. Only the latest receipt
   * of each (type, thread, user) is kept; it never moves backwards in the timeline.
   */
  receipts: (roomId: string) => `room:${roomId}:receipts`,
  /** Hash: who is typing in the room, user id → expiry (ms); written by the typing actor. */
  typing: (roomId: string) => `room:${roomId}:typing`,
  /**
   * The room's initial-sync slice as the front that built it wrote it (src/sync/initial-slices.ts,
   * `encodeSlice`): one per room, for one version, top and page size (a newer one replaces it),
   * with a TTL (`caches.syncSlicesSharedSeconds`). Any front reads it instead of building the slice
   * again. Not the room actor's: fronts write it, and it says which room version it is for.
   */
  syncSlice: (roomId: string) => `room:${roomId}:sslice`,
};

/**
 * Names of a user's data, relative to the user's shard (wrap with `ShardKeys.data`). The user
 * actor writes them; fronts read them directly.
 */
export const userData = {
  /** An access or refresh token: msgpack TokenRecord (src/api/client/auth.ts), by sha256 of the token. */
  token: (tokenHash: string) => `tok:${tokenHash}`,
  /** The account: msgpack { h: password hash | null, x: deactivated (0/1), c: created (ms) }. */
  account: (userId: string) => `user:${userId}:acct`,
  /**
   * Sorted set (all scores 0, so ordered by id): the local users whose accounts live in this user
   * shard, added by the user actor at registration. The admin API's user list merges every
   * shard's (src/api/admin/user-list.ts); `npm run backfill-user-list` adds accounts made before it existed.
   */
  registeredUsers: () => 'users',
  /** Hash: device id → JSON { device_id, display_name?, last_seen_ts?, last_seen_ip? }. */
  devices: (userId: string) => `user:${userId}:devices`,
  /** Hash: account data type → JSON content (global account data). */
  accountData: (userId: string) => `user:${userId}:ad`,
  /** Hash: account data type → JSON content, for one room. */
  roomAccountData: (userId: string, roomId: string) => `user:${userId}:rad:${roomId}`,
  /** Hash: filter id → JSON filter. */
  filters: (userId: string) => `user:${userId}:filters`,
  /** Hash: `displayname` / `avatar_url` → value. */
  profile: (userId: string) => `user:${userId}:profile`,
  /** JSON StoredPushRules (src/protocol/push-rules.ts): the user's own push rules and changes to default ones. */
  pushRules: (userId: string) => `user:${userId}:pushrules`,
  /** Hash: `pusherKey(app_id, pushkey)` → JSON StoredPusher (actors/user.ts), written by the user actor. */
  pushers: (userId: string) => `user:${userId}:pushers`,
  /**
   * Set: the users with a pusher of one app id and pushkey, by sha256 of `pusherKey` (in the user
   * shard that hash falls in). Kept by fronts so `/pushers/set` without `append` can remove the
   * same pushkey from other users (a phone that moved to another account).
   */
  pushkeyUsers: (pushkeyHash: string) => `pushkey:${pushkeyHash}`,
  /**
   * Sorted set: what is still to be sent through one pusher (`pusherId` = `pusherIdOf`), in outbox
   * order (score): notifications as JSON members `{r, e, a}` (room, event, actions) and at most
   * one `badge`. The push evaluator adds (ZADD: a redelivered entry adds nothing), the push sender
   * removes what the gateway took (src/push/sender.ts).
   */
  pushQueue: (userId: string, pusherId: string) => `user:${userId}:pq:${pusherId}`,
  /** Hash: the push sender's state of one pusher: `failing_since`, `retry_at`, `backoff` (ms). */
  pushState: (userId: string, pusherId: string) => `user:${userId}:ps:${pusherId}`,
  /** String: the token of the push sender job sending through one pusher now (one at a time, in order). */
  pushLock: (userId: string, pusherId: string) => `user:${userId}:pl:${pusherId}`,
  /**
   * Stream: a device's to-device inbox, written by the to-device actor (actors/to-device.ts).
   * Entry ids come from Redis's clock (XADD `*`), so /sync's time cuts apply to it; field `e` is
   * the event's JSON text `{type, sender, content}`. /sync reads it and acknowledges what the
   * client has seen (src/sync/to-device.ts); the actor trims the acknowledged entries.
   */
  toDeviceInbox: (userId: string, deviceId: string) => `user:${userId}:todev:${deviceId}`,
  /** The user's presence record (JSON PresenceRecord, actors/presence.ts); written by the presence actor. */
  presence: (userId: string) => `user:${userId}:presence`,
  /**
   * Stream: what changed about the users this user shares a room with (and about themself):
   * entries `k` = `d` (device list) or `p` (presence), `u` = that user. Written by the fan-out
   * reader (src/readers/user-fanout.ts) on Redis's clock, read by /sync and /keys/changes.
   */
  feed: (userId: string) => `user:${userId}:feed`,
  /**
   * Hash: the user's live key backup versions (actors/key-backup.ts), version → JSON
   * `{algorithm, auth_data, etag, count}`. Deleted versions are removed; the current version is
   * the highest live one.
   */
  keyBackupVersions: (userId: string) => `user:${userId}:kbv`,
  /** Set: the rooms with keys in one backup version. */
  keyBackupRooms: (userId: string, version: string) => `user:${userId}:kb:${version}:rooms`,
  /** Hash: session id → JSON KeyBackupData, the keys of one room in one backup version. */
  keyBackupRoom: (userId: string, version: string, roomId: string) => `user:${userId}:kb:${version}:r:${roomId}`,
};

/**
 * What the push evaluator reader (src/readers/push-evaluator.ts) records: per room, on the ROOM's
 * shard, the room's push log (`roomLog*`, `roomList*`, `roomJoins`: an event once for the members
 * it notifies as most of them are notified); per user, relative to the USER's shard, only where
 * the user's outcome differs (`exceptions`, their own list, `excluded`) and what was written per
 * member before the push log (`unread*`). Counts are read by src/sync/unread-counts.ts. Written
 * only by that reader (push-log-1.lua, push-joins-2.lua and plain removals for redactions and
 * receipts); a user's entries at or below their read receipts are trimmed when a receipt moves
 * (readers count above the receipts anyway).
 */
export const pushData = {
  /**
   * Sorted set: notifying main-timeline events of a room not yet read (event id, scored by timeline
   * position). Written per member before the room's push log (push-record-3.lua); still counted
   * and trimmed by receipts, no longer written (`unreadHighlight`, `unreadThreads` likewise).
   */
  unread: (userId: string, roomId: string) => `user:${userId}:pn:${roomId}`,
  /** Sorted set: the highlighting subset of `unread`. */
  unreadHighlight: (userId: string, roomId: string) => `user:${userId}:ph:${roomId}`,
  /**
   * Sorted set: notifying events in threads of a room not yet read, member
   * `<n|h>\0<thread root id>\0<event id>` (h: highlight), scored by timeline position.
   */
  unreadThreads: (userId: string, roomId: string) => `user:${userId}:pt:${roomId}`,
  /**
   * Sorted set: the user's own latest notifications (`GET /notifications` merges them with the
   * rooms' `roomList`): where their outcome differed from the room's, invites, and everything
   * recorded before the room logs. Member `<room id>\0<event id>`,
   * scored by when the event reached the room's outbox (push-evaluator.ts `listScore`). Trimmed in
   * chunks: it may hold up to a chunk more than the NOTIFICATIONS_KEPT that are served.
   */
  notifications: (userId: string) => `user:${userId}:notifs`,
  /** Sorted set: the highlighting subset of `notifications` (`only=highlight`). */
  highlights: (userId: string) => `user:${userId}:notifs:hl`,
  /**
   * Hash: `notifications` member → JSON { pos, thread (root id or null), actions, highlight, ts }.
   * Absent for a plain notification (actions `["notify"]`) of an event without a relation: those
   * details are derived from the event and the list's score (push-evaluator.ts `derivedDetails`;
   * entries written before push-record-3.lua all have theirs).
   */
  notificationData: (userId: string) => `user:${userId}:notifd`,
  /**
   * Sorted set, relative to the user's shard: the user's exceptions in a room's push log (see
   * `roomLog`), member `<own><common>\0<thread root or ''>\0<event id>` scored by timeline
   * position, where `own` is the user's outcome for the event and `common` the room's (each `x`:
   * does not notify, `n`: notifies, `h`: notifies and highlights). Written only where they differ
   * (the sender, a mention, the user's own rules); trimmed by the user's receipts and capped.
   */
  exceptions: (userId: string, roomId: string) => `user:${userId}:px:${roomId}`,
  /**
   * Sorted set, relative to the user's shard: the rooms' notifications (`roomList`) the user does
   * not have as the room does (they sent it, or their rules said otherwise; when their rules notify
   * them, their own entry is in `notifications`), member `<room id>\0<event id>` scored as in the
   * room's list. Capped at EXCLUDED_KEPT.
   */
  excluded: (userId: string) => `user:${userId}:notifs:x`,
  /**
   * Sorted set, relative to the **room** shard: the room's push log, the main-timeline events that
   * notify the room's local members as most of them are notified (the common outcome: most often
   * `.m.rule.message` for everyone but the sender), member event id, scored by timeline position.
   * A member's unread count is this log above their read position, corrected by their
   * `exceptions` (src/sync/unread-counts.ts): one write per event, not one per member. Capped at
   * ROOM_LOG_KEPT entries.
   */
  roomLog: (roomId: string) => `room:${roomId}:pl`,
  /** Sorted set, relative to the room shard: the highlighting subset of `roomLog`. */
  roomLogHighlight: (roomId: string) => `room:${roomId}:pl:h`,
  /** Sorted set, relative to the room shard: `roomLog` for events in threads, member `<n|h>\0<thread root>\0<event id>`. */
  roomLogThreads: (roomId: string) => `room:${roomId}:pl:t`,
  /**
   * Sorted set, relative to the room shard: how far each local member has read the room by
   * sending (the spec's "Marking notifications as read": a user's own event marks what came
   * before it read): member `sentMember(user, thread)` (src/store/read-receipts.ts), the user id
   * for their events in the main timeline (read as an unthreaded receipt at the event would be),
   * `<thread root>\0<user id>` for their events in a thread (a receipt in that thread), scored by
   * the timeline position of the latest (push-sent-1.lua: `ZADD GT`, it never moves back).
   */
  sentUpTo: (roomId: string) => `room:${roomId}:pl:sent`,
  /**
   * Sorted set, relative to the room shard: the events of `roomLog` and `roomLogThreads` for
   * `GET /notifications`, member event id, scored by when the event reached the room's outbox
   * (push-evaluator.ts `listScore`). Capped at NOTIFICATIONS_KEPT (and a chunk).
   */
  roomList: (roomId: string) => `room:${roomId}:pl:list`,
  /** Sorted set, relative to the room shard: the highlighting subset of `roomList`. */
  roomListHighlight: (roomId: string) => `room:${roomId}:pl:list:h`,
  /** Hash, relative to the room shard: `roomList` event id → details JSON as in `notificationData`, absent for a plain `["notify"]` without a relation. */
  roomListData: (roomId: string) => `room:${roomId}:pl:d`,
  /**
   * Hash, relative to the room shard: local user → their joins and leaves as the push evaluator
   * saw them, `<list score>:<j|l>` separated by `;`, oldest first: when they were a member for
   * `roomList` (the events of the room list they were notified of). Absent: no change since the
   * room's list exists (a member since before it if joined now). push-joins-2.lua writes it.
   */
  roomJoins: (roomId: string) => `room:${roomId}:pl:joins`,
  /**
   * String, relative to a **room** shard: the id of the last entry of that shard's outbox the push
   * evaluator has finished (its writes done), so /sync can tell whether a room's unread counts
   * already include an event (src/sync/push-progress.ts). Absent: the evaluator never ran there.
   */
  evaluatedUpTo: () => 'pushev:upto',
};

/** The consumer group the push evaluator reads room outboxes with. */
export const PUSH_EVALUATOR_GROUP = 'push-evaluator';

/**
 * The one consumer group the outbox readers of a worker share on each outbox of a family
 * (src/readers/reader-group.ts): every entry read and acknowledged once for all of them. The
 * readers' own group names below are what each used before (turned into this one at a shard's
 * first read, reader-group-1.lua); a reader with its own progress (the push evaluator) keeps its own.
 */
export const OUTBOX_READERS_GROUP = 'readers';

/**
 * A user's end-to-end encryption keys, relative to the user's shard. Written by the keys actor
 * (actors/device-keys.ts); fronts read them for /keys/query, /sync counts and cross-signing checks.
 * Algorithms never contain ':' (key ids are `<algorithm>:<id>`), so names stay unambiguous.
 */
export const e2eKeyData = {
  /** Hash: device id → the device's identity keys as uploaded (canonical JSON, without `unsigned`). */
  deviceKeys: (userId: string) => `e2e:${userId}:dk`,
  /** Hash: `<algorithm>:<key id>` → one-time key (canonical JSON) of one device. */
  oneTimeKeys: (userId: string, deviceId: string) => `e2e:${userId}:otk:${deviceId}`,
  /**
   * Sorted set: one device's unclaimed one-time keys of one algorithm, member `<key id>\0<key JSON>`,
   * scored by upload batch (claims take the oldest).
   */
  oneTimeKeyQueue: (userId: string, algorithm: string, deviceId: string) => `e2e:${userId}:otkq:${algorithm}:${deviceId}`,
  /** Hash: algorithm → number of unclaimed one-time keys of one device (`one_time_key_counts`, sync). */
  oneTimeKeyCounts: (userId: string, deviceId: string) => `e2e:${userId}:otkn:${deviceId}`,
  /** Hash: algorithm → JSON FallbackKeyRecord (actors/device-keys.ts) of one device. */
  fallbackKeys: (userId: string, deviceId: string) => `e2e:${userId}:fb:${deviceId}`,
  /** Hash: `master` / `self_signing` / `user_signing` → the cross-signing key as uploaded (canonical JSON). */
  crossSigningKeys: (userId: string) => `e2e:${userId}:xs`,
  /** String, for a user of another server: present while the cached device list (deviceKeys) is the whole list (actors/device-keys.ts remote_*). */
  remoteSynced: (userId: string) => `e2e:${userId}:rsync`,
  /**
   * Hash: signatures made by `signer` (and uploaded through /keys/signatures/upload) of keys of
   * `target`: field `<target key: device id or cross-signing public key>\0<signing key id>` →
   * signature. Lives on the signer's shard: the signer's actor writes it.
   */
  signatures: (signer: string, target: string) => `e2e:${signer}:sig:${target}`,
};

/**
 * A local room alias, relative to the room-family shard the alias hashes to
 * (`shard('room', shardOf(alias))`): msgpack { r: room id, c: creator user id }. Written by the
 * alias's actor (actors/alias.ts); fronts read it to resolve the alias.
 */
export const aliasData = {
  alias: (alias: string) => `alias:${alias}`,
  /**
   * A createRoom's hold on a free alias (msgpack { t: token, c: user, u: until ms }), with a TTL
   * ending when the hold does. Written by the alias's actor; nothing else reads it.
   */
  reservation: (alias: string) => `alias-reserved:${alias}`,
};

/**
 * The joined-rooms index, relative to the USER's shard: written by the membership index reader
 * (src/readers/membership-index.ts) from the room outboxes, and by fronts right after a
 * membership change they sent is confirmed (both through membership-index-2.lua, so the order
 * of arrival does not matter). The forgotten set is set by the user actor (`forget`) and
 * cleared by that script when the user joins, is invited or knocks again.
 */
export const membershipIndexData = {
  /** Hash: room id → `<stream position>:<membership>` (the latest membership seen). */
  rooms: (userId: string) => `user:${userId}:rooms`,
  /**
   * Hash: room id → Redis TIME (µs) at which the index last wrote the room's entry. /sync gives
   * rooms written at or after its `since` cut the full treatment (src/api/client/sync.ts).
   */
  writtenAt: (userId: string) => `user:${userId}:roomsat`,
  /** Set: rooms the user has forgotten (cleared when the user joins, is invited or knocks again). */
  forgotten: (userId: string) => `user:${userId}:forgotten`,
  /**
   * String: the stripped state of a room this server does not have, kept for an invite another
   * server sent the user over federation (src/sync/remote-invites.ts); JSON array of events.
   */
  remoteInvite: (userId: string, roomId: string) => `user:${userId}:rinvite:${roomId}`,
};

/**
 * Content reports (actors/reports.ts), relative to the user shard the reports actor's id hashes
 * to: a hash of report id → JSON report. Admin tooling reads it.
 */
/**
 * Simplified sliding sync (MSC4186) connections, relative to the USER's shard: per (user, device,
 * conn_id) a hash holding the connection's generation (`g`), its answer counter (`n`) and, per
 * answer still valid as a `pos` (`p:<n>`), what each room was last sent (src/sync/sliding/
 * connection-store.ts). Written by fronts (the state is theirs: a cache of what a client holds,
 * rebuilt from nothing when lost), with an expiry; the set bounds connections per device.
 */
export const slidingSyncData = {
  connection: (userId: string, deviceId: string, connId: string) => `user:${userId}:ssc:${deviceId}\u0000${connId}`,
  /** Sorted set: the device's connection ids by last use (ms), oldest evicted beyond a bound. */
  connections: (userId: string, deviceId: string) => `user:${userId}:ssd:${deviceId}`,
};

export const reportData = {
  reports: () => 'reports',
};

/**
 * Delayed events (MSC4140, actors/delayed-events.ts), relative to the owner's USER shard; written
 * only by the owner's delayed-events actor, read by fronts.
 */
export const delayedEventData = {
  /** Hash: delay id → JSON DelayedEventRecord (what `GET /delayed_events` lists). */
  events: (userId: string) => `user:${userId}:delayed`,
  /** Hash: delay id → owner's user id, for the shard's delayed events (the unauthenticated management calls name only the delay id). */
  owners: () => 'delayed:owners',
};

/**
 * Global (prefix-relative, derived) index of pending delayed STATE events: per room, type and
 * state key, a set of the owners' user ids. Written by the delayed-events actors as derived writes;
 * read by the reader that cancels them when someone else sets that state (a missing entry only
 * means that one is not cancelled early).
 */
export function delayedStateIndex(roomId: string, type: string, stateKey: string): string {
  return `delayed-state:${roomId}\u0000${type}\u0000${stateKey}`;
}

/** The consumer group that cancels delayed state events overtaken by others' state (src/readers/delayed-events.ts) reads room outboxes with. */
export const DELAYED_STATE_GROUP = 'delayed-state';

/**
 * Thread subscriptions (MSC4306, actors/thread-subscriptions.ts), relative to the user's USER shard;
 * written only by the user's thread-subscriptions actor, read by fronts and the push evaluator.
 */
export const threadSubscriptionData = {
  /** Hash: `<room id>\0<thread root id>` → JSON ThreadSubscriptionRecord. */
  records: (userId: string) => `user:${userId}:threadsubs`,
  /** Sorted set: the same members by the stream id of their latest change (paging, newest first). */
  byStream: (userId: string) => `user:${userId}:threadsubs:stream`,
};

/** The consumer group that sends due delayed events (src/readers/delayed-events.ts) reads user outboxes with. */
export const DELAYED_EVENTS_GROUP = 'delayed-events';

/** The consumer group that takes deactivated users out of their rooms (src/readers/deactivation.ts) reads user outboxes with. */
export const DEACTIVATION_GROUP = 'deactivation';

/** The consumer group the membership index reads room outboxes with. */
export const MEMBERSHIP_INDEX_GROUP = 'membership-index';

/**
 * The recency index of simplified sliding sync (src/readers/recency-index.ts): per user, the
 * rooms they are joined to scored by `bump_stamp`, so a list's first rooms are a ZREVRANGE of one
 * key instead of a look-up per room and a sort. Written by the `recency-index` reader of the room
 * outboxes (and repaired by fronts for rooms it does not hold yet: src/sync/sliding/recency.ts).
 */
export const recencyIndexData = {
  /** Sorted set, relative to the USER's shard: joined room id → bump stamp (ms). */
  rooms: (userId: string) => `user:${userId}:recency`,
  /**
   * Sorted set, relative to a ROOM shard: each of the shard's rooms → its bump stamp (ms), the
   * newest `origin_server_ts` of a bumping event the reader saw (what a joining user's entry gets).
   */
  roomStamps: () => 'recency:rooms',
  /**
   * String, relative to a ROOM shard: the id of the last outbox entry the reader has applied (a
   * stream id, only moving forward); a sliding sync waits for it to reach the outbox's end before
   * reading a user's index (src/sync/push-progress.ts, as for the push evaluator's).
   */
  upTo: () => 'recency:upto',
};

/** The consumer group the recency index reads room outboxes with. */
export const RECENCY_INDEX_GROUP = 'recency-index';

/**
 * A federation destination's queues (actors/destination.ts), relative to the USER-family shard
 * the destination's server name hashes to (the destination actor lives there). Written only by
 * that actor, in its commits: entry ids are its own sequence numbers (`<seq>-0`), so a range of
 * the queue is named by two numbers in the actor's state, and sent entries are trimmed by MINID.
 */
export const destinationData = {
  /** Stream: PDUs to send, one entry per event: `r` room id, `e` event id (the PDU is read from the room's store at send time). */
  pdus: (destination: string) => `fed:${destination}:pdus`,
  /** Stream: EDUs to send, one entry per EDU: `j` its JSON text. */
  edus: (destination: string) => `fed:${destination}:edus`,
  /** String: the retry time (ms) while the destination is backing off; absent otherwise (the inbound path's wake check). */
  backoff: (destination: string) => `fed:${destination}:backoff`,
};

/**
 * The media repository (actors/media.ts, actors/media-content.ts), relative to the USER-family
 * shard the media id (record, reservation) or the sha256 (references) hashes to.
 */
export const mediaData = {
  /** A local media item's record (msgpack MediaRecord): written by its media actor, read by fronts to serve it. */
  record: (mediaId: string) => `media:${mediaId}`,
  /** A reserved media id waiting for its upload (msgpack MediaReservation, expires with it). */
  reservation: (mediaId: string) => `media-reserved:${mediaId}`,
  /** Set: the references to this blob (`<mediaId>:<upload attempt>`; written by the blob's media-content actor). */
  contentRefs: (sha256: string) => `media-refs:${sha256}`,
  /**
   * Held (SET NX PX) by the front fetching a remote item (id `<server>/<mediaId>`) over federation,
   * so that fronts asking for it at the same time fetch it once: the others wait for its record.
   */
  remoteFetchLock: (id: string) => `media-fetching:${id}`,
};

/**
 * The search index (src/search/index-store.ts), relative to the ROOM's shard: written only by the
 * search reader and the rebuild (search-index-5.lua, which writes nothing of a room without its
 * `roomData.members`: a room being purged), read by `POST /search`. Per room, an
 * inverted index in compact binary form (format 2; `npm run search -- reindex` rebuilds rooms
 * indexed in format 1, whose keys were `search:<room>:…`, see `legacySearchData`).
 */
export const searchData = {
  /**
   * Hash: bucket (`floor(pos / 64)`) → the bucket's document records, 16 bytes each, sorted by
   * position: int32 position, int32 position of the event whose content is indexed (the event's
   * own, or its latest edit's), uint48 origin_server_ts, uint8 length in words (capped at 255),
   * uint8 flags (1: redacted, 2: its terms are in the postings).
   */
  docs: (roomId: string) => `sd:${roomId}`,
  /** Sorted set (all scores 0): the room's terms, for prefix matches (ZRANGEBYLEX) and clearing. */
  terms: (roomId: string) => `sv:${roomId}`,
  /** Hash: `n` documents, `l` total length in words (BM25's average document length). */
  stats: (roomId: string) => `ss:${roomId}`,
  /** Set: positions of redacted documents whose terms were not known (their postings are skipped at query time). */
  dead: (roomId: string) => `sx:${roomId}`,
  /**
   * Prefix of the postings strings: `<prefix><term>` is a string of 6-byte entries sorted by
   * position: int32 position, uint8 `min(tf, 63) << 2 | key` (key 0 body, 1 name, 2 topic), uint8 length.
   */
  postingsPrefix: (roomId: string) => `sp:${roomId}:`,
  /**
   * Prefix of the block bounds of long postings (more than one block of 128 entries): 2 bytes per
   * block, its highest term frequency and shortest length, so a ranked query can skip blocks
   * whose best possible score cannot enter the page.
   */
  blockBoundsPrefix: (roomId: string) => `sm:${roomId}:`,
  /**
   * Prefix of the best postings of long terms (more than 128 postings in the room), for ranked
   * queries that stop early: at most 64 of the term's postings with the highest BM25 impact, and
   * a bound of all its others. A string: uint8 reference average length, uint8 F, uint8 frequency
   * and uint8 length of the cut, F (frequency, length) pairs (the Pareto frontier bounding every
   * posting not in the list), then the list's 6-byte postings (as in the postings string, in no
   * order). Kept by search-index-5.lua; built the first time a long term is written to when missing.
   */
  topPrefix: (roomId: string) => `st:${roomId}:`,
};

/**
 * The search index's upgrade state, per ROOM shard (names relative to the shard, `data(name)`):
 * the search reader holding the shard moves its rooms to format 2 by itself (src/search/migrate.ts).
 */
export const searchShardData = {
  /** Hash: `format` — `2` once every room of the shard has its index in format 2 (`listing` while the rooms to rebuild are being listed). */
  format: 'search-format',
  /** Set: ids of the shard's rooms whose index is still to be rebuilt in format 2 (queries read their stored events meanwhile). */
  pending: 'search-pending',
};

/** The keys of the first index format (deleted by a rebuild; their presence marks a room to rebuild). */
export const legacySearchData = {
  docs: (roomId: string) => `search:${roomId}:docs`,
  terms: (roomId: string) => `search:${roomId}:terms`,
  stats: (roomId: string) => `search:${roomId}:stats`,
  postingsPrefix: (roomId: string) => `search:${roomId}:p:`,
};

/** The consumer group the search reader (src/search/indexer.ts) reads room outboxes with. */
export const SEARCH_INDEX_GROUP = 'search-index';

/** The consumer group the federation sender (src/federation/sender/reader.ts) reads room outboxes with. */
export const FEDERATION_SENDER_GROUP = 'federation-sender';
/** The consumer group the federation EDU sender (src/federation/sender/user-edus.ts) reads user outboxes with. */
export const FEDERATION_USER_EDU_GROUP = 'federation-user-edus';

/** Federation state of one local user, in the user's shard. */
export const userFederationData = {
  /** String: the stream id of the user's latest `m.device_list_update` sent (the next one's `prev_id`; `/user/devices` answers it). */
  deviceStream: (userId: string) => `user:${userId}:fed:devstream`,
};

/**
 * An application service's queues (actors/appservice.ts), relative to the USER-family shard the
 * appservice's registration id hashes to. Written only by that actor, in its commits: entry ids
 * are its own sequence numbers (`<seq>-0`); sent entries are trimmed by MINID.
 */
export const appserviceData = {
  /** Stream: room events to push, one entry per event: `r` room id, `e` event id (read from the room's store when sent). */
  events: (id: string) => `as:${id}:events`,
  /** Stream: ephemeral entries: `k` `eph` (typing, receipt, presence) or `td` (a to-device message), `j` the JSON text. */
  ephemeral: (id: string) => `as:${id}:ephemeral`,
};

/** The consumer group the appservice reader (src/appservice/reader.ts) reads room outboxes with. */
export const APPSERVICE_ROOM_GROUP = 'appservice-rooms';
/** The consumer group the appservice reader reads user outboxes with (presence, to-device). */
export const APPSERVICE_USER_GROUP = 'appservice-users';
