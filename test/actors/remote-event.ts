/**
 * Events built as another server would build them — on top of a room's extremities (or given prev
 * events) and its state there, hashed and signed with that server's key — for tests that hand them
 * to a room actor's `ingest`.
 */
import { randomBytes } from 'node:crypto';
import { authEventSelection } from '../../src/protocol/auth-rules';
import type { SigningKey } from '../../src/protocol/crypto';
import { hashAndSignEvent } from '../../src/protocol/event-hashing';
import type { JsonObject } from '../../src/protocol/json';
import { stateKeyOf } from '../../src/protocol/pdu';
import { requireRoomVersion } from '../../src/protocol/room-versions';
import type { RoomReader } from '../../src/store/room-reader';

export interface RemoteTemplate {
  type: string;
  sender: string;
  content: JsonObject;
  stateKey?: string;
  prev?: string[];
  ts?: number;
  version?: string;
}

export async function buildRemoteEvent(reader: RoomReader, roomId: string, origin: { server: string; key: SigningKey }, t: RemoteTemplate, defaultVersion = '10'): Promise<JsonObject> {
  const meta = (await reader.meta(roomId))!;
  const prev = t.prev ?? meta.extremities;
  const prevEvents = await reader.events(roomId, prev);
  const state = prev.length === 1 ? (await reader.stateAt(roomId, prev[0]!, 'after'))! : await reader.currentStateIds(roomId);
  const version = requireRoomVersion(t.version ?? defaultVersion);
  const auth = authEventSelection({ type: t.type, stateKey: t.stateKey, sender: t.sender, content: t.content }, version)
    .map(([type, key]) => state.get(stateKeyOf(type, key)))
    .filter((x): x is string => !!x);
  const raw: JsonObject = {
    room_id: roomId, sender: t.sender, type: t.type, content: t.content, origin_server_ts: t.ts ?? Date.now(),
    depth: Math.max(...prevEvents.map((e) => e.depth)) + 1,
    prev_events: version.eventRefsWithHashes ? prev.map((id) => [id, {}]) : prev,
    auth_events: version.eventRefsWithHashes ? auth.map((id) => [id, {}]) : auth,
  };
  if (t.stateKey !== undefined) raw.state_key = t.stateKey;
  // v1/v2 event ids are chosen by the sending server and carried in the event.
  if (version.eventIdFormat === 'v1') raw.event_id = `$${randomBytes(9).toString('base64url')}:${origin.server}`;
  return hashAndSignEvent(raw, version, origin.server, origin.key);
}
