import { describe, expect, it } from 'vitest';
import { decodeBase64 } from '../../src/protocol/base64';
import { signingKeyFromSeed } from '../../src/protocol/crypto';
import { checkContentHash, computeContentHash, computeEventId, hashAndIdentify, hashAndSignEvent, hashSignAndIdentify, needsOwnSignature, ownSignatureBytes, requiredSignatureServers, roomIdFromCreateEvent, verifyEventSignature, withOwnSignature } from '../../src/protocol/event-hashing';
import { encodeBase64 } from '../../src/protocol/base64';
import { requireRoomVersion, ROOM_VERSIONS } from '../../src/protocol/room-versions';
import { checkPduFormat, checkPduSize, MAX_PDU_BYTES } from '../../src/protocol/pdu-limits';
import { CanonicalJsonError, CanonicalMembers, canonicalJson, type JsonObject, type JsonValue } from '../../src/protocol/json';
import { redactEvent } from '../../src/protocol/redaction';
import { verifyJsonSignature } from '../../src/protocol/signing';
import { SIGNERS, signWith } from './signers';

// content/appendices.md, "Cryptographic Test Vectors" → "Event Signing".
const KEY = signingKeyFromSeed('ed25519:1', decodeBase64('YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1'));

const MINIMAL_EVENT: JsonObject = {
  room_id: '!x:domain', sender: '@a:domain', origin: 'domain', origin_server_ts: 1000000, signatures: {}, hashes: {},
  type: 'X', content: {}, prev_events: [], auth_events: [], depth: 3, unsigned: { age_ts: 1000000 },
};
const MINIMAL_SIGNED: JsonObject = {
  auth_events: [], content: {}, depth: 3, hashes: { sha256: '5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos' }, origin: 'domain',
  origin_server_ts: 1000000, prev_events: [], room_id: '!x:domain', sender: '@a:domain',
  signatures: { domain: { 'ed25519:1': 'KxwGjPSDEtvnFgU00fwFz+l6d2pJM6XBIaMEn81SXPTRl16AqLAYqfIReFGZlHi5KLjAWbOoMszkwsQma+lYAg' } },
  type: 'X', unsigned: { age_ts: 1000000 },
};
const MESSAGE_EVENT: JsonObject = {
  content: { body: 'Here is the message content' }, event_id: '$0:domain', origin: 'domain', origin_server_ts: 1000000,
  type: 'm.room.message', room_id: '!r:domain', sender: '@u:domain', signatures: {}, unsigned: { age_ts: 1000000 },
};
const MESSAGE_SIGNED: JsonObject = {
  content: { body: 'Here is the message content' }, event_id: '$0:domain', hashes: { sha256: 'onLKD1bGljeBWQhWZ1kaP9SorVmRQNdN5aM2JYU2n/g' },
  origin: 'domain', origin_server_ts: 1000000, type: 'm.room.message', room_id: '!r:domain', sender: '@u:domain',
  signatures: { domain: { 'ed25519:1': 'Wm+VzmOUOz08Ds+0NTWb1d4CZrVsJSikkeRxh6aCcUwu6pNC78FunoD7KNWzqFn241eYHYMGCA5McEiVPdhzBA' } },
  unsigned: { age_ts: 1000000 },
};

// The appendix vectors keep top-level `origin` in the signed (redacted) form, so they hold for the
// room versions whose redaction rules keep it: 1 to 10.
const PRE_V11 = ['1', '2', '3', '4', '5', '6', '7', '8', '9', '10'];

for (const signer of SIGNERS) {
  describe(`signing with ${signer}`, () => {
    signWith(signer);

    describe('event signing (appendix vectors)', () => {
      for (const v of PRE_V11) {
        it(`minimal event, room version ${v}`, () => {
          expect(hashAndSignEvent(MINIMAL_EVENT, requireRoomVersion(v), 'domain', KEY)).toEqual(MINIMAL_SIGNED);
        });
        it(`event with redactable content, room version ${v}`, () => {
          expect(hashAndSignEvent(MESSAGE_EVENT, requireRoomVersion(v), 'domain', KEY)).toEqual(MESSAGE_SIGNED);
        });
      }

      it('room version 11 drops `origin` from what is signed, so the signature differs but verifies', () => {
        const v11 = requireRoomVersion('11');
        const signed = hashAndSignEvent(MINIMAL_EVENT, v11, 'domain', KEY);
        expect((signed.hashes as JsonObject).sha256).toBe('5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos'); // content hash is version-independent
        expect((signed.signatures as JsonObject).domain).not.toEqual((MINIMAL_SIGNED.signatures as JsonObject).domain);
        expect(verifyEventSignature(signed, v11, 'domain', 'ed25519:1', KEY.publicKey)).toEqual({ ok: true });
        // …and changing `origin` does not break it (it is not covered in v11), while v10 notices.
        expect(verifyEventSignature({ ...signed, origin: 'elsewhere' }, v11, 'domain', 'ed25519:1', KEY.publicKey)).toEqual({ ok: true });
        expect(verifyEventSignature({ ...MINIMAL_SIGNED, origin: 'elsewhere' }, requireRoomVersion('10'), 'domain', 'ed25519:1', KEY.publicKey).ok).toBe(false);
      });

      it('signatures verify on the full and on the redacted event; content edits break only the content hash', () => {
        const v = requireRoomVersion('10');
        expect(verifyEventSignature(MESSAGE_SIGNED, v, 'domain', 'ed25519:1', KEY.publicKey)).toEqual({ ok: true });
        expect(checkContentHash(MESSAGE_SIGNED)).toBe(true);
        const edited = { ...MESSAGE_SIGNED, content: { body: 'edited' } };
        expect(verifyEventSignature(edited, v, 'domain', 'ed25519:1', KEY.publicKey)).toEqual({ ok: true }); // content is redacted away
        expect(checkContentHash(edited)).toBe(false);
        const resent = { ...MESSAGE_SIGNED, sender: '@other:domain' };
        expect(verifyEventSignature(resent, v, 'domain', 'ed25519:1', KEY.publicKey).ok).toBe(false);
      });

      it('checkContentHash rejects missing and malformed hashes', () => {
        expect(checkContentHash({ ...MESSAGE_SIGNED, hashes: {} })).toBe(false);
        expect(checkContentHash({ ...MESSAGE_SIGNED, hashes: { sha256: '!!!' } })).toBe(false);
        expect(checkContentHash({ ...MESSAGE_SIGNED, hashes: { sha256: 'AAAA' } })).toBe(false);
      });

      it('the content hash ignores unsigned, signatures and hashes', () => {
        const a = computeContentHash(MESSAGE_EVENT);
        const b = computeContentHash({ ...MESSAGE_EVENT, unsigned: { age: 5 }, signatures: { x: {} }, hashes: { sha256: 'x' } });
        expect(encodeBase64(a)).toBe(encodeBase64(b));
        expect(encodeBase64(a)).toBe('onLKD1bGljeBWQhWZ1kaP9SorVmRQNdN5aM2JYU2n/g');
      });
    });
  });
}

describe('hashing, signing and identifying in one pass (hashSignAndIdentify)', () => {
  // Events whose members redaction keeps, drops and rewrites, with and without earlier signatures
  // and `unsigned`, non-ASCII text and keys needing code point order.
  const EVENTS: JsonObject[] = [
    MINIMAL_EVENT,
    MESSAGE_EVENT,
    { room_id: '!r:domain', sender: '@u:domain', type: 'm.room.message', origin_server_ts: 5, depth: 7, prev_events: ['$a', '$b'], auth_events: ['$c'], content: { body: 'h\u00e9llo \u{1F600}', '\uFB33': 1, '\u{1F600}': [1, { z: null, a: true }] } },
    { room_id: '!r:domain', sender: '@u:domain', type: 'm.room.member', state_key: '@u:domain', origin_server_ts: 5, depth: 2, prev_events: [['$a', {}]], auth_events: [['$c', {}]], content: { membership: 'join', displayname: 'U', join_authorised_via_users_server: '@x:other' } },
    { room_id: '!r:domain', sender: '@u:domain', type: 'm.room.power_levels', state_key: '', origin_server_ts: 5, depth: 2, prev_events: [], auth_events: [], content: { users: { '@u:domain': 100 }, invite: 50, ban: 50, extra: 'x' } },
    { room_id: '!r:domain', sender: '@u:domain', type: 'm.room.create', state_key: '', origin_server_ts: 5, depth: 1, prev_events: [], auth_events: [], content: { room_version: '11', other: 1 } },
    { room_id: '!r:domain', sender: '@u:other', type: 'm.room.member', state_key: '@u:other', origin_server_ts: 5, depth: 3, prev_events: [], auth_events: [], content: { membership: 'join' }, signatures: { other: { 'ed25519:o': 'c2ln' } }, unsigned: { age: 3 } },
    // No content (the redacted form gets `{}`), content that is not an object, members redaction drops.
    { room_id: '!r:domain', sender: '@u:domain', type: 'm.room.message', origin_server_ts: 5, depth: 4, prev_events: [], auth_events: [] },
    { room_id: '!r:domain', sender: '@u:domain', type: 'm.room.message', origin_server_ts: 5, depth: 4, prev_events: [], auth_events: [], content: 'text' },
    { room_id: '!r:domain', sender: '@u:domain', type: 'm.room.message', origin_server_ts: 5, depth: 4, prev_events: [], auth_events: [], content: { body: 'x' }, origin: 'domain', membership: 'join', prev_state: [], extra: { a: 1 } },
  ];
  for (const v of ROOM_VERSIONS.keys()) {
    it(`equals hashAndSignEvent's steps one by one, room version ${v}`, () => {
      const version = requireRoomVersion(v);
      for (const event of EVENTS) {
        const withId = version.eventIdFormat === 'v1' ? { event_id: '$e:domain', ...event } : event;
        const one = hashSignAndIdentify(withId, version, 'domain', KEY);
        // The step-by-step path: content hash, then the signature over the redacted form.
        const hashed: JsonObject = { ...withId, hashes: { sha256: encodeBase64(computeContentHash(withId)) } };
        const redacted = redactEvent(hashed, version);
        const { signatures: _s, unsigned: _u, ...signable } = redacted;
        const expected = { ...hashed, signatures: { ...((withId.signatures as JsonObject) ?? {}), domain: { 'ed25519:1': one.event.signatures && ((one.event.signatures as JsonObject).domain as JsonObject)['ed25519:1'] } } };
        expect(one.event).toEqual(expected);
        expect(verifyJsonSignature({ ...signable, signatures: one.event.signatures! }, 'domain', 'ed25519:1', KEY.publicKey)).toEqual({ ok: true });
        expect(verifyEventSignature(one.event, version, 'domain', 'ed25519:1', KEY.publicKey)).toEqual({ ok: true });
        expect(checkContentHash(one.event)).toBe(true);
        expect(one.eventId).toBe(computeEventId(one.event, version));
        expect(one.json).toBe(canonicalJson(one.event));
      }
    });
  }

  for (const v of ROOM_VERSIONS.keys()) {
    it(`stored unsigned, signed on the way out: byte for byte what signing at creation made, room version ${v}`, () => {
      // The room actor stores its events hashed but unsigned (hashAndIdentify) and adds our
      // signature when one leaves the server (withOwnSignature): ed25519 is deterministic and
      // neither the event id nor the content hash covers `signatures`, so nothing else differs.
      const version = requireRoomVersion(v);
      for (const event of EVENTS.filter((e) => e.signatures === undefined)) {
        const withId = version.eventIdFormat === 'v1' ? { event_id: '$e:domain', ...event } : event;
        const { unsigned: _u, ...bare } = withId;
        const atCreation = hashSignAndIdentify(bare, version, 'domain', KEY);
        const stored = hashAndIdentify(bare, version);
        expect(stored.event.signatures).toBeUndefined();
        expect(stored.eventId).toBe(atCreation.eventId);
        expect(stored.json).toBe(canonicalJson(stored.event));
        expect(checkContentHash(stored.event)).toBe(true);
        expect(needsOwnSignature(stored.event, version, 'domain')).toBe(true);
        const out = withOwnSignature(stored.event, version, 'domain', KEY);
        expect(canonicalJson(out)).toBe(atCreation.json);
        expect(needsOwnSignature(out, version, 'domain')).toBe(false);
        // The signature holds for the redacted form too (what a server not allowed to see it gets).
        expect(withOwnSignature(redactEvent(stored.event, version), version, 'domain', KEY).signatures).toEqual(out.signatures);
        // The size limit counts the signature's bytes exactly.
        expect(stored.json.length + ownSignatureBytes('domain', KEY.keyId)).toBe(atCreation.json.length);
      }
    });
  }

  it('needsOwnSignature: only our events without a signature of ours (received events carry theirs)', () => {
    const v10 = requireRoomVersion('10');
    const ours = hashAndIdentify({ room_id: '!r:domain', sender: '@u:domain', type: 'm.room.message', origin_server_ts: 5, depth: 2, prev_events: [], auth_events: [], content: {} }, v10).event;
    expect(needsOwnSignature(ours, v10, 'domain')).toBe(true);
    expect(needsOwnSignature({ ...ours, signatures: {} }, v10, 'domain')).toBe(true);
    expect(needsOwnSignature({ ...ours, signatures: { domain: {} } }, v10, 'domain')).toBe(true);
    expect(needsOwnSignature(hashAndSignEvent(ours, v10, 'domain', KEY), v10, 'domain')).toBe(false);
    // Another server's event: not ours to sign (in v10 the sender's server is the one that signs).
    expect(needsOwnSignature({ ...ours, sender: '@u:other' }, v10, 'domain')).toBe(false);
    // v1/v2: the event id's server signs too.
    const v1 = requireRoomVersion('1');
    expect(needsOwnSignature({ ...ours, sender: '@u:other', event_id: '$e:domain' }, v1, 'domain')).toBe(true);
  });

  it('checkPduSize counts the bytes the signature will add to an event stored without it', () => {
    const v10 = requireRoomVersion('10');
    const base: JsonObject = { room_id: '!r:domain', sender: '@u:domain', type: 'm.room.message', origin_server_ts: 5, depth: 2, prev_events: [], auth_events: [], content: { body: '' } };
    const extra = ownSignatureBytes('domain', KEY.keyId);
    const fill = MAX_PDU_BYTES - extra - hashAndIdentify(base, v10).json.length;
    const atLimit = hashAndIdentify({ ...base, content: { body: 'x'.repeat(fill) } }, v10);
    expect(checkPduSize(atLimit.event, atLimit.json, extra)).toEqual({ ok: true, bytes: MAX_PDU_BYTES });
    expect(canonicalJson(withOwnSignature(atLimit.event, v10, 'domain', KEY)).length).toBe(MAX_PDU_BYTES);
    const over = hashAndIdentify({ ...base, content: { body: 'x'.repeat(fill + 1) } }, v10);
    expect(checkPduSize(over.event, over.json, extra).ok).toBe(false);
    expect(checkPduSize(over.event, over.json).ok).toBe(true); // without the signature's bytes it would have passed
  });

  it('CanonicalMembers gives canonicalJson of the object, without some members, and of an object sharing some', () => {
    const obj: JsonObject = { b: 1, a: { y: [1, 2], x: '\u00e9' }, '\uFB33': 2, '\u{1F600}': 1, c: null, constructor: 'own' };
    const members = new CanonicalMembers(obj);
    expect(members.json()).toBe(canonicalJson(obj));
    const { a: _a, c: _c, ...rest } = obj;
    expect(members.json(new Set(['a', 'c']))).toBe(canonicalJson(rest));
    members.set('d', { z: 1, e: [] });
    expect(members.json()).toBe(canonicalJson({ ...obj, d: { z: 1, e: [] } }));
    // Some members only, one of them with another value (a redacted event: its content).
    const keep = new Set(['a', 'b', 'c', '\u{1F600}', 'd', 'absent']);
    expect(members.jsonKeeping(keep, new Set(['c']), 'a', { replaced: [1] })).toBe(canonicalJson({ a: { replaced: [1] }, b: 1, '\u{1F600}': 1, d: { z: 1, e: [] } }));
    expect(members.jsonKeeping(keep, new Set(), 'a', obj.a!)).toBe(canonicalJson({ a: obj.a!, b: 1, '\u{1F600}': 1, c: null, d: { z: 1, e: [] } }));
    expect(members.jsonKeeping(keep, new Set(), 'absent', 1)).toBe(canonicalJson({ a: obj.a!, b: 1, '\u{1F600}': 1, c: null, d: { z: 1, e: [] } }));
    expect(members.has('constructor') && !members.has('toString')).toBe(true);
    // A member that was not met before with a lone surrogate in its name is refused.
    expect(() => new CanonicalMembers({ ['a\ud800']: 1 })).toThrow(CanonicalJsonError);
  });

  it('CanonicalMembers agrees with canonicalJson on random objects', () => {
    // A small deterministic generator: names from a pool that includes non-ASCII and astral ones.
    let seed = 7;
    const rand = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed % n;
    };
    const NAMES = ['a', 'b', 'content', 'type', 'z', '\u00e9', '\uFB33', '\u{1F600}', '10', '2', '__proto__', 'toString'];
    const value = (depth: number): JsonValue => {
      switch (rand(depth > 2 ? 4 : 6)) {
        case 0: return rand(1000) - 500;
        case 1: return ['x', '"q"', 'line\nbreak', '\u0001', '\u{1F600}'][rand(5)]!;
        case 2: return rand(2) === 0;
        case 3: return null;
        case 4: return Array.from({ length: rand(4) }, () => value(depth + 1));
        default: return object(depth + 1);
      }
    };
    const object = (depth: number): JsonObject => {
      const o: JsonObject = {};
      for (let i = rand(6); i > 0; i--) Object.defineProperty(o, NAMES[rand(NAMES.length)]!, { value: value(depth), enumerable: true, writable: true, configurable: true });
      return o;
    };
    for (let i = 0; i < 500; i++) {
      const obj = object(0);
      const members = new CanonicalMembers(obj);
      expect(members.json()).toBe(canonicalJson(obj));
      const keep = new Set(NAMES.filter(() => rand(3) > 0));
      const without = new Set(NAMES.filter(() => rand(4) === 0));
      const replaced = NAMES[rand(NAMES.length)]!;
      const replacement = rand(2) === 0 && Object.prototype.hasOwnProperty.call(obj, replaced) ? obj[replaced]! : value(1);
      const kept: JsonObject = {};
      for (const k of Object.keys(obj)) {
        if (!keep.has(k) || without.has(k)) continue;
        Object.defineProperty(kept, k, { value: k === replaced ? replacement : obj[k], enumerable: true, writable: true, configurable: true });
      }
      expect(members.jsonKeeping(keep, without, replaced, replacement)).toBe(canonicalJson(kept));
    }
  });
});

describe('event ids', () => {
  it('v1/v2 take the id the event carries', () => {
    expect(computeEventId(MESSAGE_SIGNED, requireRoomVersion('1'))).toBe('$0:domain');
    expect(() => computeEventId(MINIMAL_SIGNED, requireRoomVersion('2'))).toThrow();
  });

  it('v3 uses standard base64 of the reference hash; v4+ the URL-safe alphabet', () => {
    const v3 = computeEventId(MESSAGE_SIGNED, requireRoomVersion('3'));
    const v4 = computeEventId(MESSAGE_SIGNED, requireRoomVersion('4'));
    expect(v3).toBe('$oFAil2fHTGY66j9PIsC3hnc+/6r2SQGxCzd1/FUgtOE');
    expect(v4).toBe('$oFAil2fHTGY66j9PIsC3hnc-_6r2SQGxCzd1_FUgtOE');
    for (const v of ['5', '6', '7', '8', '9', '10']) expect(computeEventId(MESSAGE_SIGNED, requireRoomVersion(v))).toBe(v4);
    expect(computeEventId(MINIMAL_SIGNED, requireRoomVersion('4'))).toBe('$8yif6p8EqgoSten2BLje9ntKm720NyFLWQv9tn8memc');
  });

  it('the reference hash ignores unsigned, signatures and redactable content but not hashes', () => {
    const v = requireRoomVersion('10');
    const id = computeEventId(MESSAGE_SIGNED, v);
    expect(computeEventId({ ...MESSAGE_SIGNED, unsigned: { age: 1 }, signatures: {} }, v)).toBe(id);
    expect(computeEventId({ ...MESSAGE_SIGNED, content: {} }, v)).toBe(id); // a redacted copy keeps its id
    expect(computeEventId({ ...MESSAGE_SIGNED, hashes: { sha256: 'other' } }, v)).not.toBe(id);
  });

  it('v11 ids differ from v10 ids for events with `origin` (it is redacted away in v11)', () => {
    expect(computeEventId(MINIMAL_SIGNED, requireRoomVersion('11'))).toBe('$70O_oKlXzFbkfu0KE88USi98DjSWrOELrPj-8tisl8I');
  });

  it('v12 room ids are the create event id with ! for $', () => {
    const v12 = requireRoomVersion('12');
    const create: JsonObject = {
      type: 'm.room.create', state_key: '', sender: '@a:domain', origin_server_ts: 1000000,
      content: { room_version: '12', additional_creators: ['@b:domain'] }, prev_events: [], auth_events: [], depth: 1, unsigned: { age_ts: 1000000 },
    };
    const signed = hashAndSignEvent(create, v12, 'domain', KEY);
    expect((signed.hashes as JsonObject).sha256).toBe('HJuZnsuAhZ3Siic8odoCdiFhJWvC5d1yx68TKMRipRg');
    const eventId = computeEventId(signed, v12);
    expect(eventId).toBe('$_9Pa6R02JAYz85odb3UWKcB2gwMxfhmW4wXAohO3miY');
    expect(roomIdFromCreateEvent(signed, v12)).toBe('!' + eventId.slice(1));
    expect(() => roomIdFromCreateEvent(signed, requireRoomVersion('11'))).toThrow();
  });
});

describe('required signatures', () => {
  it('names the sender server, the v1 event id server, and the restricted-join authoriser', () => {
    expect(requiredSignatureServers(MESSAGE_SIGNED, requireRoomVersion('10'))).toEqual(['domain']);
    expect(requiredSignatureServers({ ...MESSAGE_SIGNED, event_id: '$0:other' }, requireRoomVersion('1')).sort()).toEqual(['domain', 'other']);
    const join = { ...MESSAGE_SIGNED, type: 'm.room.member', state_key: '@u:domain', content: { membership: 'join', join_authorised_via_users_server: '@mod:resident.org' } };
    expect(requiredSignatureServers(join, requireRoomVersion('9')).sort()).toEqual(['domain', 'resident.org']);
    expect(requiredSignatureServers(join, requireRoomVersion('7'))).toEqual(['domain']);
  });
});

describe('PDU limits', () => {
  const base: JsonObject = { ...MINIMAL_SIGNED };
  it('accepts an event of exactly 65536 canonical bytes and refuses one byte more', () => {
    const size = (checkPduSize(base) as { bytes: number }).bytes;
    const pad = 'x'.repeat(MAX_PDU_BYTES - size - '"content":{"p":""}'.length + '"content":{}'.length);
    const exact = { ...base, content: { p: pad } };
    expect(checkPduSize(exact)).toEqual({ ok: true, bytes: MAX_PDU_BYTES });
    const over = { ...base, content: { p: pad + 'x' } };
    expect(checkPduSize(over)).toMatchObject({ ok: false, errcode: 'M_TOO_LARGE' });
  });
  it('counts bytes, not characters', () => {
    expect(checkPduSize({ ...base, type: '\u00e9'.repeat(127) }).ok).toBe(true); // 254 bytes
    expect(checkPduSize({ ...base, type: '\u00e9'.repeat(128) })).toMatchObject({ ok: false, errcode: 'M_TOO_LARGE' }); // 256 bytes
    for (const field of ['type', 'state_key', 'sender', 'room_id', 'event_id']) {
      expect(checkPduSize({ ...base, [field]: 'a'.repeat(255) }).ok).toBe(true);
      expect(checkPduSize({ ...base, [field]: 'a'.repeat(256) }).ok).toBe(false);
    }
  });
  it('reports non-canonical values as M_BAD_JSON', () => {
    expect(checkPduSize({ ...base, content: { f: 1.5 } })).toMatchObject({ ok: false, errcode: 'M_BAD_JSON' });
  });
  it('checks the format per room version', () => {
    expect(checkPduFormat(MINIMAL_SIGNED, requireRoomVersion('10'))).toEqual([]);
    expect(checkPduFormat({ ...MINIMAL_SIGNED, depth: -1 }, requireRoomVersion('10'))).toContain("'depth' must be a non-negative integer");
    expect(checkPduFormat({ ...MINIMAL_SIGNED, prev_events: [['$a', {}]] }, requireRoomVersion('10')).length).toBe(1);
    expect(checkPduFormat({ ...MINIMAL_SIGNED, event_id: '$x:domain', prev_events: [['$a:domain', { sha256: 'x' }]] }, requireRoomVersion('1'))).toEqual([]);
    expect(checkPduFormat({ ...MINIMAL_SIGNED, prev_events: Array(21).fill('$a') }, requireRoomVersion('10'))).toContain("'prev_events' has more than 20 entries");
    const create: JsonObject = { ...MINIMAL_SIGNED, type: 'm.room.create', state_key: '' };
    expect(checkPduFormat(create, requireRoomVersion('12'))).toContain("a v12 'm.room.create' event has no 'room_id'");
    const { room_id: _r, ...noRoom } = create;
    expect(checkPduFormat(noRoom, requireRoomVersion('12'))).toEqual([]);
    expect(checkPduFormat(noRoom, requireRoomVersion('11'))).toContain("'room_id' must be a string");
  });
});

describe('room version registry', () => {
  it('has versions 1 to 12 with the spec feature matrix', () => {
    expect([...ROOM_VERSIONS.keys()]).toEqual(['1', '2', '3', '4', '5', '6', '7', '8', '9', '10', '11', '12']);
    const flag = (k: 'knock' | 'restrictedJoins' | 'knockRestricted' | 'privilegedCreators') => [...ROOM_VERSIONS.values()].filter((v) => v[k]).map((v) => v.id);
    expect(flag('knock')).toEqual(['7', '8', '9', '10', '11', '12']);
    expect(flag('restrictedJoins')).toEqual(['8', '9', '10', '11', '12']);
    expect(flag('knockRestricted')).toEqual(['10', '11', '12']);
    expect(flag('privilegedCreators')).toEqual(['12']);
    expect([...ROOM_VERSIONS.values()].map((v) => v.stateRes)).toEqual(['v1', 'v2', 'v2', 'v2', 'v2', 'v2', 'v2', 'v2', 'v2', 'v2', 'v2', 'v2.1']);
    expect([...ROOM_VERSIONS.values()].map((v) => v.eventIdFormat)).toEqual(['v1', 'v1', 'v3', 'v4', 'v4', 'v4', 'v4', 'v4', 'v4', 'v4', 'v4', 'v4']);
    expect([...ROOM_VERSIONS.values()].filter((v) => v.integerPowerLevels).map((v) => v.id)).toEqual(['10', '11', '12']);
    expect([...ROOM_VERSIONS.values()].filter((v) => v.strictCanonicalJson).map((v) => v.id)).toEqual(['6', '7', '8', '9', '10', '11', '12']);
    expect([...ROOM_VERSIONS.values()].filter((v) => v.createHasCreator).map((v) => v.id)).toEqual(['1', '2', '3', '4', '5', '6', '7', '8', '9', '10']);
  });
});
