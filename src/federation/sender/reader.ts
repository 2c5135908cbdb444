/**
 * The federation sender's reader: for every event a room actor commits that one of OUR users
 * sent — or that a remote server handed us through send_join / send_leave / send_knock, which
 * only the resident server hears of (the output entry's `onBehalfOf`) —, the other servers in
 * the room get it — it works out the event's destinations and queues
 * it at each destination's actor (actors/destination.ts), which sends it in order, batched, with
 * retries. A consumer group on the room outboxes (OutboxGroupReader), so a worker that dies
 * mid-batch leaves the entries pending and the shard's next holder queues them: the message id
 * `fedq:<destination>:<event id>` makes that second queueing a duplicate the runtime drops.
 *
 * Destinations of an event (as Synapse's federation sender: the hosts in the room at the event,
 * plus for a membership event the target's server, so an invited, kicked or banned user's server
 * hears of it):
 *   servers with a joined member in the state BEFORE the event (RoomReader.joinedServersAt)
 *   ∪ the server of `state_key` for an `m.room.member` event
 *   − our own server − servers the `m.room.server_acl` denies (serverAclAllows): the one in the
 *     state before the event, or the event itself when it is that ACL.
 * As of the event, not as of when the reader comes to it (a reader behind the room, after a
 * restart or a move): a server that joined since does not get what was sent before it came — its
 * history visibility decides what it may see, through backfill —, and a server whose users left,
 * or were banned, since still gets what was sent while they were there (the ban itself included:
 * before it, the banned server was in). Events other servers sent are not ours to send (their
 * origin sends them) — except those we send on their behalf (as Synapse does for the membership
 * endpoints): those go to every destination but that server. Events that came in a transaction
 * (/send) are never sent again, and what does not reach the outbox — outliers, backfilled,
 * rejected events — is never sent. Typing and receipt EDUs go to the servers in the room now (the
 * `members` hash) under its current ACL: they are about now.
 *
 * A room we joined with partial state (MSC3706: src/rooms/partial-state.ts) does not know its
 * members yet: until it does, the servers the resident named in `servers_in_room` are destinations
 * too (as Synapse sends to the servers in the room at the join).
 */
import type { Logger } from 'pino';
import { DESTINATION_KIND, type DestinationMessage } from '../../../actors/destination';
import { serverOf } from '../../protocol/identifiers';
import { isJsonObject, type JsonObject, type JsonValue } from '../../protocol/json';
import type { Edu } from '../../protocol/transactions';
import type { TypingKeepaliveOutput, TypingOutput } from '../../../actors/typing';
import type { ReceiptOutput } from '../../../actors/receipts';
import { serverAclAllows } from '../../protocol/server-acl';
import { decodeOutput, OutboxGroupReader } from '../../readers/outbox-group-reader';
import type { RoomOutput } from '../../rooms/model';
import { ActorClient } from '../../runtime/actor-client';
import type { OutboxEntry } from '../../runtime/envelope';
import type { Family } from '../../store/shards';
import { FEDERATION_SENDER_GROUP, roomData, type KeySpace } from '../../store/keys';
import type { RedisClient } from '../../store/redis';
import { MissingSnapshotError, RoomReader } from '../../store/room-reader';

interface RoomServers {
  /** Servers with a joined member. */
  joined: Iterable<string>;
  /** Content of the room's current `m.room.server_acl` (null: none). */
  acl: JsonValue | null;
}

/** The destinations of one event (pure): see the header. `onBehalfOf`: the server we pass it on for. */
export function eventDestinations(event: { type?: unknown; state_key?: unknown }, room: RoomServers, ourServer: string, onBehalfOf?: string): string[] {
  const servers = new Set(room.joined);
  if (event.type === 'm.room.member' && typeof event.state_key === 'string') {
    const target = serverOf(event.state_key);
    if (target) servers.add(target);
  }
  servers.delete(ourServer);
  if (onBehalfOf) servers.delete(onBehalfOf);
  return [...servers].filter((s) => serverAclAllows(room.acl, s)).sort();
}

/**
 * The EDUs a typing or receipt actor's output means for other servers (pure): `m.typing` for
 * each of OUR users who started or stopped typing or is still typing (a keepalive), `m.receipt` for a public (`m.read`) receipt
 * of one of our users. Private receipts (`m.read.private`) never leave the server, and what
 * remote users did is their server's to tell.
 */
export function roomEdus(kind: string, out: unknown, ourServer: string): { roomId: string; edus: Edu[] } | null {
  if (!isJsonObject(out as JsonValue) || typeof (out as { room_id?: unknown }).room_id !== 'string') return null;
  const roomId = (out as { room_id: string }).room_id;
  if (kind === 'typing' && (out as { type?: unknown }).type === 'typing_keepalive') {
    // Our users still typing, told again before the other servers time them out (actors/typing.ts).
    const o = out as Partial<TypingKeepaliveOutput>;
    const edus: Edu[] = [];
    for (const u of Array.isArray(o.user_ids) ? o.user_ids : []) {
      if (typeof u === 'string' && serverOf(u) === ourServer) edus.push({ edu_type: 'm.typing', content: { room_id: roomId, user_id: u, typing: true } });
    }
    return edus.length ? { roomId, edus } : null;
  }
  if (kind === 'typing') {
    const o = out as Partial<TypingOutput>;
    const edus: Edu[] = [];
    for (const c of Array.isArray(o.changes) ? o.changes : []) {
      if (!Array.isArray(c) || typeof c[0] !== 'string' || serverOf(c[0]) !== ourServer) continue;
      edus.push({ edu_type: 'm.typing', content: { room_id: roomId, user_id: c[0], typing: c[1] === true } });
    }
    return edus.length ? { roomId, edus } : null;
  }
  if (kind === 'receipt') {
    const o = out as Partial<ReceiptOutput>;
    if (o.receipt_type !== 'm.read' || typeof o.user_id !== 'string' || serverOf(o.user_id) !== ourServer || typeof o.event_id !== 'string') return null;
    const data: JsonObject = { ts: typeof o.ts === 'number' ? o.ts : 0 };
    if (typeof o.thread_id === 'string') data.thread_id = o.thread_id;
    return { roomId, edus: [{ edu_type: 'm.receipt', content: { [roomId]: { 'm.read': { [o.user_id]: { event_ids: [o.event_id], data } } } } }] };
  }
  return null;
}

export class FederationSenderReader extends OutboxGroupReader {
  override readonly kinds: readonly string[] = ['room', 'typing', 'receipt'];
  private readonly actors: ActorClient;
  private readonly rooms: RoomReader;

  constructor(
    redis: RedisClient,
    keys: KeySpace,
    shardCounts: Record<Family, number>,
    private readonly serverName: string,
    consumer: string,
    log: Logger,
  ) {
    super('room', FEDERATION_SENDER_GROUP, redis, keys, consumer, log);
    // Only `tell` is used (no replies), so the client's reply stream is never started.
    this.actors = new ActorClient(redis, keys, shardCounts, `fedsend-${consumer}`);
    this.rooms = new RoomReader(redis, keys, shardCounts.room);
  }

  protected async apply(shard: number, entries: { id: string; entry: OutboxEntry | null }[]): Promise<void> {
    // Once per room and batch: the servers in the room now (for EDUs), and whether the room is
    // partial-state (the servers the resident named, see the header).
    const rooms = new Map<string, Promise<RoomServers>>();
    const partials = new Map<string, Promise<string[] | null>>();
    // By room and snapshot: the servers in the room at the events of a batch (most share one).
    const atSnapshot = new Map<string, Promise<RoomServers>>();
    const sends: Promise<void>[] = [];
    const serversOf = (roomId: string) => {
      let room = rooms.get(roomId);
      if (!room) {
        room = this.roomServers(shard, roomId);
        rooms.set(roomId, room);
      }
      return room;
    };
    const serversBefore = async (out: RoomOutput): Promise<RoomServers> => {
      const sb = await this.rooms.stateBeforeOf(out);
      // Not stored (the room was purged since): the servers in it now (none, after a purge).
      if (typeof sb !== 'number') return serversOf(out.roomId);
      const key = `${out.roomId}\u0000${sb}`;
      let servers = atSnapshot.get(key);
      if (!servers) {
        let partial = partials.get(out.roomId);
        if (!partial) partials.set(out.roomId, (partial = this.rooms.partialStateServers(out.roomId)));
        // A snapshot gone since (a purge) counts as above.
        servers = this.roomServersAt(out.roomId, sb, partial).catch((e: unknown) => {
          if (e instanceof MissingSnapshotError) return serversOf(out.roomId);
          throw e;
        });
        atSnapshot.set(key, servers);
      }
      return servers;
    };
    for (const { id, entry } of entries) {
      if (entry && (entry.kind === 'typing' || entry.kind === 'receipt')) {
        const edus = roomEdus(entry.kind, decodeOutput(entry), this.serverName);
        if (!edus) continue;
        const destinations = eventDestinations({}, await serversOf(edus.roomId), this.serverName);
        const body: DestinationMessage = { t: 'edus', edus: edus.edus };
        for (const d of destinations) sends.push(this.actors.tell('user', DESTINATION_KIND, d, body, `fede:${d}:${entry.kind}:${id}`));
        continue;
      }
      if (!entry || entry.kind !== 'room') continue;
      const out = decodeOutput<RoomOutput>(entry);
      if (!out?.eventId || !isJsonObject(out.event) || typeof out.event.sender !== 'string') continue;
      const onBehalfOf = typeof out.onBehalfOf === 'string' && out.onBehalfOf !== this.serverName ? out.onBehalfOf : undefined;
      if (serverOf(out.event.sender) !== this.serverName && !onBehalfOf) continue;
      let servers = await serversBefore(out);
      // An ACL event's own denial holds for itself: a server it shuts out does not get it either.
      if (out.event.type === 'm.room.server_acl' && out.event.state_key === '') servers = { joined: servers.joined, acl: (out.event.content ?? null) as JsonValue };
      const destinations = eventDestinations(out.event, servers, this.serverName, onBehalfOf);
      const body: DestinationMessage = { t: 'pdus', items: [{ r: out.roomId, e: out.eventId }] };
      // Issued in outbox order on one connection: each destination's inbox gets the room's events in order.
      for (const d of destinations) sends.push(this.actors.tell('user', DESTINATION_KIND, d, body, `fedq:${d}:${out.eventId}`));
    }
    await Promise.all(sends);
  }

  /** The servers in the room, and its ACL, in the state of a snapshot (and a partial-state room's named servers). */
  private async roomServersAt(roomId: string, snapshot: number, partial: Promise<string[] | null>): Promise<RoomServers> {
    const [at, named] = await Promise.all([this.rooms.joinedServersAt(roomId, snapshot), partial]);
    const content = at.serverAcl ? (await this.rooms.event(roomId, at.serverAcl))?.event.content : undefined;
    const joined = named ? new Set([...named, ...at.joined.keys()]) : [...at.joined.keys()];
    return { joined, acl: content === undefined ? null : (content as JsonValue) };
  }

  /** The servers in the room now, and its ACL now. */
  private async roomServers(shard: number, roomId: string): Promise<RoomServers> {
    const [members, acl, partial] = await Promise.all([
      this.redis.hgetall(this.keys.shard('room', shard).data(roomData.members(roomId))),
      this.rooms.currentState(roomId, { type: 'm.room.server_acl', stateKey: '' }),
      this.rooms.partialStateServers(roomId),
    ]);
    const joined = new Set<string>(partial ?? []);
    for (const [user, membership] of Object.entries(members)) {
      if (membership !== 'join') continue;
      const s = serverOf(user);
      if (s) joined.add(s);
    }
    const content = acl[0]?.event.content;
    return { joined, acl: content === undefined ? null : (content as JsonValue) };
  }
}
