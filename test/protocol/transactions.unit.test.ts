import { describe, expect, it } from 'vitest';
import { canonicalJson, utf8Length, type JsonObject, type JsonValue } from '../../src/protocol/json';
import {
  batchOutboundTransactions,
  buildTransactionResponse,
  checkInboundTransaction,
  MAX_EDUS_PER_TRANSACTION,
  MAX_PDU_ERROR_LENGTH,
  MAX_PDUS_PER_TRANSACTION,
  nextOutboundTransaction,
  sortPdusByRoom,
  type Edu,
} from '../../src/protocol/transactions';

// data/api/server-server/examples/transaction.json with minimal_pdu.json inlined.
const SPEC_TRANSACTION = {
  origin: 'matrix.org',
  origin_server_ts: 1234567890,
  pdus: [
    {
      type: 'm.room.minimal_pdu',
      room_id: '!somewhere:example.org',
      content: { see_room_version_spec: 'The event format changes depending on the room version.' },
    },
  ],
};
// data/api/server-server/examples/edu.json
const SPEC_EDU = { edu_type: 'm.presence', content: { push: [{ user_id: '@john:matrix.org', presence: 'online', last_active_ago: 5000 }] } };

const pdu = (i: number, roomId = '!room:example.org'): JsonObject => ({ type: 'm.room.message', room_id: roomId, sender: '@a:matrix.org', content: { body: `m${i}` }, depth: i });
const edu = (i: number): Edu => ({ edu_type: 'm.typing', content: { room_id: '!r:x', user_id: '@a:x', typing: i % 2 === 0 } });

describe('inbound transactions', () => {
  it('accepts the spec example', () => {
    const r = checkInboundTransaction(SPEC_TRANSACTION, 'S0meTransacti0nId', 'matrix.org');
    expect(r).toEqual({
      ok: true,
      transaction: { txnId: 'S0meTransacti0nId', origin: 'matrix.org', originServerTs: 1234567890, pdus: SPEC_TRANSACTION.pdus, edus: [], droppedEdus: [] },
    });
  });

  it('accepts the spec EDU, and edus omitted or null', () => {
    const r = checkInboundTransaction({ ...SPEC_TRANSACTION, edus: [SPEC_EDU] }, 't', 'matrix.org');
    expect(r.ok && r.transaction.edus).toEqual([SPEC_EDU]);
    expect(checkInboundTransaction({ ...SPEC_TRANSACTION, edus: null }, 't', 'matrix.org').ok).toBe(true);
  });

  it('takes exactly 50 PDUs and 100 EDUs; 51 or 101 are a 400', () => {
    const at = (pdus: number, edus: number) =>
      checkInboundTransaction({ origin: 'a.org', origin_server_ts: 1, pdus: Array.from({ length: pdus }, (_, i) => pdu(i)), edus: Array.from({ length: edus }, (_, i) => edu(i)) }, 't', 'a.org');
    expect(at(MAX_PDUS_PER_TRANSACTION, MAX_EDUS_PER_TRANSACTION).ok).toBe(true);
    expect(at(51, 0)).toMatchObject({ ok: false, status: 400, errcode: 'M_BAD_JSON', error: expect.stringMatching(/51 PDUs/) });
    expect(at(0, 101)).toMatchObject({ ok: false, status: 400, errcode: 'M_BAD_JSON', error: expect.stringMatching(/101 EDUs/) });
  });

  it('refuses a body without the required fields, or with the wrong types', () => {
    const cases: [JsonValue, RegExp][] = [
      ['x', /not a JSON object/],
      [[], /not a JSON object/],
      [{ origin_server_ts: 1, pdus: [] }, /origin/],
      [{ origin: 'not a name', origin_server_ts: 1, pdus: [] }, /origin/],
      [{ origin: 'a.org', pdus: [] }, /origin_server_ts/],
      [{ origin: 'a.org', origin_server_ts: '1', pdus: [] }, /origin_server_ts/],
      [{ origin: 'a.org', origin_server_ts: 1 }, /pdus/],
      [{ origin: 'a.org', origin_server_ts: 1, pdus: {} }, /pdus/],
      [{ origin: 'a.org', origin_server_ts: 1, pdus: [], edus: {} }, /edus/],
    ];
    for (const [body, error] of cases) {
      expect(checkInboundTransaction(body, 't', 'a.org'), JSON.stringify(body)).toMatchObject({ ok: false, status: 400, errcode: 'M_BAD_JSON', error: expect.stringMatching(error) });
    }
    expect(checkInboundTransaction(SPEC_TRANSACTION, '', 'matrix.org').ok).toBe(false);
  });

  it('refuses a body whose origin is not the server that signed the request', () => {
    expect(checkInboundTransaction(SPEC_TRANSACTION, 't', 'evil.org')).toMatchObject({ ok: false, error: expect.stringMatching(/signed by evil.org/) });
  });

  it('drops malformed EDUs alone and keeps the rest in order', () => {
    const r = checkInboundTransaction({ ...SPEC_TRANSACTION, edus: [edu(0), 'x', { edu_type: 5, content: {} }, { edu_type: 'm.x' }, { edu_type: 'm.x', content: [] }, edu(1)] }, 't', 'matrix.org');
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.transaction.edus).toEqual([edu(0), edu(1)]);
    expect(r.transaction.droppedEdus.map((d) => d.index)).toEqual([1, 2, 3, 4]);
  });
});

describe('sorting PDUs by room', () => {
  it('groups by room_id, keeping order within a room and rooms in order of appearance', () => {
    const a1 = pdu(1, '!a:x');
    const b1 = pdu(2, '!b:x');
    const a2 = pdu(3, '!a:x');
    const c1 = pdu(4, '!c');
    const { rooms, ignored } = sortPdusByRoom([a1, b1, a2, c1]);
    expect([...rooms.keys()]).toEqual(['!a:x', '!b:x', '!c']);
    expect(rooms.get('!a:x')).toEqual([a1, a2]);
    expect(ignored).toEqual([]);
  });

  it('ignores PDUs it cannot place: not an object, no room_id (a v12 create event), a room_id that is not a room id', () => {
    const v12Create = { type: 'm.room.create', state_key: '', sender: '@a:x', content: { room_version: '12' }, depth: 1, prev_events: [], auth_events: [] };
    const { rooms, ignored } = sortPdusByRoom(['x', null, v12Create, { ...pdu(1), room_id: 5 }, { ...pdu(1), room_id: '#alias:x' }, { ...pdu(1), room_id: '!' }, { ...pdu(1), room_id: `!${'a'.repeat(300)}` }, pdu(2)]);
    expect(ignored.map((i) => i.index)).toEqual([0, 1, 2, 3, 4, 5, 6]);
    expect(ignored[2]!.reason).toMatch(/no room_id/);
    expect([...rooms.values()].flat()).toEqual([pdu(2)]);
  });

  it('the spec example goes to its room', () => {
    expect([...sortPdusByRoom(SPEC_TRANSACTION.pdus).rooms.keys()]).toEqual(['!somewhere:example.org']);
  });
});

describe('the transaction response', () => {
  it('has the spec example shape', () => {
    expect(
      buildTransactionResponse([
        { eventId: '$successful_event:example.org' },
        { eventId: '$failed_event:example.org', error: 'You are not allowed to send a message to this room.' },
      ]),
    ).toEqual({
      pdus: {
        '$successful_event:example.org': {},
        '$failed_event:example.org': { error: 'You are not allowed to send a message to this room.' },
      },
    });
  });

  it('is {"pdus": {}} for a transaction of EDUs only', () => {
    expect(canonicalJson(buildTransactionResponse([]))).toBe('{"pdus":{}}');
  });

  it('keeps the last result for a PDU listed twice, bounds error strings, and treats ids as data', () => {
    const r = buildTransactionResponse([
      { eventId: '$x', error: 'first' },
      { eventId: '$x' },
      { eventId: '__proto__', error: 'e'.repeat(5000) },
    ]);
    expect(r.pdus.$x).toEqual({});
    expect(Object.keys(r.pdus)).toEqual(['$x', '__proto__']);
    expect(r.pdus.__proto__!.error!.length).toBe(MAX_PDU_ERROR_LENGTH);
    expect(Object.getPrototypeOf(r.pdus)).toBe(Object.prototype);
  });
});

describe('outbound transactions', () => {
  it('nothing pending, nothing to send', () => {
    expect(nextOutboundTransaction('me.org', 1, [], [])).toBeUndefined();
  });

  it('takes the head of each queue up to 50 PDUs and 100 EDUs', () => {
    const pdus = Array.from({ length: 120 }, (_, i) => pdu(i));
    const edus = Array.from({ length: 130 }, (_, i) => edu(i));
    const next = nextOutboundTransaction('me.org', 77, pdus, edus)!;
    expect(next.pduCount).toBe(50);
    expect(next.eduCount).toBe(100);
    expect(next.body).toEqual({ origin: 'me.org', origin_server_ts: 77, pdus: pdus.slice(0, 50), edus: edus.slice(0, 100) });
  });

  it('leaves edus out when there are none (as Synapse does) and always has pdus', () => {
    expect(nextOutboundTransaction('me.org', 1, [pdu(1)], [])!.body).toEqual({ origin: 'me.org', origin_server_ts: 1, pdus: [pdu(1)] });
    expect(nextOutboundTransaction('me.org', 1, [], [edu(1)])!.body).toEqual({ origin: 'me.org', origin_server_ts: 1, pdus: [], edus: [edu(1)] });
  });

  it('batches whole queues in order, each within the limits, each with its own txn id', () => {
    const pdus = Array.from({ length: 120 }, (_, i) => pdu(i));
    const edus = Array.from({ length: 130 }, (_, i) => edu(i));
    let n = 0;
    const txns = batchOutboundTransactions('me.org', 5, pdus, edus, () => `txn${++n}`);
    expect(txns.map((t) => [t.txnId, t.body.pdus.length, t.body.edus?.length ?? 0])).toEqual([
      ['txn1', 50, 100],
      ['txn2', 50, 30],
      ['txn3', 20, 0],
    ]);
    expect(txns.flatMap((t) => t.body.pdus)).toEqual(pdus);
    expect(txns.flatMap((t) => t.body.edus ?? [])).toEqual(edus);
    // Every transaction passes our own inbound checks.
    for (const t of txns) expect(checkInboundTransaction(t.body as unknown as JsonValue, t.txnId, 'me.org').ok).toBe(true);
  });

  it('lower limits are honoured; higher ones are capped at the spec limits', () => {
    const pdus = Array.from({ length: 60 }, (_, i) => pdu(i));
    expect(nextOutboundTransaction('me.org', 1, pdus, [], { maxPdus: 10 })!.pduCount).toBe(10);
    expect(nextOutboundTransaction('me.org', 1, pdus, [], { maxPdus: 500 })!.pduCount).toBe(50);
  });

  it('with a byte cap, fills PDUs then EDUs while the body fits; an oversized PDU still goes alone', () => {
    const big = (i: number) => ({ ...pdu(i), content: { body: 'x'.repeat(10_000) } });
    const pdus = Array.from({ length: 10 }, (_, i) => big(i));
    const edus = Array.from({ length: 10 }, (_, i) => edu(i));
    const next = nextOutboundTransaction('me.org', 1, pdus, edus, { maxBodyBytes: 35_000 })!;
    expect(next.pduCount).toBe(3);
    expect(utf8Length(canonicalJson(next.body))).toBeLessThanOrEqual(35_000);
    const tiny = nextOutboundTransaction('me.org', 1, pdus, edus, { maxBodyBytes: 100 })!;
    expect([tiny.pduCount, tiny.eduCount]).toEqual([1, 0]);
    const batches = batchOutboundTransactions('me.org', 1, pdus, edus, () => 't', { maxBodyBytes: 35_000 });
    expect(batches.flatMap((t) => t.body.pdus)).toEqual(pdus);
    expect(batches.flatMap((t) => t.body.edus ?? [])).toEqual(edus);
    for (const t of batches) expect(utf8Length(canonicalJson(t.body))).toBeLessThanOrEqual(35_000);
  });
});
