/**
 * The push evaluator reader on real Redis, single server and the test setup's 3-master Cluster:
 * one room of 600 local members laid out as the room actor stores it, outbox entries appended as
 * the room actor appends them, and what the reader records read back the way /sync reads it
 * (`unreadCounts`) — for every member: the room's push log written once per event, and only the
 * members whose outcome differs from the room's (the sender, a mention, their own rules) with
 * records of their own (exceptions). Also: the progress it records per room shard
 * (`pushData.evaluatedUpTo`, and the `evaluated` notification), which never moves back, and
 * replays that change nothing. Last, with the real room actor: an evaluator behind a room's purge
 * writes nothing of the room, so the purge leaves none of its keys.
 */
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { Redis } from 'ioredis';
import pino from 'pino';
import type { JsonObject } from '../../src/protocol/json';
import { stateKeyOf } from '../../src/protocol/pdu';
import { NOTIFICATIONS_KEPT, PushEvaluatorReader, TRIM_EVERY, derivedDetails, listScore, memberIntervals, notificationMember } from '../../src/readers/push-evaluator';
import { shardOf } from '../../src/store/shards';
import { encode } from '../../src/store/codec';
import { parseOutboxEntry } from '../../src/runtime/envelope';
import { KeySpace, PUSH_EVALUATOR_GROUP, membershipIndexData, pushData, roomData, userData } from '../../src/store/keys';
import type { StoredPushRules } from '../../src/protocol/push-rules';
import { receiptField, sentMember } from '../../src/store/read-receipts';
import { connectRedis, isCluster, runScript, subscriberClient, type RedisClient } from '../../src/store/redis';
import { decodeNotification, type SyncNotification } from '../../src/sync/notify';
import { unreadCounts, type UnreadCounts } from '../../src/sync/unread-counts';
import { buildCreateEvent } from '../../actors/room';
import { signingKeyFromSeed } from '../../src/protocol/crypto';
import type { PurgeProgress, RoomConfig } from '../../src/rooms/model';
import { MODES, rig, waitFor, type Rig } from '../runtime/harness';
import type { ApiContext } from '../../src/api/context';
import { purgeRoom } from '../../src/rooms/room-deletion';
import { RoomReader } from '../../src/store/room-reader';

const SERVER = 'pe.test';
const MEMBERS = 600;
const shardCounts = { room: 8, user: 16 };
const users = Array.from({ length: MEMBERS }, (_, i) => `@u${i}:${SERVER}`);
const [sender, mentioned, readUpToFirst, joinedLate, fullList] = [users[0]!, users[7]!, users[5]!, users[9]!, users[11]!];

const c = (notification_count: number, highlight_count: number, threads?: Record<string, UnreadCounts>): UnreadCounts =>
  threads ? { notification_count, highlight_count, threads } : { notification_count, highlight_count };

const targets: [string, () => RedisClient][] = [
  ['a single Redis', () => connectRedis({ url: inject('redisUrl') })],
  ['a Redis Cluster', () => connectRedis({ clusterNodes: inject('redisClusterNodes') })],
];

describe.each(targets)('push evaluator reader on %s', (_name, connect) => {
  let redis: RedisClient;
  let sub: Redis;
  let reader: PushEvaluatorReader;
  const heard: SyncNotification[] = [];
  const keys = new KeySpace(`pe${process.pid}${Date.now() % 100000}${Math.random().toString(36).slice(2, 6)}:`);
  const room = `!big:${SERVER}`;
  const shard = shardOf(room, shardCounts.room);
  const roomKeys = keys.shard('room', shard);
  const userKey = (u: string, name: string) => keys.shard('user', shardOf(u, shardCounts.user)).data(name);
  const ctx = () => ({ redis, keys, shardCounts });
  let pos = 2;

  const stored = (raw: JsonObject, p: number) => encode({ j: JSON.stringify(raw), p, d: p, sb: 0, sa: 0 });
  /** Append an event to the room's outbox as the room actor does (the event stored too); its entry id. */
  async function append(event: JsonObject): Promise<{ eventId: string; pos: number; entry: string }> {
    pos++;
    const eventId = `$e${pos}`;
    const raw = { room_id: room, origin_server_ts: 1, ...event, event_id: eventId };
    await redis.set(roomKeys.data(roomData.event(eventId)), stored(raw, pos));
    await redis.zadd(roomKeys.data(roomData.timeline(room)), pos, eventId);
    const entry = (await redis.xadd(roomKeys.outbox, '*', 'a', room, 'k', 'room', 'b', encode({ roomId: room, eventId, pos, event: raw })))!;
    return { eventId, pos, entry };
  }
  const message = (from: string, content: JsonObject = {}): JsonObject => ({ type: 'm.room.message', sender: from, content: { msgtype: 'm.text', body: 'hello', ...content } });

  /** Wake the reader until it has read and acknowledged everything in the outbox. */
  async function idle(): Promise<void> {
    const last = (await redis.xrevrange(roomKeys.outbox, '+', '-', 'COUNT', 1))[0]![0];
    const until = Date.now() + 20_000;
    for (;;) {
      reader.wake(shard);
      const groups = (await redis.xinfo('GROUPS', roomKeys.outbox)) as unknown[][];
      const g = groups.map((a) => ({ name: String(a[1]), pending: Number(a[5]), last: String(a[7]) })).find((x) => x.name === PUSH_EVALUATOR_GROUP);
      if (g && g.pending === 0 && g.last === last) return;
      if (Date.now() > until) throw new Error('push evaluator did not finish');
      await new Promise((r) => setTimeout(r, 20));
    }
  }
  const progress = () => redis.get(roomKeys.data(pushData.evaluatedUpTo()));
  async function eventually<T>(read: () => T | Promise<T>, expected: T): Promise<void> {
    const until = Date.now() + 10_000;
    for (;;) {
      const got = await read();
      try {
        expect(got).toEqual(expected);
        return;
      } catch (e) {
        if (Date.now() > until) throw e;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** Every member's counts (threads apart), and the size of every member's own notification list and exceptions. */
  async function everyone(): Promise<{ counts: Map<string, UnreadCounts>; lists: Map<string, number>; exceptions: Map<string, string[]> }> {
    const counts = new Map<string, UnreadCounts>();
    const lists = new Map<string, number>();
    const exceptions = new Map<string, string[]>();
    for (let i = 0; i < users.length; i += 50) {
      await Promise.all(
        users.slice(i, i + 50).map(async (u) => {
          counts.set(u, (await unreadCounts(ctx(), u, [room], { threads: true })).get(room)!);
          lists.set(u, await redis.zcard(userKey(u, pushData.notifications(u))));
          exceptions.set(u, await redis.zrange(userKey(u, pushData.exceptions(u, room)), 0, -1));
        }),
      );
    }
    return { counts, lists, exceptions };
  }
  /** An exception's member (pushData.exceptions). */
  const exc = (code: string, eventId: string, thread = '') => `${code}\0${thread}\0${eventId}`;

  let first: { eventId: string; pos: number; entry: string };
  let mention: { eventId: string; pos: number; entry: string };
  let reply: { eventId: string; pos: number; entry: string };
  let edit: { eventId: string; pos: number; entry: string };

  beforeAll(async () => {
    redis = connect();
    // The room as the room actor stores it: create and power levels events, members, state, timeline.
    const create: JsonObject = { type: 'm.room.create', state_key: '', sender, room_id: room, content: { room_version: '10', creator: sender } };
    const pl: JsonObject = { type: 'm.room.power_levels', state_key: '', sender, room_id: room, content: { users: { [sender]: 100 } } };
    await redis.set(roomKeys.data(roomData.event('$create')), stored(create, 1));
    await redis.set(roomKeys.data(roomData.event('$pl')), stored(pl, 2));
    await redis.hset(roomKeys.data(roomData.state(room)), stateKeyOf('m.room.create', ''), '$create', stateKeyOf('m.room.power_levels', ''), '$pl');
    await redis.hset(roomKeys.data(roomData.members(room)), ...users.flatMap((u) => [u, 'join']));
    await redis.zadd(roomKeys.data(roomData.timeline(room)), 1, '$create', 2, '$pl');
    // What the membership index reader writes for each member (joined at the start).
    await Promise.all(users.map((u) => redis.hset(userKey(u, membershipIndexData.rooms(u)), room, '1:join')));

    sub = subscriberClient(redis);
    sub.on('message', (_ch: string, msg: string) => {
      const n = decodeNotification(msg);
      if (n) heard.push(n);
    });
    await sub.subscribe(keys.syncNotify());
    reader = new PushEvaluatorReader(redis, keys, shardCounts, SERVER, 'test', pino({ level: 'silent' }));
  });

  afterAll(async () => {
    await reader?.stop();
    sub?.disconnect();
    redis?.disconnect();
  });

  it('records every notified member of a 600-member room, each with their own receipts, membership and list', async () => {
    // Before the events: one member joined later (their membership row), one has a full list.
    await redis.hset(userKey(joinedLate, membershipIndexData.rooms(joinedLate)), room, '4:join');
    const old = Array.from({ length: NOTIFICATIONS_KEPT }, (_, i) => notificationMember('!old:x', `$old${i}`));
    await redis.zadd(userKey(fullList, pushData.notifications(fullList)), ...old.flatMap((m, i) => [i + 1, m]));
    await redis.hset(userKey(fullList, pushData.notificationData(fullList)), ...old.flatMap((m) => [m, '{}']));

    first = await append(message(sender));
    // Read by one member once the first event is in (the receipt actor's doing).
    await redis.hset(roomKeys.data(roomData.receipts(room)), receiptField('m.read', '', readUpToFirst), JSON.stringify({ event_id: first.eventId, ts: 1, pos: first.pos }));
    mention = await append(message(sender, { body: 'look', 'm.mentions': { user_ids: [mentioned] } }));
    reply = await append(message(users[1]!, { body: 'in thread', 'm.relates_to': { rel_type: 'm.thread', event_id: first.eventId, is_falling_back: true, 'm.in_reply_to': { event_id: first.eventId } } }));
    edit = await append(message(sender, { body: '* fixed', 'm.new_content': { msgtype: 'm.text', body: 'fixed' }, 'm.relates_to': { rel_type: 'm.replace', event_id: mention.eventId } }));

    reader.attach(shard);
    await idle();
    const { counts, lists, exceptions } = await everyone();
    const thread = (n: number) => ({ [first.eventId]: c(n, 0) });
    for (const u of users) {
      let expected: UnreadCounts;
      // The sender's own latest event (the edit, in the main timeline) reads as an unthreaded
      // receipt at it: the thread's reply before it is read too (the spec's "Marking notifications as read").
      if (u === sender) expected = c(0, 0);
      else if (u === users[1]) expected = c(2, 0); // sent the reply: read in its thread, not in the main timeline
      else if (u === mentioned) expected = c(2, 1, thread(1));
      else if (u === readUpToFirst) expected = c(1, 0, thread(1));
      else if (u === joinedLate) expected = c(0, 0, thread(1)); // joined at 4: after the first two
      else expected = c(2, 0, thread(1));
      expect(counts.get(u), u).toEqual(expected);
      // Only those whose outcome differs from the room's have records of their own: the mentioned
      // member (a highlight where the room had a plain notification, and their own list entry).
      // The senders need none: their own events read as receipts (pushData.sentUpTo).
      const own = u === mentioned ? [exc('hn', mention.eventId)] : [];
      expect(exceptions.get(u)!.sort(), u).toEqual(own.sort());
      expect(lists.get(u), u).toBe(u === fullList ? NOTIFICATIONS_KEPT : u === mentioned ? 1 : 0);
    }
    // The room's log: the main timeline's two (no highlight: the room's outcome is a plain
    // notification), the thread's reply, and the list GET /notifications merges, in arrival order.
    expect(await redis.zrange(roomKeys.data(pushData.roomLog(room)), 0, -1)).toEqual([first.eventId, mention.eventId]);
    expect(await redis.zcard(roomKeys.data(pushData.roomLogHighlight(room)))).toBe(0);
    expect(await redis.zrange(roomKeys.data(pushData.roomLogThreads(room)), 0, -1)).toEqual([`n\0${first.eventId}\0${reply.eventId}`]);
    expect(await redis.zrange(roomKeys.data(pushData.roomList(room)), 0, -1)).toEqual([first.eventId, mention.eventId, reply.eventId]);
    // The sender and the reply's sender are left out of the room's list; the mentioned member has
    // their own entry instead of the room's.
    const excluded = (u: string) => redis.zrange(userKey(u, pushData.excluded(u)), 0, -1);
    expect((await excluded(sender)).sort()).toEqual([notificationMember(room, first.eventId), notificationMember(room, mention.eventId)].sort());
    expect(await excluded(mentioned)).toEqual([notificationMember(room, mention.eventId)]);
    expect(await excluded(users[2]!)).toEqual([]);
    // The full list was not touched (no record for its owner).
    expect(await redis.zcard(userKey(fullList, pushData.notifications(fullList)))).toBe(NOTIFICATIONS_KEPT);
    // Each member's details are their own: the mentioned member's highlight. A plain
    // notification's are not stored: GET /notifications derives them from the event.
    const details = (u: string, e: string) => redis.hget(userKey(u, pushData.notificationData(u)), notificationMember(room, e)).then((s) => (s === null ? null : JSON.parse(s)));
    expect(await details(mentioned, mention.eventId)).toMatchObject({ pos: mention.pos, thread: null, highlight: true, actions: ['notify', { set_tweak: 'sound', value: 'default' }, { set_tweak: 'highlight' }] });
    expect(await redis.hlen(roomKeys.data(pushData.roomListData(room)))).toBe(0);
    const [, replyScore] = reply.entry.split('-').map(Number) as [number, number];
    const replyMs = Number(reply.entry.split('-')[0]);
    expect(derivedDetails({ pos: reply.pos, event: { content: { 'm.relates_to': { rel_type: 'm.thread', event_id: first.eventId } } } }, listScore(replyMs, replyScore))).toEqual({ pos: reply.pos, thread: first.eventId, actions: ['notify'], highlight: false, ts: replyMs });
    expect(Number(await redis.zscore(roomKeys.data(pushData.roomList(room)), reply.eventId))).toBe(listScore(replyMs, replyScore));
    expect(await redis.zrange(userKey(mentioned, pushData.highlights(mentioned)), 0, -1)).toEqual([notificationMember(room, mention.eventId)]);

    // How far the evaluator got: the last entry, stored and announced.
    expect(await progress()).toBe(edit.entry);
    await eventually(() => heard.some((n) => n.evaluated?.some((e) => e.shard === shard && e.upto === edit.entry)), true);
    // Counts are no longer announced per user, nor written to users' feeds.
    expect(heard.filter((n) => n.users)).toEqual([]);
    expect(await redis.xlen(userKey(users[2]!, userData.feed(users[2]!)))).toBe(0);
  });

  it('records progress for batches that notify no one', async () => {
    const quiet = await append(message(sender, { body: '* again', 'm.new_content': { msgtype: 'm.text', body: 'again' }, 'm.relates_to': { rel_type: 'm.replace', event_id: mention.eventId } }));
    await idle();
    expect(await progress()).toBe(quiet.entry);
    await eventually(() => heard.some((n) => n.evaluated?.some((e) => e.upto === quiet.entry)), true);
  });

  it('replaying the whole outbox changes nothing, and the progress does not move back', async () => {
    const before = await everyone();
    const lastBefore = await progress();
    const dataBefore = await redis.hgetall(userKey(users[2]!, pushData.notificationData(users[2]!)));
    const roomLogs = () => Promise.all([pushData.roomLog(room), pushData.roomLogThreads(room), pushData.roomList(room)].map((k) => redis.zrange(roomKeys.data(k), 0, -1, 'WITHSCORES')));
    const logsBefore = await roomLogs();
    // A later holder's progress already stored.
    const [ms] = lastBefore!.split('-');
    const later = `${Number(ms) + 1}-0`;
    await redis.set(roomKeys.data(pushData.evaluatedUpTo()), later);
    await redis.xgroup('SETID', roomKeys.outbox, PUSH_EVALUATOR_GROUP, '0');
    heard.length = 0;
    await idle();
    expect(await everyone()).toEqual(before);
    expect(await roomLogs()).toEqual(logsBefore);
    expect(await redis.hgetall(userKey(users[2]!, pushData.notificationData(users[2]!)))).toEqual(dataBefore);
    expect(await progress()).toBe(later);
    // Nothing announced: the replayed batch did not get as far as what is stored.
    await new Promise((r) => setTimeout(r, 100));
    expect(heard.filter((n) => n.evaluated)).toEqual([]);
  });

  it("trims a user's full own list back to NOTIFICATIONS_KEPT every TRIM_EVERY records, highlights and details with it", async () => {
    const fullKey = userKey(fullList, pushData.notifications(fullList));
    const hlKey = userKey(fullList, pushData.highlights(fullList));
    const dataKey = userKey(fullList, pushData.notificationData(fullList));
    // An old highlight at the bottom of the list goes with it.
    const oldest = (await redis.zrange(fullKey, 0, 0, 'WITHSCORES')) as [string, string];
    await redis.zadd(hlKey, oldest[1], oldest[0]);
    reader.clearCaches(); // as after a restart: the next record trims
    // Mentions: the member's own records (a highlight, where the room has a plain notification).
    const mentionFull = (body: string) => message(sender, { body, 'm.mentions': { user_ids: [fullList] } });
    const one = await append(mentionFull('one more'));
    await idle();
    expect(await redis.zcard(fullKey)).toBe(NOTIFICATIONS_KEPT);
    expect(await redis.zscore(hlKey, oldest[0])).toBeNull();
    expect(await redis.zrange(hlKey, 0, -1)).toEqual([notificationMember(room, one.eventId)]);
    for (let i = 1; i < TRIM_EVERY; i++) await append(mentionFull(`more ${i}`));
    await idle();
    expect(await redis.zcard(fullKey)).toBe(NOTIFICATIONS_KEPT + TRIM_EVERY - 1);
    const last = await append(mentionFull('the chunk is full'));
    await idle();
    expect(await redis.zcard(fullKey)).toBe(NOTIFICATIONS_KEPT);
    // The details of what the trims took went with it: every entry has details (the old ones
    // theirs, the mentions their highlight), none is left without its entry.
    const listed = new Set(await redis.zrange(fullKey, 0, -1));
    const kept = await redis.hkeys(dataKey);
    expect(kept.filter((m) => !listed.has(m))).toEqual([]);
    expect(kept.length).toBe(NOTIFICATIONS_KEPT);
    expect(await redis.zrange(fullKey, -1, -1)).toEqual([notificationMember(room, last.eventId)]);
    expect(await redis.zcard(hlKey)).toBe(TRIM_EVERY + 1);
    // The mentioned member's highlight is still there (theirs is far from full).
    expect(await redis.zrange(userKey(mentioned, pushData.highlights(mentioned)), 0, -1)).toEqual([notificationMember(room, mention.eventId)]);
  });

  it("trims the room's full list back to NOTIFICATIONS_KEPT, its highlights and details with it", async () => {
    const listKey = roomKeys.data(pushData.roomList(room));
    const hlKey = roomKeys.data(pushData.roomListHighlight(room));
    const dataKey = roomKeys.data(pushData.roomListData(room));
    // Fill the list past the cap with old entries below everything else (scores 1..n), one an old
    // highlight with details, as a room whose list has grown since its last trim.
    const before = await redis.zcard(listKey);
    const seeded = Array.from({ length: NOTIFICATIONS_KEPT - before + 5 }, (_, i) => `$old${i}`);
    await redis.zadd(listKey, ...seeded.flatMap((e, i) => [i + 1, e]));
    await redis.zadd(hlKey, 1, seeded[0]!);
    await redis.hset(dataKey, seeded[0]!, '{"old":true}', seeded[1]!, '{"old":true}');
    reader.clearCaches(); // as after a restart: the room's next record trims
    const next = await append(message(sender, { body: 'the room list is full' }));
    await idle();
    expect(await redis.zcard(listKey)).toBe(NOTIFICATIONS_KEPT);
    // The lowest entries went (the seeded ones, oldest first), with their highlight and details.
    const gone = seeded.slice(0, 6);
    expect(await redis.zmscore(listKey, ...gone)).toEqual(gone.map(() => null));
    expect(await redis.zscore(listKey, seeded[6]!)).not.toBeNull();
    expect(await redis.zscore(hlKey, seeded[0]!)).toBeNull();
    expect(await redis.hmget(dataKey, seeded[0]!, seeded[1]!)).toEqual([null, null]);
    expect(await redis.zrange(listKey, -1, -1)).toEqual([next.eventId]);
    await redis.zrem(listKey, ...seeded.slice(6));
  });

  it('follows joins in the outbox: a member counts from their join, is listed from it, and receipts trim their exceptions', async () => {
    const newcomer = `@new:${SERVER}`;
    const before = await append(message(sender, { body: 'before the join' }));
    const join = await append({ type: 'm.room.member', state_key: newcomer, sender: newcomer, content: { membership: 'join' } });
    // What the membership index reader writes for the join.
    await redis.hset(userKey(newcomer, membershipIndexData.rooms(newcomer)), room, `${join.pos}:join`);
    const after = await append(message(sender, { body: 'after the join' }));
    await idle();
    expect((await unreadCounts(ctx(), newcomer, [room])).get(room)).toEqual(c(1, 0));
    // Listed from the join on: the room's list entries within their membership.
    const record = await redis.hget(roomKeys.data(pushData.roomJoins(room)), newcomer);
    const [ms, seq] = join.entry.split('-').map(Number) as [number, number];
    expect(record).toBe(`${listScore(ms, seq)}:j`);
    const [[from, to]] = memberIntervals(record, true) as [[number, number]];
    const score = async (e: string) => Number(await redis.zscore(roomKeys.data(pushData.roomList(room)), e));
    expect(await score(before.eventId)).toBeLessThan(from);
    expect(await score(after.eventId)).toBeGreaterThan(from);
    expect(to).toBe(Number.POSITIVE_INFINITY);
    // A member without a record was one before the log; a profile change is not a join.
    const profile = await append({ type: 'm.room.member', state_key: users[4]!, sender: users[4]!, content: { membership: 'join', displayname: 'four' } });
    await idle();
    expect(await redis.hget(roomKeys.data(pushData.roomJoins(room)), users[4]!)).toBeNull();
    const leave = await append({ type: 'm.room.member', state_key: users[4]!, sender: users[4]!, content: { membership: 'leave' } });
    await idle();
    const [lms, lseq] = leave.entry.split('-').map(Number) as [number, number];
    expect(memberIntervals(await redis.hget(roomKeys.data(pushData.roomJoins(room)), users[4]!), false)).toEqual([[0, listScore(lms, lseq)]]);
    expect(profile.pos).toBeLessThan(leave.pos);
    // users[3] has read nothing: every message since the first is unread.
    const u3 = users[3]!;
    const count3 = (await unreadCounts(ctx(), u3, [room])).get(room)!.notification_count;
    expect(count3).toBeGreaterThan(1);
    // Their receipt in the middle (the receipt actor stores it, then appends its entry to the outbox).
    await redis.hset(roomKeys.data(roomData.receipts(room)), receiptField('m.read', '', u3), JSON.stringify({ event_id: before.eventId, ts: 1, pos: before.pos }));
    await redis.xadd(roomKeys.outbox, '*', 'a', room, 'k', 'receipt', 'b', encode({ type: 'receipt', room_id: room, user_id: u3, receipt_type: 'm.read', event_id: before.eventId, ts: 1 }));
    await idle();
    expect((await unreadCounts(ctx(), u3, [room])).get(room)).toEqual(c(1, 0));
    // The sender's own messages leave no exceptions: their latest reads as their receipt.
    expect(await redis.zcard(userKey(sender, pushData.exceptions(sender, room)))).toBe(0);
    expect((await unreadCounts(ctx(), sender, [room])).get(room)).toEqual(c(0, 0));
  });

  it("reads a local member's own event as their receipt at it: in the main timeline as an unthreaded one, in a thread in that thread", async () => {
    const [talker, other] = [users[40]!, users[41]!];
    const sentKey = roomKeys.data(pushData.sentUpTo(room));
    const counts = async (u: string) => (await unreadCounts(ctx(), u, [room], { threads: true })).get(room);
    const inThread = (root: { eventId: string }, body: string) => ({ body, 'm.relates_to': { rel_type: 'm.thread', event_id: root.eventId, is_falling_back: true, 'm.in_reply_to': { event_id: root.eventId } } });
    const start = await append(message(other, { body: 'start' }));
    await read(talker, start);
    const m1 = await append(message(other, { body: 'one' }));
    await append(message(other, inThread(m1, 'in the thread')));
    await append(message(other, { body: 'two' }));
    await idle();
    expect(await counts(talker)).toEqual(c(2, 0, { [m1.eventId]: c(1, 0) }));
    // A reply in the thread reads the thread up to it, not the main timeline.
    const own1 = await append(message(talker, inThread(m1, 'me, in the thread')));
    await idle();
    expect(await counts(talker)).toEqual(c(2, 0));
    expect(await redis.zscore(sentKey, sentMember(talker, m1.eventId))).toBe(String(own1.pos));
    // A message in the main timeline reads everything before it, the threads' too.
    await append(message(other, inThread(m1, 'the thread again')));
    await idle();
    expect(await counts(talker)).toEqual(c(2, 0, { [m1.eventId]: c(1, 0) }));
    const own2 = await append(message(talker, { body: 'me' }));
    await idle();
    expect(await counts(talker)).toEqual(c(0, 0));
    expect((await unreadCounts(ctx(), talker, [room])).get(room)).toEqual(c(0, 0));
    // Their messages notify the others as before, and are not in their own records.
    expect(await redis.zcard(userKey(talker, pushData.exceptions(talker, room)))).toBe(0);
    expect(await redis.zrange(userKey(talker, pushData.excluded(talker)), 0, -1)).toEqual(expect.arrayContaining([notificationMember(room, own1.eventId), notificationMember(room, own2.eventId)]));
    expect((await counts(other))?.notification_count).toBeGreaterThanOrEqual(1);
    // An event of theirs that notifies no one, with nothing recorded in the room since their last
    // write: nothing to write (their position already covers everything counted).
    const quiet = await append(message(talker, { body: '* me!', 'm.new_content': { msgtype: 'm.text', body: 'me!' }, 'm.relates_to': { rel_type: 'm.replace', event_id: own2.eventId } }));
    await idle();
    expect(await redis.zscore(sentKey, sentMember(talker, null))).toBe(String(own2.pos));
    expect(quiet.pos).toBeGreaterThan(own2.pos);
    expect(await counts(talker)).toEqual(c(0, 0));
    // Counted again from the next event of another.
    await append(message(other, { body: 'three' }));
    await idle();
    expect(await counts(talker)).toEqual(c(1, 0));
    // An explicit receipt behind it changes nothing, nor does an older event again (a redelivered
    // outbox entry): the position never moves back.
    await read(talker, start);
    await runScript(redis, 'pushSent', [roomKeys.data(roomData.members(room)), sentKey], [sentMember(talker, null), m1.pos]);
    await idle();
    expect(await redis.zscore(sentKey, sentMember(talker, null))).toBe(String(own2.pos));
    expect(await counts(talker)).toEqual(c(1, 0));
    // Nothing is written for a purged room (its members hash is gone).
    expect(await runScript(redis, 'pushSent', [roomKeys.data(roomData.members('!gone:x')), roomKeys.data(pushData.sentUpTo('!gone:x'))], [talker, 5])).toBe(0);
    expect(await redis.exists(roomKeys.data(pushData.sentUpTo('!gone:x')))).toBe(0);
  });

  it("writes a sender's position it skipped when an older entry comes after it (pending entries read again after a reconnection)", async () => {
    const [talker, other] = [users[42]!, users[43]!];
    const sentKey = roomKeys.data(pushData.sentUpTo(room));
    const counts = async (u: string) => (await unreadCounts(ctx(), u, [room], { threads: true })).get(room);
    const start = await append(message(other, { body: 'start' }));
    await read(talker, start);
    const own = await append(message(talker, { body: 'mine' }));
    await idle();
    expect(await redis.zscore(sentKey, sentMember(talker, null))).toBe(String(own.pos));
    // Two events stored, not in the outbox, handed to the reader newest first: the talker's edit
    // (it notifies no one, and nothing was recorded since their last write: skipped), then the
    // other's message before it, which notifies the talker unless their position covers it.
    const stage = (event: JsonObject, seq: number) => {
      pos++;
      const eventId = `$e${pos}`;
      const raw = { room_id: room, origin_server_ts: 1, ...event, event_id: eventId };
      const body = encode({ roomId: room, eventId, pos, event: raw });
      return { pos, eventId, raw, item: { id: `${Date.now()}-${seq}`, entry: parseOutboxEntry([Buffer.from('a'), Buffer.from(room), Buffer.from('k'), Buffer.from('room'), Buffer.from('b'), body]) } };
    };
    const late = stage(message(other, { body: 'late' }), 1);
    const quiet = stage(message(talker, { body: '* mine!', 'm.new_content': { msgtype: 'm.text', body: 'mine!' }, 'm.relates_to': { rel_type: 'm.replace', event_id: own.eventId } }), 2);
    for (const e of [late, quiet]) {
      await redis.set(roomKeys.data(roomData.event(e.eventId)), stored(e.raw, e.pos));
      await redis.zadd(roomKeys.data(roomData.timeline(room)), e.pos, e.eventId);
    }
    await reader.applyHosted(shard, [quiet.item, late.item]);
    expect(await redis.zscore(sentKey, sentMember(talker, null))).toBe(String(quiet.pos));
    // The late message is in the room's log (it notifies the room), yet not the talker's to read.
    expect(await redis.zscore(roomKeys.data(pushData.roomLog(room)), late.eventId)).toBe(String(late.pos));
    expect(await counts(talker)).toEqual(c(0, 0));
  });

  /** A read receipt as the receipt actor stores it and appends its entry to the outbox. */
  async function read(u: string, e: { eventId: string; pos: number }, thread = ''): Promise<void> {
    await redis.hset(roomKeys.data(roomData.receipts(room)), receiptField('m.read', thread, u), JSON.stringify({ event_id: e.eventId, ts: 1, pos: e.pos }));
    await redis.xadd(roomKeys.outbox, '*', 'a', room, 'k', 'receipt', 'b', encode({ type: 'receipt', room_id: room, user_id: u, receipt_type: 'm.read', event_id: e.eventId, ts: 1, ...(thread ? { thread_id: thread } : {}) }));
  }

  it("keeps members' own rules as exceptions, and none for own rules with the room's outcome; receipts in the middle", async () => {
    const [muted, keyword, noMessages, plain] = [users[20]!, users[21]!, users[22]!, users[23]!];
    const rules = (u: string, stored: StoredPushRules) => redis.set(userKey(u, userData.pushRules(u)), JSON.stringify(stored));
    await rules(muted, { rules: { room: [{ rule_id: room, enabled: true, actions: [] }] }, defaults: {} });
    await rules(keyword, { rules: { content: [{ rule_id: 'pizza', enabled: true, pattern: 'pizza', actions: ['notify', { set_tweak: 'highlight' }] }] }, defaults: {} });
    await rules(noMessages, { rules: {}, defaults: { 'underride/.m.rule.message': { enabled: false } } });
    reader.clearCaches();
    // Everything so far read by the four.
    const start = await append(message(sender, { body: '* x', 'm.new_content': { msgtype: 'm.text', body: 'x' }, 'm.relates_to': { rel_type: 'm.replace', event_id: first.eventId } }));
    for (const u of [muted, keyword, noMessages, plain]) await read(u, start);
    const e1 = await append(message(sender, { body: 'hello' }));
    const e2 = await append(message(sender, { body: 'pizza time' }));
    const e3 = await append(message(users[1]!, { body: 'in e1 thread', 'm.relates_to': { rel_type: 'm.thread', event_id: e1.eventId, is_falling_back: true, 'm.in_reply_to': { event_id: e1.eventId } } }));
    await idle();
    const counts = async (u: string) => (await unreadCounts(ctx(), u, [room], { threads: true })).get(room);
    const inThread = (n: number, h = 0) => ({ [e1.eventId]: c(n, h) });
    expect(await counts(muted)).toEqual(c(0, 0));
    expect(await counts(keyword)).toEqual(c(2, 1, inThread(1)));
    expect(await counts(noMessages)).toEqual(c(0, 0));
    expect(await counts(plain)).toEqual(c(2, 0, inThread(1)));
    // Whole-room counts (no thread counts asked for) add the thread's.
    expect((await unreadCounts(ctx(), keyword, [room])).get(room)).toEqual(c(3, 1));
    const exceptionsOf = async (u: string) => (await redis.zrange(userKey(u, pushData.exceptions(u, room)), 0, -1)).sort();
    // The keyword member's rules are not the defaults, yet only the event they changed is theirs.
    expect(await exceptionsOf(keyword)).toEqual([exc('hn', e2.eventId)]);
    expect(await exceptionsOf(muted)).toEqual([exc('xn', e1.eventId), exc('xn', e2.eventId), exc('xn', e3.eventId, e1.eventId)].sort());
    expect(await exceptionsOf(plain)).toEqual([]);
    // A receipt in the middle: the main timeline up to e1 (an unthreaded receipt covers the thread
    // up to it too; the thread's reply is after it).
    await read(keyword, e1);
    await idle();
    expect(await counts(keyword)).toEqual(c(1, 1, inThread(1)));
    expect(await exceptionsOf(keyword)).toEqual([exc('hn', e2.eventId)]);
    // The thread read by its own receipt; then the main timeline by a 'main' one.
    await read(keyword, e3, e1.eventId);
    await idle();
    expect(await counts(keyword)).toEqual(c(1, 1));
    await read(keyword, e2, 'main');
    await idle();
    expect(await counts(keyword)).toEqual(c(0, 0));
    expect(await exceptionsOf(keyword)).toEqual([]);
    // The muted member's receipts trim theirs: the main one and, by the thread's receipt, the thread's.
    await read(muted, e2, 'main');
    await idle();
    expect(await exceptionsOf(muted)).toEqual([exc('xn', e3.eventId, e1.eventId)]);
    await read(muted, e3, e1.eventId);
    await idle();
    expect(await exceptionsOf(muted)).toEqual([]);
    // A member who is not joined now has no count from the room's log.
    await redis.hset(userKey(plain, membershipIndexData.rooms(plain)), room, `${e3.pos + 1}:leave`);
    expect(await counts(plain)).toEqual(c(0, 0));
    await redis.hset(userKey(plain, membershipIndexData.rooms(plain)), room, '1:join');
    for (const u of [muted, keyword, noMessages]) await redis.del(userKey(u, userData.pushRules(u)));
    reader.clearCaches();
  });

  it('reads a ruleset again after the user changed, and takes a change of the stored rules', async () => {
    const [changes, stays] = [users[24]!, users[25]!];
    const start = await append(message(sender, { body: '* y', 'm.new_content': { msgtype: 'm.text', body: 'y' }, 'm.relates_to': { rel_type: 'm.replace', event_id: first.eventId } }));
    for (const u of [changes, stays]) await read(u, start);
    const e1 = await append(message(sender, { body: 'before' }));
    await idle();
    const counts = async (u: string) => (await unreadCounts(ctx(), u, [room])).get(room);
    expect(await counts(changes)).toEqual(c(1, 0));
    expect(await counts(stays)).toEqual(c(1, 0));
    // The first mutes the room; both are named as changed (the second's rules are as they were).
    await redis.set(userKey(changes, userData.pushRules(changes)), JSON.stringify({ rules: { room: [{ rule_id: room, enabled: true, actions: [] }] }, defaults: {} } satisfies StoredPushRules));
    reader.rulesChanged([changes, stays]);
    await append(message(sender, { body: 'after' }));
    await idle();
    expect(await counts(changes)).toEqual(c(1, 0));
    expect(await counts(stays)).toEqual(c(2, 0));
    // Unmuted: counted again from the next event.
    await redis.del(userKey(changes, userData.pushRules(changes)));
    reader.rulesChanged([changes]);
    await append(message(sender, { body: 'again' }));
    await idle();
    expect(await counts(changes)).toEqual(c(2, 0));
    expect(await counts(stays)).toEqual(c(3, 0));
    expect(e1.pos).toBeGreaterThan(start.pos);
  });

  it('still counts the unread sets written before the room logs (a rolling upgrade), and receipts trim them', async () => {
    const u = users[24]!;
    const last = await append(message(sender, { body: '* y', 'm.new_content': { msgtype: 'm.text', body: 'y' }, 'm.relates_to': { rel_type: 'm.replace', event_id: first.eventId } }));
    await read(u, last);
    await idle();
    expect((await unreadCounts(ctx(), u, [room], { threads: true })).get(room)).toEqual(c(0, 0));
    // As push-record-3.lua left them: two main-timeline events after the receipt, one a highlight,
    // and a thread's (at the positions of three events that notify no one now).
    const quiet = () => append(message(sender, { body: '* z', 'm.new_content': { msgtype: 'm.text', body: 'z' }, 'm.relates_to': { rel_type: 'm.replace', event_id: first.eventId } }));
    const [o1, o2, o3] = [await quiet(), await quiet(), await quiet()];
    await redis.zadd(userKey(u, pushData.unread(u, room)), o1.pos, '$old1', o2.pos, '$old2');
    await redis.zadd(userKey(u, pushData.unreadHighlight(u, room)), o2.pos, '$old2');
    await redis.zadd(userKey(u, pushData.unreadThreads(u, room)), o3.pos, `n\0$root\0$old3`);
    const next = await append(message(sender, { body: 'new' }));
    await idle();
    expect((await unreadCounts(ctx(), u, [room], { threads: true })).get(room)).toEqual(c(3, 1, { $root: c(1, 0) }));
    await read(u, next);
    await idle();
    expect((await unreadCounts(ctx(), u, [room], { threads: true })).get(room)).toEqual(c(0, 0));
    expect(await redis.zcard(userKey(u, pushData.unread(u, room)))).toBe(0);
    expect(await redis.zcard(userKey(u, pushData.unreadThreads(u, room)))).toBe(0);
  });

  it('compares stream ids as numbers, ms then sequence', async () => {
    const key = roomKeys.data('pushev:test');
    const advance = (id: string) => runScript(redis, 'pushProgress', [key], [id]);
    expect(await advance('999-5')).toBe('999-5');
    expect(await advance('1000-0')).toBe('1000-0'); // longer ms, though '1000' < '999' as text
    expect(await advance('999-9')).toBe('1000-0');
    expect(await advance('1000-9')).toBe('1000-9');
    expect(await advance('1000-10')).toBe('1000-10'); // seq 10 > 9, though '10' < '9' as text
    expect(await advance('1000-10')).toBe('1000-10');
    expect(await advance('1000-2')).toBe('1000-10');
    await expect(advance('nonsense')).rejects.toThrow(/not a stream id/);
    expect(await redis.get(key)).toBe('1000-10');
    expect(isCluster(redis)).toBe(_name.includes('Cluster'));
  });
});

/**
 * An evaluator running behind a room's purge (actors/room.ts purge_begin, purge): the room's actor
 * and the evaluator on one store. The purge deletes the room's keys a SCAN page per batch; a key
 * written after the scan has passed its place is not found, so it stays for good. What makes that
 * impossible is that nothing of the room is written once the purge has begun: purge_begin deletes
 * the room's members hash, the guard every evaluator script checks. (Until it did, the hash went in
 * whichever batch met it, and the joins record's guard was the room's notification list, a key
 * the scan deletes the same way: in between, the evaluator still wrote the room's logs, list,
 * senders' positions and joins records.)
 */
describe.each(MODES)('push evaluator behind a room purge, on %s Redis', (mode) => {
  const roomConfig: RoomConfig = { serverName: SERVER, signingKey: signingKeyFromSeed('ed25519:t', new Uint8Array(32).fill(9)) };
  let r: Rig | undefined;
  let reader: PushEvaluatorReader | undefined;

  afterAll(async () => {
    await reader?.stop();
    await r?.close();
  });

  it("writes nothing of the room once the purge has begun, and the purge leaves none of the room's keys", async () => {
    const t = (r = await rig(mode, { room: roomConfig }));
    await t.startWorker('w1');
    const actors = await t.client();
    const [alice, bob] = [`@alice:${SERVER}`, `@bob:${SERVER}`];
    const { roomId, event } = buildCreateEvent(roomConfig, { roomVersion: '10', creator: alice, roomLocalpart: 'purged', ts: Date.now() });
    const send = (ev: JsonObject) => actors.ask('room', 'room', roomId, { op: 'send', event: ev });
    const member = (user: string, membership: string) => send({ type: 'm.room.member', sender: user, state_key: user, content: { membership } });
    const say = (body: string) => send({ type: 'm.room.message', sender: alice, content: { msgtype: 'm.text', body } });
    await actors.ask('room', 'room', roomId, { op: 'create', event });
    await member(alice, 'join');
    await send({ type: 'm.room.join_rules', sender: alice, state_key: '', content: { join_rule: 'public' } });
    await member(bob, 'join');
    await say('before the purge');

    const shard = shardOf(roomId, t.shardCounts.room);
    const shardKeys = t.keys.shard('room', shard);
    const outbox = shardKeys.outbox;
    const prefix = shardKeys.data(`room:${roomId}:`);
    /** Every key of the room on its shard (`room:<id>:…`), with its DUMP. */
    const roomKeys = async (): Promise<Map<string, string>> => {
      const found = new Map<string, string>();
      for (const node of isCluster(t.redis) ? t.redis.nodes('master') : [t.redis]) {
        let cursor = '0';
        do {
          const [next, page] = await node.scan(cursor, 'MATCH', `${prefix.replace(/[*?[\]\\]/g, '\\$&')}*`, 'COUNT', 1000);
          for (const key of page) found.set(key, (await node.dumpBuffer(key))?.toString('hex') ?? '');
          cursor = next;
        } while (cursor !== '0');
      }
      return found;
    };
    /** Wake the evaluator until it has read and acknowledged everything in the room's outbox. */
    const caughtUp = async (): Promise<void> => {
      const last = (await t.redis.xrevrange(outbox, '+', '-', 'COUNT', 1))[0]![0];
      await waitFor('the evaluator to catch up', async () => {
        reader!.wake(shard);
        const groups = (await t.redis.xinfo('GROUPS', outbox)) as unknown[][];
        const g = groups.map((a) => ({ name: String(a[1]), pending: Number(a[5]), last: String(a[7]) })).find((x) => x.name === PUSH_EVALUATOR_GROUP);
        return g !== undefined && g.pending === 0 && g.last === last;
      });
    };

    reader = new PushEvaluatorReader(t.redis, t.keys, t.shardCounts, SERVER, 'test', pino({ level: 'silent' }));
    reader.attach(shard);
    await caughtUp();
    // What the evaluator keeps of the room: the message notified bob (the room's log and list),
    // alice's own event is her position.
    expect(await t.redis.zrange(shardKeys.data(pushData.roomList(roomId)), 0, -1)).toHaveLength(1);
    expect(await t.redis.zscore(shardKeys.data(pushData.sentUpTo(roomId)), sentMember(alice, null))).not.toBeNull();

    // The deletion's last events (room-deletion.ts: another message, the local users leave), which
    // the evaluator has not read when the purge begins.
    await say('as the purge comes');
    await member(bob, 'leave');
    await actors.ask('room', 'room', roomId, { op: 'purge_begin' });
    const atBegin = await roomKeys();
    expect([...atBegin.keys()]).toContain(shardKeys.data(pushData.roomList(roomId)));

    // The evaluator catches up: the message would go in the room's log and list, alice's position
    // would move, bob's leave would start his joins record (the room has a list). None of it.
    await caughtUp();
    expect(await roomKeys()).toEqual(atBegin);
    expect(await t.redis.exists(shardKeys.data(pushData.roomJoins(roomId)))).toBe(0);
    expect([...atBegin.keys()]).not.toContain(shardKeys.data(roomData.members(roomId)));

    // A purge begun already is begun again harmlessly (a retried deletion job).
    await actors.ask('room', 'room', roomId, { op: 'purge_begin' });
    for (let cursor = '0'; ; ) {
      const batch = await actors.ask<PurgeProgress>('room', 'room', roomId, { op: 'purge', cursor }, { timeoutMs: 60_000 });
      if (batch.done) break;
      cursor = batch.cursor;
    }
    expect([...(await roomKeys()).keys()]).toEqual([]);
  });
});

/**
 * What the evaluator keeps for a room's local users (their exceptions, their own notification
 * entries, their `excluded` entries, on the users' shards) through a deletion's purge
 * (src/rooms/room-deletion.ts purgeRoom: purge_begin, the users' purge_room, the batches), with an
 * evaluator behind it catching up at the two worst moments: just before purge_begin, and (reading
 * the room's outbox again, as after a handoff) after the users' purge_room, before the first
 * batch. Nothing of the room may be left in their keys. It was: the users were asked first, so what
 * the evaluator wrote before purge_begin stayed; and on a Cluster a user's records are written on
 * the user's shard, out of reach of the members hash the room's scripts check, so an evaluator
 * behind purge_begin still wrote them (it now checks the hash before sending them).
 */
describe.each(MODES)("a room purge and the evaluator behind it, on %s Redis: the users' records", (mode) => {
  const roomConfig: RoomConfig = { serverName: SERVER, signingKey: signingKeyFromSeed('ed25519:t', new Uint8Array(32).fill(5)) };
  let r: Rig | undefined;
  let reader: PushEvaluatorReader | undefined;

  afterAll(async () => {
    await reader?.stop();
    await r?.close();
  });

  it("leaves nothing of the room in its local users' keys", async () => {
    const t = (r = await rig(mode, { room: roomConfig }));
    await t.startWorker('w1');
    const actors = await t.client();
    const [alice, bob, carol, dave] = ['alice', 'bob', 'carol', 'dave'].map((n) => `@${n}:${SERVER}`) as [string, string, string, string];
    for (const u of [alice, bob, carol, dave]) await actors.ask('user', 'user', u, { op: 'register', passwordHash: null });
    const { roomId, event } = buildCreateEvent(roomConfig, { roomVersion: '10', creator: alice, roomLocalpart: 'kept', ts: Date.now() });
    const send = (ev: JsonObject) => actors.ask('room', 'room', roomId, { op: 'send', event: ev });
    await actors.ask('room', 'room', roomId, { op: 'create', event });
    await send({ type: 'm.room.member', sender: alice, state_key: alice, content: { membership: 'join' } });
    await send({ type: 'm.room.join_rules', sender: alice, state_key: '', content: { join_rule: 'public' } });
    for (const u of [bob, carol, dave]) await send({ type: 'm.room.member', sender: u, state_key: u, content: { membership: 'join' } });
    // Notifies carol and dave (the room's common outcome), highlights bob (his exception, his own
    // list entry), and is in the room's list but not as alice's, its sender (her `excluded`).
    await send({ type: 'm.room.message', sender: alice, content: { msgtype: 'm.text', body: 'bob, the harbour', 'm.mentions': { user_ids: [bob] } } });

    const shard = shardOf(roomId, t.shardCounts.room);
    const outbox = t.keys.shard('room', shard).outbox;
    /** What the user has of the room in their keys: per-room keys, and members of their lists that are the room's. */
    const recordsOf = async (u: string): Promise<string[]> => {
      const key = (name: string) => t.keys.shard('user', shardOf(u, t.shardCounts.user)).data(name);
      const own = `${roomId}\0`;
      const found: string[] = [];
      for (const name of [pushData.exceptions(u, roomId), pushData.unread(u, roomId), pushData.unreadHighlight(u, roomId), pushData.unreadThreads(u, roomId)]) if (await t.redis.exists(key(name))) found.push(name);
      for (const name of [pushData.notifications(u), pushData.highlights(u), pushData.excluded(u)]) for (const m of await t.redis.zrange(key(name), 0, -1)) if (m.startsWith(own)) found.push(`${name} ${m}`);
      for (const f of await t.redis.hkeys(key(pushData.notificationData(u)))) if (f.startsWith(own)) found.push(`${pushData.notificationData(u)} ${f}`);
      return found;
    };
    const everyone = async () => Object.fromEntries(await Promise.all([alice, bob, carol, dave].map(async (u) => [u, await recordsOf(u)] as const)));
    // Attached only when the deletion is about to ask for purge_begin: it reads nothing before.
    reader = new PushEvaluatorReader(t.redis, t.keys, t.shardCounts, SERVER, 'test', pino({ level: 'silent' }));
    const caughtUp = async (): Promise<void> => {
      const last = (await t.redis.xrevrange(outbox, '+', '-', 'COUNT', 1))[0]![0];
      await waitFor('the evaluator to catch up', async () => {
        reader!.wake(shard);
        const groups = (await t.redis.xinfo('GROUPS', outbox)) as unknown[][];
        const g = groups.map((a) => ({ name: String(a[1]), pending: Number(a[5]), last: String(a[7]) })).find((x) => x.name === PUSH_EVALUATOR_GROUP);
        return g !== undefined && g.pending === 0 && g.last === last;
      });
    };

    // The deletion's purge, the evaluator catching up just before purge_begin, and after the
    // users' purge_room (the room's whole outbox read again).
    let beforeBegin: Record<string, string[]> = {};
    let beforeBatches: Record<string, string[]> | undefined;
    const asked: string[] = [];
    /** Asks of the users' other actors (thread subscriptions, key backup): purge_room too. */
    const askedOthers: string[] = [];
    const spy = {
      async ask(family: string, kind: string, id: string, body: { op: string }, opts?: object) {
        if (kind === 'user' || kind === 'room') asked.push(`${body.op} ${id}`);
        else askedOthers.push(`${kind} ${body.op} ${id}`);
        if (body.op === 'purge_begin') {
          reader!.attach(shard);
          await caughtUp();
          beforeBegin = await everyone();
        }
        if (body.op === 'purge' && beforeBatches === undefined) {
          await t.redis.xgroup('SETID', outbox, PUSH_EVALUATOR_GROUP, '0');
          await caughtUp();
          beforeBatches = await everyone();
        }
        return actors.ask(family as 'room', kind, id, body, opts);
      },
    };
    const ctx = { config: { serverName: SERVER }, redis: t.redis, keys: t.keys, shardCounts: t.shardCounts, actors: spy, rooms: new RoomReader(t.redis, t.keys, t.shardCounts.room), signingKey: roomConfig.signingKey, log: pino({ level: 'silent' }) } as unknown as ApiContext;
    await purgeRoom(ctx, roomId);

    // Something to delete: the evaluator had written them their records before the purge began.
    expect(beforeBegin[bob]).toEqual(expect.arrayContaining([pushData.exceptions(bob, roomId), expect.stringMatching(/:notifs /), expect.stringMatching(/:notifs:hl /)]));
    expect(beforeBegin[alice]).toEqual([expect.stringMatching(/:notifs:x /)]);
    const none = { [alice]: [], [bob]: [], [carol]: [], [dave]: [] };
    expect(beforeBatches).toEqual(none);
    expect(await everyone()).toEqual(none);
    // The users were asked after purge_begin (the four of them), before the first batch.
    expect(asked[0]).toBe(`purge_begin ${roomId}`);
    expect(asked.slice(1, 5).sort()).toEqual([alice, bob, carol, dave].map((u) => `purge_room ${u}`));
    expect(asked[5]).toBe(`purge ${roomId}`);
    expect(askedOthers.sort()).toEqual(['keybackup', 'thread-subscriptions'].flatMap((kind) => [alice, bob, carol, dave].map((u) => `${kind} purge_room ${u}`)));
  });
});
