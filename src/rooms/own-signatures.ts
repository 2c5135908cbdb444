/**
 * Our signature on our own events, added when they leave the server. The room actor stores the
 * events it builds hashed but unsigned (src/protocol/event-hashing.ts `hashAndIdentify`): signing
 * was a fifth of its CPU per event, and most events never go to another server. Every path that
 * hands stored events to a peer passes them through `OwnEventSigner.pdu`: the federation sender's
 * transactions (actors/destination.ts), /event, /backfill, /get_missing_events, /state,
 * /event_auth, send_join's state and auth chain, and the admin API's `event_json`. Events stored
 * signed (received ones, and our own built before this or outside the room actor: create events,
 * remote joins and invites) go out as stored.
 *
 * ed25519 is deterministic and the signature covers the redacted event without `signatures`, which
 * is also what the v3+ event id hashes: one event id, one signature, whether the event is redacted
 * meanwhile or not. So signatures are cached by event id (a catch-up or a busy room's fan-out to
 * many destinations signs each event once per process).
 */
import { needsOwnSignature, ownEventSignature, withOwnSignature } from '../protocol/event-hashing';
import type { SigningKey } from '../protocol/crypto';
import type { JsonObject } from '../protocol/json';
import type { RoomVersion } from '../protocol/room-versions';
import { ClockCache } from '../store/clock-cache';

/** Bytes of signatures kept per signer (~200 bytes an entry with its key: ~10,000 events). */
const CACHE_BYTES = 2 * 1024 * 1024;

export class OwnEventSigner {
  private readonly cache = new ClockCache<string, string>(CACHE_BYTES, (sig, id) => 2 * (sig.length + id.length) + 64);

  constructor(
    readonly serverName: string,
    readonly key: SigningKey,
  ) {}

  /** The event as it goes to another server: with our signature when it is one of ours stored without it (a new object then). */
  pdu(eventId: string, event: JsonObject, version: RoomVersion): JsonObject {
    if (!needsOwnSignature(event, version, this.serverName)) return event;
    let sig = this.cache.get(eventId);
    if (sig === undefined) {
      sig = ownEventSignature(event, version, this.key);
      this.cache.set(eventId, sig);
    }
    return withOwnSignature(event, version, this.serverName, this.key, sig);
  }

  pdus(events: readonly { eventId: string; event: JsonObject }[], version: RoomVersion): JsonObject[] {
    return events.map((e) => this.pdu(e.eventId, e.event, version));
  }
}

const signers = new Map<string, OwnEventSigner>();

/**
 * The process's signer for a server and key (one cache per key, shared by every path of the
 * process: a process may serve several servers in tests).
 */
export function ownEventSigner(serverName: string, key: SigningKey): OwnEventSigner {
  const id = `${serverName}\u0000${key.keyId}\u0000${key.publicKeyBase64}`;
  let s = signers.get(id);
  if (!s) {
    if (signers.size >= 64) signers.clear();
    s = new OwnEventSigner(serverName, key);
    signers.set(id, s);
  }
  return s;
}
