/**
 * The appservice readers: what each registered application service must hear of, queued at its
 * actor (actors/appservice.ts), which pushes it in transactions. Consumer groups on the shard
 * outboxes (OutboxGroupReader, the federation sender's shape: src/federation/sender/reader.ts),
 * so a worker that dies mid-batch leaves the entries pending and the shard's next holder queues
 * them again — the message ids (`asq:<appservice>:<event id>`, `ase:<appservice>:<kind>:<entry
 * id>`) make that second queueing a duplicate the runtime drops: queued once.
 *
 * Room outboxes (AppserviceRoomReader). An event interests an appservice (the spec's "the
 * appservice is interested in the event", as Synapse's ApplicationService.is_interested_in_event
 * reads it) when
 *   its sender, or for a membership event its state_key, is the appservice's sender or in its
 *   user namespace;
 *   the room id is in its room namespace;
 *   one of the room's aliases — the canonical alias and its alt_aliases, and the local aliases
 *   pointing at the room — is in its alias namespace;
 *   or one of the room's joined members is the appservice's sender or in its user namespace.
 * The room's aliases are read when the entry is read (once per room and batch); its joined members
 * are those of the state after the event (its state snapshot), not the room's current ones: a
 * reader behind the room (its batch read after later commits) took a user who joined after an
 * event for a member at it, and pushed the event to that user's appservice (seen in CI: a message
 * sent before the bridge's puppet joined was pushed to the bridge).
 * Every event of the timeline counts, whoever sent it and from whichever server; what never
 * reaches the outbox (outliers, backfilled history, rejected events) is never pushed — as with
 * Synapse, which pushes new events only. Typing and receipt changes of a room (its ephemeral
 * outputs) go, as ephemeral events, to the appservices with `receive_ephemeral` interested in
 * the room (the same rules but the sender's); private receipts (`m.read.private`) only to an
 * appservice whose user sent them.
 *
 * User outboxes (AppserviceUserReader): a user's presence change goes, as an `m.presence`
 * ephemeral event, to the appservices with `receive_ephemeral` interested in that user or in a
 * user sharing a room with them; a to-device message for a user in an appservice's user
 * namespace goes to that appservice when it asked for to-device messages (`push_to_device`), with
 * `to_user_id` and `to_device_id` (MSC2409 / MSC4203) added.
 */
import type { Logger } from 'pino';
import { APPSERVICE_KIND, type AppserviceMessage, type EphemeralItem } from '../../actors/appservice';
import type { ReceiptOutput } from '../../actors/receipts';
import type { ToDeviceOutput } from '../../actors/to-device';
import type { TypingOutput } from '../../actors/typing';
import { presenceContent, type PresenceRecord } from '../../actors/presence';
import { isJsonObject, type JsonObject, type JsonValue } from '../protocol/json';
import { stateKeyOf } from '../protocol/pdu';
import { MembershipIndex } from '../readers/membership-index';
import { decodeOutput, OutboxGroupReader } from '../readers/outbox-group-reader';
import { sharedRoomUsers } from '../readers/user-fanout';
import type { RoomOutput } from '../rooms/model';
import { ActorClient } from '../runtime/actor-client';
import type { OutboxEntry } from '../runtime/envelope';
import { APPSERVICE_ROOM_GROUP, APPSERVICE_USER_GROUP, roomData, userData, type KeySpace } from '../store/keys';
import type { RedisClient } from '../store/redis';
import { RoomReader } from '../store/room-reader';
import { shardOf, type Family } from '../store/shards';
import type { Appservice, AppserviceRegistry } from './registration';

/** What the interest rules need to know of a room. */
export interface RoomInterestFacts {
  roomId: string;
  /** Joined members' user ids. */
  joined: string[];
  /** The room's aliases (canonical, alt, local directory aliases). */
  aliases: string[];
}

/** Whether the room interests the appservice, the event's sender aside (pure). */
export function roomInterests(as: Pick<Appservice, 'isInterestedInUser' | 'isInterestedInAlias' | 'isInterestedInRoom'>, room: RoomInterestFacts): boolean {
  if (as.isInterestedInRoom(room.roomId)) return true;
  if (room.aliases.some((a) => as.isInterestedInAlias(a))) return true;
  return room.joined.some((u) => as.isInterestedInUser(u));
}

/** Whether a room event interests the appservice (pure): see the header. */
export function eventInterests(as: Pick<Appservice, 'isInterestedInUser' | 'isInterestedInAlias' | 'isInterestedInRoom'>, event: { sender?: unknown; type?: unknown; state_key?: unknown }, room: RoomInterestFacts): boolean {
  if (typeof event.sender === 'string' && as.isInterestedInUser(event.sender)) return true;
  if (event.type === 'm.room.member' && typeof event.state_key === 'string' && as.isInterestedInUser(event.state_key)) return true;
  return roomInterests(as, room);
}

/** The ephemeral event a typing or receipt output means for appservices (pure), with the user whose it is. */
export function roomEphemeral(kind: string, out: unknown): { roomId: string; event: JsonObject; privateOf?: string } | null {
  if (!isJsonObject(out as JsonValue) || typeof (out as { room_id?: unknown }).room_id !== 'string') return null;
  const roomId = (out as { room_id: string }).room_id;
  if (kind === 'typing' && (out as { type?: unknown }).type === 'typing') {
    const o = out as Partial<TypingOutput>;
    const userIds = Array.isArray(o.user_ids) ? o.user_ids.filter((u): u is string => typeof u === 'string') : [];
    return { roomId, event: { type: 'm.typing', room_id: roomId, content: { user_ids: userIds } } };
  }
  if (kind === 'receipt') {
    const o = out as Partial<ReceiptOutput>;
    if (typeof o.user_id !== 'string' || typeof o.event_id !== 'string' || typeof o.receipt_type !== 'string') return null;
    const data: JsonObject = { ts: typeof o.ts === 'number' ? o.ts : 0 };
    if (typeof o.thread_id === 'string') data.thread_id = o.thread_id;
    const event: JsonObject = { type: 'm.receipt', room_id: roomId, content: { [o.event_id]: { [o.receipt_type]: { [o.user_id]: data } } } };
    return o.receipt_type === 'm.read.private' ? { roomId, event, privateOf: o.user_id } : { roomId, event };
  }
  return null;
}

/** Appservices that transactions go to (a registration with `url: null` receives none). */
function pushed(registry: AppserviceRegistry): Appservice[] {
  return registry.all().filter((as) => typeof as.url === 'string' && as.url !== '');
}

export class AppserviceRoomReader extends OutboxGroupReader {
  override readonly kinds: readonly string[] = ['room', 'typing', 'receipt'];
  private readonly actors: ActorClient;
  private readonly rooms: RoomReader;

  constructor(
    redis: RedisClient,
    keys: KeySpace,
    shardCounts: Record<Family, number>,
    private readonly registry: AppserviceRegistry,
    consumer: string,
    log: Logger,
  ) {
    super('room', APPSERVICE_ROOM_GROUP, redis, keys, consumer, log);
    this.actors = new ActorClient(redis, keys, shardCounts, `asroom-${consumer}`);
    this.rooms = new RoomReader(redis, keys, shardCounts.room);
  }

  protected async apply(shard: number, entries: { id: string; entry: OutboxEntry | null }[]): Promise<void> {
    const services = pushed(this.registry);
    if (services.length === 0) return;
    const facts = new Map<string, Promise<RoomInterestFacts>>();
    const factsOf = (roomId: string) => {
      let f = facts.get(roomId);
      if (!f) facts.set(roomId, (f = this.roomFacts(shard, roomId)));
      return f;
    };
    // A room event's facts are its room's aliases (once per room and batch) and the members at the
    // event (factsAtEvent): the room's current members are read for ephemeral outputs only.
    const aliases = new Map<string, Promise<string[]>>();
    const aliasesOf = (roomId: string) => {
      let a = aliases.get(roomId);
      if (!a) aliases.set(roomId, (a = this.roomAliases(shard, roomId)));
      return a;
    };
    // Joined members as of a state snapshot, by room and snapshot (a batch's messages share theirs).
    const atSnapshot = new Map<string, Promise<string[]>>();
    const tells: Promise<void>[] = [];
    for (const { id, entry } of entries) {
      if (!entry) continue;
      if (entry.kind === 'typing' || entry.kind === 'receipt') {
        const ephemeral = services.filter((as) => as.receiveEphemeral);
        if (ephemeral.length === 0) continue;
        const eph = roomEphemeral(entry.kind, decodeOutput(entry));
        if (!eph) continue;
        const room = await factsOf(eph.roomId);
        const body: AppserviceMessage = { t: 'ephemeral', items: [{ k: 'eph', j: eph.event }] };
        for (const as of ephemeral) {
          const wanted = eph.privateOf ? as.isInterestedInUser(eph.privateOf) : roomInterests(as, room);
          if (wanted) tells.push(this.actors.tell('user', APPSERVICE_KIND, as.id, body, `ase:${as.id}:${entry.kind}:${id}`));
        }
        continue;
      }
      if (entry.kind !== 'room') continue;
      const out = decodeOutput<RoomOutput>(entry);
      if (!out?.eventId || !isJsonObject(out.event)) continue;
      const room = await this.factsAtEvent(shard, out, await aliasesOf(out.roomId), services, atSnapshot);
      const body: AppserviceMessage = { t: 'events', items: [{ r: out.roomId, e: out.eventId }] };
      // Told in outbox order on one connection: each appservice's inbox gets a room's events in order.
      for (const as of services) {
        if (eventInterests(as, out.event, room)) tells.push(this.actors.tell('user', APPSERVICE_KIND, as.id, body, `asq:${as.id}:${out.eventId}`));
      }
      // A membership change or a new alias changes what interests whom: read the room again.
      if (out.event.type === 'm.room.member' || out.event.type === 'm.room.canonical_alias') facts.delete(out.roomId);
      if (out.event.type === 'm.room.canonical_alias') aliases.delete(out.roomId);
    }
    await Promise.all(tells);
  }

  /**
   * The room's facts as of an event: its `aliases`, and its joined members in the state after the
   * event — only those some appservice's user namespace takes (the only ones the rules look at),
   * read from their member events; the current members when the event is not stored. The state
   * after a non-state event is the state before it, which its output names (no read of the
   * event's record then).
   */
  private async factsAtEvent(shard: number, out: RoomOutput, aliases: string[], services: Appservice[], cache: Map<string, Promise<string[]>>): Promise<RoomInterestFacts> {
    const roomId = out.roomId;
    const stateAfter = out.event.state_key === undefined && typeof out.stateBefore === 'number' && !out.partialState ? out.stateBefore : (await this.rooms.event(roomId, out.eventId))?.stateAfter;
    if (stateAfter === undefined) return { roomId, joined: await this.roomMembers(shard, roomId), aliases };
    const key = `${roomId}\u0000${stateAfter}`;
    let joined = cache.get(key);
    if (!joined) {
      joined = (async () => {
        const state = await this.rooms.snapshot(roomId, stateAfter);
        const prefix = stateKeyOf('m.room.member', '');
        const ids: string[] = [];
        for (const [k, id] of state) {
          if (!k.startsWith(prefix)) continue;
          const user = k.slice(prefix.length);
          if (services.some((as) => as.isInterestedInUser(user))) ids.push(id);
        }
        const members = await this.rooms.events(roomId, ids);
        return members.filter((m) => isJsonObject(m.event.content) && m.event.content.membership === 'join' && typeof m.event.state_key === 'string').map((m) => m.event.state_key as string);
      })();
      cache.set(key, joined);
    }
    return { roomId, joined: await joined, aliases };
  }

  private async roomFacts(shard: number, roomId: string): Promise<RoomInterestFacts> {
    const [joined, aliases] = await Promise.all([this.roomMembers(shard, roomId), this.roomAliases(shard, roomId)]);
    return { roomId, joined, aliases };
  }

  /** The room's joined members now. */
  private async roomMembers(shard: number, roomId: string): Promise<string[]> {
    const members = await this.redis.hgetall(this.keys.shard('room', shard).data(roomData.members(roomId)));
    return Object.entries(members).filter(([, m]) => m === 'join').map(([u]) => u);
  }

  /** The room's aliases now: its local aliases, its canonical alias and alt_aliases. */
  private async roomAliases(shard: number, roomId: string): Promise<string[]> {
    const [local, canonical] = await Promise.all([
      this.redis.smembers(this.keys.shard('room', shard).data(roomData.aliases(roomId))),
      this.rooms.currentState(roomId, { type: 'm.room.canonical_alias', stateKey: '' }),
    ]);
    const aliases = new Set(local);
    const content = canonical[0]?.event.content as JsonObject | undefined;
    if (content && typeof content.alias === 'string') aliases.add(content.alias);
    if (content && Array.isArray(content.alt_aliases)) for (const a of content.alt_aliases) if (typeof a === 'string') aliases.add(a);
    return [...aliases];
  }

}

export class AppserviceUserReader extends OutboxGroupReader {
  override readonly kinds: readonly string[] = ['presence', 'todevice'];
  private readonly actors: ActorClient;
  private readonly index: MembershipIndex;

  constructor(
    redis: RedisClient,
    keys: KeySpace,
    private readonly shardCounts: Record<Family, number>,
    private readonly registry: AppserviceRegistry,
    consumer: string,
    log: Logger,
  ) {
    super('user', APPSERVICE_USER_GROUP, redis, keys, consumer, log);
    this.actors = new ActorClient(redis, keys, shardCounts, `asuser-${consumer}`);
    this.index = new MembershipIndex(redis, keys, shardCounts.user);
  }

  protected async apply(_shard: number, entries: { id: string; entry: OutboxEntry | null }[]): Promise<void> {
    const services = pushed(this.registry);
    const withPresence = services.filter((as) => as.receiveEphemeral);
    const withToDevice = services.filter((as) => as.pushToDevice);
    if (withPresence.length === 0 && withToDevice.length === 0) return;
    const membersCache = new Map<string, Promise<Record<string, string>>>();
    const tells: Promise<void>[] = [];
    for (const { id, entry } of entries) {
      if (!entry || (entry.kind !== 'presence' && entry.kind !== 'todevice')) continue;
      const out = decodeOutput(entry);
      const o = (out ?? {}) as { type?: unknown; user_id?: unknown };
      if (typeof o.user_id !== 'string') continue;
      if (o.type === 'to_device' && withToDevice.length) {
        const td = out as Partial<ToDeviceOutput>;
        if (typeof td.e !== 'string' || typeof td.device_id !== 'string') continue;
        let message: JsonObject;
        try {
          message = JSON.parse(td.e) as JsonObject;
        } catch {
          continue;
        }
        const item: EphemeralItem = { k: 'td', j: { ...message, to_user_id: o.user_id, to_device_id: td.device_id } };
        for (const as of withToDevice) {
          if (as.isInterestedInUser(o.user_id)) tells.push(this.actors.tell('user', APPSERVICE_KIND, as.id, { t: 'ephemeral', items: [item] } satisfies AppserviceMessage, `ase:${as.id}:td:${id}`));
        }
        continue;
      }
      if (o.type === 'presence' && withPresence.length) {
        const userId = o.user_id;
        let watchers: Set<string> | null = null;
        const targets: Appservice[] = [];
        for (const as of withPresence) {
          if (as.isInterestedInUser(userId)) targets.push(as);
          else {
            watchers ??= await sharedRoomUsers(this.redis, this.keys, this.shardCounts, this.index, userId, membersCache);
            for (const w of watchers) {
              if (as.isInterestedInUser(w)) {
                targets.push(as);
                break;
              }
            }
          }
        }
        if (targets.length === 0) continue;
        const event = await this.presenceEvent(userId);
        if (!event) continue;
        for (const as of targets) tells.push(this.actors.tell('user', APPSERVICE_KIND, as.id, { t: 'ephemeral', items: [{ k: 'eph', j: event }] } satisfies AppserviceMessage, `ase:${as.id}:presence:${id}`));
      }
    }
    await Promise.all(tells);
  }

  private async presenceEvent(userId: string): Promise<JsonObject | null> {
    const raw = await this.redis.get(this.keys.shard('user', shardOf(userId, this.shardCounts.user)).data(userData.presence(userId)));
    if (!raw) return null;
    try {
      const rec = JSON.parse(raw) as PresenceRecord;
      return { type: 'm.presence', sender: userId, content: presenceContent(rec, Date.now()) as JsonObject };
    } catch {
      return null;
    }
  }
}
