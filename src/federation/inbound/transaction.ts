/**
 * Processing an inbound transaction's PDUs (server-server API, "Transactions" and "PDUs"): the
 * envelope was checked (checkInboundTransaction) and deduplicated (txn-dedupe.ts) by the handler;
 * here the PDUs are sorted by room and each room's handed to its room actor's `ingest`, which
 * runs the receipt checks numbered as the spec numbers them (src/rooms/ingest.ts). One result per
 * PDU: a bad PDU fails alone and the rest go through.
 *
 * Before a room's PDUs reach its actor:
 *   - the room must be known here (otherwise every PDU of it gets an error entry, except one
 *     rescinding an invite of one of our users: rescinded-invites.ts);
 *   - its server ACL (`m.room.server_acl`, current state) must allow the origin — otherwise every
 *     PDU of that room is refused — and each PDU's sender's server, or that PDU is refused;
 *   - the keys of every server that must sign them are fetched (pdu-keys.ts).
 * PDUs ingest answers `missing` for go through missing-events.ts (get_missing_events, then the
 * state before them), bounded by the transaction's deadline.
 *
 * Rooms are processed concurrently (a slow room does not hold up the others); within a room, in
 * the transaction's order (the actor orders them by their edges).
 */
import { MatrixError } from '../../http/errors';
import { computeEventId, serverNameOf } from '../../protocol/event-hashing';
import type { JsonObject } from '../../protocol/json';
import { requireRoomVersion } from '../../protocol/room-versions';
import { buildTransactionResponse, sortPdusByRoom, type InboundTransaction, type PduResult, type TransactionResponse } from '../../protocol/transactions';
import { askRoomFamily } from '../../rooms/ask';
import type { IngestReply } from '../../rooms/model';
import { fillGapsAndIngest, safeEventId, type GapDeps, type IngestResult } from './missing-events';
import { keysForPdus } from './pdu-keys';
import { takeRescindedInvites } from './rescinded-invites';
import { roomForServer, type RoomForServer } from './room-access';

export type InboundDeps = GapDeps;

/** A PDU result's error text for an ingest outcome (undefined: success). */
export function errorForOutcome(r: IngestResult): string | undefined {
  switch (r.status) {
    case 'accepted':
    case 'soft_failed':
    case 'outlier':
    case 'duplicate':
      return undefined;
    case 'missing':
      return `missing events: ${(r.missing ?? []).slice(0, 10).join(', ')}${r.reason ? ` (${r.reason})` : ''}`;
    default:
      return `${r.status}: ${r.reason ?? 'no reason given'}`;
  }
}

export async function processTransactionPdus(deps: InboundDeps, txn: InboundTransaction, deadline: number): Promise<TransactionResponse> {
  const { rooms, ignored } = sortPdusByRoom(txn.pdus);
  if (ignored.length) deps.log.info({ origin: txn.origin, txn_id: txn.txnId, ignored }, 'transaction: PDUs without a room ignored');
  const perRoom = await Promise.all([...rooms].map(([roomId, pdus]) => processRoomPdus(deps, txn.origin, roomId, pdus, deadline)));
  return buildTransactionResponse(perRoom.flat());
}

/** An event id for a PDU of a room we cannot read the version of: as the PDU's format suggests. */
function guessedEventId(raw: JsonObject): string | null {
  if (typeof raw.event_id === 'string') return raw.event_id;
  try {
    return computeEventId(raw, requireRoomVersion('10'));
  } catch {
    return null;
  }
}

async function processRoomPdus(deps: InboundDeps, origin: string, roomId: string, pdus: JsonObject[], deadline: number): Promise<PduResult[]> {
  let room: RoomForServer | null;
  try {
    room = await roomForServer(deps.api.rooms, roomId);
  } catch (e) {
    deps.log.warn({ err: e, room_id: roomId }, 'transaction: could not read the room');
    return allFail(pdus, null, 'could not read the room; try again');
  }
  if (!room) {
    // A room we are not in: only the rescinding of an invite of ours is taken (rescinded-invites.ts).
    const taken = await takeRescindedInvites(deps, origin, roomId, pdus, deadline).catch((e: unknown) => {
      deps.log.warn({ err: e, room_id: roomId }, 'transaction: could not take a rescinded invite');
      return [] as PduResult[];
    });
    const answered = new Set(taken.map((r) => r.eventId));
    return [...taken, ...allFail(pdus, null, `unknown room ${roomId}`).filter((r) => !answered.has(r.eventId))];
  }
  // The whole room's PDUs when the origin is denied.
  if (!room.aclAllows(origin)) return allFail(pdus, room, `${origin} is denied by the room's server ACL`);

  const out: PduResult[] = [];
  const take: { raw: JsonObject; id: string }[] = [];
  for (const raw of pdus) {
    const id = safeEventId(raw, room);
    if (!id) continue; // no event id to answer for: the format check would drop it anyway
    const senderServer = typeof raw.sender === 'string' ? serverNameOf(raw.sender) : null;
    if (senderServer && !room.aclAllows(senderServer)) {
      out.push({ eventId: id, error: `the sender's server ${senderServer} is denied by the room's server ACL` });
      continue;
    }
    take.push({ raw, id });
  }
  if (take.length === 0) return out;

  const latest = new Map<string, IngestResult>();
  try {
    const keys = await keysForPdus(deps.keyStore, take.map((t) => t.raw), room.version, deadline - 3000);
    const reply = await askRoomFamily<IngestReply>(deps.api, 'room', roomId, { op: 'ingest', pdus: take.map((t) => t.raw), keys });
    for (const r of reply.results) if (r.event_id) latest.set(r.event_id, r);
    const missing = take.filter((t) => latest.get(t.id)?.status === 'missing');
    if (missing.length && Date.now() < deadline - 1000) {
      const filled = await fillGapsAndIngest(deps, room, origin, missing.map((t) => t.raw), deadline);
      for (const [id, r] of filled) if (latest.has(id)) latest.set(id, r);
    }
  } catch (e) {
    const reason = e instanceof MatrixError ? e.message : 'internal error';
    if (!(e instanceof MatrixError)) deps.log.error({ err: e, room_id: roomId, origin }, 'transaction: ingest failed');
    for (const t of take) if (!latest.has(t.id)) latest.set(t.id, { event_id: t.id, status: 'dropped', reason });
  }
  for (const t of take) {
    const r = latest.get(t.id);
    out.push({ eventId: t.id, error: r ? errorForOutcome(r) : 'not processed' });
  }
  return out;
}

function allFail(pdus: JsonObject[], room: RoomForServer | null, error: string): PduResult[] {
  const out: PduResult[] = [];
  for (const raw of pdus) {
    const id = room ? safeEventId(raw, room) : guessedEventId(raw);
    if (id) out.push({ eventId: id, error });
  }
  return out;
}
