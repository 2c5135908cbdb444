/**
 * The push evaluator: a consumer group on the room outboxes that evaluates every new timeline
 * event against the push rules of the room's joined local members (the sender excepted) and
 * records what notifies them (src/store/keys.ts `pushData`): the unread counts `/sync` reports
 * (src/sync/unread-counts.ts) and the lists `GET /notifications` serves.
 *
 * Evaluation is per member, in memory, as in Synapse's bulk push rule evaluator: per room the
 * reader keeps the members, the member count, the create and power levels events (loaded once,
 * then moved forward by the state events it reads in the outbox); per user it keeps the compiled
 * ruleset and the stored JSON it came from, read again when the user's data changes (the /sync
 * wake-up channel names the user after every commit of their user actor, push rule changes
 * included) and after a minute at most, and compiled again only when that JSON changed. The rules
 * users have in common (most are the defaults) are compiled once and shared (PushRuleInterner): a
 * ruleset is ~5 KB instead of ~24 KB, the rules of a room of 1,000 members ~5 MB instead of ~21.
 * Members with the default rules unchanged share one plan of the event (DefaultRulesTemplate).
 *
 * Recording is per room, not per member: the event goes once in the room's push log (room shard:
 * `roomLog`/`roomLogHighlight`/`roomLogThreads` by timeline position for the counts, `roomList`
 * by arrival for GET /notifications) with the common outcome — the one most joined members got
 * (not notified, notified, highlighted, and the same actions) — and only the members whose outcome
 * differs get records of their own (an exception: `exceptions` for the counts, their own list
 * entry when notified, `excluded` from the room's list): a mentioned member, a member whose own
 * rules say otherwise, and the sender of a notifying event (`excluded` only). A local user's own
 * event marks what came before it read, as the spec's "Marking notifications as read" asks
 * (Synapse does not): the room's `sentUpTo` keeps each local sender's latest position, which the
 * counts and GET /notifications read as a receipt (`noteSent`). So the sender needs no exception
 * for their own event, and a user who sends without ever sending receipts (a bot) does not pile
 * up exceptions that every one of their syncs would read. A message to a room of 1,000 is then
 * one script call (push-log-1.lua) of a few commands, not 2–3 per member (push-record-3.lua's
 * ZADDs per notified member, which were most of Redis's work in a big room). Counting starts
 * after a member's latest membership (the membership index), so the log is the members' of the
 * time; the reader keeps each local user's joins and leaves per room (`roomJoins`, by list score)
 * for GET /notifications. Read exceptions are trimmed when a receipt moves (`trimRead`); the
 * room's log is capped by rank (ROOM_LOG_KEPT), its list trimmed in chunks to NOTIFICATIONS_KEPT,
 * a user's own list too (every TRIM_EVERY records this process sends for them). Users with http
 * pushers still get one push queue entry each (src/push/queue.ts): pushes are per user by nature;
 * for an event the cached members are newer than (the room loaded past it), a member not joined
 * in the state before the event is not pushed it (`notJoinedAt`).
 *
 * Progress: after each batch of a room shard's outbox entries, once all its writes are done, the
 * reader stores the id of the batch's last entry (`pushData.evaluatedUpTo` on that room shard,
 * push-progress-1.lua: it never moves back, as a batch redelivered after a handoff may finish
 * late) and publishes it on the /sync channel (`{evaluated: [{shard, upto}]}`). A /sync that sends
 * a room's new events waits until the evaluator got that far before it reads the room's counts,
 * so the counts come with the events that changed them; nothing else tells a user their counts
 * changed (no feed entry, no wake-up per user). Every batch records its progress, those that
 * notify no one too: it is what /sync waits for.
 *
 * Only events in the room's timeline reach the outbox (rejected, soft-failed and outlier events
 * never do). The room actor has no backfill yet: when it gets one, backfilled events must be
 * marked on their output entries and skipped here, as Synapse does not notify for them.
 *
 * Idempotent: recording is keyed by event (push-log-1.lua: a member's exception for an event
 * replaces any other of the same event), the lists' score is the outbox entry's own time, so a
 * redelivered entry changes nothing. The receipt actor's entries on the same outboxes trim what a
 * new receipt covers. Before the room logs, push-record-3.lua wrote per member (`unread`,
 * `unreadHighlight`, `unreadThreads`): those are still counted and trimmed, no longer written.
 */
import type { Logger } from 'pino';
import { BADGE_MEMBER, type PushQueue, type QueuedNotification } from '../push/queue';
import type { Redis } from 'ioredis';
import type { RoomOutput, StoredEvent } from '../rooms/model';
import type { ReceiptOutput } from '../../actors/receipts';
import { serverNameOf } from '../protocol/event-hashing';
import { isJsonObject, type JsonObject } from '../protocol/json';
import { stateKeyOf, toPdu, type Pdu, type StateLookup } from '../protocol/pdu';
import { notificationLevel, userPowerLevel } from '../protocol/power-levels';
import { DefaultRulesTemplate, PushRuleInterner, compilePushRules, evaluatePushRules, relatedEventOf, threadRootOf, type CompiledPushRules, type DefaultRulesPlan, type PushEvaluation, type PushEvaluationContext } from '../protocol/push-evaluator';
import { mergePushRules, type PushRuleFeatures, type StoredPushRules } from '../protocol/push-rules';
import { requireRoomVersion, type RoomVersion } from '../protocol/room-versions';
import type { OutboxEntry } from '../runtime/envelope';
import { shardOf, type Family } from '../store/shards';
import { decode } from '../store/codec';
import { PUSH_EVALUATOR_GROUP, pushData, roomData, threadSubscriptionData, userData, type KeySpace } from '../store/keys';
import { isCluster, runScript, subscriberClient, type RedisClient } from '../store/redis';
import { decodeNotification, encodeNotification } from '../sync/notify';
import { OutboxGroupReader } from './outbox-group-reader';
import { readFields, readPositions, sentMember } from '../store/read-receipts';
import { MissingSnapshotError, RoomReader, type RoomReaderLimits } from '../store/room-reader';

/** The state the push evaluator reads through a RoomReader: members at an event (`notJoinedAt`), when it runs behind. */
const PUSH_ROOM_READER_LIMITS: RoomReaderLimits = { stateCacheBytes: 8 * 2 ** 20, recentEventsBytes: 0 };

/** How many notifications `GET /notifications` keeps per user (the oldest go first). */
export const NOTIFICATIONS_KEPT = 1000;
/**
 * A user's notification list is trimmed back to NOTIFICATIONS_KEPT every this many records this
 * process sends for them (and at the first after a start): it holds up to about this many more per
 * worker between trims, which GET /notifications does not serve.
 */
export const TRIM_EVERY = 32;
/** A room's cached members and power levels are reloaded after this long (state resolution of federated events can change state without an event of that key in the outbox). */
const ROOM_CACHE_TTL_MS = 5 * 60_000;
const ROOM_CACHE_MAX = 5_000;
/** Rulesets are read again on the user's wake-ups; this bounds staleness if one is lost. */
const RULES_TTL_MS = 60_000;
const RULES_CACHE_MAX = 100_000;

/** The actions of a plain notification (`.m.rule.message`, `.m.rule.encrypted`), as JSON. */
const PLAIN_ACTIONS = '["notify"]';

/**
 * The details of a notification the evaluator did not store (push-log-1.lua): a plain one
 * (actions `["notify"]`) of an event without a relation to another event, whose details all come
 * from the event and the list: its position, its thread (its own `m.thread` relation), and the
 * time, which is the list's score (`listScore`) in milliseconds.
 */
export function derivedDetails(event: { pos: number; event: JsonObject }, score: number): NotificationDetails {
  return { pos: event.pos, thread: threadRootOf(event.event), actions: ['notify'], highlight: false, ts: Math.floor(score / 1000) };
}

/** The `/notifications` list member of an event. */
export function notificationMember(roomId: string, eventId: string): string {
  return `${roomId}\0${eventId}`;
}

/** What the list keeps per notification (`pushData.notificationData`). */
export interface NotificationDetails {
  pos: number;
  thread: string | null;
  actions: PushEvaluation['actions'];
  highlight: boolean;
  ts: number;
}

interface RoomCache {
  /** The room shard it was loaded from (dropped when this reader lets the shard go: `detach`). */
  shard: number;
  version: RoomVersion;
  /**
   * Timeline position the cached state is current at (loaded, then moved forward by the outbox's
   * state events); outbox entries at or below it are already in it, and for them the members may
   * include some who joined after the event (the record script then checks their membership row).
   */
  statePos: number;
  loadedAt: number;
  members: Map<string, string>;
  joined: number;
  localJoined: Set<string>;
  /** `localJoined` as an array, built when first asked after a change (the members evaluated per event). */
  localList: string[] | null;
  create?: Pdu;
  powerLevels?: Pdu;
  /** Display names of members, loaded when some member's rules need one. */
  names: Map<string, string | null>;
  /** Position of the latest event this reader recorded anything for in the room (0: none since loaded). */
  recordedPos: number;
  /** Per `sentUpTo` member, the position this reader last wrote there since the room was loaded (`noteSent`). */
  sentAt: Map<string, number>;
  /** Per `sentUpTo` member, their latest own event this reader applied, written or not. */
  seenAt: Map<string, number>;
  /** The highest timeline position this reader applied in the room since it was loaded. */
  maxPos: number;
}

/**
 * A user's compiled ruleset, when it was last checked against the stored rules, the stored JSON it
 * was compiled from (null: none stored), and whether it is the defaults unchanged.
 */
interface CachedRuleset {
  rules: CompiledPushRules;
  at: number;
  raw: string | null;
  fitsDefaults: boolean;
}

/** A user's own keys the record script takes (pushData.notifications, highlights, notificationData). */
interface UserKeys {
  notifications: string;
  highlights: string;
  notificationData: string;
}

export class PushEvaluatorReader extends OutboxGroupReader {
  override readonly kinds: readonly string[] = ['room', 'receipt'];
  private readonly rooms = new Map<string, RoomCache>();
  private readonly rules = new Map<string, CachedRuleset>();
  /** Rules compiled once for every user who has them (most are the defaults): see PushRuleInterner. */
  private readonly interner = new PushRuleInterner();
  /** The server-default rules, for evaluating an event once for every member who has them unchanged. */
  private readonly defaults: DefaultRulesTemplate;
  /** Members at an event, for pushes when the cached members are newer than it (`notJoinedAt`). */
  private readonly roomReader: RoomReader;
  /** The users' http pushers (app id, pushkey), cached and dropped with their rulesets. */
  private readonly pushers = new Map<string, { pushers: { appId: string; pushkey: string }[]; at: number }>();
  /** Users' own key names, built once. */
  private readonly userKeys = new Map<string, UserKeys>();
  /** Records sent per user since this process last asked for their list to be trimmed. */
  private readonly sinceTrim = new Map<string, number>();
  private sub: Redis | null = null;
  private halted = false;
  /** Shards attached now (entries read for a shard let go are not applied). */
  private readonly held = new Set<number>();

  constructor(
    redis: RedisClient,
    keys: KeySpace,
    private readonly shardCounts: Record<Family, number>,
    private readonly serverName: string,
    consumer: string,
    log: Logger,
    /** Where notifications for users with pushers go (src/push/queue.ts); none: nothing is pushed. */
    private readonly push?: PushQueue,
    /** Server features that add default rules (MSC4306's thread rules). */
    private readonly features: PushRuleFeatures = {},
  ) {
    super('room', PUSH_EVALUATOR_GROUP, redis, keys, consumer, log);
    this.roomReader = new RoomReader(redis, keys, shardCounts.room, PUSH_ROOM_READER_LIMITS);
    this.defaults = new DefaultRulesTemplate((u) => compilePushRules(mergePushRules(u, null, features), this.interner));
  }

  override attach(shard: number): void {
    if (this.halted) return;
    // Also here (see detach): a load in flight when the shard was let go may have cached a room since.
    if (!this.held.has(shard)) this.dropRooms(shard);
    this.held.add(shard);
    this.listen();
    super.attach(shard);
  }

  override detach(shard: number): void {
    this.held.delete(shard);
    this.dropRooms(shard);
    super.detach(shard);
  }

  /**
   * Forget the cached rooms of a shard this reader lets go: while another worker holds it, their
   * events move their state on without this reader, so a cache kept until the shard came back
   * (within its 5 minutes) would evaluate the next events for the members of before — one who left
   * meanwhile would be pushed them.
   */
  private dropRooms(shard: number): void {
    for (const [roomId, room] of this.rooms) if (room.shard === shard) this.rooms.delete(roomId);
  }

  override async stop(): Promise<void> {
    this.halted = true;
    this.held.clear();
    await super.stop();
    const sub = this.sub;
    this.sub = null;
    if (sub) sub.disconnect();
  }

  /** Drop the cached rulesets of users whose data changed (the /sync wake-up channel). */
  private listen(): void {
    if (this.sub || this.halted) return;
    const sub = subscriberClient(this.redis);
    this.sub = sub;
    const channel = this.keys.syncNotify();
    sub.on('message', (ch: string, msg: string) => {
      if (ch !== channel) return;
      const n = decodeNotification(msg);
      this.rulesChanged(n?.userData ?? n?.users ?? []);
    });
    sub.subscribe(channel).catch((e: Error) => this.log.warn({ err: e }, 'push evaluator: subscribe failed; rulesets expire after a minute instead'));
  }

  /**
   * Some users' data changed (their user actor committed): their rulesets are read again before
   * the next event (and compiled again only if the stored rules differ: most commits are not
   * push rule changes), their pushers too.
   */
  rulesChanged(users: readonly string[]): void {
    for (const u of users) {
      const cached = this.rules.get(u);
      if (cached) cached.at = 0;
      this.pushers.delete(u);
    }
  }

  /** Forget cached room data and rulesets (tests; an operator's reload). */
  clearCaches(): void {
    this.rooms.clear();
    this.rules.clear();
    this.pushers.clear();
    this.userKeys.clear();
    this.sinceTrim.clear();
  }

  private userKey(userId: string, name: string): string {
    return this.keys.shard('user', shardOf(userId, this.shardCounts.user)).data(name);
  }

  private roomKey(shard: number, name: string): string {
    return this.keys.shard('room', shard).data(name);
  }

  protected async apply(shard: number, entries: { id: string; entry: OutboxEntry | null }[]): Promise<void> {
    // Recording is not awaited event by event: a batch's writes go out together (one round trip and
    // one AOF fsync for many instead of one each), Redis applies them while the next events are
    // evaluated, and they are all done before the progress is recorded and the batch acknowledged.
    const batch: Batch = { writes: [], usersInFlight: 0 };
    try {
      for (const { id, entry } of entries) {
        await this.applyEntry(shard, id, entry, batch);
        await settle(batch, MAX_USERS_IN_FLIGHT);
      }
      await settle(batch, 0);
    } catch (e) {
      // The batch is applied again: the senders' positions it meant to write are written again
      // (`noteSent` skips only what it knows is stored).
      for (const room of this.rooms.values()) if (room.shard === shard) room.sentAt.clear();
      throw e;
    }
    const last = entries[entries.length - 1];
    if (last) await this.recordProgress(shard, last.id);
  }

  /**
   * The batch ending at entry `upto` is done (its writes flushed): store and announce how far the
   * shard is evaluated. A failure fails the batch, which is then applied again (idempotent) — /sync
   * waits for this id, so it must not be skipped.
   */
  private async recordProgress(shard: number, upto: string): Promise<void> {
    const stored = await runScript(this.redis, 'pushProgress', [this.roomKey(shard, pushData.evaluatedUpTo())], [upto]);
    // Another holder already got further (this batch was redelivered): it announced that.
    if (stored !== upto) return;
    await this.redis.publish(this.keys.syncNotify(), encodeNotification({ evaluated: [{ shard, upto }] })).catch(() => undefined);
  }

  private async applyEntry(shard: number, id: string, entry: OutboxEntry | null, batch: Batch): Promise<void> {
    // Let go meanwhile: leave the rest pending for the new holder.
    if (!this.held.has(shard)) throw new Error(`push evaluator: room shard ${shard} was let go`);
    const receipt = parseReceiptOutput(entry);
    if (receipt) {
      if (this.isLocal(receipt.user_id)) {
        await this.trimRead(shard, receipt.room_id, receipt.user_id, receipt.thread_id);
        // Reading changes the user's badge: their phones get the new count (as Synapse sends it).
        const [ms, seq] = id.split('-');
        await this.enqueuePush(receipt.user_id, BADGE_MEMBER, listScore(Number(ms), Number(seq)), batch);
      }
      return;
    }
    const out = parseRoomOutput(entry);
    if (!out) return;
    const [ms, seq] = id.split('-');
    await this.applyOutput(shard, out, Number(ms), listScore(Number(ms), Number(seq)), batch);
  }

  private async applyOutput(shard: number, out: RoomOutput, entryMs: number, score: number, batch: Batch): Promise<void> {
    const room = await this.room(shard, out.roomId);
    if (!room) return;
    // The cached members are those of this event's position, unless the state was loaded (or
    // moved, before a batch was redelivered) past it: then a member may have joined after it.
    const membersLater = out.pos <= room.statePos;
    await this.recordJoin(shard, room, out, score, membersLater);
    if (!membersLater) {
      this.moveState(room, out);
      room.statePos = out.pos;
    }
    if (out.redacted) await this.forgetRedacted(shard, room, out.roomId, out.redacted);
    // A local user's own event marks what came before it read (the spec's "Marking notifications
    // as read"), whether or not it notifies anyone: their counts start after it.
    const sender = out.event.sender;
    let sent: SentAt | undefined;
    if (typeof sender === 'string' && this.isLocal(sender)) {
      const thread = await this.threadOf(shard, out.event);
      sent = { member: sentMember(sender, thread), pos: out.pos, thread, lowered: false };
    }
    // An entry below one applied already (pending entries read again after a reconnection come
    // after newer ones): what it records may be older than a sender's skipped write (`noteSent`).
    const behind = out.pos < room.maxPos;
    room.maxPos = Math.max(room.maxPos, out.pos);
    await this.evaluate(shard, room, out, entryMs, score, batch, membersLater, sent, behind);
    if (sent) {
      this.noteSent(shard, room, out.roomId, sent, batch, false);
      // Their counts may have dropped: their phones get the new badge, as after a receipt.
      if (sent.lowered && typeof sender === 'string') await this.enqueuePush(sender, BADGE_MEMBER, score, batch);
    }
  }

  /**
   * How far a local sender has read the room (`pushData.sentUpTo`, push-sent-1.lua): up to their
   * event, in the main timeline (their counts read it as an unthreaded receipt at the event) or in
   * its thread. Written with the batch's other writes, so a /sync that waits for the evaluator
   * (src/sync/push-progress.ts) has it; `force` when the event goes in the room's push log itself,
   * written before it (so no count ever includes the sender's own event). Otherwise only when this
   * reader recorded something in the room since it last wrote the member (or does not know when
   * that was): a bot sending alone in a room costs one write, not one per event.
   */
  private noteSent(shard: number, room: RoomCache, roomId: string, sent: SentAt, batch: Batch, force: boolean): void {
    room.seenAt.set(sent.member, Math.max(room.seenAt.get(sent.member) ?? 0, sent.pos));
    const known = room.sentAt.get(sent.member);
    if (known !== undefined && (known >= sent.pos || (!force && room.recordedPos <= known))) return;
    if (known === undefined || room.recordedPos > known) sent.lowered = true;
    this.writeSent(shard, room, roomId, sent.member, sent.pos, batch);
  }

  private writeSent(shard: number, room: RoomCache, roomId: string, member: string, pos: number, batch: Batch): void {
    room.sentAt.set(member, pos);
    const write = runScript(this.redis, 'pushSent', [this.roomKey(shard, roomData.members(roomId)), this.roomKey(shard, pushData.sentUpTo(roomId))], [member, pos]);
    // Awaited by settle(); a failure fails the batch, which forgets what it wrote (`apply`).
    write.catch(() => undefined);
    batch.writes.push({ done: write, users: 1 });
    batch.usersInFlight += 1;
  }

  /**
   * Before recording an event below one applied already: every sender whose own event at or after
   * it went unwritten (nothing was recorded since their last write then) is written now, so the
   * record does not count for them.
   */
  private catchUpSent(shard: number, room: RoomCache, roomId: string, pos: number, batch: Batch): void {
    for (const [member, seen] of room.seenAt) if (seen >= pos && (room.sentAt.get(member) ?? -1) < seen) this.writeSent(shard, room, roomId, member, seen, batch);
  }

  /** Evaluate the event for every joined local member but the sender; record those it notifies. */
  private async evaluate(shard: number, room: RoomCache, out: RoomOutput, entryMs: number, score: number, batch: Batch, membersLater = false, sent?: SentAt, behind = false): Promise<void> {
    const event = out.event;
    const sender = typeof event.sender === 'string' ? event.sender : '';
    // The joined local members (the room's cached list, not copied: the sender, when one of
    // them, is skipped wherever members are visited).
    let users = (room.localList ??= [...room.localJoined]);
    // An invite notifies the invitee, who is not joined (.m.rule.invite_for_me). It never counts
    // as unread: counts start after the user's latest membership, which is this invite or later.
    let invitee: string | null = null;
    if (event.type === 'm.room.member' && typeof event.state_key === 'string' && isJsonObject(event.content) && event.content.membership === 'invite') {
      if (event.state_key !== sender && this.isLocal(event.state_key) && !room.localJoined.has(event.state_key)) users = [...users, (invitee = event.state_key)];
    }
    if (users.length === (room.localJoined.has(sender) ? 1 : 0)) return;
    const rulesets = await this.rulesets(users);
    let needNames: string[] | null = null;
    let asking: string[] | null = null;
    for (let i = 0; i < users.length; i++) {
      if (users[i] === sender) continue;
      const rules = rulesets[i]!.rules;
      if (rules.usesDisplayName && !room.names.has(users[i]!)) (needNames ??= []).push(users[i]!);
      if (rules.usesThreadSubscriptions) (asking ??= []).push(users[i]!);
    }
    if (needNames) await this.loadNames(shard, out.roomId, room, needNames);

    const lookup = roomLookup(room);
    const senderLevel = userPowerLevel(sender, lookup, room.version);
    const levels = new Map<string, number>();
    const permitted = (key: string) => {
      let level = levels.get(key);
      if (level === undefined) levels.set(key, (level = notificationLevel(key, lookup, room.version)));
      return senderLevel >= level;
    };
    // MSC4306: for an event in a thread, who of the members whose rules ask is subscribed to it.
    const root = threadRootOf(event);
    const subscribed = new Set<string>();
    if (root !== null && asking) {
      const askers = asking;
      const found = await Promise.all(askers.map((u) => this.redis.hget(this.userKey(u, threadSubscriptionData.records(u)), `${out.roomId}\u0000${root}`)));
      found.forEach((json, i) => {
        if (json !== null && (JSON.parse(json) as { subscribed?: boolean }).subscribed === true) subscribed.add(askers[i]!);
      });
    }
    // One context for the event, its user changed per member. Members with the default rules as
    // they are (most) share one plan of the event (DefaultRulesTemplate): the rules that do not
    // depend on the user tested once, then per member only the few that could match them (none
    // for a message without mentions). For the others, the rules that do not depend on the user
    // are tested once too (PushEvaluationContext.shared).
    const ctx: PushEvaluationContext = {
      userId: '',
      roomMemberCount: room.joined,
      displayName: () => room.names.get(ctx.userId) ?? null,
      senderHasNotificationPermission: permitted,
      threadSubscribed: () => subscribed.has(ctx.userId),
      shared: new Map(),
    };
    let plan: DefaultRulesPlan | undefined;
    // Per member, their evaluation (null: not notified); then the outcomes by evaluation object
    // (members with the same outcome mostly share one object: no string per member).
    const results: (PushEvaluation | null)[] = new Array(users.length);
    let anyNotified = false;
    for (let i = 0; i < users.length; i++) {
      const userId = users[i]!;
      if (userId === sender) {
        results[i] = null;
        continue;
      }
      const ruleset = rulesets[i]!;
      if (ruleset.fitsDefaults && plan === undefined) {
        ctx.userId = '';
        plan = this.defaults.plan(event, ctx);
      }
      ctx.userId = userId;
      const result = ruleset.fitsDefaults ? this.defaults.evaluate(plan!, ruleset.rules, event, ctx) : evaluatePushRules(ruleset.rules, event, ctx);
      const notifies = result?.notify === true;
      results[i] = notifies ? result : null;
      if (notifies) anyNotified = true;
    }
    if (!anyNotified) return;

    const thread = sent ? sent.thread : await this.threadOf(shard, event);
    // The common outcome: the one most of the joined members got (not being notified counts as
    // one); it goes in the room's push log once, and only those whose outcome differs get a
    // record of their own (an exception). The sender's counts need none (their own event reads as
    // a receipt: noteSent), only the room's list must not be theirs (`excluded`).
    const keyOfResult = new Map<PushEvaluation | null, string>([[null, 'x']]);
    const outcomes = new Map<string, { n: number; result: PushEvaluation | null }>();
    for (let i = 0; i < users.length; i++) {
      if (users[i] === invitee || users[i] === sender) continue;
      const r = results[i]!;
      let key = keyOfResult.get(r);
      if (key === undefined) keyOfResult.set(r, (key = `${r!.highlight ? 'h' : 'n'}${actionsJson(r!.actions)}`));
      const o = outcomes.get(key);
      if (o) o.n++;
      else outcomes.set(key, { n: 1, result: r });
    }
    let commonKey = 'x';
    let most = 0;
    let commonResult: PushEvaluation | undefined;
    for (const [key, o] of outcomes) if (o.n > most) [commonKey, most, commonResult] = [key, o.n, o.result ?? undefined];
    const common = commonKey[0] as Outcome;
    const exceptions: Exception[] = [];
    for (let i = 0; i < users.length; i++) {
      const userId = users[i]!;
      if (userId === sender) continue;
      const result = results[i] ?? undefined;
      if (userId !== invitee && keyOfResult.get(results[i]!) === commonKey) continue;
      const own: Outcome = result ? (result.highlight ? 'h' : 'n') : 'x';
      exceptions.push({ userId, userShard: shardOf(userId, this.shardCounts.user), own, result, member: userId !== invitee });
    }
    if (common !== 'x' && room.localJoined.has(sender)) exceptions.push({ userId: sender, userShard: shardOf(sender, this.shardCounts.user), own: 'x', member: true, uncounted: true });
    const recorded: LoggedEvent = { roomId: out.roomId, eventId: out.eventId, pos: out.pos, thread, related: relatedEventOf(event) !== null, score, entryMs, common, commonResult };
    if (behind) this.catchUpSent(shard, room, out.roomId, out.pos, batch);
    if (sent && common !== 'x') this.noteSent(shard, room, out.roomId, sent, batch, true);
    room.recordedPos = Math.max(room.recordedPos, out.pos);
    this.record(shard, recorded, exceptions, batch);
    if (this.push) {
      const now = Date.now();
      const pushTo = new Set<string>();
      for (let i = 0; i < users.length; i++) {
        if (!results[i]) continue;
        const pushers = this.cachedPushers(users[i]!, now) ?? (await this.pushersOf(users[i]!));
        if (pushers.length > 0) pushTo.add(users[i]!);
      }
      // The counts and lists judge membership by position themselves; a push is sent as is, so
      // the members it goes to are checked at the event when the cached ones are newer.
      const notJoined = membersLater && pushTo.size > 0 ? await this.notJoinedAt(out, [...pushTo].filter((u) => u !== invitee)) : null;
      for (let i = 0; i < users.length; i++) {
        const result = results[i];
        if (!result) continue;
        const userId = users[i]!;
        if (!pushTo.has(userId) || notJoined?.has(userId)) continue;
        const member = JSON.stringify({ r: out.roomId, e: out.eventId, a: result.actions } satisfies QueuedNotification);
        await this.enqueuePush(userId, member, score, batch);
      }
    }
  }

  /**
   * Which of these members were not joined when the event was sent (in the state before it): the
   * cached members are newer than an event when the room was loaded past it (the reader behind
   * the room: a restart, a move, a reload), and one who joined since must not be pushed what was
   * said before they came. Read in one walk and one MGET per event (only for such events, and only
   * for the members about to be pushed). An event or snapshot no longer stored (a purged room):
   * none of them.
   */
  private async notJoinedAt(out: RoomOutput, users: string[]): Promise<Set<string>> {
    if (users.length === 0) return new Set();
    try {
      const sb = await this.roomReader.stateBeforeOf(out);
      if (typeof sb !== 'number') return new Set(users);
      const ids = await this.roomReader.stateEntriesAt(out.roomId, users.map((u) => ({ id: sb, key: stateKeyOf('m.room.member', u) })));
      const joined = new Set<string>();
      for (const e of await this.roomReader.events(out.roomId, [...new Set(ids.filter((id): id is string => !!id))])) {
        if (isJsonObject(e.event.content) && e.event.content.membership === 'join') joined.add(e.eventId);
      }
      return new Set(users.filter((_u, i) => !ids[i] || !joined.has(ids[i]!)));
    } catch (e) {
      if (e instanceof MissingSnapshotError) return new Set(users);
      throw e;
    }
  }

  /**
   * Queue a notification or a badge update for each of the user's http pushers (none: nothing).
   * Part of the batch: done before the batch is acknowledged, so a batch applied again queues the
   * same members again, which adds nothing (src/push/queue.ts).
   */
  private async enqueuePush(userId: string, member: string, score: number, batch: Batch): Promise<void> {
    if (!this.push) return;
    const pushers = await this.pushersOf(userId);
    for (const p of pushers) {
      const done = this.push.enqueue(userId, p.appId, p.pushkey, member, score);
      done.catch(() => undefined);
      batch.writes.push({ done, users: 1 });
      batch.usersInFlight += 1;
    }
  }

  /** The user's cached http pushers, if cached and fresh (most users have none: no await then). */
  private cachedPushers(userId: string, now = Date.now()): { appId: string; pushkey: string }[] | undefined {
    const cached = this.pushers.get(userId);
    return cached && now - cached.at < RULES_TTL_MS ? cached.pushers : undefined;
  }

  private async pushersOf(userId: string): Promise<{ appId: string; pushkey: string }[]> {
    const cached = this.cachedPushers(userId);
    if (cached) return cached;
    const raw = await this.redis.hvals(this.userKey(userId, userData.pushers(userId)));
    const pushers: { appId: string; pushkey: string }[] = [];
    for (const text of raw) {
      try {
        const p = JSON.parse(text) as { app_id: string; pushkey: string; kind: string };
        if (p.kind === 'http') pushers.push({ appId: p.app_id, pushkey: p.pushkey });
      } catch {
        // A record that does not parse sends nothing.
      }
    }
    if (this.pushers.size >= RULES_CACHE_MAX) this.pushers.delete(this.pushers.keys().next().value!);
    this.pushers.set(userId, { pushers, at: Date.now() });
    return pushers;
  }

  private ownKeys(userId: string, userShard: number): UserKeys {
    let k = this.userKeys.get(userId);
    if (!k) {
      const shardKeys = this.keys.shard('user', userShard);
      k = {
        notifications: shardKeys.data(pushData.notifications(userId)),
        highlights: shardKeys.data(pushData.highlights(userId)),
        notificationData: shardKeys.data(pushData.notificationData(userId)),
      };
      if (this.userKeys.size >= RULES_CACHE_MAX) this.userKeys.delete(this.userKeys.keys().next().value!);
      this.userKeys.set(userId, k);
    }
    return k;
  }

  /** Whether this record should also trim the user's list (every TRIM_EVERY, and the first after a start). */
  private trimDue(userId: string): boolean {
    const n = this.sinceTrim.get(userId);
    if (n !== undefined && n + 1 < TRIM_EVERY) {
      this.sinceTrim.set(userId, n + 1);
      return false;
    }
    if (n === undefined && this.sinceTrim.size >= RULES_CACHE_MAX) this.sinceTrim.delete(this.sinceTrim.keys().next().value!);
    this.sinceTrim.set(userId, 0);
    return true;
  }

  /**
   * Record an event (push-log-1.lua): the room's part (the common outcome in the room's log and
   * list) and the exceptions; one call on a single Redis, on a Cluster one for the room and one per
   * user shard of the exceptions (a call's keys share a hash slot), at most MAX_USERS_PER_CALL
   * users each.
   *
   * Nothing once the room's purge has begun (its members hash is gone): every call on a single
   * Redis, and the room's call on a Cluster, checks the hash itself. A user shard's call cannot
   * (the hash is in the room's slot), so on a Cluster it goes only after an EXISTS of the hash
   * found it: a user's records of the room are then written after purge_begin only by a call whose
   * check came before it, and room-deletion.ts asks the users for `purge_room` only after
   * purge_begin has answered. What remains is a call still on its way when that `purge_room`
   * commits — one round trip plus this process's delays, against the deletion's purge_begin and
   * the user actor's commit — whose records of the room would stay.
   */
  private record(shard: number, event: LoggedEvent, exceptions: Exception[], batch: Batch): void {
    const { roomId, thread, common } = event;
    const roomKeys: string[] = [];
    let roomFlags = 0;
    let commonDetails = '';
    if (common !== 'x') {
      const actions = actionsJson(event.commonResult!.actions);
      const store = event.related || actions !== PLAIN_ACTIONS;
      const trim = this.roomTrimDue(roomId);
      roomFlags = (store ? 1 : 0) | (trim ? 2 : 0);
      if (store) commonDetails = JSON.stringify({ pos: event.pos, thread, actions: event.commonResult!.actions, highlight: common === 'h', ts: event.entryMs } satisfies NotificationDetails);
      roomKeys.push(this.roomKey(shard, thread ? pushData.roomLogThreads(roomId) : pushData.roomLog(roomId)));
      if (common === 'h' && !thread) roomKeys.push(this.roomKey(shard, pushData.roomLogHighlight(roomId)));
      roomKeys.push(this.roomKey(shard, pushData.roomList(roomId)));
      if (common === 'h' || trim) roomKeys.push(this.roomKey(shard, pushData.roomListHighlight(roomId)));
      if (store || trim) roomKeys.push(this.roomKey(shard, pushData.roomListData(roomId)));
    }
    // The room's members first, in the calls of its hash slot: nothing is written once it is purged.
    const byShard = isCluster(this.redis);
    roomKeys.unshift(this.roomKey(shard, roomData.members(roomId)));
    const head = (part: 'room' | 'users', details: string[], guarded = part === 'room') => [
      event.pos,
      event.eventId,
      thread ?? '',
      event.score,
      NOTIFICATIONS_KEPT,
      ROOM_LOG_KEPT,
      roomId,
      part === 'room' ? common.replace('x', '') : '',
      (part === 'room' ? roomFlags : 0) | (guarded ? 4 : 0),
      part === 'room' ? commonDetails : '',
      EXCLUDED_KEPT,
      details.length,
      ...details,
    ];
    const send = (keys: string[], args: (string | number)[], users: number, gate?: Promise<boolean>) => {
      const write = gate === undefined ? runScript(this.redis, 'pushLog', keys, args) : gate.then((alive) => (alive ? runScript(this.redis, 'pushLog', keys, args) : 0));
      // Awaited by settle(); the no-op handler only keeps a failure from counting as unhandled until then.
      write.catch(() => undefined);
      batch.writes.push({ done: write, users: Math.max(users, 1) });
      batch.usersInFlight += Math.max(users, 1);
    };
    if (byShard && common !== 'x') send(roomKeys, head('room', []), 0);
    const places = new Map<number, Exception[]>();
    for (const e of exceptions) {
      const place = byShard ? e.userShard : 0;
      let list = places.get(place);
      if (!list) places.set(place, (list = []));
      list.push(e);
    }
    if (!byShard && places.size === 0 && common !== 'x') send(roomKeys, head('room', []), 0);
    // On a Cluster, the users' calls wait for the room's members hash to be seen (see above).
    const alive = byShard && places.size > 0 ? this.redis.exists(roomKeys[0]!).then((n) => n === 1) : undefined;
    let first = !byShard;
    for (const users of places.values()) {
      for (let i = 0; i < users.length; i += MAX_USERS_PER_CALL) {
        const part = users.slice(i, i + MAX_USERS_PER_CALL);
        // On a single Redis every call takes the room's members (its purge guard); the first the room's part too.
        const keys = first ? [...roomKeys] : byShard ? [] : [roomKeys[0]!];
        const details: string[] = [];
        const byActions = new Map<string, number>();
        const perUser: (string | number)[] = [];
        for (const e of part) {
          let flags = 0;
          // Counts: the exception, for a member (an invitee's counts start after the invite; the
          // sender's after their own event).
          if (e.member && !e.uncounted) {
            flags |= 1;
            keys.push(this.userKey(e.userId, pushData.exceptions(e.userId, roomId)));
          }
          let index = 0;
          if (e.result) {
            const actions = actionsJson(e.result.actions);
            const store = event.related || actions !== PLAIN_ACTIONS;
            if (store) {
              index = byActions.get(actions) ?? 0;
              if (index === 0) {
                details.push(JSON.stringify({ pos: event.pos, thread, actions: e.result.actions, highlight: e.result.highlight, ts: event.entryMs } satisfies NotificationDetails));
                byActions.set(actions, (index = details.length));
              }
            }
            const own = this.ownKeys(e.userId, e.userShard);
            const trim = this.trimDue(e.userId);
            flags |= 2 | (e.result.highlight ? 4 : 0) | (store ? 8 : 0) | (trim ? 16 : 0);
            keys.push(own.notifications);
            if (e.result.highlight || trim) keys.push(own.highlights);
            if (store || trim) keys.push(own.notificationData);
          }
          // The room's list has the event, but not as this member's.
          if (e.member && common !== 'x') {
            flags |= 32;
            keys.push(this.userKey(e.userId, pushData.excluded(e.userId)));
          }
          perUser.push(flags, `${e.own}${common}`, index);
        }
        send(keys, [...head(first ? 'room' : 'users', details, !byShard), ...perUser], part.length, alive);
        first = false;
      }
    }
  }

  /** Whether this record should also trim the room's list (every TRIM_EVERY, and the first after a start). */
  private roomTrimDue(roomId: string): boolean {
    return this.trimDue(`\0${roomId}`);
  }

  /**
   * The thread an event is in: its own `m.thread` relation, or — for an edit, reaction or
   * reference — the thread of the event it relates to (threaded read receipts); null: main timeline.
   */
  private async threadOf(shard: number, event: JsonObject): Promise<string | null> {
    const root = threadRootOf(event);
    if (root) return root;
    const parent = relatedEventOf(event);
    if (!parent) return null;
    const blob = await this.redis.getBuffer(this.roomKey(shard, roomData.event(parent)));
    if (!blob) return null;
    try {
      return threadRootOf(JSON.parse(decode<StoredEvent>(blob).j) as JsonObject);
    } catch {
      return null;
    }
  }

  /**
   * A read receipt moved: drop what it covers from the user's exceptions in the room (and from
   * the unread sets written before the room's push log). The counts already exclude it — they
   * compare with the receipts — this keeps the records small.
   */
  private async trimRead(shard: number, roomId: string, userId: string, threadId: string | undefined): Promise<void> {
    const thread = threadId && threadId !== 'main' ? threadId : null;
    const read = readPositions(await this.redis.hmget(this.roomKey(shard, roomData.receipts(roomId)), ...readFields(userId, thread)), thread);
    const threads = this.userKey(userId, pushData.unreadThreads(userId, roomId));
    const exceptions = this.userKey(userId, pushData.exceptions(userId, roomId));
    const work: Promise<unknown>[] = [];
    if (read.main > 0) {
      work.push(this.redis.zremrangebyscore(this.userKey(userId, pushData.unread(userId, roomId)), '-inf', read.main));
      work.push(this.redis.zremrangebyscore(this.userKey(userId, pushData.unreadHighlight(userId, roomId)), '-inf', read.main));
    }
    if (read.unthreaded > 0) {
      work.push(this.redis.zremrangebyscore(threads, '-inf', read.unthreaded));
      work.push(this.redis.zremrangebyscore(exceptions, '-inf', read.unthreaded));
    }
    await Promise.all(work);
    // Exceptions: '<own><common>\0<thread>\0<event id>'; the main timeline's have an empty thread.
    const covered = async (key: string, upTo: number, prefix: string, at: number) => {
      const found = (await this.redis.zrangebyscore(key, '-inf', upTo)).filter((m) => m.startsWith(prefix, at));
      if (found.length) await this.redis.zrem(key, ...found);
    };
    if (read.main > read.unthreaded) await covered(exceptions, read.main, '\0\0', 2);
    if (thread && read.thread > read.unthreaded) {
      await covered(threads, read.thread, `\0${thread}\0`, 1);
      await covered(exceptions, read.thread, `\0${thread}\0`, 2);
    }
  }

  /**
   * A redacted event no longer counts: remove it from the room's log and list, and from every
   * local member's records (exceptions, own lists: a redaction is rare, so this is per member).
   */
  private async forgetRedacted(shard: number, room: RoomCache, roomId: string, eventId: string): Promise<void> {
    const blob = await this.redis.getBuffer(this.roomKey(shard, roomData.event(eventId)));
    const pos = blob ? decode<StoredEvent>(blob).p : 0;
    if (!pos) return;
    const member = notificationMember(roomId, eventId);
    await Promise.all([
      this.redis.zremrangebyscore(this.roomKey(shard, pushData.roomLog(roomId)), pos, pos),
      this.redis.zremrangebyscore(this.roomKey(shard, pushData.roomLogHighlight(roomId)), pos, pos),
      this.redis.zremrangebyscore(this.roomKey(shard, pushData.roomLogThreads(roomId)), pos, pos),
      this.redis.zrem(this.roomKey(shard, pushData.roomList(roomId)), eventId),
      this.redis.zrem(this.roomKey(shard, pushData.roomListHighlight(roomId)), eventId),
      this.redis.hdel(this.roomKey(shard, pushData.roomListData(roomId)), eventId),
    ]);
    await Promise.all(
      [...room.localJoined].map((u) =>
        Promise.all([
          this.redis.zremrangebyscore(this.userKey(u, pushData.exceptions(u, roomId)), pos, pos),
          this.redis.zremrangebyscore(this.userKey(u, pushData.unread(u, roomId)), pos, pos),
          this.redis.zremrangebyscore(this.userKey(u, pushData.unreadHighlight(u, roomId)), pos, pos),
          this.redis.zremrangebyscore(this.userKey(u, pushData.unreadThreads(u, roomId)), pos, pos),
          this.redis.zrem(this.userKey(u, pushData.notifications(u)), member),
          this.redis.zrem(this.userKey(u, pushData.highlights(u)), member),
          this.redis.hdel(this.userKey(u, pushData.notificationData(u)), member),
        ]),
      ),
    );
  }

  /**
   * Keep the room's record of a local user's joins and leaves (pushData.roomJoins, by list
   * score) up to date with a membership event: GET /notifications lists the room's notifications
   * of the times they were a member. Only changes are appended (a profile change is not a join),
   * only past the last one recorded (a redelivered entry changes nothing), and none while the room
   * has no list, nor once its purge has begun (push-joins-2.lua: its members hash is gone).
   */
  private async recordJoin(shard: number, room: RoomCache, out: RoomOutput, score: number, membersLater: boolean): Promise<void> {
    const e = out.event;
    if (e.type !== 'm.room.member' || typeof e.state_key !== 'string' || !this.isLocal(e.state_key)) return;
    const user = e.state_key;
    const joined = isJsonObject(e.content) && e.content.membership === 'join';
    // Without a record: a member before the push log (joined now, per the cached members as of
    // before this event), or not.
    const was = !membersLater && room.members.get(user) === 'join';
    const keys = [this.roomKey(shard, pushData.roomJoins(out.roomId)), this.roomKey(shard, pushData.roomList(out.roomId)), this.roomKey(shard, roomData.members(out.roomId))];
    await runScript(this.redis, 'pushJoins', keys, [user, score, joined ? '1' : '0', was ? '1' : '0']);
  }

  private isLocal(userId: string): boolean {
    return serverNameOf(userId) === this.serverName;
  }

  // ---- caches ----

  /** The compiled rulesets of some users (in their order), loading the ones not cached in one batch. */
  private async rulesets(users: string[]): Promise<CachedRuleset[]> {
    const now = Date.now();
    const out: CachedRuleset[] = new Array(users.length);
    let missing: number[] | null = null;
    for (let i = 0; i < users.length; i++) {
      const c = this.rules.get(users[i]!);
      if (c && now - c.at < RULES_TTL_MS) out[i] = c;
      else (missing ??= []).push(i);
    }
    if (missing) {
      const raw = await Promise.all(missing.map((i) => this.redis.get(this.userKey(users[i]!, userData.pushRules(users[i]!)))));
      missing.forEach((index, i) => {
        const u = users[index]!;
        const was = this.rules.get(u);
        // Read again, unchanged: the compiled ruleset stands (compiling one is ~1 ms).
        if (was && was.raw === raw[i]) {
          was.at = now;
          out[index] = was;
          return;
        }
        let stored: StoredPushRules | null = null;
        try {
          stored = raw[i] ? (JSON.parse(raw[i]!) as StoredPushRules) : null;
        } catch {
          stored = null;
        }
        const rules = compilePushRules(mergePushRules(u, stored, this.features), this.interner);
        const cached: CachedRuleset = { rules, at: now, raw: raw[i] ?? null, fitsDefaults: this.defaults.fits(rules, u) };
        if (!was && this.rules.size >= RULES_CACHE_MAX) this.rules.delete(this.rules.keys().next().value!);
        this.rules.set(u, cached);
        out[index] = cached;
      });
    }
    return out;
  }

  /** The room's members and power levels: cached, or loaded as of the room's latest position. */
  private async room(shard: number, roomId: string): Promise<RoomCache | null> {
    const cached = this.rooms.get(roomId);
    if (cached && Date.now() - cached.loadedAt < ROOM_CACHE_TTL_MS) return cached;
    // Members, state ids and the latest position in one transaction: a consistent cut.
    const res = await this.redis
      .multi()
      .hgetall(this.roomKey(shard, roomData.members(roomId)))
      .zrevrange(this.roomKey(shard, roomData.timeline(roomId)), 0, 0, 'WITHSCORES')
      .hmget(this.roomKey(shard, roomData.state(roomId)), stateKeyOf('m.room.create', ''), stateKeyOf('m.room.power_levels', ''))
      .exec();
    if (!res || res.some(([err]) => err)) throw new Error(`push evaluator: could not load room ${roomId}`);
    const members = res[0]![1] as Record<string, string>;
    const latest = res[1]![1] as string[];
    const [createId, plId] = res[2]![1] as (string | null)[];
    if (!createId) return null;
    const [createBlob, plBlob] = await Promise.all([this.redis.getBuffer(this.roomKey(shard, roomData.event(createId))), plId ? this.redis.getBuffer(this.roomKey(shard, roomData.event(plId))) : Promise.resolve(null)]);
    if (!createBlob) return null;
    const createRaw = JSON.parse(decode<StoredEvent>(createBlob).j) as JsonObject;
    const content = isJsonObject(createRaw.content) ? createRaw.content : {};
    let version: RoomVersion;
    try {
      version = requireRoomVersion(typeof content.room_version === 'string' ? content.room_version : '1');
    } catch {
      return null;
    }
    const room: RoomCache = {
      shard,
      version,
      statePos: latest.length >= 2 ? Number(latest[1]) : 0,
      loadedAt: Date.now(),
      members: new Map(Object.entries(members)),
      joined: 0,
      localJoined: new Set(),
      localList: null,
      create: toPdu(createRaw, version, createId),
      powerLevels: plBlob && plId ? toPdu(JSON.parse(decode<StoredEvent>(plBlob).j) as JsonObject, version, plId) : undefined,
      names: new Map(),
      recordedPos: 0,
      sentAt: new Map(),
      seenAt: new Map(),
      maxPos: 0,
    };
    for (const [u, m] of room.members) if (m === 'join') this.joinedAdd(room, u);
    if (this.rooms.size >= ROOM_CACHE_MAX) this.rooms.delete(this.rooms.keys().next().value!);
    this.rooms.delete(roomId);
    this.rooms.set(roomId, room);
    return room;
  }

  private joinedAdd(room: RoomCache, userId: string): void {
    room.joined++;
    if (this.isLocal(userId)) {
      room.localJoined.add(userId);
      room.localList = null;
    }
  }

  /** Move the cached state forward by an event the loaded state did not include yet. */
  private moveState(room: RoomCache, out: RoomOutput): void {
    const e = out.event;
    if (typeof e.state_key !== 'string') return;
    if (e.type === 'm.room.member') {
      const membership = isJsonObject(e.content) && typeof e.content.membership === 'string' ? e.content.membership : null;
      const user = e.state_key;
      const was = room.members.get(user);
      if (was === 'join') {
        room.joined--;
        room.localJoined.delete(user);
        room.localList = null;
      }
      if (membership) room.members.set(user, membership);
      else room.members.delete(user);
      if (membership === 'join') this.joinedAdd(room, user);
      room.names.delete(user);
    } else if (e.type === 'm.room.power_levels' && e.state_key === '') {
      room.powerLevels = toPdu(e, room.version, out.eventId);
    }
  }

  /** Display names of members from their current member events. */
  private async loadNames(shard: number, roomId: string, room: RoomCache, users: string[]): Promise<void> {
    const ids = await this.redis.hmget(this.roomKey(shard, roomData.state(roomId)), ...users.map((u) => stateKeyOf('m.room.member', u)));
    const blobs = await Promise.all(ids.map((id) => (id ? this.redis.getBuffer(this.roomKey(shard, roomData.event(id))) : Promise.resolve(null))));
    users.forEach((u, i) => {
      let name: string | null = null;
      const blob = blobs[i];
      if (blob) {
        const content = (JSON.parse(decode<StoredEvent>(blob).j) as JsonObject).content;
        if (isJsonObject(content) && typeof content.displayname === 'string') name = content.displayname;
      }
      room.names.set(u, name);
    });
  }
}

function roomLookup(room: RoomCache): StateLookup {
  return {
    get: (type, key) => {
      if (key !== '') return undefined;
      if (type === 'm.room.create') return room.create;
      if (type === 'm.room.power_levels') return room.powerLevels;
      return undefined;
    },
  };
}

const actionsJsonCache = new WeakMap<PushEvaluation['actions'], string>();
/** An actions list's JSON, kept per list (a compiled rule's list lives as long as the ruleset). */
function actionsJson(actions: PushEvaluation['actions']): string {
  let json = actionsJsonCache.get(actions);
  if (json === undefined) actionsJsonCache.set(actions, (json = JSON.stringify(actions)));
  return json;
}

/** Writes of one batch of outbox entries. */
interface Batch {
  /** Script calls in flight, oldest first, and how many users' records each carries. */
  writes: { done: Promise<unknown>; users: number }[];
  /** How many users' records the writes in flight carry. */
  usersInFlight: number;
}

/** A local sender's event: their `sentUpTo` member (by the event's thread) and its position. */
interface SentAt {
  member: string;
  pos: number;
  thread: string | null;
  /** Set when the write may have lowered the sender's counts (something was recorded in the room since their last). */
  lowered: boolean;
}

/** An outcome of an event for a member: not notified, notified, notified with a highlight. */
type Outcome = 'x' | 'n' | 'h';

/** A user whose outcome differs from the room's common one, or who is notified but not a member (an invitee). */
interface Exception {
  userId: string;
  userShard: number;
  own: Outcome;
  /** Their evaluation when it notifies them. */
  result?: PushEvaluation;
  /** A joined member (their counts take the exception); false: an invitee. */
  member: boolean;
  /** The sender: their counts need no exception (their event reads as a receipt), only `excluded`. */
  uncounted?: boolean;
}

/** What push-log-1.lua records of an event. */
interface LoggedEvent {
  roomId: string;
  eventId: string;
  pos: number;
  thread: string | null;
  related: boolean;
  score: number;
  entryMs: number;
  /** The room's common outcome ('x': none, nothing goes in the room's log) and its evaluation. */
  common: Outcome;
  commonResult?: PushEvaluation;
}

/**
 * How many events a room's push log (and a member's exceptions) keeps: a count does not go past
 * it (a member who has not read the room's last ROOM_LOG_KEPT notifying events sees that many).
 */
export const ROOM_LOG_KEPT = 10_000;
/** How many entries a user's `excluded` set keeps (the latest; older ones refer to room list entries trimmed by then, unless the user sends more than this many in the rooms' kept lists). */
export const EXCLUDED_KEPT = 5_000;

/** Bounds the memory a batch of events in a big room holds (users' records in flight). */
const MAX_USERS_IN_FLIGHT = 5_000;
/** Bounds how long one script call holds Redis (everything else waits meanwhile): exceptions per call. */
const MAX_USERS_PER_CALL = 250;

/** Wait for the oldest writes until at most `limit` users' records are in flight (0: all done). */
async function settle(batch: Batch, limit: number): Promise<void> {
  while (batch.usersInFlight > limit) {
    const write = batch.writes.shift()!;
    batch.usersInFlight -= write.users;
    await write.done;
  }
}

/**
 * The `/notifications` order of an outbox entry: its time, then its sequence number within that
 * millisecond (entries of one shard keep their order; up to 1,000 per millisecond), exact in a double.
 */
export function listScore(ms: number, seq: number): number {
  return ms * 1000 + Math.min(seq, 999);
}

function parseReceiptOutput(entry: OutboxEntry | null): ReceiptOutput | null {
  if (!entry || entry.kind !== 'receipt') return null;
  try {
    const out = decode<ReceiptOutput>(entry.body);
    return out && out.type === 'receipt' && typeof out.room_id === 'string' && typeof out.user_id === 'string' ? out : null;
  } catch {
    return null;
  }
}

function parseRoomOutput(entry: OutboxEntry | null): RoomOutput | null {
  if (!entry || entry.kind !== 'room') return null;
  try {
    const out = decode<RoomOutput>(entry.body);
    if (!out || typeof out.roomId !== 'string' || typeof out.pos !== 'number' || !isJsonObject(out.event) || typeof out.eventId !== 'string') return null;
    return out;
  } catch {
    return null;
  }
}

/**
 * The list-score intervals [from, to) a local user was a member of a room, from its joins record
 * (pushData.roomJoins) and, when there is none, whether they are joined now (then: since before
 * the room's push log).
 */
export function memberIntervals(record: string | null, joinedNow: boolean): [number, number][] {
  if (!record) return joinedNow ? [[0, Number.POSITIVE_INFINITY]] : [];
  const changes = record.split(';').map((c) => {
    const sep = c.indexOf(':');
    return { score: Number(c.slice(0, sep)), joined: c.slice(sep + 1) === 'j' };
  });
  const out: [number, number][] = [];
  // The first change tells what they were before it.
  let from: number | null = changes[0]!.joined ? null : 0;
  for (const c of changes) {
    if (c.joined && from === null) from = c.score;
    else if (!c.joined && from !== null) {
      out.push([from, c.score]);
      from = null;
    }
  }
  if (from !== null) out.push([from, Number.POSITIVE_INFINITY]);
  return out;
}
