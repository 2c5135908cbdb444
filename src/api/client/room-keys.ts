/**
 * Server-side key backups (key_backup.yaml): `/room_keys/version[/{version}]` and
 * `/room_keys/keys[/{roomId}[/{sessionId}]]`.
 *
 * Writes go to the user's key backup actor (actors/key-backup.ts), which owns the versions, the
 * replacement rule, `etag` and `count`. Reads come straight from the user's shard, each in one
 * MULTI (all of a user's keys share the shard's hash tag), so a read never mixes a version's
 * record with keys of a version deleted meanwhile.
 */
import { MatrixError, errors } from '../../http/errors';
import type { Front, Request } from '../../http/server';
import { isJsonObject, type JsonObject, type JsonValue } from '../../protocol/json';
import { ActorReplyError, ActorTimeoutError } from '../../runtime/actor-client';
import { shardOf } from '../../store/shards';
import { userData } from '../../store/keys';
import { currentVersion, type KeyBackupMessage, type KeyBackupReply } from '../../../actors/key-backup';
import { requireUser } from './auth';
import { clientRoute, jsonBody } from './accounts-common';
import type { ApiContext } from '../context';

const MEGOLM_BACKUP_V1 = 'm.megolm_backup.v1.curve25519-aes-sha2';
/** Version ids are the decimal numbers the actor hands out; anything else names no backup. */
const VERSION = /^[1-9]\d{0,15}$/;
const MAX_ALGORITHM_BYTES = 255;

interface VersionRecord {
  algorithm: string;
  auth_data: JsonObject;
  count: number;
  etag: string;
}

function shardKey(ctx: ApiContext, userId: string, name: string): string {
  return ctx.keys.shard('user', shardOf(userId, ctx.shardCounts.user)).data(name);
}

async function askBackup<R extends KeyBackupReply>(ctx: ApiContext, userId: string, body: KeyBackupMessage): Promise<R> {
  try {
    return await ctx.actors.ask<R>('user', 'keybackup', userId, body);
  } catch (e) {
    if (e instanceof ActorReplyError) throw new MatrixError(e.status, e.errcode, e.message);
    if (e instanceof ActorTimeoutError) throw new MatrixError(504, 'M_UNKNOWN', 'The key backup service did not answer in time; try again');
    throw e;
  }
}

const unknownVersion = () => errors.notFound('Unknown backup version');

/** The `version` query parameter of the key endpoints (required by the spec). */
function versionParam(req: Request): string {
  const v = req.query['version'];
  if (v === undefined) throw errors.missingParam('Missing version query parameter');
  return v;
}

/** The body of POST/PUT /room_keys/version: algorithm and auth_data (stored as given). */
function versionBody(body: JsonObject): { algorithm: string; authData: string } {
  const { algorithm, auth_data: authData } = body;
  if (algorithm === undefined || authData === undefined) throw errors.missingParam('algorithm and auth_data are required');
  if (typeof algorithm !== 'string' || algorithm === '' || Buffer.byteLength(algorithm) > MAX_ALGORITHM_BYTES) throw errors.badJson('algorithm must be a non-empty string');
  if (!isJsonObject(authData)) throw errors.badJson('auth_data must be an object');
  // The one algorithm the spec defines: its public key is what every client encrypts to.
  if (algorithm === MEGOLM_BACKUP_V1 && typeof authData.public_key !== 'string') throw errors.invalidParam('auth_data.public_key must be a string');
  return { algorithm, authData: JSON.stringify(authData) };
}

/** One session's key data (KeyBackupData), validated, as the JSON text the actor stores. */
function keyData(v: JsonValue | undefined, where: string): string {
  if (!isJsonObject(v)) throw errors.badJson(`${where} must be an object`);
  const { first_message_index: fmi, forwarded_count: fc, is_verified: verified, session_data: data } = v;
  if (typeof fmi !== 'number' || !Number.isInteger(fmi) || fmi < 0) throw errors.badJson(`${where}.first_message_index must be a non-negative integer`);
  if (typeof fc !== 'number' || !Number.isInteger(fc) || fc < 0) throw errors.badJson(`${where}.forwarded_count must be a non-negative integer`);
  if (typeof verified !== 'boolean') throw errors.badJson(`${where}.is_verified must be a boolean`);
  if (!isJsonObject(data)) throw errors.badJson(`${where}.session_data must be an object`);
  return JSON.stringify({ first_message_index: fmi, forwarded_count: fc, is_verified: verified, session_data: data });
}

function checkRoomId(roomId: string): void {
  if (!roomId.startsWith('!') || roomId.length < 2 || Buffer.byteLength(roomId) > 255) throw errors.invalidParam(`Invalid room id: ${roomId}`);
}

/** The sessions of a RoomKeyBackup body (`{sessions: {…}}`). */
function roomSessions(v: JsonValue | undefined, roomId: string): Record<string, string> {
  if (!isJsonObject(v) || !isJsonObject(v.sessions)) throw errors.badJson(`The keys of ${roomId} must be {"sessions": {…}}`);
  const out: Record<string, string> = {};
  for (const [sessionId, key] of Object.entries(v.sessions)) {
    if (sessionId === '') throw errors.invalidParam('Empty session id');
    out[sessionId] = keyData(key, `sessions.${sessionId}`);
  }
  return out;
}

/** The live versions of a user: version → record JSON. */
async function readVersions(ctx: ApiContext, userId: string): Promise<Record<string, string>> {
  return ctx.redis.hgetall(shardKey(ctx, userId, userData.keyBackupVersions(userId)));
}

function versionInfo(version: string, json: string): VersionRecord & { version: string } {
  return { ...(JSON.parse(json) as VersionRecord), version };
}

function parseKeys(hash: Record<string, string>): Record<string, JsonObject> {
  const out: Record<string, JsonObject> = {};
  for (const [sessionId, json] of Object.entries(hash)) out[sessionId] = JSON.parse(json) as JsonObject;
  return out;
}

export function registerRoomKeysRoutes(front: Front, ctx: ApiContext): void {
  // ---- versions ----
  clientRoute(front, 'POST', '/room_keys/version', async (req) => {
    const me = await requireUser(ctx, req);
    const { algorithm, authData } = versionBody(jsonBody(req));
    const reply = await askBackup<{ version: string }>(ctx, me.userId, { op: 'create_version', algorithm, authData });
    return { body: { version: reply.version } };
  });
  clientRoute(front, 'GET', '/room_keys/version', async (req) => {
    const me = await requireUser(ctx, req);
    const versions = await readVersions(ctx, me.userId);
    const current = currentVersion(versions);
    if (current === null) throw errors.notFound('No current backup version');
    return { body: versionInfo(current, versions[current]!) };
  });
  clientRoute(front, 'GET', '/room_keys/version/:version', async (req) => {
    const me = await requireUser(ctx, req);
    const version = req.params.version!;
    if (!VERSION.test(version)) throw unknownVersion();
    const json = await ctx.redis.hget(shardKey(ctx, me.userId, userData.keyBackupVersions(me.userId)), version);
    if (json === null) throw unknownVersion();
    return { body: versionInfo(version, json) };
  });
  clientRoute(front, 'PUT', '/room_keys/version/:version', async (req) => {
    const me = await requireUser(ctx, req);
    const version = req.params.version!;
    const body = jsonBody(req);
    const { algorithm, authData } = versionBody(body);
    if (body.version !== undefined && body.version !== version) throw errors.invalidParam('Version in body does not match');
    if (!VERSION.test(version)) throw unknownVersion();
    await askBackup(ctx, me.userId, { op: 'update_version', version, algorithm, authData });
    return { body: {} };
  });
  const deleteVersion = async (req: Request) => {
    const me = await requireUser(ctx, req);
    const version = req.params.version ?? null;
    if (version !== null && !VERSION.test(version)) throw unknownVersion();
    await askBackup(ctx, me.userId, { op: 'delete_version', version });
    return { body: {} };
  };
  clientRoute(front, 'DELETE', '/room_keys/version/:version', deleteVersion);
  // Not in the spec; Synapse deletes the current version here, and some clients call it.
  clientRoute(front, 'DELETE', '/room_keys/version', deleteVersion);

  // ---- keys ----
  const putKeys = async (req: Request, rooms: (body: JsonObject) => Record<string, Record<string, string>>) => {
    const me = await requireUser(ctx, req);
    const version = versionParam(req);
    const parsed = rooms(jsonBody(req));
    if (!VERSION.test(version)) throw unknownVersion();
    const reply = await askBackup<{ etag: string; count: number } | { wrong_version: string }>(ctx, me.userId, { op: 'put_keys', version, rooms: parsed });
    if ('wrong_version' in reply) throw new MatrixError(403, 'M_WRONG_ROOM_KEYS_VERSION', 'Wrong backup version.', { current_version: reply.wrong_version });
    return { body: { etag: reply.etag, count: reply.count } };
  };
  clientRoute(front, 'PUT', '/room_keys/keys', (req) =>
    putKeys(req, (body) => {
      if (!isJsonObject(body.rooms)) throw errors.badJson('rooms must be an object of room id → {"sessions": {…}}');
      const out: Record<string, Record<string, string>> = {};
      for (const [roomId, room] of Object.entries(body.rooms)) {
        checkRoomId(roomId);
        out[roomId] = roomSessions(room, roomId);
      }
      return out;
    }),
  );
  clientRoute(front, 'PUT', '/room_keys/keys/:roomId', (req) =>
    putKeys(req, (body) => {
      checkRoomId(req.params.roomId!);
      return { [req.params.roomId!]: roomSessions(body, req.params.roomId!) };
    }),
  );
  clientRoute(front, 'PUT', '/room_keys/keys/:roomId/:sessionId', (req) =>
    putKeys(req, (body) => {
      checkRoomId(req.params.roomId!);
      return { [req.params.roomId!]: { [req.params.sessionId!]: keyData(body, 'The key') } };
    }),
  );

  clientRoute(front, 'GET', '/room_keys/keys', async (req) => {
    const me = await requireUser(ctx, req);
    const version = versionParam(req);
    if (!VERSION.test(version)) throw unknownVersion();
    const u = me.userId;
    const [[, record], [, roomIds]] = (await ctx.redis.multi().hget(shardKey(ctx, u, userData.keyBackupVersions(u)), version).smembers(shardKey(ctx, u, userData.keyBackupRooms(u, version))).exec()) as [[unknown, string | null], [unknown, string[]]];
    if (record === null) throw unknownVersion();
    const rooms: Record<string, { sessions: Record<string, JsonObject> }> = {};
    if (roomIds.length) {
      // The room hashes, read together with the version record so a deletion is seen whole or not at all.
      const m = ctx.redis.multi().hget(shardKey(ctx, u, userData.keyBackupVersions(u)), version);
      for (const roomId of roomIds) m.hgetall(shardKey(ctx, u, userData.keyBackupRoom(u, version, roomId)));
      const res = (await m.exec()) ?? [];
      if (res[0]?.[1] === null) throw unknownVersion();
      roomIds.forEach((roomId, i) => {
        const hash = (res[i + 1]?.[1] ?? {}) as Record<string, string>;
        if (Object.keys(hash).length) rooms[roomId] = { sessions: parseKeys(hash) };
      });
    }
    return { body: { rooms } };
  });
  clientRoute(front, 'GET', '/room_keys/keys/:roomId', async (req) => {
    const me = await requireUser(ctx, req);
    const version = versionParam(req);
    if (!VERSION.test(version)) throw unknownVersion();
    const u = me.userId;
    const [[, record], [, hash]] = (await ctx.redis.multi().hget(shardKey(ctx, u, userData.keyBackupVersions(u)), version).hgetall(shardKey(ctx, u, userData.keyBackupRoom(u, version, req.params.roomId!))).exec()) as [[unknown, string | null], [unknown, Record<string, string>]];
    if (record === null) throw unknownVersion();
    return { body: { sessions: parseKeys(hash) } };
  });
  clientRoute(front, 'GET', '/room_keys/keys/:roomId/:sessionId', async (req) => {
    const me = await requireUser(ctx, req);
    const version = versionParam(req);
    if (!VERSION.test(version)) throw unknownVersion();
    const u = me.userId;
    const [[, record], [, key]] = (await ctx.redis.multi().hget(shardKey(ctx, u, userData.keyBackupVersions(u)), version).hget(shardKey(ctx, u, userData.keyBackupRoom(u, version, req.params.roomId!)), req.params.sessionId!).exec()) as [[unknown, string | null], [unknown, string | null]];
    if (record === null) throw unknownVersion();
    if (key === null) throw errors.notFound('No room_keys found');
    return { body: JSON.parse(key) as JsonObject };
  });

  const deleteKeys = async (req: Request) => {
    const me = await requireUser(ctx, req);
    const version = versionParam(req);
    if (!VERSION.test(version)) throw unknownVersion();
    const body: KeyBackupMessage = { op: 'delete_keys', version };
    if (req.params.roomId !== undefined) body.roomId = req.params.roomId;
    if (req.params.sessionId !== undefined) body.sessionId = req.params.sessionId;
    const reply = await askBackup<{ etag: string; count: number }>(ctx, me.userId, body);
    return { body: { etag: reply.etag, count: reply.count } };
  };
  clientRoute(front, 'DELETE', '/room_keys/keys', deleteKeys);
  clientRoute(front, 'DELETE', '/room_keys/keys/:roomId', deleteKeys);
  clientRoute(front, 'DELETE', '/room_keys/keys/:roomId/:sessionId', deleteKeys);
}
