import { describe, expect, it } from 'vitest';
import { appserviceBackoffMs, decideAppservice, initialAppserviceState, type AppserviceMessage, type AppserviceState, DEFAULT_APPSERVICE_LIMITS } from '../../actors/appservice';
import { seqId } from '../../src/runtime/ordered-delivery';
import { appserviceData } from '../../src/store/keys';
import { roomEphemeral, eventInterests } from '../../src/appservice/reader';
import { transactionBody } from '../../src/appservice/transport';
import { Appservice, parseRegistration } from '../../src/protocol/appservice';

const msg = (body: AppserviceMessage, at = 1_000) => ({ mid: `m${Math.random()}`, actorId: 'bridge', body, enqueuedAt: at });
const events = (from: number, n: number): AppserviceMessage => ({ t: 'events', items: Array.from({ length: n }, (_, i) => ({ r: '!r:x', e: `$e${from + i}` })) });

function run(state: AppserviceState, body: AppserviceMessage, prepared?: Parameters<typeof decideAppservice>[2], at = 1_000) {
  return decideAppservice(state, msg(body, at), prepared);
}

describe('appservice actor (decide)', () => {
  it('queues events with its own seqs and starts one transaction, committed before it is sent', () => {
    const d = run(initialAppserviceState('bridge'), events(0, 3));
    expect(d.writes?.map((w) => [w.key, w.args[0]])).toEqual([0, 1, 2].map((i) => [appserviceData.events('bridge'), seqId(i + 1)]));
    expect(d.state.inflight).toMatchObject({ evFrom: 1, evTo: 3, attempts: 0 });
    expect(d.timers).toEqual([{ key: 'send', atMs: 1_000, body: { t: 'send' } }]);
    // More events while one is in flight wait for the next transaction.
    const d2 = run(d.state, events(3, 2));
    expect(d2.state.inflight).toEqual(d.state.inflight);
    expect(d2.state.nextEvent).toBe(6);
  });

  it('cuts a backlog into transactions of at most 100 events, in order', () => {
    let s = initialAppserviceState('bridge');
    s = run(s, events(0, 1)).state;
    s = run(s, events(1, 250)).state;
    const ranges: [number, number][] = [];
    let at = 2_000;
    while (s.inflight) {
      ranges.push([s.inflight.evFrom, s.inflight.evTo]);
      const started = run(s, { t: 'send' }, { kind: 'started', txnId: s.inflight.txnId, attempt: 1 }, at++);
      s = run(started.state, { t: 'sent', txnId: s.inflight.txnId, attempt: 1, outcome: { kind: 'ok' }, events: 1, ephemeral: 0 }, undefined, at++).state;
    }
    expect(ranges).toEqual([[1, 1], [2, 101], [102, 201], [202, 251]]);
    expect(s.takenEvent).toBe(251);
  });

  it('retries the same transaction after a failure, with a doubling backoff, and never drops it', () => {
    let s = run(initialAppserviceState('bridge'), events(0, 2)).state;
    const txnId = s.inflight!.txnId;
    let at = 1_000;
    const waits: number[] = [];
    for (let attempt = 1; attempt <= 4; attempt++) {
      s = run(s, { t: 'send' }, { kind: 'started', txnId, attempt }, at).state;
      const failed = run(s, { t: 'sent', txnId, attempt, outcome: { kind: 'retry', error: 'ECONNREFUSED' }, events: 0, ephemeral: 0 }, undefined, at);
      s = failed.state;
      expect(s.inflight).toMatchObject({ txnId, evFrom: 1, evTo: 2, sending: false });
      waits.push(s.retryAt - at);
      // A timer before the retry time starts nothing.
      expect(run(s, { t: 'send' }, undefined, at + 1).state).toBe(s);
      at = s.retryAt;
    }
    expect(waits[0]).toBe(DEFAULT_APPSERVICE_LIMITS.minRetryMs);
    for (let i = 1; i < waits.length; i++) expect(waits[i]!).toBeGreaterThan(waits[i - 1]!);
    expect(appserviceBackoffMs('bridge', 30)).toBe(DEFAULT_APPSERVICE_LIMITS.maxRetryMs);
    // A wake ends the backoff at once.
    const woke = run(s, { t: 'wake' }, undefined, at - 100);
    expect(woke.state.retryAt).toBe(0);
    expect(woke.timers?.[0]?.atMs).toBe(at - 100);
  });

  it('ignores a late report of an older attempt or another transaction', () => {
    let s = run(initialAppserviceState('bridge'), events(0, 1)).state;
    const txnId = s.inflight!.txnId;
    s = run(s, { t: 'send' }, { kind: 'started', txnId, attempt: 1 }).state;
    s = run(s, { t: 'send' }, { kind: 'started', txnId, attempt: 2 }).state;
    expect(run(s, { t: 'sent', txnId, attempt: 1, outcome: { kind: 'retry', error: 'x' }, events: 0, ephemeral: 0 }).state).toBe(s);
    expect(run(s, { t: 'sent', txnId: 'other', attempt: 2, outcome: { kind: 'ok' }, events: 1, ephemeral: 0 }).state).toBe(s);
    // A success of any attempt delivers it.
    const ok = run(s, { t: 'sent', txnId, attempt: 1, outcome: { kind: 'ok' }, events: 1, ephemeral: 0 });
    expect(ok.state.inflight).toBeNull();
    expect(ok.writes?.[0]).toEqual({ cmd: 'XTRIM', key: appserviceData.events('bridge'), args: ['MINID', seqId(2)] });
  });

  it('queues ephemeral entries and to-device messages beside the events', () => {
    const d = run(initialAppserviceState('bridge'), { t: 'ephemeral', items: [{ k: 'eph', j: { type: 'm.typing' } }, { k: 'td', j: { type: 'm.x' } }, { k: 'bad', j: {} } as never] });
    expect(d.state.nextEph).toBe(3);
    expect(d.state.inflight).toMatchObject({ evFrom: 1, evTo: 0, ephFrom: 1, ephTo: 2 });
  });
});

describe('appservice interest and bodies', () => {
  const reg = parseRegistration({ id: 'b', url: 'http://127.0.0.1:1', as_token: 'a', hs_token: 'h', sender_localpart: 'bot', namespaces: { users: [{ exclusive: true, regex: '@irc_.*:hs' }], aliases: [{ exclusive: false, regex: '#irc_.*:hs' }], rooms: [{ exclusive: false, regex: '!bridged.*' }] } }, 'b.yaml').registration!;
  const as = new Appservice(reg, 'hs');
  const room = (over: Partial<{ roomId: string; joined: string[]; aliases: string[] }> = {}) => ({ roomId: '!r:hs', joined: ['@a:hs'], aliases: [], ...over });

  it('follows the spec: sender, membership target, room id, aliases, members', () => {
    expect(eventInterests(as, { sender: '@irc_x:hs', type: 'm.room.message' }, room())).toBe(true);
    expect(eventInterests(as, { sender: '@bot:hs', type: 'm.room.message' }, room())).toBe(true);
    expect(eventInterests(as, { sender: '@a:hs', type: 'm.room.member', state_key: '@irc_y:hs' }, room())).toBe(true);
    expect(eventInterests(as, { sender: '@a:hs', type: 'm.room.message' }, room({ roomId: '!bridged1:hs' }))).toBe(true);
    expect(eventInterests(as, { sender: '@a:hs', type: 'm.room.message' }, room({ aliases: ['#irc_chan:hs'] }))).toBe(true);
    expect(eventInterests(as, { sender: '@a:hs', type: 'm.room.message' }, room({ joined: ['@a:hs', '@irc_z:hs'] }))).toBe(true);
    expect(eventInterests(as, { sender: '@a:hs', type: 'm.room.message' }, room())).toBe(false);
    expect(eventInterests(as, { sender: '@a:hs', type: 'm.room.topic', state_key: '@irc_y:hs' }, room())).toBe(false);
  });

  it('makes ephemeral events of typing and receipts', () => {
    expect(roomEphemeral('typing', { type: 'typing', room_id: '!r:hs', user_ids: ['@a:hs'] })).toEqual({ roomId: '!r:hs', event: { type: 'm.typing', room_id: '!r:hs', content: { user_ids: ['@a:hs'] } } });
    expect(roomEphemeral('typing', { type: 'typing_keepalive', room_id: '!r:hs', user_ids: ['@a:hs'] })).toBeNull();
    const r = roomEphemeral('receipt', { type: 'receipt', room_id: '!r:hs', event_id: '$e', receipt_type: 'm.read.private', user_id: '@a:hs', ts: 5 });
    expect(r).toEqual({ roomId: '!r:hs', event: { type: 'm.receipt', room_id: '!r:hs', content: { $e: { 'm.read.private': { '@a:hs': { ts: 5 } } } } }, privateOf: '@a:hs' });
  });

  it('puts ephemeral and to-device lists in the body only when the registration asks', () => {
    const batch = { ephemeral: [{ type: 'm.typing' }], toDevice: [{ type: 'm.x' }] };
    expect(transactionBody([], batch, { receiveEphemeral: false, pushToDevice: false })).toEqual({ events: [] });
    expect(transactionBody([], batch, { receiveEphemeral: true, pushToDevice: true })).toEqual({ events: [], ephemeral: batch.ephemeral, 'de.sorunome.msc2409.ephemeral': batch.ephemeral, 'de.sorunome.msc2409.to_device': batch.toDevice });
  });
});
