/**
 * Room writes (issue 5): `POST /createRoom`; joining, leaving, forgetting, inviting, kicking,
 * banning, unbanning and knocking; `PUT /send`, `PUT /state`, `PUT /redact`. Every event goes
 * to the room actor as a template — it signs it, checks it against the authorization rules and
 * persists it — so these handlers only validate input and say what to send. Membership changes
 * the actor confirms are recorded in the sender's joined-rooms index at once (the membership
 * index reader records them too, from the room outbox; whichever comes second is a no-op).
 * Forgetting a room is the user's own data: the user actor records it (`forget`).
 *
 * Rooms on other servers: joins and knocks go over federation (src/rooms/join.ts), as do leaving a
 * room where the user only has a remote invite or knock (src/rooms/join-remote.ts) and inviting a
 * user of another server (src/rooms/invite-remote.ts).
 */
import { assertRoomNotBlocked } from '../../rooms/blocked';
import type { Front, Request } from '../../http/server';
import { MatrixError, errors } from '../../http/errors';
import type { EventTemplate } from '../../rooms/model';
import type { JsonObject } from '../../protocol/json';
import { serverOf } from '../../protocol/identifiers';
import { getRoomVersion } from '../../protocol/room-versions';
import { MembershipIndex } from '../../readers/membership-index';
import { asGuardedUser, refuseIfSuspended, requireUser, type Requester } from './auth';
import type { ApiContext } from '../context';
import { presenceOnActivity } from './presence';
import { registerAliasRoutes } from './aliases';
import { AliasStore } from '../../rooms/aliases';
import { currentPower } from '../../rooms/power';
import { askUser } from './accounts-common';
import { registerRoomReadRoutes } from './room-reads';
import { bodyObject, clientRoute } from './room-common';
import { rememberSentTxn, txnKey } from '../../rooms/client-format';
import { optString, requireRoomId, requireUserIdParam } from '../../http/params';
import { sendEvent, type SendReply } from '../../rooms/ask';
import { checkPowerLevelsContent, checkThreepidInvite } from '../../rooms/create-room-request';
import { createRoom, threepidLookupDenied } from '../../rooms/create';
import { joinRoom, knockRoom, remoteDeps, sendLocalMembership } from '../../rooms/join';
import { leaveRemoteRoom } from '../../rooms/join-remote';
import { askAppservicesForUser } from '../../rooms/appservice-users';
import { inviteRemoteUser } from '../../rooms/invite-remote';
import { asksForDelay, requestedDelay, scheduleDelayedEvent } from './delayed-events';
import { sendTrace } from '../../runtime/send-trace';

export function registerRoomRoutes(front: Front, ctx: ApiContext): void {
  const index = new MembershipIndex(ctx.redis, ctx.keys, ctx.shardCounts.user);
  const aliases = new AliasStore(ctx);

  /** Send a membership event and record it in the target's joined-rooms index (src/rooms/join.ts). */
  const sendMembership = (roomId: string, sender: string, target: string, given: JsonObject): Promise<SendReply> => sendLocalMembership(ctx, index, roomId, sender, target, given);

  /** Unknown rooms answer 403 (for writes) so that probing does not reveal which rooms exist. */
  const requireKnownRoom = async (roomId: string) => {
    if (!(await ctx.rooms.meta(roomId))) throw unknownRoomError();
    rememberKnown(roomId);
  };
  /**
   * Rooms this front has seen exist, for `/send`, so that a message does not cost a read of the
   * room's record first (a GET and its decoding on every send; workload A sends ~1,000 a second
   * through one front). A room, once created, stays created until it is purged, and then its
   * actor refuses what is sent to it (404, "being purged" or "Unknown room"): a room remembered
   * here after its purge is answered by the actor, as a send racing the purge always was, and
   * `/send` turns that into the 403 of an unknown room (and forgets the room).
   */
  const knownRooms = new Set<string>();
  const rememberKnown = (roomId: string) => {
    if (knownRooms.has(roomId)) return;
    if (knownRooms.size >= KNOWN_ROOMS_MAX) knownRooms.delete(knownRooms.values().next().value!);
    knownRooms.add(roomId);
  };

  clientRoute(front, 'POST', '/createRoom', async (req) => {
    const user = await requireUser(ctx, req);
    refuseIfSuspended(user, SENDING);
    const roomId = await createRoom(ctx, user, bodyObject(req), aliases, index);
    return { body: { room_id: roomId } };
  });

  // ---- membership ----

  const join = async (req: Request, idOrAlias: string | undefined) => {
    const user = await requireUser(ctx, req);
    refuseIfSuspended(user, 'Joining rooms while account is suspended is not allowed.');
    const body = req.body.length ? bodyObject(req) : {};
    const via = [...(req.queryAll.server_name ?? []), ...(req.queryAll.via ?? [])];
    // A join over federation of a big room outlives the usual request deadline (see joinRemoteRoom).
    const roomId = await joinRoom(ctx, aliases, index, user.userId, idOrAlias, body, via, (ms) => req.allowWait(ms));
    return { body: { room_id: roomId } };
  };
  clientRoute(front, 'POST', '/join/:roomIdOrAlias', (req) => join(req, req.params.roomIdOrAlias));
  clientRoute(front, 'POST', '/rooms/:roomId/join', (req) => join(req, requireRoomId(req.params.roomId)));

  clientRoute(front, 'POST', '/knock/:roomIdOrAlias', async (req) => {
    const user = await requireUser(ctx, req);
    refuseIfSuspended(user, 'Knocking on rooms while account is suspended is not allowed.');
    const body = req.body.length ? bodyObject(req) : {};
    const via = [...(req.queryAll.server_name ?? []), ...(req.queryAll.via ?? [])];
    const roomId = await knockRoom(ctx, aliases, index, user.userId, req.params.roomIdOrAlias, optString(body, 'reason'), via);
    return { body: { room_id: roomId } };
  });

  clientRoute(front, 'POST', '/rooms/:roomId/leave', async (req) => {
    const user = await requireUser(ctx, req);
    const roomId = requireRoomId(req.params.roomId);
    const body = req.body.length ? bodyObject(req) : {};
    const content: JsonObject = { membership: 'leave' };
    const reason = optString(body, 'reason');
    if (reason !== undefined) content.reason = reason;
    // An invite to (or a knock on) a room this server does not have — or where the user's
    // membership is not here — is left through a server in the room (src/rooms/join-remote.ts).
    const fed = remoteDeps(ctx);
    if (fed) {
      const here = (await ctx.rooms.meta(roomId)) ? await ctx.rooms.membership(roomId, user.userId) : null;
      if (here !== 'join' && here !== 'invite' && here !== 'knock' && (await leaveRemoteRoom(ctx, fed, user.userId, roomId, content))) return { body: {} };
    }
    await requireKnownRoom(roomId);
    await sendMembership(roomId, user.userId, user.userId, content);
    return { body: {} };
  });

  clientRoute(front, 'POST', '/rooms/:roomId/forget', async (req) => {
    const user = await requireUser(ctx, req);
    const roomId = requireRoomId(req.params.roomId);
    const membership = await ctx.rooms.membership(roomId, user.userId);
    if (membership === 'join' || membership === 'invite' || membership === 'knock') throw new MatrixError(400, 'M_UNKNOWN', 'You have not left the room');
    await askUser(ctx, user.userId, { op: 'forget', roomId });
    return { body: {} };
  });

  /** invite, kick, ban, unban: a membership event for another user. */
  const targeted = (op: 'invite' | 'kick' | 'ban' | 'unban') => async (req: Request) => {
    const user = await requireUser(ctx, req);
    // Kicks and unbans are leaves, which a suspended user may still send (as Synapse).
    if (op === 'invite') refuseIfSuspended(user, 'Sending invites while account is suspended is not allowed.');
    if (op === 'ban') refuseIfSuspended(user, MEMBERSHIP);
    const roomId = requireRoomId(req.params.roomId);
    const body = bodyObject(req);
    if (op === 'invite' && body.user_id === undefined && (body.medium !== undefined || body.address !== undefined)) {
      checkThreepidInvite(body);
      await requireKnownRoom(roomId);
      throw threepidLookupDenied();
    }
    // A missing or malformed user id is a bad parameter (Synapse's codes), not malformed JSON.
    if (body.user_id === undefined) throw errors.missingParam('Missing user_id');
    let target: string;
    try {
      target = requireUserIdParam(body.user_id);
    } catch {
      throw errors.invalidParam('user_id must be a user id');
    }
    const reason = optString(body, 'reason');
    await requireKnownRoom(roomId);
    if (op === 'invite') await assertRoomNotBlocked(ctx, roomId);
    if (op === 'invite' && serverOf(target) !== ctx.config.serverName) {
      const fed = remoteDeps(ctx);
      if (!fed) throw new MatrixError(403, 'M_FORBIDDEN', 'Inviting users of other servers needs federation, which is off on this server');
      const content: JsonObject = { membership: 'invite' };
      if (reason !== undefined) content.reason = reason;
      await inviteRemoteUser(ctx, fed, roomId, user.userId, target, content);
      return { body: {} };
    }
    // An appservice's puppet not made yet: the appservice is asked first, as on Synapse.
    if (op === 'invite') await askAppservicesForUser(ctx, target);
    if (op === 'unban' && (await ctx.rooms.membership(roomId, target)) !== 'ban') throw new MatrixError(403, 'M_FORBIDDEN', `${target} is not banned`);
    // Kicking someone who is not in the room (never was, has left, or is banned: a kick would lift
    // the ban) is refused, as Synapse does; the authorization rules alone would let it through.
    if (op === 'kick') {
      const current = await ctx.rooms.membership(roomId, target);
      if (current === null || current === 'leave' || current === 'ban') throw new MatrixError(403, 'M_FORBIDDEN', `${target} is not in the room`);
    }
    const membership = op === 'kick' || op === 'unban' ? 'leave' : op;
    const content: JsonObject = { membership };
    if (reason !== undefined) content.reason = reason;
    await sendMembership(roomId, user.userId, target, content);
    return { body: {} };
  };
  clientRoute(front, 'POST', '/rooms/:roomId/invite', targeted('invite'));
  clientRoute(front, 'POST', '/rooms/:roomId/kick', targeted('kick'));
  clientRoute(front, 'POST', '/rooms/:roomId/ban', targeted('ban'));
  clientRoute(front, 'POST', '/rooms/:roomId/unban', targeted('unban'));

  // ---- events ----

  clientRoute(front, 'PUT', '/rooms/:roomId/send/:eventType/:txnId', async (req) => {
    // AXON_SEND_TRACE (src/runtime/send-trace.ts): this send's stages, under the message id it asks with.
    const traced = sendTrace ? ctx.actors.newMessageId() : undefined;
    if (traced) sendTrace!.begin(traced, 'h0');
    // What a send checks before its write, in this order, with or without a delay.
    const prepare = async (user: Requester) => {
      const roomId = requireRoomId(req.params.roomId);
      const content = bodyObject(req);
      if (user.suspended) await refuseSuspendedEvent(user, roomId, req.params.eventType!, content);
      const delay = requestedDelay(req);
      if (!knownRooms.has(roomId)) await requireKnownRoom(roomId);
      return { roomId, content, delay };
    };
    // MSC4140: scheduled for later (src/api/client/delayed-events.ts): a write of its own, so not guarded.
    if (asksForDelay(req)) {
      const user = await requireUser(ctx, req);
      const { roomId, content, delay } = await prepare(user);
      return { body: await scheduleDelayedEvent(ctx, user, roomId, req.params.eventType!, undefined, content, delay!, txnKey('send', user.userId, user.deviceId, req.params.txnId!)) };
    }
    // The room's send is the one write, guarded by the token's record (asGuardedUser): the
    // record is not read first when this front has a copy.
    return asGuardedUser(ctx, req, async (user, guard) => {
      const { roomId, content } = await prepare(user);
      const txn = txnKey('send', user.userId, user.deviceId, req.params.txnId!);
      const reply = await sendEvent(ctx, roomId, { type: req.params.eventType!, sender: user.userId, content }, txn, { ...(traced ? { mid: traced } : {}), ...(guard ? { guard } : {}) }).catch((e: unknown) => {
        // A room remembered here and purged since (or being purged): its actor answers "Unknown
        // room" / "being purged" (404). Answer as for any room this front does not know — 403, so
        // that a send does not tell a purged room from one that never existed — and forget it.
        if (e instanceof MatrixError && e.errcode === 'M_NOT_FOUND') {
          knownRooms.delete(roomId);
          throw unknownRoomError();
        }
        throw e;
      });
      rememberSentTxn(reply.event_id, txn);
      presenceOnActivity(ctx, user.userId);
      if (traced) sendTrace!.end(traced, 'ans');
      return { body: { event_id: reply.event_id } };
    });
  });

  const putState = async (req: Request, stateKey: string) => {
    const user = await requireUser(ctx, req);
    const roomId = requireRoomId(req.params.roomId);
    const type = req.params.eventType!;
    const content = bodyObject(req);
    if (user.suspended) await refuseSuspendedEvent(user, roomId, type, content);
    // A room has one create event, made by createRoom: a client sending one as state (any state
    // key) is refused as bad input before the room is asked, as Synapse does. (Sent with
    // `/send`, without a state key, the authorization rules refuse it: rule 1, 403.)
    if (type === 'm.room.create') throw errors.invalidParam('Cannot resend m.room.create event');
    const delay = requestedDelay(req);
    await requireKnownRoom(roomId);
    // MSC4140: scheduled for later (src/api/client/delayed-events.ts); checked when it is sent.
    if (delay !== null) return { body: await scheduleDelayedEvent(ctx, user, roomId, type, stateKey, content, delay) };
    if (type === 'm.room.canonical_alias') await checkCanonicalAlias(ctx, aliases, roomId, content);
    // An invite of a user of another server written as state: their server must co-sign it
    // (PUT /invite), exactly as through /invite; the room actor alone cannot make it valid there.
    if (type === 'm.room.member' && content.membership === 'invite' && serverOf(stateKey) && serverOf(stateKey) !== ctx.config.serverName) {
      const fed = remoteDeps(ctx);
      if (!fed) throw new MatrixError(403, 'M_FORBIDDEN', 'Inviting users of other servers needs federation, which is off on this server');
      return { body: { event_id: await inviteRemoteUser(ctx, fed, roomId, user.userId, stateKey, content) } };
    }
    if (type === 'm.room.power_levels' && stateKey === '') {
      const version = getRoomVersion(String((await ctx.rooms.meta(roomId))?.version ?? ''));
      if (version) checkPowerLevelsContent(content, version, 'content');
    }
    const template: EventTemplate = { type, state_key: stateKey, sender: user.userId, content };
    const reply = await sendEvent(ctx, roomId, template);
    if (type === 'm.room.member' && typeof content.membership === 'string' && serverOf(stateKey) === ctx.config.serverName) {
      await index.record(stateKey, roomId, reply.pos, content.membership);
    }
    return { body: { event_id: reply.event_id } };
  };
  clientRoute(front, 'PUT', '/rooms/:roomId/state/:eventType/:stateKey', (req) => putState(req, req.params.stateKey!));
  clientRoute(front, 'PUT', '/rooms/:roomId/state/:eventType/', (req) => putState(req, ''));
  clientRoute(front, 'PUT', '/rooms/:roomId/state/:eventType', (req) => putState(req, ''));

  clientRoute(front, 'PUT', '/rooms/:roomId/redact/:eventId/:txnId', async (req) => {
    const user = await requireUser(ctx, req);
    const roomId = requireRoomId(req.params.roomId);
    const body = req.body.length ? bodyObject(req) : {};
    const reason = optString(body, 'reason');
    const target = req.params.eventId!;
    if (!target.startsWith('$')) throw errors.invalidParam('Not an event id');
    if (user.suspended) await refuseSuspendedEvent(user, roomId, 'm.room.redaction', { redacts: target });
    await requireKnownRoom(roomId);
    // The room accepts any redaction event and applies it only when allowed; clients are told
    // up front when they may not redact someone else's event (redact level).
    const targetEvent = await ctx.rooms.event(roomId, target);
    if (targetEvent && targetEvent.event.sender !== user.userId) {
      const power = await currentPower(ctx, roomId);
      if (power && power.userLevel(user.userId) < power.redact) throw new MatrixError(403, 'M_FORBIDDEN', "You may not redact other users' events in this room");
    }
    const content: JsonObject = reason !== undefined ? { reason } : {};
    const txn = txnKey('redact', user.userId, user.deviceId, req.params.txnId!);
    const reply = await sendEvent(ctx, roomId, { type: 'm.room.redaction', sender: user.userId, content, redacts: target }, txn);
    rememberSentTxn(reply.event_id, txn);
    return { body: { event_id: reply.event_id } };
  });

  /**
   * What a suspended user may still send (as Synapse): leaving (their own or, as kicks, others'
   * membership set to leave) and redactions of their own events.
   */
  const refuseSuspendedEvent = async (user: Requester, roomId: string, type: string, content: JsonObject) => {
    if (type === 'm.room.member') {
      if (content.membership !== 'leave') refuseIfSuspended(user, MEMBERSHIP);
      return;
    }
    if (type === 'm.room.redaction') {
      const redacts = typeof content.redacts === 'string' ? content.redacts : null;
      const target = redacts ? await ctx.rooms.event(roomId, redacts) : null;
      if (target && target.event.sender !== user.userId) refuseIfSuspended(user, 'You can only redact your own events while account is suspended.');
      return;
    }
    refuseIfSuspended(user, SENDING);
  };

  registerRoomReadRoutes(front, ctx, index);
  registerAliasRoutes(front, ctx, aliases);
}

const unknownRoomError = () => new MatrixError(403, 'M_FORBIDDEN', 'You are not in this room (or it does not exist)');

/** Room ids a front remembers as existing (`knownRooms`): ~100 bytes each. */
const KNOWN_ROOMS_MAX = 100_000;

const SENDING = 'Sending messages while account is suspended is not allowed.';
const MEMBERSHIP = 'Changing membership while account is suspended is not allowed.';

/** m.room.canonical_alias: local aliases in it must exist and point at this room (M_BAD_ALIAS). */
async function checkCanonicalAlias(ctx: ApiContext, aliases: AliasStore, roomId: string, content: JsonObject): Promise<void> {
  const named: string[] = [];
  if (content.alias !== undefined && content.alias !== null) {
    if (typeof content.alias !== 'string') throw errors.badJson('alias must be a string');
    named.push(content.alias);
  }
  if (content.alt_aliases !== undefined) {
    if (!Array.isArray(content.alt_aliases) || !content.alt_aliases.every((a) => typeof a === 'string')) throw errors.badJson('alt_aliases must be a list of aliases');
    named.push(...(content.alt_aliases as string[]));
  }
  for (const a of named) {
    const m = /^#[^:]+:(.+)$/.exec(a);
    if (!m) throw errors.invalidParam(`Not a room alias: ${a}`);
    if (m[1] !== ctx.config.serverName) continue; // remote aliases can only be checked over federation
    const rec = await aliases.get(a);
    if (!rec || rec.r !== roomId) throw new MatrixError(400, 'M_BAD_ALIAS', `${a} does not point to this room`);
  }
}
