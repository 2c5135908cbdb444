/**
 * KeyBackupActor: the single writer of one local user's server-side key backups (actor id = the
 * user id; it lives in the user's shard). Client-Server API "Server-side key backups"
 * (key_backup.yaml); where the spec is loose this follows Synapse.
 *
 * - Versions are numbered 1, 2, 3, … per user and never reused; the current version is the
 *   highest one not deleted (so deleting the current version makes the previous one current
 *   again, as in Synapse). Only the current version accepts keys; writing to another live
 *   version answers `wrong_version` (the front makes it 403 M_WRONG_ROOM_KEYS_VERSION with
 *   `current_version`), to an unknown or deleted one 404 M_NOT_FOUND.
 * - `auth_data` is stored as given: like Synapse, the server does not check its signatures
 *   (clients do, before trusting a backup).
 * - A key for a session that already has one replaces it only when it is better, in the spec's
 *   order: a verified key beats an unverified one; then the lower `first_message_index`; then
 *   the lower `forwarded_count`; otherwise the stored key stays. (Synapse lets a lower
 *   `first_message_index` replace a verified key with an unverified one; the spec does not.)
 * - `etag` is a counter per version that moves whenever the version's keys change (not when an
 *   upload changes nothing); `count` is the number of keys in the version.
 *
 * - `delete_all` removes every version and its keys; the deactivation reader sends it when an
 *   account is deactivated (Synapse deletes a deactivated user's backups too).
 * - `purge_room` removes one room's keys from every version; an admin's purge of the room sends it
 *   (Synapse's purge deletes the room's `e2e_room_keys` rows).
 *
 * What fronts read (written here through `writes`, names in `userData`): the versions hash
 * (version → `{algorithm, auth_data, etag, count}`), and per version the set of rooms with keys
 * and one hash of session id → key data per room.
 */
import { ActorRejection, type ActorKind, type ActorMessage, type Decision, type ShellContext, type StoreWrite } from '../src/runtime/actor';
import type { Family } from '../src/store/shards';
import { userData } from '../src/store/keys';

export interface BackupVersion {
  algorithm: string;
  /** `auth_data` as JSON text, as the client gave it. */
  authData: string;
  etag: number;
  count: number;
}

export interface KeyBackupState {
  userId: string;
  /** The highest version number ever created (deleted ones included): the next is one more. */
  last: number;
  /** Live versions by number (as a string). */
  versions: Record<string, BackupVersion>;
}

/** One session's key as fronts validated it: the stored JSON text of KeyBackupData. */
export type KeyJson = string;

export type KeyBackupMessage =
  | { op: 'create_version'; algorithm: string; authData: string }
  | { op: 'update_version'; version: string; algorithm: string; authData: string }
  /** `version` null: the current one. */
  | { op: 'delete_version'; version: string | null }
  /** room id → session id → key. */
  | { op: 'put_keys'; version: string; rooms: Record<string, Record<string, KeyJson>> }
  /** Without roomId: every key of the version; without sessionId: every key of the room. */
  | { op: 'delete_keys'; version: string; roomId?: string; sessionId?: string }
  /** Every version and its keys (account deactivation, as Synapse does). */
  | { op: 'delete_all' }
  /**
   * An admin purged the room (src/rooms/room-deletion.ts): its keys go from every version, as
   * Synapse's purge deletes the room's `e2e_room_keys` rows (in any version). Each version that had
   * some gets a new etag and its count less them (Synapse counts rows, so its count drops too).
   * Idempotent: run again, it finds nothing.
   */
  | { op: 'purge_room'; roomId: string };

export type KeyBackupReply =
  | { version: string }
  | { etag: string; count: number }
  | { wrong_version: string }
  | { ok: true };

/** What the shell read from the store for a message. */
export interface KeyBackupPrepared {
  /** put_keys: the stored keys of the uploaded sessions (null: none), room id → session id → key. */
  existing?: Record<string, Record<string, KeyJson | null>>;
  /** delete_keys: the sessions that exist and will go, and how many keys each room holds now. */
  sessions?: Record<string, string[]>;
  roomSizes?: Record<string, number>;
  /** delete_version: the rooms with keys in the version. */
  rooms?: string[];
  /** delete_all: the rooms with keys, per live version. */
  roomsByVersion?: Record<string, string[]>;
  /** purge_room: how many keys of the room each live version holds (versions without any left out). */
  roomKeysByVersion?: Record<string, number>;
}

type D = Decision<KeyBackupState, KeyBackupReply>;

export function noBackups(userId: string): KeyBackupState {
  return { userId, last: 0, versions: {} };
}

/** The current version: the highest live one (null: none). */
export function currentVersion(versions: Record<string, unknown>): string | null {
  let best: number | null = null;
  for (const v of Object.keys(versions)) if (best === null || Number(v) > best) best = Number(v);
  return best === null ? null : String(best);
}

interface KeyMeta {
  is_verified: boolean;
  first_message_index: number;
  forwarded_count: number;
}

/** The spec's rule: does `incoming` replace `stored` for the same session? */
export function shouldReplaceKey(stored: KeyMeta, incoming: KeyMeta): boolean {
  if (incoming.is_verified !== stored.is_verified) return incoming.is_verified;
  if (incoming.first_message_index !== stored.first_message_index) return incoming.first_message_index < stored.first_message_index;
  return incoming.forwarded_count < stored.forwarded_count;
}

/** The record fronts serve for a version (without `version`, which is its field name). */
export function versionRecordJson(v: BackupVersion): string {
  return `{"algorithm":${JSON.stringify(v.algorithm)},"auth_data":${v.authData},"count":${v.count},"etag":${JSON.stringify(String(v.etag))}}`;
}

const unknownVersion = () => new ActorRejection('M_NOT_FOUND', 'Unknown backup version', 404);

export function decideKeyBackup(state: KeyBackupState, msg: ActorMessage<KeyBackupMessage>, prepared: KeyBackupPrepared | undefined): D {
  const body = msg.body;
  const u = state.userId;
  const versionsKey = userData.keyBackupVersions(u);
  const recordWrite = (version: string, v: BackupVersion): StoreWrite => ({ cmd: 'HSET', key: versionsKey, args: [version, versionRecordJson(v)] });
  switch (body?.op) {
    case 'create_version': {
      const version = String(state.last + 1);
      const v: BackupVersion = { algorithm: body.algorithm, authData: body.authData, etag: 0, count: 0 };
      return { state: { ...state, last: state.last + 1, versions: { ...state.versions, [version]: v } }, reply: { version }, writes: [recordWrite(version, v)] };
    }
    case 'update_version': {
      const v = state.versions[body.version];
      if (!v) throw unknownVersion();
      if (v.algorithm !== body.algorithm) throw new ActorRejection('M_INVALID_PARAM', 'Algorithm does not match', 400);
      const next: BackupVersion = { ...v, authData: body.authData };
      return { state: { ...state, versions: { ...state.versions, [body.version]: next } }, reply: { ok: true }, writes: [recordWrite(body.version, next)] };
    }
    case 'delete_version': {
      const version = body.version ?? currentVersion(state.versions);
      if (version === null) throw new ActorRejection('M_NOT_FOUND', 'No current backup version', 404);
      if (!state.versions[version]) {
        // Deleting a version that was deleted before succeeds (key_backup.yaml); one never made does not.
        if (/^[1-9]\d*$/.test(version) && Number(version) <= state.last) return { state, reply: { ok: true } };
        throw unknownVersion();
      }
      const versions = { ...state.versions };
      delete versions[version];
      const writes: StoreWrite[] = [{ cmd: 'HDEL', key: versionsKey, args: [version] }, { cmd: 'DEL', key: userData.keyBackupRooms(u, version), args: [] }];
      for (const roomId of prepared?.rooms ?? []) writes.push({ cmd: 'DEL', key: userData.keyBackupRoom(u, version, roomId), args: [] });
      return { state: { ...state, versions }, reply: { ok: true }, writes };
    }
    case 'delete_all': {
      const live = Object.keys(state.versions);
      if (!live.length) return { state, reply: { ok: true } };
      const writes: StoreWrite[] = [{ cmd: 'DEL', key: versionsKey, args: [] }];
      for (const version of live) {
        writes.push({ cmd: 'DEL', key: userData.keyBackupRooms(u, version), args: [] });
        for (const roomId of prepared?.roomsByVersion?.[version] ?? []) writes.push({ cmd: 'DEL', key: userData.keyBackupRoom(u, version, roomId), args: [] });
      }
      // `last` stays: version numbers are never reused.
      return { state: { ...state, versions: {} }, reply: { ok: true }, writes };
    }
    case 'purge_room': {
      const writes: StoreWrite[] = [];
      const versions = { ...state.versions };
      for (const [version, n] of Object.entries(prepared?.roomKeysByVersion ?? {})) {
        const v = versions[version];
        if (!v) continue;
        writes.push({ cmd: 'DEL', key: userData.keyBackupRoom(u, version, body.roomId), args: [] }, { cmd: 'SREM', key: userData.keyBackupRooms(u, version), args: [body.roomId] });
        if (n === 0) continue;
        versions[version] = { ...v, etag: v.etag + 1, count: Math.max(0, v.count - n) };
        writes.push(recordWrite(version, versions[version]));
      }
      if (!writes.length) return { state, reply: { ok: true } };
      return { state: { ...state, versions }, reply: { ok: true }, writes };
    }
    case 'put_keys': {
      const current = currentVersion(state.versions);
      if (current === null || !state.versions[body.version]) throw unknownVersion();
      if (body.version !== current) return { state, reply: { wrong_version: current } };
      const v = state.versions[current]!;
      const writes: StoreWrite[] = [];
      const newRooms: string[] = [];
      let inserted = 0;
      let changed = false;
      for (const [roomId, sessions] of Object.entries(body.rooms)) {
        const stored = prepared?.existing?.[roomId] ?? {};
        const hasRoom = Object.values(stored).some((k) => k !== null);
        const args: string[] = [];
        for (const [sessionId, key] of Object.entries(sessions)) {
          const old = stored[sessionId] ?? null;
          if (old !== null && !shouldReplaceKey(JSON.parse(old) as KeyMeta, JSON.parse(key) as KeyMeta)) continue;
          if (old === null) inserted++;
          args.push(sessionId, key);
          changed = true;
        }
        if (!args.length) continue;
        writes.push({ cmd: 'HSET', key: userData.keyBackupRoom(u, current, roomId), args });
        if (!hasRoom) newRooms.push(roomId);
      }
      if (!changed) return { state, reply: { etag: String(v.etag), count: v.count } };
      if (newRooms.length) writes.push({ cmd: 'SADD', key: userData.keyBackupRooms(u, current), args: newRooms });
      const next: BackupVersion = { ...v, etag: v.etag + 1, count: v.count + inserted };
      writes.push(recordWrite(current, next));
      return { state: { ...state, versions: { ...state.versions, [current]: next } }, reply: { etag: String(next.etag), count: next.count }, writes };
    }
    case 'delete_keys': {
      const v = state.versions[body.version];
      if (!v) throw unknownVersion();
      const writes: StoreWrite[] = [];
      const emptied: string[] = [];
      let removed = 0;
      for (const [roomId, sessions] of Object.entries(prepared?.sessions ?? {})) {
        if (!sessions.length) continue;
        removed += sessions.length;
        const size = prepared?.roomSizes?.[roomId] ?? sessions.length;
        if (sessions.length >= size) {
          writes.push({ cmd: 'DEL', key: userData.keyBackupRoom(u, body.version, roomId), args: [] });
          emptied.push(roomId);
        } else {
          writes.push({ cmd: 'HDEL', key: userData.keyBackupRoom(u, body.version, roomId), args: sessions });
        }
      }
      if (removed === 0) return { state, reply: { etag: String(v.etag), count: v.count } };
      if (emptied.length) writes.push({ cmd: 'SREM', key: userData.keyBackupRooms(u, body.version), args: emptied });
      const next: BackupVersion = { ...v, etag: v.etag + 1, count: Math.max(0, v.count - removed) };
      writes.push(recordWrite(body.version, next));
      return { state: { ...state, versions: { ...state.versions, [body.version]: next } }, reply: { etag: String(next.etag), count: next.count }, writes };
    }
    default:
      throw new TypeError(`keybackup: unknown op ${JSON.stringify((body as { op?: unknown } | undefined)?.op)}`);
  }
}

/** Reads what decide needs: stored keys of uploaded sessions, what a deletion removes. */
async function prepareKeyBackup(ctx: ShellContext, state: KeyBackupState, msg: ActorMessage<KeyBackupMessage>): Promise<KeyBackupPrepared | undefined> {
  const body = msg.body;
  const u = state.userId;
  const key = (name: string) => ctx.keys.data(name);
  switch (body?.op) {
    case 'put_keys': {
      if (!state.versions[body.version]) return undefined;
      const rooms = Object.entries(body.rooms);
      const p = ctx.redis.pipeline();
      for (const [roomId, sessions] of rooms) p.hmget(key(userData.keyBackupRoom(u, body.version, roomId)), ...Object.keys(sessions));
      const res = (await p.exec()) ?? [];
      const existing: Record<string, Record<string, string | null>> = {};
      rooms.forEach(([roomId, sessions], i) => {
        const [err, values] = res[i] ?? [];
        if (err) throw err;
        const ids = Object.keys(sessions);
        existing[roomId] = Object.fromEntries(ids.map((id, j) => [id, (values as (string | null)[])[j] ?? null]));
      });
      return { existing };
    }
    case 'delete_keys': {
      if (!state.versions[body.version]) return undefined;
      const rooms = body.roomId !== undefined ? [body.roomId] : await ctx.redis.smembers(key(userData.keyBackupRooms(u, body.version)));
      const sessions: Record<string, string[]> = {};
      const roomSizes: Record<string, number> = {};
      for (const roomId of rooms) {
        const ids = await ctx.redis.hkeys(key(userData.keyBackupRoom(u, body.version, roomId)));
        roomSizes[roomId] = ids.length;
        sessions[roomId] = body.sessionId !== undefined ? ids.filter((id) => id === body.sessionId) : ids;
      }
      return { sessions, roomSizes };
    }
    case 'delete_version': {
      const version = body.version ?? currentVersion(state.versions);
      if (version === null || !state.versions[version]) return undefined;
      return { rooms: await ctx.redis.smembers(key(userData.keyBackupRooms(u, version))) };
    }
    case 'purge_room': {
      const roomKeysByVersion: Record<string, number> = {};
      for (const version of Object.keys(state.versions)) {
        const [n, listed] = await Promise.all([ctx.redis.hlen(key(userData.keyBackupRoom(u, version, body.roomId))), ctx.redis.sismember(key(userData.keyBackupRooms(u, version)), body.roomId)]);
        if (n > 0 || listed === 1) roomKeysByVersion[version] = n;
      }
      return { roomKeysByVersion };
    }
    case 'delete_all': {
      const roomsByVersion: Record<string, string[]> = {};
      for (const version of Object.keys(state.versions)) roomsByVersion[version] = await ctx.redis.smembers(key(userData.keyBackupRooms(u, version)));
      return { roomsByVersion };
    }
    default:
      return undefined;
  }
}

export function keyBackupActor(family: Family = 'user'): ActorKind<KeyBackupState, KeyBackupMessage, KeyBackupReply, KeyBackupPrepared | undefined> {
  return { kind: 'keybackup', family, initialState: noBackups, prepare: prepareKeyBackup, decide: decideKeyBackup };
}
