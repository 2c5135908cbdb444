/**
 * Device list changes and presence changes for /sync and `/keys/changes`, read from the user's
 * feed (written by src/readers/user-fanout.ts: one entry per change of a user this user shares a
 * room with; ids on Redis's clock like every stream a sync token cuts). Unread counts are not in
 * it: /sync waits for the push evaluator before reading them (src/sync/push-progress.ts).
 *
 * `device_lists.changed` also needs changes of who shares a room, which no device changed for:
 * someone joined one of the user's rooms, or the user joined a room (its members' devices are
 * new to them); `left` lists users who no longer share any room after a leave. /sync derives
 * those from the membership events it reads anyway (`membershipDeviceChanges`); `/keys/changes`
 * gets them from the user's own joins and leaves in the membership index.
 */
import type { JsonObject } from '../protocol/json';
import { shardOf } from '../store/shards';
import { roomData, userData } from '../store/keys';
import { MembershipIndex } from '../readers/membership-index';
import { sharedRoomUsers } from '../readers/user-fanout';
import { offlineRecord, presenceContent, type PresenceRecord } from '../../actors/presence';
import type { ApiContext } from '../api/context';
import { lostSince } from './outbox-cache';

export interface FeedWindow {
  /** Users whose device lists changed. */
  devices: Set<string>;
  /** Users whose presence changed. */
  presence: Set<string>;
  /** The feed no longer holds all of the window (trimmed): device changes may be missing. */
  gap: boolean;
}

export function feedKey(ctx: ApiContext, userId: string): string {
  return ctx.keys.shard('user', shardOf(userId, ctx.shardCounts.user)).data(userData.feed(userId));
}

/** The feed's entries with ids in [sinceMs, cutMs) (since null: all it holds). */
export async function readFeed(ctx: ApiContext, userId: string, sinceMs: number | null, cutMs: number): Promise<FeedWindow> {
  const key = feedKey(ctx, userId);
  const out: FeedWindow = { devices: new Set(), presence: new Set(), gap: false };
  if (sinceMs !== null && sinceMs >= cutMs) return out;
  // Both at once (one round trip): the trimming check only decides what the rows mean.
  const [lost, rows] = await Promise.all([
    sinceMs !== null ? lostSince(ctx.redis, key, sinceMs) : Promise.resolve(false as const),
    ctx.redis.xrange(key, sinceMs === null ? '-' : `${sinceMs}-0`, `(${cutMs}-0`) as Promise<[string, string[]][]>,
  ]);
  return feedWindowOf(lost, rows);
}

/**
 * The feed window from what was read: whether trimming lost part of it ('missing': no feed) and
 * its entries (`readFeed`, or the /sync snapshot script that reads them with the cut).
 */
export function feedWindowOf(lost: boolean | 'missing', rows: [string, string[]][]): FeedWindow {
  const out: FeedWindow = { devices: new Set(), presence: new Set(), gap: false };
  if (lost === 'missing') return out; // no feed yet: nothing changed
  out.gap = lost;
  // An entry holds one or more changes (src/readers/user-fanout.ts): fields `d` and `p`, each the
  // changed users separated by spaces; or, written before that, `k <kind> u <user>` pairs.
  for (const [, f] of rows) {
    let k = '';
    for (let i = 0; i + 1 < f.length; i += 2) {
      const name = f[i];
      if (name === 'd' || name === 'p') {
        const into = name === 'd' ? out.devices : out.presence;
        for (const u of f[i + 1]!.split(' ')) if (u) into.add(u);
      } else if (name === 'k') k = f[i + 1]!;
      else if (name === 'u') {
        const u = f[i + 1]!;
        if (k === 'd') out.devices.add(u);
        else if (k === 'p') out.presence.add(u);
      }
    }
  }
  return out;
}

/** Of `candidates`, those who share no joined room with `userId` (its joined rooms given). */
export async function noLongerSharing(ctx: ApiContext, index: MembershipIndex, userId: string, myJoined: Set<string>, candidates: Iterable<string>): Promise<string[]> {
  const out: string[] = [];
  for (const u of candidates) {
    if (u === userId) continue;
    const theirs = await index.rooms(u, 'join');
    if (!theirs.some((r) => myJoined.has(r.roomId))) out.push(u);
  }
  return out;
}

/** Joined members of a room. */
export async function joinedMembers(ctx: ApiContext, roomId: string): Promise<string[]> {
  const members = await ctx.redis.hgetall(ctx.keys.shard('room', shardOf(roomId, ctx.shardCounts.room)).data(roomData.members(roomId)));
  return Object.entries(members)
    .filter(([, m]) => m === 'join')
    .map(([u]) => u);
}

/**
 * `GET /keys/changes`: users sharing a room whose device lists changed between two tokens (µs
 * cuts), and users who stopped sharing any room. From the feed, plus the rooms this user joined
 * (members are new to them) or left (members may no longer share a room) in the window.
 */
export async function deviceListChanges(ctx: ApiContext, userId: string, fromUs: number, toUs: number): Promise<{ changed: string[]; left: string[] }> {
  const index = new MembershipIndex(ctx.redis, ctx.keys, ctx.shardCounts.user);
  const fromMs = Math.floor(fromUs / 1000);
  const toMs = Math.floor(toUs / 1000);
  const feed = await readFeed(ctx, userId, fromMs, toMs);
  const changed = new Set(feed.devices);
  const rooms = await index.rooms(userId);
  const myJoined = new Set(rooms.filter((r) => r.membership === 'join').map((r) => r.roomId));
  if (feed.gap) for (const u of await sharedRoomUsers(ctx.redis, ctx.keys, ctx.shardCounts, index, userId)) changed.add(u);
  const leftCandidates = new Set<string>();
  for (const r of rooms) {
    if (r.writtenAt < fromUs || r.writtenAt >= toUs) continue;
    if (r.membership === 'join') for (const u of await joinedMembers(ctx, r.roomId)) changed.add(u);
    else if (r.membership === 'leave' || r.membership === 'ban') for (const u of await joinedMembers(ctx, r.roomId)) leftCandidates.add(u);
  }
  const left = await noLongerSharing(ctx, index, userId, myJoined, leftCandidates);
  for (const u of left) changed.delete(u);
  return { changed: [...changed].sort(), left: left.sort() };
}

/** `m.presence` events for users (their current records; offline ones left out when `skipOffline`). */
export async function presenceEvents(ctx: ApiContext, users: Iterable<string>, skipOffline: boolean): Promise<JsonObject[]> {
  const list = [...users];
  const keyOf = (u: string) => ctx.keys.shard('user', shardOf(u, ctx.shardCounts.user)).data(userData.presence(u));
  const raws = await Promise.all(list.map((u) => ctx.redis.get(keyOf(u))));
  const now = Date.now();
  const events: JsonObject[] = [];
  list.forEach((u, i) => {
    let rec: PresenceRecord = offlineRecord();
    try {
      if (raws[i]) rec = JSON.parse(raws[i]!) as PresenceRecord;
    } catch {
      /* unreadable: treated as offline */
    }
    if (skipOffline && rec.presence === 'offline') return;
    events.push({ type: 'm.presence', sender: u, content: presenceContent(rec, now) as JsonObject });
  });
  return events;
}
