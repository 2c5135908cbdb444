/**
 * The pure parts of EDU routing (issue 16.1/16.2): which typing/receipt outputs become EDUs,
 * presence coalescing and typing dropping in the destination actor, and the keys actor's cache
 * of a remote user's devices (prev_id chains and gaps).
 */
import { describe, expect, it } from 'vitest';
import { decideDestination, initialDestinationState, type DestinationMessage, type DestinationState } from '../../actors/destination';
import { decideKeys, newKeysState, type KeysMessage, type KeysState } from '../../actors/device-keys';
import { roomEdus } from '../../src/federation/sender/reader';
import { streamIdOf, userChangeOf } from '../../src/federation/sender/user-edus';
import type { ActorMessage } from '../../src/runtime/actor';
import { e2eKeyData } from '../../src/store/keys';

const HERE = 'here.example';
const DEST = 'peer.example';
let n = 0;
const dmsg = (body: DestinationMessage, at: number): ActorMessage<DestinationMessage> => ({ mid: `m${n++}`, actorId: DEST, body, enqueuedAt: at });

describe('room EDUs from typing and receipt outputs', () => {
  it('m.typing for our users who started or stopped, nothing for remote users', () => {
    const out = { type: 'typing', room_id: '!r:x', user_ids: ['@a:here.example', '@r:peer.example'], changes: [['@a:here.example', true], ['@r:peer.example', true], ['@b:here.example', false]] };
    expect(roomEdus('typing', out, HERE)).toEqual({
      roomId: '!r:x',
      edus: [
        { edu_type: 'm.typing', content: { room_id: '!r:x', user_id: '@a:here.example', typing: true } },
        { edu_type: 'm.typing', content: { room_id: '!r:x', user_id: '@b:here.example', typing: false } },
      ],
    });
    expect(roomEdus('typing', { ...out, changes: [['@r:peer.example', false]] }, HERE)).toBeNull();
  });

  it('a keepalive tells again that our users are still typing (never a remote user)', () => {
    const out = { type: 'typing_keepalive', room_id: '!r:x', user_ids: ['@a:here.example', '@r:peer.example'] };
    expect(roomEdus('typing', out, HERE)).toEqual({ roomId: '!r:x', edus: [{ edu_type: 'm.typing', content: { room_id: '!r:x', user_id: '@a:here.example', typing: true } }] });
    expect(roomEdus('typing', { ...out, user_ids: ['@r:peer.example'] }, HERE)).toBeNull();
  });

  it('m.receipt for a public receipt of our user; private receipts and remote users’ never', () => {
    const r = { type: 'receipt', room_id: '!r:x', event_id: '$e', receipt_type: 'm.read', user_id: '@a:here.example', ts: 5, thread_id: 'main' };
    expect(roomEdus('receipt', r, HERE)).toEqual({ roomId: '!r:x', edus: [{ edu_type: 'm.receipt', content: { '!r:x': { 'm.read': { '@a:here.example': { event_ids: ['$e'], data: { ts: 5, thread_id: 'main' } } } } } }] });
    expect(roomEdus('receipt', { ...r, receipt_type: 'm.read.private' }, HERE)).toBeNull();
    expect(roomEdus('receipt', { ...r, user_id: '@r:peer.example' }, HERE)).toBeNull();
  });

  it('user outputs: presence and device changes of our users only; self-only key changes stay home', () => {
    expect(userChangeOf('presence', { type: 'presence', user_id: '@a:here.example' }, HERE)).toEqual({ what: 'presence', userId: '@a:here.example' });
    expect(userChangeOf('presence', { type: 'presence', user_id: '@r:peer.example' }, HERE)).toBeNull();
    expect(userChangeOf('user', { type: 'device', user_id: '@a:here.example', device_id: 'D', deleted: true }, HERE)).toEqual({ what: 'devices', userId: '@a:here.example', deviceIds: ['D'], deleted: true });
    expect(userChangeOf('keys', { type: 'device_list', user_id: '@a:here.example', device_ids: ['D'] }, HERE)).toEqual({ what: 'devices', userId: '@a:here.example', deviceIds: ['D'] });
    expect(userChangeOf('keys', { type: 'device_list', user_id: '@a:here.example', self_only: true }, HERE)).toBeNull();
    expect(streamIdOf('1700000000000-3')).toBe(1700000000000003);
  });
});

describe('destination actor: presence and typing', () => {
  const presence = (user: string, p: string) => ({ t: 'edus' as const, edus: [{ edu_type: 'm.presence', content: { push: [{ user_id: user, presence: p }] } }] });

  it('coalesces presence per user while a transaction is out, and sends it as one m.presence EDU in the next', () => {
    let s: DestinationState = initialDestinationState(DEST);
    s = decideDestination(s, dmsg({ t: 'edus', edus: [{ edu_type: 'm.direct_to_device', content: { message_id: 'x' } }] }, 1000), undefined).state;
    const txnId = s.inflight!.txnId;
    s = decideDestination(s, dmsg({ t: 'send' }, 1000), { kind: 'started', txnId, attempt: 1 }).state;
    for (let i = 0; i < 50; i++) s = decideDestination(s, dmsg(presence('@a:here.example', i % 2 ? 'online' : 'unavailable'), 1001 + i), undefined).state;
    s = decideDestination(s, dmsg(presence('@b:here.example', 'online'), 1100), undefined).state;
    expect(s.presence).toEqual({ '@a:here.example': { user_id: '@a:here.example', presence: 'online' }, '@b:here.example': { user_id: '@b:here.example', presence: 'online' } });
    expect(s.nextEdu).toBe(2); // presence never enters the EDU stream
    const d = decideDestination(s, dmsg({ t: 'sent', txnId, attempt: 1, outcome: { kind: 'ok', pduErrors: 0 }, pdus: 0, edus: 1 }, 1200), undefined);
    expect(d.state.inflight?.presence).toHaveLength(2);
    expect(d.state.presence).toBeUndefined();
  });

  it('drops typing while backing off, keeps to-device', () => {
    let s: DestinationState = { ...initialDestinationState(DEST), retryAt: 10_000, failures: 2 };
    s = decideDestination(s, dmsg({ t: 'edus', edus: [{ edu_type: 'm.typing', content: { room_id: '!r', user_id: '@a:here.example', typing: true } }] }, 1000), undefined).state;
    expect(s.nextEdu).toBe(1);
    s = decideDestination(s, dmsg({ t: 'edus', edus: [{ edu_type: 'm.direct_to_device', content: { message_id: 'm' } }] }, 1000), undefined).state;
    expect(s.nextEdu).toBe(2);
  });
});

describe('keys actor: a remote user’s device cache', () => {
  const U = '@r:peer.example';
  const kmsg = (body: KeysMessage) => ({ mid: 'm', actorId: U, body, enqueuedAt: 1000 });
  const op = (body: KeysMessage) => ({ op: body.op }) as never;
  const keys = (d: string) => ({ user_id: U, device_id: d, keys: {} });

  it('no synced list: an update asks for a resync; after it, chained updates patch; a prev_id gap asks again', () => {
    let s: KeysState = newKeysState(U);
    const u1: KeysMessage = { op: 'remote_update', deviceId: 'D1', streamId: 3, prevIds: [2], deleted: false, keys: keys('D1') };
    const d1 = decideKeys(s, kmsg(u1), op(u1));
    expect(d1.reply).toEqual({ resync: true });
    expect(d1.outputs).toEqual([{ type: 'device_list', user_id: U }]);
    s = d1.state;
    const r: KeysMessage = { op: 'remote_resync', streamId: 3, devices: { D1: { keys: keys('D1') } }, cross: {} };
    const d2 = decideKeys(s, kmsg(r), op(r));
    expect(d2.writes).toContainEqual({ cmd: 'SET', key: e2eKeyData.remoteSynced(U), args: ['1'] });
    s = d2.state;
    expect(s.remote).toEqual({ stream: 3, synced: true });
    const u2: KeysMessage = { op: 'remote_update', deviceId: 'D2', streamId: 4, prevIds: [3], deleted: false, keys: keys('D2') };
    const d3 = decideKeys(s, kmsg(u2), op(u2));
    expect(d3.reply).toEqual({ resync: false });
    expect(d3.writes?.[0]).toMatchObject({ cmd: 'HSET', key: e2eKeyData.deviceKeys(U), args: ['D2', expect.any(String)] });
    s = d3.state;
    // A replay of update 4 changes nothing.
    expect(decideKeys(s, kmsg(u2), op(u2)).state).toBe(s);
    const gap: KeysMessage = { op: 'remote_update', deviceId: 'D1', streamId: 9, prevIds: [7], deleted: true };
    const d4 = decideKeys(s, kmsg(gap), op(gap));
    expect(d4.reply).toEqual({ resync: true });
    expect(d4.writes).toEqual([{ cmd: 'DEL', key: e2eKeyData.remoteSynced(U), args: [] }]);
  });

  it('resync answers arriving out of order: an older list never overwrites a newer one', () => {
    let s: KeysState = { ...newKeysState(U), remote: { stream: 3, synced: false } };
    const newer: KeysMessage = { op: 'remote_resync', streamId: 6, devices: { D1: { keys: keys('D1') }, D2: { keys: keys('D2') } }, cross: {} };
    const older: KeysMessage = { op: 'remote_resync', streamId: 5, devices: { D1: { keys: keys('D1') } }, cross: {} };
    s = decideKeys(s, kmsg(newer), op(newer)).state;
    expect(s.remote).toEqual({ stream: 6, synced: true });
    const late = decideKeys(s, kmsg(older), op(older));
    expect(late.state).toBe(s);
    expect(late.writes ?? []).toEqual([]);
  });

  it('an update of a device without keys (a new login) is no gap: the device has nothing to serve yet', () => {
    const s: KeysState = { ...newKeysState(U), remote: { stream: 3, synced: true } };
    const bare: KeysMessage = { op: 'remote_update', deviceId: 'D3', streamId: 4, prevIds: [3], deleted: false };
    const d = decideKeys(s, kmsg(bare), op(bare));
    expect(d.reply).toEqual({ resync: false });
    expect(d.writes).toEqual([{ cmd: 'HDEL', key: e2eKeyData.deviceKeys(U), args: ['D3'] }]);
    expect(d.state.remote).toEqual({ stream: 4, synced: true });
  });
});
