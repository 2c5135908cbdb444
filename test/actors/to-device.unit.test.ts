/** The to-device actor's decide, as a pure state machine: no Redis. */
import { describe, expect, it } from 'vitest';
import { MAX_INBOX_LENGTH, decideToDevice, deliveryTargets, emptyToDevice, toDeviceActor, toDeviceEventJson, type ToDeviceMessage } from '../../actors/to-device';
import { userData } from '../../src/store/keys';

const BOB = '@bob:test.local';
const ALICE = '@alice:test.local';
const msg = (body: ToDeviceMessage) => ({ mid: 'm', actorId: BOB, body, enqueuedAt: 1000 });

describe('ToDeviceActor', () => {
  it('is a user-family kind named todevice', () => {
    const kind = toDeviceActor();
    expect(kind.kind).toBe('todevice');
    expect(kind.family).toBe('user');
    expect(kind.initialState(BOB)).toEqual({ userId: BOB, inboxes: [] });
  });

  it('stores the event as {content, sender, type} without re-encoding the content', () => {
    const json = toDeviceEventJson('m.test', ALICE, '{"b":1,"a":"x"}');
    expect(JSON.parse(json)).toEqual({ content: { b: 1, a: 'x' }, sender: ALICE, type: 'm.test' });
  });

  it('`*` means every current device and wins over named devices; unknown devices are skipped', () => {
    expect([...deliveryTargets({ '*': '{}', D1: '{"x":1}' }, ['D1', 'D2']).entries()]).toEqual([['D1', '{}'], ['D2', '{}']]);
    expect([...deliveryTargets({ D1: '{"x":1}', GONE: '{}' }, ['D1', 'D2']).entries()]).toEqual([['D1', '{"x":1}']]);
    expect(deliveryTargets({ '*': '{}' }, []).size).toBe(0);
  });

  it('send appends one capped entry per device with a Redis-clock id, outputs a wake-up per device, and remembers the inbox', () => {
    const d = decideToDevice(emptyToDevice(BOB), msg({ op: 'send', sender: ALICE, type: 'm.test', messages: { D2: '{"n":2}', D1: '{"n":1}' } }), { devices: ['D1', 'D2'] });
    expect(d.reply).toEqual({ delivered: ['D2', 'D1'] });
    expect(d.state.inboxes).toEqual(['D1', 'D2']);
    expect(d.writes).toEqual([
      { cmd: 'XADD', key: userData.toDeviceInbox(BOB, 'D2'), args: ['MAXLEN', MAX_INBOX_LENGTH, '*', 'e', toDeviceEventJson('m.test', ALICE, '{"n":2}')] },
      { cmd: 'XADD', key: userData.toDeviceInbox(BOB, 'D1'), args: ['MAXLEN', MAX_INBOX_LENGTH, '*', 'e', toDeviceEventJson('m.test', ALICE, '{"n":1}')] },
    ]);
    expect(d.outputs).toEqual([
      { type: 'to_device', user_id: BOB, device_id: 'D2', e: toDeviceEventJson('m.test', ALICE, '{"n":2}') },
      { type: 'to_device', user_id: BOB, device_id: 'D1', e: toDeviceEventJson('m.test', ALICE, '{"n":1}') },
    ]);
    // A second send to known inboxes leaves the state object as it was (nothing to persist).
    const again = decideToDevice(d.state, msg({ op: 'send', sender: ALICE, type: 'm.test', messages: { D1: '{}' } }), { devices: ['D1', 'D2'] });
    expect(again.state).toBe(d.state);
  });

  it('send to a user without devices writes nothing', () => {
    const s = emptyToDevice(BOB);
    const d = decideToDevice(s, msg({ op: 'send', sender: ALICE, type: 'm.test', messages: { '*': '{}' } }), { devices: [] });
    expect(d).toEqual({ state: s, reply: { delivered: [] } });
  });

  it('ack trims below the position for a known inbox only, and refuses a malformed position', () => {
    const s = { userId: BOB, inboxes: ['D1'] };
    expect(decideToDevice(s, msg({ op: 'ack', deviceId: 'D1', keepFromId: '1700-3' }), undefined).writes).toEqual([
      { cmd: 'XTRIM', key: userData.toDeviceInbox(BOB, 'D1'), args: ['MINID', '1700-3'] },
    ]);
    expect(decideToDevice(s, msg({ op: 'ack', deviceId: 'D9', keepFromId: '1700-3' }), undefined).writes).toBeUndefined();
    expect(() => decideToDevice(s, msg({ op: 'ack', deviceId: 'D1', keepFromId: '1700' }), undefined)).toThrow(TypeError);
  });

  it('prune deletes the inboxes of devices that no longer exist', () => {
    const s = { userId: BOB, inboxes: ['D1', 'D2', 'D3'] };
    const d = decideToDevice(s, msg({ op: 'prune' }), { devices: ['D2'] });
    expect(d.state.inboxes).toEqual(['D2']);
    expect(d.reply).toEqual({ deleted: ['D1', 'D3'] });
    expect(d.writes).toEqual([
      { cmd: 'DEL', key: userData.toDeviceInbox(BOB, 'D1'), args: [] },
      { cmd: 'DEL', key: userData.toDeviceInbox(BOB, 'D3'), args: [] },
    ]);
    expect(decideToDevice(d.state, msg({ op: 'prune' }), { devices: ['D2'] }).state).toBe(d.state);
  });
});
