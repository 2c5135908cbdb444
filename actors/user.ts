/**
 * UserActor: the single writer of one local account (actor id = user id): its password hash,
 * devices and their tokens, account data, filters and profile.
 *
 * Anything slow or random happens before the message is sent: the front hashes passwords
 * (scrypt), verifies them against the stored hash, and makes up device ids and tokens. The
 * message carries only the sha256 of each token, so no usable token ever sits in an inbox stream
 * or a stored reply; decide stays pure and a re-delivered message decides the same way.
 *
 * What fronts read without asking (all written here through `writes`, keys in `userData`):
 * - `tok:<hash>`: a TokenRecord per access token and per refresh token (src/api/client/auth.ts);
 * - the account record (password hash, deactivated) for login and user-interactive auth;
 * - devices, account data, filters and profile, each a hash of JSON values;
 * - the set of rooms the user has forgotten (`membershipIndexData.forgotten`): set here by
 *   `forget`; the membership index clears an entry when the user joins, is invited or knocks again.
 * The state blob is small: the account fields and, per device, the hashes of its current tokens.
 */
import { ActorRejection, type ActorKind, type ActorMessage, type Decision, type StoreWrite } from '../src/runtime/actor';
import type { Family } from '../src/store/shards';
import { encode } from '../src/store/codec';
import { membershipIndexData, pushData, recencyIndexData, userData } from '../src/store/keys';
import {
  PushRuleError,
  deletePushRule,
  emptyStoredPushRules,
  putPushRule,
  setPushRuleActions,
  setPushRuleEnabled,
  type PushAction,
  type PushRuleKind,
  type StoredPushRule,
  type StoredPushRules,
} from '../src/protocol/push-rules';

export interface DeviceState {
  /** sha256 of the device's current access token (null: none). */
  at: string | null;
  /** sha256 of its current refresh token (null: it was not issued one). */
  rt: string | null;
  name?: string;
  /** Last login / refresh (ms) and from where. */
  seen: number;
  /** When the access token expires (ms), for a refreshable one (kept to rewrite its record on lock). */
  exp?: number;
  ip?: string;
}

export interface UserState {
  userId: string;
  registered: boolean;
  deactivated: boolean;
  passwordHash: string | null;
  createdAt: number;
  /** A server admin (only shared-secret admin registration makes one). */
  admin?: boolean;
  /** Deactivated with `erase: true` (GDPR erasure asked for). */
  erased?: boolean;
  /** Locked by an admin (Synapse's admin API `locked`): the account stays, its logins are refused. */
  locked?: boolean;
  /**
   * Suspended by an admin (spec v1.18 `/admin/suspend`, Synapse's `/suspend`): the user may read,
   * leave and redact their own events, not send, join, invite or change their profile.
   */
  suspended?: boolean;
  devices: Record<string, DeviceState>;
  nextFilterId: number;
  /**
   * Room tags (`m.tag` room account data), room id → tag → metadata JSON text. Kept here so
   * adding and removing single tags never loses a concurrent change to another tag: the actor
   * writes the whole `m.tag` content from this map. Absent in states saved before tags existed.
   */
  tags?: Record<string, Record<string, string>>;
  /**
   * The user's own push rules and their changes to server-default ones (the `pushRules` record
   * fronts read; they merge it with the defaults). Kept here so concurrent changes serialize.
   * Absent: none.
   */
  pushRules?: StoredPushRules;
  /**
   * The user's pushers (pusher.yaml), keyed by `pusherKey(app_id, pushkey)`; what fronts and the
   * push sender read is the `userData.pushers` hash written from this. Absent: none.
   */
  pushers?: Record<string, StoredPusher>;
}

/**
 * One pusher as `/pushers` lists it, plus what delivery needs: the device that set it (the pusher
 * goes when the device does, as in Synapse) and when its pushkey was last set (`pushkey_ts`).
 */
export interface StoredPusher {
  app_id: string;
  pushkey: string;
  kind: string;
  app_display_name: string;
  device_display_name: string;
  profile_tag: string;
  lang: string;
  /** As the client gave it (for `http`, with `url`; delivery forwards everything but `url`). */
  data: Record<string, unknown>;
  device_id: string | null;
  /** ms; the push payload's `pushkey_ts` is this in seconds. */
  ts: number;
}

/** At most this many pushers per user (a bound on what one account can make the server push to). */
export const MAX_PUSHERS = 100;

/** The key of a pusher among a user's: its app id and pushkey, which together name it. */
export function pusherKey(appId: string, pushkey: string): string {
  return `${appId}\u0000${pushkey}`;
}

/** A new device session (or new tokens for an existing device). */
export interface NewSession {
  deviceId: string;
  /** Display name for a device that does not exist yet. */
  displayName?: string;
  accessHash: string;
  /** With a refresh token, the access token expires after `expiresInMs`. */
  refreshHash?: string;
  expiresInMs?: number;
  ip?: string;
}

export type UserMessage =
  | { op: 'register'; passwordHash: string | null; displayname?: string; session?: NewSession; admin?: boolean }
  /** `verifiedHash`: the stored hash the front checked the password against. */
  /** `appservice`: an application service logs its user in (its as_token was checked; no password). */
  | { op: 'login'; verifiedHash: string; session: NewSession }
  | { op: 'login'; appservice: string; session: NewSession }
  | { op: 'refresh'; refreshHash: string; accessHash: string; newRefreshHash: string; expiresInMs: number }
  | { op: 'logout'; accessHash: string }
  | { op: 'logout_all' }
  | { op: 'set_password'; passwordHash: string; logoutDevices: boolean; keepDevice?: string }
  /** `erase`: the user asked for their data to be erased as well (the spec's `erase`). */
  | { op: 'deactivate'; erase?: boolean }
  | { op: 'update_device'; deviceId: string; displayName: string }
  | { op: 'delete_devices'; deviceIds: string[] }
  /** `json`: the content as JSON text (stored and served as is). */
  | { op: 'set_account_data'; roomId?: string; type: string; json: string }
  /**
   * MSC3391: delete account data. What is stored becomes `{}` (a tombstone): an incremental /sync
   * reports the deletion as the type with empty content, as Synapse does; GET and initial syncs
   * treat `{}` as absent. Deleting what is absent (or already deleted) changes nothing.
   */
  | { op: 'delete_account_data'; roomId?: string; type: string }
  | { op: 'create_filter'; json: string }
  /** Add or replace one room tag; `json`: its metadata object as JSON text. */
  | { op: 'set_room_tag'; roomId: string; tag: string; json: string }
  | { op: 'delete_room_tag'; roomId: string; tag: string }
  | { op: 'set_profile'; field: 'displayname' | 'avatar_url'; value: string | null }
  /**
   * A custom profile field (`m.tz` or a namespaced key; profile.yaml since v1.16): `json` is the
   * value as JSON text, null deletes the field. The whole profile must stay under 64 KiB.
   */
  | { op: 'set_profile_field'; key: string; json: string | null }
  /** Push rules (the front validated the rule; placement and existence are checked here). */
  | { op: 'put_push_rule'; kind: PushRuleKind; rule: Omit<StoredPushRule, 'enabled'>; before?: string; after?: string }
  | { op: 'delete_push_rule'; kind: PushRuleKind; ruleId: string }
  | { op: 'set_push_rule_enabled'; kind: PushRuleKind; ruleId: string; enabled: boolean }
  | { op: 'set_push_rule_actions'; kind: PushRuleKind; ruleId: string; actions: PushAction[] }
  /** Forget a room the user has left (the front checks that they have). */
  | { op: 'forget'; roomId: string }
  /**
   * A room an admin purged (src/rooms/room-deletion.ts): what this user kept for it goes — its room
   * account data (tags, fully read marker), unread counts and the notifications from it, its
   * entries in the membership index (membership, write time, forgotten), a remote invite's record
   * and its place in sliding sync's recency index — as Synapse's purge deletes those rows. (Thread
   * subscriptions and key backups have their own actors: room-deletion.ts asks them too.)
   */
  | { op: 'purge_room'; roomId: string }
  /** Server admin changes (the admin API): the admin flag and the lock; absent fields stay as they are. */
  | { op: 'admin_update'; admin?: boolean; locked?: boolean; suspended?: boolean }
  /**
   * Create or update the pusher named by the pusher's app id and pushkey (the front validated it).
   * An update keeps the device the pusher was first set from, as Synapse does (one device may
   * change another's pusher).
   */
  | { op: 'set_pusher'; pusher: Omit<StoredPusher, 'ts'> }
  /** Delete a pusher; deleting one that does not exist is not an error (Synapse). */
  | { op: 'delete_pusher'; appId: string; pushkey: string };

export type UserReply =
  | { user_id: string; device_id?: string; expires_in_ms?: number }
  | { device_id: string; expires_in_ms?: number }
  | { filter_id: string }
  | { deleted: string[] }
  | { ok: true };

/** Entries on the user shard's output stream (for /sync: account data and device list changes). */
export type UserOutput =
  | { type: 'account_data'; user_id: string; room_id?: string; data_type: string }
  | { type: 'device'; user_id: string; device_id: string; deleted?: true }
  | { type: 'profile'; user_id: string; field: 'displayname' | 'avatar_url' }
  /**
   * The account was deactivated: the deactivation reader (src/readers/deactivation.ts) takes the
   * user out of every room they are joined to, invited to or knocking on.
   */
  | { type: 'deactivated'; user_id: string; erase: boolean }
  /** The user's pushers changed: wakes the push evaluator's cache of them (through the commit's wake-up). */
  | { type: 'pushers'; user_id: string };

export function newUser(userId: string): UserState {
  return { userId, registered: false, deactivated: false, passwordHash: null, createdAt: 0, devices: {}, nextFilterId: 0 };
}

type D = Decision<UserState, UserReply>;

/** Pure: everything the user actor does with a message. */
export function decideUser(state: UserState, msg: ActorMessage<UserMessage>, prepared?: UserPrepared): D {
  const body = msg.body;
  const now = msg.enqueuedAt;
  if (body?.op === 'register') return register(state, body, now);
  if (!state.registered) throw new ActorRejection('M_NOT_FOUND', 'No such user', 404);
  switch (body?.op) {
    case 'login':
      return login(state, body, now);
    case 'refresh':
      return refresh(state, body, now);
    case 'logout': {
      const deviceId = Object.keys(state.devices).find((id) => state.devices[id]!.at === body.accessHash);
      if (deviceId === undefined) throw new ActorRejection('M_UNKNOWN_TOKEN', 'Unknown access token', 401);
      return { ...deleteDevices(state, [deviceId]), reply: { device_id: deviceId } };
    }
    case 'logout_all':
      return { ...deleteDevices(state, Object.keys(state.devices)), reply: { ok: true } };
    case 'set_password': {
      if (state.deactivated) throw new ActorRejection('M_USER_DEACTIVATED', 'This account has been deactivated', 403);
      const withPassword: UserState = { ...state, passwordHash: body.passwordHash };
      const writes = [accountWrite(withPassword)];
      if (!body.logoutDevices) return { state: withPassword, reply: { ok: true }, writes };
      const others = Object.keys(state.devices).filter((id) => id !== body.keepDevice);
      const d = deleteDevices(withPassword, others);
      return { ...d, reply: { ok: true }, writes: [...writes, ...(d.writes ?? [])] };
    }
    case 'deactivate': {
      // Deactivating again changes nothing and starts no second round of leaving rooms.
      if (state.deactivated) return { state, reply: { ok: true } };
      const { pushRules: _dropped, pushers: _pushers, ...rest } = state;
      const erase = body.erase === true;
      const d = deleteDevices({ ...rest, deactivated: true, passwordHash: null, ...(erase ? { erased: true } : {}) }, Object.keys(state.devices));
      const writes = [accountWrite(d.state), ...(d.writes ?? []), del(userData.profile(state.userId)), del(userData.accountData(state.userId)), del(userData.pushRules(state.userId)), del(userData.pushers(state.userId))];
      const outputs = [...(d.outputs ?? []), { type: 'deactivated', user_id: state.userId, erase } satisfies UserOutput];
      return { ...d, reply: { ok: true }, writes, outputs };
    }
    case 'update_device': {
      const device = state.devices[body.deviceId];
      if (!device) throw new ActorRejection('M_NOT_FOUND', 'Unknown device', 404);
      const next: UserState = { ...state, devices: { ...state.devices, [body.deviceId]: { ...device, name: body.displayName } } };
      return {
        state: next,
        reply: { ok: true },
        writes: [deviceWrite(state.userId, body.deviceId, next.devices[body.deviceId]!)],
        outputs: [{ type: 'device', user_id: state.userId, device_id: body.deviceId } satisfies UserOutput],
      };
    }
    case 'delete_devices': {
      const known = body.deviceIds.filter((id) => id in state.devices);
      // Deleting devices that do not exist is not an error (the spec's delete_devices).
      return { ...deleteDevices(state, known), reply: { deleted: known } };
    }
    case 'set_account_data': {
      // m.tag set as plain room account data replaces the tags the actor keeps.
      if (body.type === TAG_TYPE && body.roomId !== undefined) return writeTags(state, body.roomId, tagsFromContent(body.json));
      const key = body.roomId === undefined ? userData.accountData(state.userId) : userData.roomAccountData(state.userId, body.roomId);
      const output: UserOutput = { type: 'account_data', user_id: state.userId, data_type: body.type, ...(body.roomId === undefined ? {} : { room_id: body.roomId }) };
      return { state, reply: { ok: true }, writes: [{ cmd: 'HSET', key, args: [body.type, body.json] }], outputs: [output] };
    }
    case 'delete_account_data': {
      const current = prepared?.accountData;
      if (current === undefined || current === null || current === '{}') return { state, reply: { ok: true } };
      const key = body.roomId === undefined ? userData.accountData(state.userId) : userData.roomAccountData(state.userId, body.roomId);
      const output: UserOutput = { type: 'account_data', user_id: state.userId, data_type: body.type, ...(body.roomId === undefined ? {} : { room_id: body.roomId }) };
      let next = state;
      if (body.type === TAG_TYPE && body.roomId !== undefined && state.tags?.[body.roomId]) {
        const tags = { ...state.tags };
        delete tags[body.roomId];
        next = { ...state, tags };
      }
      return { state: next, reply: { ok: true }, writes: [{ cmd: 'HSET', key, args: [body.type, '{}'] }], outputs: [output] };
    }
    case 'create_filter': {
      const id = String(state.nextFilterId);
      return {
        state: { ...state, nextFilterId: state.nextFilterId + 1 },
        reply: { filter_id: id },
        writes: [{ cmd: 'HSET', key: userData.filters(state.userId), args: [id, body.json] }],
      };
    }
    case 'set_room_tag':
      return writeTags(state, body.roomId, { ...(state.tags?.[body.roomId] ?? {}), [body.tag]: body.json });
    case 'delete_room_tag': {
      const current = { ...(state.tags?.[body.roomId] ?? {}) };
      // Deleting a tag the room does not have is not an error (as in Synapse).
      if (!(body.tag in current)) return { state, reply: { ok: true } };
      delete current[body.tag];
      return writeTags(state, body.roomId, current);
    }
    case 'set_profile_field': {
      if (state.deactivated) throw new ActorRejection('M_USER_DEACTIVATED', 'This account has been deactivated', 403);
      if (!PROFILE_KEY.test(body.key) || body.key === 'displayname' || body.key === 'avatar_url') throw new ActorRejection('M_INVALID_PARAM', 'Not a custom profile field name', 400);
      if (Buffer.byteLength(body.key) > 255) throw new ActorRejection('M_KEY_TOO_LARGE', 'Profile keys are at most 255 bytes', 400);
      const key = userData.profile(state.userId);
      if (body.json === null) return { state, reply: { ok: true }, writes: [{ cmd: 'HDEL', key, args: [body.key] }] };
      // The size the profile would have: every other field as stored, plus this one.
      const others = Object.entries(prepared?.profile ?? {}).filter(([k]) => k !== body.key);
      const size = others.reduce((n, [k, v]) => n + Buffer.byteLength(k) + Buffer.byteLength(v), 0) + Buffer.byteLength(body.key) + Buffer.byteLength(body.json);
      if (size > MAX_PROFILE_BYTES) throw new ActorRejection('M_PROFILE_TOO_LARGE', 'The profile would exceed 64 KiB', 400);
      return { state, reply: { ok: true }, writes: [{ cmd: 'HSET', key, args: [body.key, body.json] }] };
    }
    case 'set_profile': {
      if (state.deactivated) throw new ActorRejection('M_USER_DEACTIVATED', 'This account has been deactivated', 403);
      const key = userData.profile(state.userId);
      const write: StoreWrite = body.value === null ? { cmd: 'HDEL', key, args: [body.field] } : { cmd: 'HSET', key, args: [body.field, body.value] };
      return { state, reply: { ok: true }, writes: [write], outputs: [{ type: 'profile', user_id: state.userId, field: body.field } satisfies UserOutput] };
    }
    case 'put_push_rule':
      return writePushRules(state, (r) => putPushRule(r, body.kind, body.rule, { ...(body.before !== undefined ? { before: body.before } : {}), ...(body.after !== undefined ? { after: body.after } : {}) }));
    case 'delete_push_rule':
      return writePushRules(state, (r) => deletePushRule(state.userId, r, body.kind, body.ruleId));
    case 'set_push_rule_enabled':
      return writePushRules(state, (r) => setPushRuleEnabled(state.userId, r, body.kind, body.ruleId, body.enabled));
    case 'set_push_rule_actions':
      return writePushRules(state, (r) => setPushRuleActions(state.userId, r, body.kind, body.ruleId, body.actions));
    case 'set_pusher':
      return setPusher(state, body.pusher, now);
    case 'delete_pusher': {
      const key = pusherKey(body.appId, body.pushkey);
      if (!state.pushers?.[key]) return { state, reply: { ok: true } };
      const { [key]: _gone, ...rest } = state.pushers;
      return { state: { ...state, pushers: rest }, reply: { ok: true }, writes: [{ cmd: 'HDEL', key: userData.pushers(state.userId), args: [key] }], outputs: [{ type: 'pushers', user_id: state.userId } satisfies UserOutput] };
    }
    case 'admin_update': {
      const next: UserState = { ...state };
      if (body.admin !== undefined) next.admin = body.admin;
      if (body.locked !== undefined) next.locked = body.locked;
      if (body.suspended !== undefined) next.suspended = body.suspended;
      if (!next.admin) delete next.admin;
      if (!next.locked) delete next.locked;
      if (!next.suspended) delete next.suspended;
      const writes = [accountWrite(next)];
      // Every access token carries the lock and the suspension, so fronts refuse a locked user's
      // requests (and a suspended user's writes) without reading the account (src/api/client/auth.ts).
      if (!!next.locked !== !!state.locked || !!next.suspended !== !!state.suspended) for (const [id, device] of Object.entries(next.devices)) if (device.at) writes.push(accessTokenWrite(next, id, device));
      return { state: next, reply: { ok: true }, writes };
    }
    case 'forget': {
      if (typeof body.roomId !== 'string' || !body.roomId.startsWith('!')) throw new ActorRejection('M_INVALID_PARAM', 'roomId must be a room id', 400);
      return { state, reply: { ok: true }, writes: [{ cmd: 'SADD', key: membershipIndexData.forgotten(state.userId), args: [body.roomId] }] };
    }
    case 'purge_room': {
      if (typeof body.roomId !== 'string' || !body.roomId.startsWith('!')) throw new ActorRejection('M_INVALID_PARAM', 'roomId must be a room id', 400);
      const u = state.userId;
      const r = body.roomId;
      const writes: StoreWrite[] = [userData.roomAccountData(u, r), pushData.unread(u, r), pushData.unreadHighlight(u, r), pushData.unreadThreads(u, r), pushData.exceptions(u, r), membershipIndexData.remoteInvite(u, r)].map((key) => ({ cmd: 'DEL', key, args: [] }));
      // The room's entries in the user's indexes: their membership (and when it was written),
      // "forgotten" and sliding sync's recency. Synapse's purge deletes the room's
      // room_memberships and local_current_membership rows (`forgotten` is a column of the first).
      writes.push(
        { cmd: 'HDEL', key: membershipIndexData.rooms(u), args: [r] },
        { cmd: 'HDEL', key: membershipIndexData.writtenAt(u), args: [r] },
        { cmd: 'SREM', key: membershipIndexData.forgotten(u), args: [r] },
        { cmd: 'ZREM', key: recencyIndexData.rooms(u), args: [r] },
      );
      const members = prepared?.roomNotifications ?? [];
      if (members.length) {
        writes.push(
          { cmd: 'ZREM', key: pushData.notifications(u), args: members },
          { cmd: 'ZREM', key: pushData.highlights(u), args: members },
          { cmd: 'HDEL', key: pushData.notificationData(u), args: members },
        );
      }
      const excluded = prepared?.roomExcluded ?? [];
      if (excluded.length) writes.push({ cmd: 'ZREM', key: pushData.excluded(u), args: excluded });
      // The room's tags the actor keeps (from which it writes `m.tag`): left here, a tag set in a
      // room of that id later (joined again) would bring the purged room's tags back with it.
      if (!state.tags?.[r]) return { state, reply: { ok: true }, writes };
      const { [r]: _purged, ...tags } = state.tags;
      return { state: { ...state, tags }, reply: { ok: true }, writes };
    }
    default:
      // A message this actor cannot understand is a bug upstream: fail it (the runtime dead-letters it).
      throw new TypeError(`user: unknown op ${JSON.stringify((body as { op?: unknown } | undefined)?.op)}`);
  }
}

const TAG_TYPE = 'm.tag';

/** Custom profile field names: `m.tz` or the Common Namespaced Identifier Grammar (profile.yaml). */
export const PROFILE_KEY = /^(avatar_url|displayname|m\.tz|[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+)$/;
/** The whole profile must stay under 64 KiB (profile.yaml). */
export const MAX_PROFILE_BYTES = 64 * 1024;

/** What the shell reads before decide: the stored profile, for the size check of custom fields. */
export interface UserPrepared {
  profile?: Record<string, string>;
  /** For `delete_account_data`: the stored content (JSON text), null when there is none. */
  accountData?: string | null;
  /** For `purge_room`: the members of the user's notification list that are from that room. */
  roomNotifications?: string[];
  /** purge_room: the room's entries in the user's `excluded` set. */
  roomExcluded?: string[];
}

/** The tags of an `m.tag` content given as JSON text (anything malformed counts as no tags). */
function tagsFromContent(json: string): Record<string, string> {
  let content: unknown;
  try {
    content = JSON.parse(json);
  } catch {
    return {};
  }
  const tags = (content as { tags?: unknown } | null)?.tags;
  const out: Record<string, string> = {};
  if (typeof tags !== 'object' || tags === null || Array.isArray(tags)) return out;
  for (const [tag, meta] of Object.entries(tags)) out[tag] = JSON.stringify(typeof meta === 'object' && meta !== null && !Array.isArray(meta) ? meta : {});
  return out;
}

/** Store a room's tags: the actor's map and the `m.tag` room account data built from it. */
function writeTags(state: UserState, roomId: string, roomTags: Record<string, string>): D {
  const tags = { ...(state.tags ?? {}) };
  if (Object.keys(roomTags).length) tags[roomId] = roomTags;
  else delete tags[roomId];
  const names = Object.keys(roomTags).sort();
  const json = `{"tags":{${names.map((t) => `${JSON.stringify(t)}:${roomTags[t]}`).join(',')}}}`;
  const output: UserOutput = { type: 'account_data', user_id: state.userId, room_id: roomId, data_type: TAG_TYPE };
  return {
    state: { ...state, tags },
    reply: { ok: true },
    writes: [{ cmd: 'HSET', key: userData.roomAccountData(state.userId, roomId), args: [TAG_TYPE, json] }],
    outputs: [output],
  };
}

/** The `m.push_rules` account data type: /sync sends the merged ruleset under it. */
export const PUSH_RULES_TYPE = 'm.push_rules';

/** Apply a push rule change and store the result; rule problems answer the client (400/404). */
function writePushRules(state: UserState, change: (rules: StoredPushRules) => StoredPushRules): D {
  let next: StoredPushRules;
  try {
    next = change(state.pushRules ?? emptyStoredPushRules());
  } catch (e) {
    if (e instanceof PushRuleError) throw new ActorRejection(e.errcode, e.message, e.status);
    throw e;
  }
  return {
    state: { ...state, pushRules: next },
    reply: { ok: true },
    writes: [{ cmd: 'SET', key: userData.pushRules(state.userId), args: [JSON.stringify(next)] }],
    outputs: [{ type: 'account_data', user_id: state.userId, data_type: PUSH_RULES_TYPE } satisfies UserOutput],
  };
}

function register(state: UserState, body: Extract<UserMessage, { op: 'register' }>, now: number): D {
  if (state.registered) throw new ActorRejection('M_USER_IN_USE', 'User ID already taken', 400);
  const registered: UserState = { ...state, registered: true, passwordHash: body.passwordHash, createdAt: now, ...(body.admin ? { admin: true } : {}) };
  // The shard's list of its users (the admin API's user list merges every shard's).
  const writes: StoreWrite[] = [accountWrite(registered), { cmd: 'ZADD', key: userData.registeredUsers(), args: ['0', state.userId] }];
  if (body.displayname) writes.push({ cmd: 'HSET', key: userData.profile(state.userId), args: ['displayname', body.displayname] });
  if (!body.session) return { state: registered, reply: { user_id: state.userId }, writes };
  const issued = issue(registered, body.session, now);
  return { state: issued.state, reply: { user_id: state.userId, ...issued.reply }, writes: [...writes, ...issued.writes], outputs: issued.outputs };
}

function login(state: UserState, body: Extract<UserMessage, { op: 'login' }>, now: number): D {
  if (state.deactivated) throw new ActorRejection('M_USER_DEACTIVATED', 'This account has been deactivated', 403);
  if (state.locked) throw new ActorRejection('M_USER_LOCKED', 'This account has been locked', 401);
  // The password was checked against this hash; if it changed meanwhile, the check is void.
  // An appservice's login was authorised by the front (its as_token, the user in its namespace).
  if (!('appservice' in body) && (state.passwordHash === null || state.passwordHash !== body.verifiedHash)) throw new ActorRejection('M_FORBIDDEN', 'Invalid username or password', 403);
  const issued = issue(state, body.session, now);
  return { state: issued.state, reply: { user_id: state.userId, ...issued.reply }, writes: issued.writes, outputs: issued.outputs };
}

function refresh(state: UserState, body: Extract<UserMessage, { op: 'refresh' }>, now: number): D {
  const deviceId = Object.keys(state.devices).find((id) => state.devices[id]!.rt === body.refreshHash);
  if (deviceId === undefined) throw new ActorRejection('M_UNKNOWN_TOKEN', 'Unknown refresh token', 401);
  if (state.locked) throw new ActorRejection('M_USER_LOCKED', 'User account has been locked', 401);
  const device = state.devices[deviceId]!;
  const issued = issue(state, { deviceId, accessHash: body.accessHash, refreshHash: body.newRefreshHash, expiresInMs: body.expiresInMs, ...(device.ip ? { ip: device.ip } : {}) }, now);
  return { state: issued.state, reply: issued.reply, writes: issued.writes, outputs: issued.outputs };
}

/** New tokens for a device (created if it does not exist); the device's previous tokens are revoked. */
function issue(state: UserState, s: NewSession, now: number): { state: UserState; reply: { device_id: string; expires_in_ms?: number }; writes: StoreWrite[]; outputs: UserOutput[] } {
  const old = state.devices[s.deviceId];
  const writes: StoreWrite[] = old ? revokeWrites(old) : [];
  const refreshable = s.refreshHash !== undefined && s.expiresInMs !== undefined;
  const device: DeviceState = { at: s.accessHash, rt: refreshable ? s.refreshHash! : null, seen: now };
  const name = old ? old.name : s.displayName;
  if (name !== undefined) device.name = name;
  if (s.ip !== undefined) device.ip = s.ip;
  if (refreshable) {
    device.exp = now + s.expiresInMs!;
    writes.push({ cmd: 'SET', key: userData.token(s.refreshHash!), args: [encode({ u: state.userId, d: s.deviceId })] });
  }
  writes.push(accessTokenWrite(state, s.deviceId, device));
  writes.push(deviceWrite(state.userId, s.deviceId, device));
  return {
    state: { ...state, devices: { ...state.devices, [s.deviceId]: device } },
    reply: refreshable ? { device_id: s.deviceId, expires_in_ms: s.expiresInMs! } : { device_id: s.deviceId },
    writes,
    outputs: old ? [] : [{ type: 'device', user_id: state.userId, device_id: s.deviceId }],
  };
}

function deleteDevices(state: UserState, deviceIds: string[]): D {
  if (deviceIds.length === 0) return { state };
  const devices = { ...state.devices };
  const writes: StoreWrite[] = [];
  const outputs: UserOutput[] = [];
  for (const id of deviceIds) {
    const device = devices[id];
    if (!device) continue;
    writes.push(...revokeWrites(device), { cmd: 'HDEL', key: userData.devices(state.userId), args: [id] });
    outputs.push({ type: 'device', user_id: state.userId, device_id: id, deleted: true });
    delete devices[id];
  }
  // A device's pushers go with it (logout, device deletion, password change): no phone keeps
  // getting notifications for a session that has ended (as Synapse).
  const gone = new Set(deviceIds);
  const dropped = Object.entries(state.pushers ?? {}).filter(([, p]) => p.device_id !== null && gone.has(p.device_id));
  if (dropped.length === 0) return { state: { ...state, devices }, writes, outputs };
  const pushers = { ...state.pushers };
  for (const [key] of dropped) delete pushers[key];
  writes.push({ cmd: 'HDEL', key: userData.pushers(state.userId), args: dropped.map(([key]) => key) });
  return { state: { ...state, devices, pushers }, writes, outputs };
}

function setPusher(state: UserState, given: Omit<StoredPusher, 'ts'>, now: number): D {
  if (state.deactivated) throw new ActorRejection('M_USER_DEACTIVATED', 'This account has been deactivated', 403);
  const key = pusherKey(given.app_id, given.pushkey);
  const existing = state.pushers?.[key];
  if (!existing && Object.keys(state.pushers ?? {}).length >= MAX_PUSHERS) throw new ActorRejection('M_INVALID_PARAM', `Too many pushers: a user may have at most ${MAX_PUSHERS}`, 400);
  const pusher: StoredPusher = { ...given, device_id: existing ? existing.device_id : given.device_id, ts: now };
  return {
    state: { ...state, pushers: { ...(state.pushers ?? {}), [key]: pusher } },
    reply: { ok: true },
    writes: [{ cmd: 'HSET', key: userData.pushers(state.userId), args: [key, JSON.stringify(pusher)] }],
    outputs: [{ type: 'pushers', user_id: state.userId } satisfies UserOutput],
  };
}

/**
 * The record of a device's access token (TokenRecord, src/api/client/auth.ts): whose, which device,
 * its expiry and refresh token when refreshable, `l` while the user is locked, `s` while suspended. A refreshable
 * token issued before `exp` was kept in the state is given an expiry of now when rewritten, so
 * its client refreshes (and is refused while locked) rather than holding a token that never expires.
 */
function accessTokenWrite(state: UserState, deviceId: string, device: DeviceState): StoreWrite {
  const record: { u: string; d: string; exp?: number; rt?: string; l?: 1; s?: 1 } = { u: state.userId, d: deviceId };
  if (device.rt) {
    record.exp = device.exp ?? device.seen;
    record.rt = device.rt;
  }
  if (state.locked) record.l = 1;
  if (state.suspended) record.s = 1;
  return { cmd: 'SET', key: userData.token(device.at!), args: [encode(record)] };
}

function revokeWrites(device: DeviceState): StoreWrite[] {
  const w: StoreWrite[] = [];
  if (device.at) w.push(del(userData.token(device.at)));
  if (device.rt) w.push(del(userData.token(device.rt)));
  return w;
}

function del(key: string): StoreWrite {
  return { cmd: 'DEL', key, args: [] };
}

/** The account record fronts read for login and user-interactive auth. */
export interface AccountRecord {
  /** Password hash (null: no password, e.g. deactivated). */
  h: string | null;
  /** 1 when deactivated. */
  x: 0 | 1;
  /** Created (ms). */
  c: number;
  /** 1 for a server admin. */
  a?: 1;
  /** 1 when the user asked for erasure at deactivation. */
  e?: 1;
  /** 1 while locked by an admin. */
  l?: 1;
  /** 1 while suspended by an admin. */
  s?: 1;
}

function accountWrite(state: UserState): StoreWrite {
  const rec: AccountRecord = { h: state.passwordHash, x: state.deactivated ? 1 : 0, c: state.createdAt, ...(state.admin ? { a: 1 as const } : {}), ...(state.erased ? { e: 1 as const } : {}), ...(state.locked ? { l: 1 as const } : {}), ...(state.suspended ? { s: 1 as const } : {}) };
  return { cmd: 'SET', key: userData.account(state.userId), args: [encode(rec)] };
}

/** The JSON a front serves for a device (`GET /devices`). */
export interface DeviceJson {
  device_id: string;
  display_name?: string;
  last_seen_ts?: number;
  last_seen_ip?: string;
}

function deviceWrite(userId: string, deviceId: string, device: DeviceState): StoreWrite {
  const json: DeviceJson = { device_id: deviceId, last_seen_ts: device.seen };
  if (device.name !== undefined) json.display_name = device.name;
  if (device.ip !== undefined) json.last_seen_ip = device.ip;
  return { cmd: 'HSET', key: userData.devices(userId), args: [deviceId, JSON.stringify(json)] };
}

export function userActor(family: Family = 'user'): ActorKind<UserState, UserMessage, UserReply, UserPrepared> {
  return {
    kind: 'user',
    family,
    initialState: newUser,
    async prepare(ctx, state, msg) {
      if (msg.body?.op === 'delete_account_data') {
        const key = msg.body.roomId === undefined ? userData.accountData(state.userId) : userData.roomAccountData(state.userId, msg.body.roomId);
        return { accountData: await ctx.redis.hget(ctx.keys.data(key), msg.body.type) };
      }
      if (msg.body?.op === 'purge_room') {
        // The list holds the latest NOTIFICATIONS_KEPT (1,000) per user: read whole, kept to the room's.
        const prefix = `${msg.body.roomId}\0`;
        const all = await ctx.redis.zrange(ctx.keys.data(pushData.notifications(state.userId)), 0, -1);
        const excluded = await ctx.redis.zrange(ctx.keys.data(pushData.excluded(state.userId)), 0, -1);
        return { roomNotifications: all.filter((m) => m.startsWith(prefix)), roomExcluded: excluded.filter((m) => m.startsWith(prefix)) };
      }
      if (msg.body?.op !== 'set_profile_field') return {};
      return { profile: await ctx.redis.hgetall(ctx.keys.data(userData.profile(state.userId))) };
    },
    decide: decideUser,
  };
}
