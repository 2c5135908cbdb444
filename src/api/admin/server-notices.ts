/**
 * Server notices, as Synapse's `POST /_synapse/admin/v1/send_server_notice` (and `PUT …/{txnId}`):
 * an admin sends an event (`type`, default `m.room.message`; `state_key` for state) to a local
 * user, from the system user `@<serverNotices.systemUserLocalpart>:<server>`, into that user's
 * notices room. The room is made on the first notice: private, named `serverNotices.roomName`,
 * with `users_default: -10` so the user can read and leave but not answer (as Synapse's), tagged
 * `m.server_notice` in the user's account data; the user is invited again whenever they are
 * neither joined nor invited. The system user's account is made when first needed, with the
 * configured display name and avatar.
 *
 * The room of each user is kept in a hash (fronts write it: the room id is the room actor's to
 * make, the mapping is a lookup). Concurrent first notices for one user are ordered by a claim key,
 * so they make one room.
 */
import { MatrixError, errors } from '../../http/errors';
import type { Front, Request } from '../../http/server';
import { isValidUserId, serverOf } from '../../protocol/identifiers';
import type { JsonObject } from '../../protocol/json';
import { MembershipIndex } from '../../readers/membership-index';
import { AliasStore } from '../../rooms/aliases';
import { sendEvent } from '../../rooms/ask';
import { txnKey } from '../../rooms/client-format';
import { createRoom } from '../../rooms/create';
import { sendLocalMembership } from '../../rooms/join';
import { askUser, jsonBody, readAccount } from '../client/accounts-common';
import type { ApiContext } from '../context';
import { requireAdmin } from './common';

const PATH = '/_synapse/admin/v1/send_server_notice';
const TAG = 'm.server_notice';
const CLAIM_MS = 30_000;

export function registerServerNoticeRoutes(front: Front, ctx: ApiContext): void {
  const index = new MembershipIndex(ctx.redis, ctx.keys, ctx.shardCounts.user);
  const aliases = new AliasStore(ctx);
  const cfg = ctx.config.serverNotices;
  const systemUser = () => `@${cfg.systemUserLocalpart}:${ctx.config.serverName}`;

  const ensureSystemUser = async () => {
    const id = systemUser();
    if (await readAccount(ctx, id)) return id;
    try {
      await askUser(ctx, id, { op: 'register', passwordHash: null, displayname: cfg.displayName || cfg.systemUserLocalpart });
    } catch (e) {
      // Made meanwhile by another front's notice.
      if (!(e instanceof MatrixError && e.errcode === 'M_USER_IN_USE')) throw e;
    }
    if (cfg.avatarUrl) await askUser(ctx, id, { op: 'set_profile', field: 'avatar_url', value: cfg.avatarUrl });
    return id;
  };

  /** The user's notices room, made on first use. */
  const noticeRoom = async (system: string, userId: string): Promise<string> => {
    const deadline = Date.now() + CLAIM_MS;
    for (;;) {
      const known = await ctx.redis.hget(ctx.keys.serverNoticeRooms(), userId);
      if (known && (await ctx.rooms.meta(known))) return known;
      if ((await ctx.redis.set(ctx.keys.serverNoticeRoomClaim(userId), '1', 'PX', CLAIM_MS, 'NX')) === 'OK') break;
      if (Date.now() > deadline) throw new MatrixError(503, 'M_UNKNOWN', 'The notices room is being made; retry');
      await new Promise((r) => setTimeout(r, 100));
    }
    try {
      const body: JsonObject = { preset: 'private_chat', power_level_content_override: { users_default: -10 } };
      if (cfg.roomName) body.name = cfg.roomName;
      const roomId = await createRoom(ctx, { userId: system }, body, aliases, index);
      await askUser(ctx, userId, { op: 'set_room_tag', roomId, tag: TAG, json: '{}' });
      await ctx.redis.hset(ctx.keys.serverNoticeRooms(), userId, roomId);
      return roomId;
    } finally {
      await ctx.redis.del(ctx.keys.serverNoticeRoomClaim(userId));
    }
  };

  const send = async (req: Request, txnId: string | undefined) => {
    const me = await requireAdmin(ctx, req);
    const body = jsonBody(req);
    const missing = ['user_id', 'content'].filter((k) => !(k in body));
    if (missing.length) throw errors.missingParam(`Missing params: [${missing.map((k) => `'${k}'`).join(', ')}]`);
    const type = body.type ?? 'm.room.message';
    if (typeof type !== 'string') throw errors.invalidParam('type must be a string');
    const stateKey = body.state_key;
    if (stateKey !== undefined && stateKey !== null && typeof stateKey !== 'string') throw errors.invalidParam('state_key must be a string');
    if (!body.content || typeof body.content !== 'object' || Array.isArray(body.content)) throw errors.badJson('content must be an object');
    if (!cfg.systemUserLocalpart) throw new MatrixError(400, 'M_UNKNOWN', 'Server notices are not enabled on this server');
    const userId = body.user_id;
    if (typeof userId !== 'string' || !isValidUserId(userId)) throw errors.invalidParam('user_id must be a user id');
    if (serverOf(userId) !== ctx.config.serverName) throw new MatrixError(400, 'M_UNKNOWN', 'Server notices can only be sent to local users');
    if (!(await readAccount(ctx, userId))) throw errors.notFound('User not found');

    const system = await ensureSystemUser();
    const roomId = await noticeRoom(system, userId);
    const membership = await ctx.rooms.membership(roomId, userId);
    if (membership !== 'join' && membership !== 'invite') await sendLocalMembership(ctx, index, roomId, system, userId, { membership: 'invite' });
    const event = { type, sender: system, content: body.content as JsonObject, ...(typeof stateKey === 'string' ? { state_key: stateKey } : {}) };
    const reply = await sendEvent(ctx, roomId, event, txnId === undefined ? undefined : txnKey('send', me.userId, me.deviceId, `server_notice\u0000${txnId}`));
    return { body: { event_id: reply.event_id } };
  };

  front.route('POST', PATH, (req) => send(req, undefined));
  front.route('PUT', `${PATH}/:txnId`, (req) => send(req, req.params.txnId));
}
