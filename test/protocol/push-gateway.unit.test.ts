/** The push gateway payload, pure (src/protocol/push-gateway.ts): Synapse 1.163's shapes. */
import { describe, expect, it } from 'vitest';
import { badgeNotification, eventNotification, presentableRoomName, pushPriority, tweaksForActions, type NamingMember } from '../../src/protocol/push-gateway';

const PUSHER = { app_id: 'com.example', pushkey: 'pk', ts: 1_700_000_123_456, data: { url: 'https://gw.test/_matrix/push/v1/notify', extra: 1 } };
const EVENT = { type: 'm.room.message', room_id: '!r:s', sender: '@a:s', content: { msgtype: 'm.text', body: 'hi' } };

describe('push gateway payloads', () => {
  it('turns set_tweak actions into tweaks; a tweak without value is true', () => {
    expect(tweaksForActions(['notify', { set_tweak: 'sound', value: 'default' }, { set_tweak: 'highlight' }, 'dont_notify', 5])).toEqual({ sound: 'default', highlight: true });
    expect(tweaksForActions(['notify'])).toEqual({});
  });

  it('is high priority only with a sound, a highlight, or an encrypted event', () => {
    expect(pushPriority('m.room.message', {})).toBe('low');
    expect(pushPriority('m.room.message', { highlight: false })).toBe('low');
    expect(pushPriority('m.room.message', { sound: 'default' })).toBe('high');
    expect(pushPriority('m.room.message', { highlight: true })).toBe('high');
    expect(pushPriority('m.room.encrypted', {})).toBe('high');
  });

  it('builds the full notification: event fields, counts, names, the device without url, tweaks', () => {
    const n = eventNotification(EVENT, '$e', '@b:s', PUSHER, ['notify', { set_tweak: 'sound', value: 'default' }], { badge: 3, senderDisplayName: 'Alice', roomName: 'Room' });
    expect(n).toEqual({
      notification: {
        id: '$e', event_id: '$e', room_id: '!r:s', type: 'm.room.message', sender: '@a:s', prio: 'high', counts: { unread: 3 },
        content: { msgtype: 'm.text', body: 'hi' }, sender_display_name: 'Alice', room_name: 'Room',
        devices: [{ app_id: 'com.example', pushkey: 'pk', pushkey_ts: 1_700_000_123, data: { extra: 1 }, tweaks: { sound: 'default' } }],
      },
    });
    expect(PUSHER.data.url).toBeDefined(); // the pusher itself is untouched
  });

  it('leaves out content when told, empty names, and gives member events membership and user_is_target', () => {
    const member = { type: 'm.room.member', state_key: '@b:s', room_id: '!r:s', sender: '@a:s', content: { membership: 'invite' } };
    const n = eventNotification(member, '$m', '@b:s', PUSHER, ['notify'], { badge: 1, senderDisplayName: '', roomName: null, includeContent: false }).notification as Record<string, unknown>;
    expect(n).toMatchObject({ membership: 'invite', user_is_target: true, prio: 'low' });
    expect(n).not.toHaveProperty('content');
    expect(n).not.toHaveProperty('sender_display_name');
    expect(n).not.toHaveProperty('room_name');
    expect((n.devices as object[])[0]).not.toHaveProperty('tweaks');
  });

  it('event_id_only: ids, prio and counts only, no tweaks', () => {
    const n = eventNotification(EVENT, '$e', '@b:s', { ...PUSHER, data: { ...PUSHER.data, format: 'event_id_only' } }, [{ set_tweak: 'highlight' }], { badge: 0, senderDisplayName: 'A', roomName: 'R' });
    expect(n).toEqual({ notification: { event_id: '$e', room_id: '!r:s', prio: 'high', counts: { unread: 0 }, devices: [{ app_id: 'com.example', pushkey: 'pk', pushkey_ts: 1_700_000_123, data: { extra: 1, format: 'event_id_only' } }] } });
  });

  it('badge updates carry only the count and the device', () => {
    expect(badgeNotification(PUSHER, 2)).toEqual({ notification: { id: '', type: null, sender: '', counts: { unread: 2 }, devices: [{ app_id: 'com.example', pushkey: 'pk', pushkey_ts: 1_700_000_123, data: { extra: 1 } }] } });
  });
});

describe('presentableRoomName (Synapse calculate_room_name, without single-member names)', () => {
  const m = (userId: string, membership: string, ts: number, displayname?: string, sender = userId): NamingMember => ({ userId, membership, ts, sender, ...(displayname ? { displayname } : {}) });
  it('prefers the name, then an alias-looking canonical alias', () => {
    expect(presentableRoomName({ name: 'N', canonicalAlias: '#a:s', members: [] }, '@me:s')).toBe('N');
    expect(presentableRoomName({ canonicalAlias: '#a:s', members: [] }, '@me:s')).toBe('#a:s');
    expect(presentableRoomName({ canonicalAlias: 'not an alias', members: [m('@me:s', 'join', 1), m('@x:s', 'join', 2), m('@y:s', 'join', 3)] }, '@me:s')).toBe('@x:s and @y:s');
  });
  it('names rooms after the other members in the order they came, no name for one other member', () => {
    const me = m('@me:s', 'join', 1);
    expect(presentableRoomName({ members: [me, m('@x:s', 'join', 5, 'Xena')] }, '@me:s')).toBeNull();
    expect(presentableRoomName({ members: [me, m('@y:s', 'invite', 9), m('@x:s', 'join', 5, 'Xena')] }, '@me:s')).toBe('Xena and @y:s');
    expect(presentableRoomName({ members: [me, m('@x:s', 'join', 5), m('@y:s', 'join', 6), m('@z:s', 'leave', 7), m('@w:s', 'join', 8)] }, '@me:s')).toBe('@x:s and 2 others');
    expect(presentableRoomName({ members: [me] }, '@me:s')).toBe('Empty Room');
    expect(presentableRoomName({ members: [] }, '@me:s')).toBe('Empty Room');
  });
  it('an invite: no name when the inviter is known, "Room Invite" when not', () => {
    expect(presentableRoomName({ members: [m('@me:s', 'invite', 2, undefined, '@x:s'), m('@x:s', 'join', 1)] }, '@me:s')).toBeNull();
    expect(presentableRoomName({ members: [m('@me:s', 'invite', 2, undefined, '@x:s')] }, '@me:s')).toBe('Room Invite');
  });
});
