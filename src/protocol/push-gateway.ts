/**
 * What a homeserver sends a push gateway (push-gateway API `POST /_matrix/push/v1/notify`), pure:
 * the notification for an event as Synapse 1.163 builds it (the reference the issue names), the
 * count-only "badge" notification sent when a user reads, the tweaks a rule's actions set, and the
 * human-readable room name a notification carries.
 *
 * Synapse's shape, field by field: `id` (deprecated, the event id again), `event_id`, `room_id`,
 * `type`, `sender`, `prio` ("high" for encrypted events and when the actions set `sound` or
 * `highlight`, else "low"), `counts.unread` (the badge), for member state events `membership`
 * and `user_is_target`, `content` (unless the server is told to leave it out), then
 * `sender_display_name` and `room_name` when not empty; `devices` holds the pusher (`app_id`,
 * `pushkey`, `pushkey_ts` in seconds, `data` without `url`, `tweaks` when any). A pusher with
 * `data.format: "event_id_only"` gets `event_id`, `room_id`, `prio` and `counts` only, and no
 * tweaks. `room_alias` is not sent: the room name already falls back to the canonical alias.
 */
import { isJsonObject, type JsonObject, type JsonValue } from './json';

/** The pusher fields a notification carries (`devices[0]`). */
export interface GatewayPusher {
  app_id: string;
  pushkey: string;
  /** ms when the pushkey was last set. */
  ts: number;
  /** The pusher's `data` as the client set it, `url` included (left out of what is sent). */
  data: Record<string, unknown>;
}

/** `set_tweak` actions as a map; a tweak without `value` is `true` (the spec's `highlight`). */
export function tweaksForActions(actions: readonly JsonValue[]): Record<string, JsonValue> {
  const tweaks: Record<string, JsonValue> = {};
  for (const a of actions) {
    if (!isJsonObject(a) || typeof a.set_tweak !== 'string') continue;
    tweaks[a.set_tweak] = a.value === undefined ? true : a.value;
  }
  return tweaks;
}

/** Synapse's priority: "high" only when the push makes a sound or highlights, or may (encrypted). */
export function pushPriority(eventType: string, tweaks: Record<string, JsonValue>): 'high' | 'low' {
  return eventType === 'm.room.encrypted' || !!tweaks.highlight || !!tweaks.sound ? 'high' : 'low';
}

function deviceOf(pusher: GatewayPusher, tweaks?: Record<string, JsonValue>): JsonObject {
  const { url: _url, ...data } = pusher.data;
  const device: JsonObject = { app_id: pusher.app_id, pushkey: pusher.pushkey, pushkey_ts: Math.floor(pusher.ts / 1000), data: data as JsonObject };
  if (tweaks && Object.keys(tweaks).length) device.tweaks = tweaks;
  return device;
}

/** What a notification says of its event and room besides the event itself. */
export interface NotificationContext {
  /** The user's badge: rooms with unread notifications plus pending invites (Synapse's default grouping). */
  badge: number;
  /** The sender's display name in the room ('' or absent: not sent). */
  senderDisplayName?: string | null;
  /** `presentableRoomName` of the room for the notified user (null: not sent). */
  roomName?: string | null;
  /** Whether event content goes to the gateway (Synapse's `push.include_content`, default true). */
  includeContent?: boolean;
}

/** The `/notify` body for an event that notifies `userId` through `pusher`. */
export function eventNotification(event: JsonObject, eventId: string, userId: string, pusher: GatewayPusher, actions: readonly JsonValue[], ctx: NotificationContext): JsonObject {
  const type = typeof event.type === 'string' ? event.type : '';
  let tweaks = tweaksForActions(actions);
  const prio = pushPriority(type, tweaks);
  let n: JsonObject;
  if (pusher.data.format === 'event_id_only') {
    n = { event_id: eventId, room_id: event.room_id ?? '', prio, counts: { unread: ctx.badge } };
    tweaks = {};
  } else {
    n = { id: eventId, event_id: eventId, room_id: event.room_id ?? '', type, sender: event.sender ?? '', prio, counts: { unread: ctx.badge } };
    const content = isJsonObject(event.content) ? event.content : null;
    if (type === 'm.room.member' && typeof event.state_key === 'string') {
      n.membership = content?.membership ?? null;
      n.user_is_target = event.state_key === userId;
    }
    if (ctx.includeContent !== false && content && Object.keys(content).length) n.content = content;
    if (ctx.senderDisplayName) n.sender_display_name = ctx.senderDisplayName;
    if (ctx.roomName) n.room_name = ctx.roomName;
  }
  n.devices = [deviceOf(pusher, tweaks)];
  return { notification: n };
}

/** The count-only notification sent when the user's badge changes (a read receipt). */
export function badgeNotification(pusher: GatewayPusher, badge: number): JsonObject {
  return { notification: { id: '', type: null, sender: '', counts: { unread: badge }, devices: [deviceOf(pusher)] } };
}

/** A member as room naming needs it. */
export interface NamingMember {
  userId: string;
  membership: string;
  displayname?: string | null;
  /** Who sent the member event (an invite's inviter). */
  sender: string;
  /** The member event's `origin_server_ts`: members are named in the order they arrived. */
  ts: number;
}

const ALIAS = /^#[^:]*:.+$/s;

/** A member's name: their display name, else their user id. */
export function memberName(m: { userId: string; displayname?: string | null }): string {
  return m.displayname ? m.displayname : m.userId;
}

/**
 * The name a notification gives a room for `userId` (Synapse's `calculate_room_name` as pushes
 * call it, i.e. without naming a room after its one other member): `m.room.name`, else the
 * canonical alias, else — for an invite — nothing; else from the other joined and invited members:
 * "Empty Room", "A and B", "A and 2 others"; a room with one other member gets no name (the
 * sender's display name already says who it is).
 */
export function presentableRoomName(state: { name?: string | null; canonicalAlias?: string | null; members: readonly NamingMember[] }, userId: string): string | null {
  if (state.name) return state.name;
  if (state.canonicalAlias && ALIAS.test(state.canonicalAlias)) return state.canonicalAlias;
  const me = state.members.find((m) => m.userId === userId);
  if (me?.membership === 'invite') return state.members.some((m) => m.userId === me.sender) ? null : 'Room Invite';
  const present = state.members.filter((m) => m.membership === 'join' || m.membership === 'invite').sort((a, b) => a.ts - b.ts);
  const others = present.filter((m) => m.userId !== userId);
  if (others.length === 0) {
    if (present.length === 1 && present[0]!.sender !== userId) return memberName(present[0]!);
    return 'Empty Room';
  }
  if (others.length === 1) return null;
  if (others.length === 2) return `${memberName(others[0]!)} and ${memberName(others[1]!)}`;
  return `${memberName(others[0]!)} and ${others.length - 1} others`;
}
