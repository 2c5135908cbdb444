/**
 * Content hashes, reference hashes, event ids and event signatures
 * (server-server API, "Signing Events"; room versions' "Event IDs").
 */
import { Base64Error, decodeBase64, encodeBase64, encodeBase64Url } from './base64';
import { CanonicalMembers, canonicalJson, canonicalJsonBytes, isJsonObject, type JsonObject } from './json';
import { sha256, sha256Base64, sha256Base64Url, signBytes, type SigningKey } from './crypto';
import { redactedContent, redactEvent, redactionKeepsTopLevel } from './redaction';
import { signJson, verifyJsonSignature, type SignatureCheck, type Signatures } from './signing';
import type { RoomVersion } from './room-versions';

/** SHA-256 over the event without `unsigned`, `signatures` and `hashes`: covers the full, unredacted event. */
export function computeContentHash(event: JsonObject): Uint8Array {
  const { unsigned: _u, signatures: _s, hashes: _h, ...rest } = event;
  return sha256(canonicalJsonBytes(rest));
}

/** Does `hashes.sha256` match the event? False when missing or malformed. */
export function checkContentHash(event: JsonObject): boolean {
  const hashes = event.hashes;
  if (!isJsonObject(hashes) || typeof hashes.sha256 !== 'string') return false;
  let claimed: Uint8Array;
  try {
    claimed = decodeBase64(hashes.sha256);
  } catch (e) {
    if (e instanceof Base64Error) return false;
    throw e;
  }
  const actual = computeContentHash(event);
  if (claimed.length !== actual.length) return false;
  let diff = 0;
  for (let i = 0; i < actual.length; i++) diff |= claimed[i]! ^ actual[i]!;
  return diff === 0;
}

/** SHA-256 over the redacted event without `signatures` and `unsigned` (the basis of v3+ event ids). */
export function computeReferenceHash(event: JsonObject, version: RoomVersion): Uint8Array {
  const { signatures: _s, unsigned: _u, ...rest } = redactEvent(event, version);
  return sha256(canonicalJsonBytes(rest));
}

/**
 * The bytes both an event's signatures and its reference hash are over: the canonical JSON of the
 * redacted event without `signatures` and `unsigned`. Computed once, they give the event id
 * (`eventIdFromSignable`) and check every signature.
 */
export function eventSignableBytes(event: JsonObject, version: RoomVersion): Uint8Array {
  return utf8.encode(signableJson(event, version));
}

/** `eventSignableBytes` as text. */
function signableJson(event: JsonObject, version: RoomVersion): string {
  const { signatures: _s, unsigned: _u, ...rest } = redactEvent(event, version);
  return canonicalJson(rest);
}

/** `computeEventId` from `eventSignableBytes` already computed (as bytes, or as text: hashed as its UTF-8). */
export function eventIdFromSignable(event: JsonObject, signable: Uint8Array | string, version: RoomVersion): string {
  switch (version.eventIdFormat) {
    case 'v1':
      if (typeof event.event_id !== 'string') throw new Error('Room version 1/2 events carry their event_id');
      return event.event_id;
    case 'v3':
      return '$' + sha256Base64(signable);
    case 'v4':
      return '$' + sha256Base64Url(signable);
  }
}

/**
 * The event id of an event. v1/v2 ids are chosen by the sending server and carried in the event
 * (`$opaque:server`); from v3 on they are derived from the reference hash, so any server gets
 * the same id from the same event.
 */
export function computeEventId(event: JsonObject, version: RoomVersion): string {
  switch (version.eventIdFormat) {
    case 'v1':
      if (typeof event.event_id !== 'string') throw new Error('Room version 1/2 events carry their event_id');
      return event.event_id;
    case 'v3':
      return '$' + encodeBase64(computeReferenceHash(event, version));
    case 'v4':
      return '$' + encodeBase64Url(computeReferenceHash(event, version));
  }
}

/**
 * Room id of a v12+ room: the create event's id with `!` for `$` (appendices, "Room IDs").
 * The create event itself has no `room_id`.
 */
export function roomIdFromCreateEvent(createEvent: JsonObject, version: RoomVersion): string {
  if (!version.roomIdFromCreateEvent) throw new Error(`Room version ${version.id} room ids are not derived from the create event`);
  return '!' + encodeBase64Url(computeReferenceHash(createEvent, version));
}

/**
 * Add `hashes.sha256` and this server's signature (over the redacted event) to an event,
 * returning a new object. Any existing signatures (e.g. from the server that built a join via
 * `make_join`) are kept.
 */
export function hashAndSignEvent(event: JsonObject, version: RoomVersion, serverName: string, key: SigningKey): JsonObject {
  const { event: hashed, signable } = hashOnly(event, version);
  return { ...hashed, signatures: signaturesWith(event, serverName, key.keyId, encodeBase64(signBytes(key, utf8.encode(signable)))) };
}

/** An event hashed and signed, with its event id and its canonical JSON (`hashSignAndIdentify`). */
export interface SignedEvent {
  /** The event with `hashes` and the signatures. */
  readonly event: JsonObject;
  /** `computeEventId(event, version)`. */
  readonly eventId: string;
  /** `canonicalJson(event)`. */
  readonly json: string;
}

const utf8 = new TextEncoder();
const NOT_HASHED: ReadonlySet<string> = new Set(['unsigned', 'signatures', 'hashes']);
const NOT_SIGNED: ReadonlySet<string> = new Set(['unsigned', 'signatures']);

/**
 * `hashAndSignEvent`, and the event id and canonical JSON of the result, with each member of the
 * event serialised once: the content hash, the signed bytes (which are also the reference hash's:
 * both are the redacted event without `signatures` and `unsigned`) and the stored JSON are
 * assembled from the members' canonical JSON instead of each walking the whole event again.
 */
export function hashSignAndIdentify(event: JsonObject, version: RoomVersion, serverName: string, key: SigningKey): SignedEvent {
  const { event: hashed, signable, members } = hashOnly(event, version);
  const signatures = signaturesWith(event, serverName, key.keyId, encodeBase64(signBytes(key, utf8.encode(signable))));
  members.set('signatures', signatures);
  return { event: { ...hashed, signatures }, eventId: eventIdFromSignable(hashed, signable, version), json: members.json() };
}

/**
 * `hashes.sha256` added; the signable JSON (the redacted event without `signatures`/`unsigned`:
 * what signatures and the reference hash are over) and the event's members as canonical JSON.
 */
function hashOnly(event: JsonObject, version: RoomVersion): { event: JsonObject; signable: string; members: CanonicalMembers } {
  const members = new CanonicalMembers(event);
  const hashes = { sha256: sha256Base64(members.json(NOT_HASHED)) };
  const hashed: JsonObject = { ...event, hashes };
  members.set('hashes', hashes);
  // The redacted form: the members redaction keeps, as they are (their JSON made already), and the
  // content redacted. An event without content gets `{}`: then the redacted event is made whole.
  const signable = members.has('content')
    ? members.jsonKeeping(redactionKeepsTopLevel(version), NOT_SIGNED, 'content', redactedContent(hashed, version))
    : signableJson(hashed, version);
  return { event: hashed, signable, members };
}

/**
 * An event hashed but not signed, with its event id and canonical JSON: how the room actor stores
 * the events it builds. Neither the event id (the reference hash) nor the content hash covers
 * `signatures`, and ed25519 is deterministic, so the signature can be added when the event first
 * leaves the server (`withOwnSignature`) and is the one signing now would have made: a room whose
 * events never leave the server never pays for signing them.
 */
export function hashAndIdentify(event: JsonObject, version: RoomVersion): SignedEvent {
  const { event: hashed, signable, members } = hashOnly(event, version);
  return { event: hashed, eventId: eventIdFromSignable(hashed, signable, version), json: members.json() };
}

/**
 * Whether `serverName` must still sign the event before it goes to another server: it is one of
 * the servers whose signature the event needs (the sender's, for v1/v2 the event id's) and the event
 * carries none of its signatures. Only our own events are stored that way (received events are
 * checked for every required signature before they are stored), so signing what this says is
 * signing our own.
 */
export function needsOwnSignature(event: JsonObject, version: RoomVersion, serverName: string): boolean {
  return !hasSignatureBy(event, serverName) && requiredSignatureServers(event, version).includes(serverName);
}

/**
 * The event with `serverName`'s signature added (a new object; the event itself is not touched),
 * `signature` when the caller has it already (it depends only on the key and the redacted event).
 */
export function withOwnSignature(event: JsonObject, version: RoomVersion, serverName: string, key: SigningKey, signature = ownEventSignature(event, version, key)): JsonObject {
  return { ...event, signatures: signaturesWith(event, serverName, key.keyId, signature) };
}

/** The event's `signatures` with one more (a new object; the others kept). */
function signaturesWith(event: JsonObject, serverName: string, keyId: string, signature: string): Signatures {
  const existing = isJsonObject(event.signatures) ? (event.signatures as Signatures) : {};
  return { ...existing, [serverName]: { ...(existing[serverName] ?? {}), [keyId]: signature } };
}

/** Whether the event carries a signature of `serverName` (any key). */
export function hasSignatureBy(event: JsonObject, serverName: string): boolean {
  const sigs = isJsonObject(event.signatures) ? event.signatures[serverName] : undefined;
  return isJsonObject(sigs) && Object.keys(sigs).length > 0;
}

/** The signature of `key` over the event (its redacted form without `signatures` and `unsigned`), unpadded base64. */
export function ownEventSignature(event: JsonObject, version: RoomVersion, key: SigningKey): string {
  return encodeBase64(signBytes(key, eventSignableBytes(event, version)));
}

/**
 * The bytes the signature of `serverName`'s key `keyId` adds to the canonical JSON of an event
 * that has no `signatures` member: `,"signatures":{"<server>":{"<key id>":"<86 base64 characters>"}}`.
 * The 65,536-byte limit is on the event as peers receive it, signed: an event stored unsigned is
 * checked with these bytes counted.
 */
export function ownSignatureBytes(serverName: string, keyId: string): number {
  // The member alone, `{"signatures":{…}}`, less its braces, plus the comma before it.
  return utf8.encode(canonicalJson({ signatures: { [serverName]: { [keyId]: 'A'.repeat(86) } } })).length - 1;
}

/** Add a signature without touching hashes (co-signing an event another server built). */
export function signEventOnly(event: JsonObject, version: RoomVersion, serverName: string, key: SigningKey): JsonObject {
  const signed = signJson(redactEvent(event, version), serverName, key);
  return { ...event, signatures: signed.signatures! };
}

/** Verify an event's signature by `serverName`'s key over its redacted form. */
export function verifyEventSignature(event: JsonObject, version: RoomVersion, serverName: string, keyId: string, publicKey: Uint8Array): SignatureCheck {
  return verifyJsonSignature(redactEvent(event, version), serverName, keyId, publicKey);
}

/**
 * The servers whose signatures an event needs (server-server API, "Validating hashes and
 * signatures"): the sender's server; for v1/v2 also the event id's server; for a join
 * authorised by another user (restricted rooms, v8+), that user's server.
 */
export function requiredSignatureServers(event: JsonObject, version: RoomVersion): string[] {
  const servers = new Set<string>();
  const senderServer = typeof event.sender === 'string' ? serverNameOf(event.sender) : null;
  if (senderServer) servers.add(senderServer);
  if (version.eventIdFormat === 'v1' && typeof event.event_id === 'string') {
    const s = serverNameOf(event.event_id);
    if (s) servers.add(s);
  }
  if (version.restrictedJoins && event.type === 'm.room.member' && isJsonObject(event.content)) {
    const via = event.content.join_authorised_via_users_server;
    if (event.content.membership === 'join' && typeof via === 'string') {
      const s = serverNameOf(via);
      if (s) servers.add(s);
    }
  }
  return [...servers];
}

/** The server part of `@user:server`, `$event:server`, `!room:server`, `#alias:server`. */
export function serverNameOf(id: string): string | null {
  const i = id.indexOf(':');
  return i > 0 && i < id.length - 1 ? id.slice(i + 1) : null;
}
