import { describe, expect, it } from 'vitest';
import { decideDelayedEvents, sendTimeOf, type DelayedEventsMessage, type DelayedEventsState } from '../../actors/delayed-events';
import { ActorRejection, type ActorMessage } from '../../src/runtime/actor';

const U = '@u:example.org';
let n = 0;
const msg = (body: DelayedEventsMessage, at: number): ActorMessage<DelayedEventsMessage> => ({ mid: `m${++n}`, actorId: U, body, enqueuedAt: at });
const empty: DelayedEventsState = { userId: U, events: {} };
const add = (state: DelayedEventsState, id: string, at: number, extra: Partial<Extract<DelayedEventsMessage, { op: 'add' }>> = {}) =>
  decideDelayedEvents(state, msg({ op: 'add', delayId: id, roomId: '!r:x', type: 'm.room.message', content: { body: id }, delayMs: 1000, maxPerUser: 3, ...extra }, at));

describe('delayed events actor', () => {
  it('sets a timer at the send time and sends once when it fires', () => {
    const a = add(empty, 'd1', 10_000);
    expect(a.reply).toEqual({ delay_id: 'd1' });
    expect(a.timers).toEqual([{ key: 'd1', atMs: 11_000, body: { op: 'fire', delayId: 'd1' } }]);
    // A timer firing before the send time (it was restarted meanwhile) does nothing.
    const restarted = decideDelayedEvents(a.state, msg({ op: 'restart', delayId: 'd1' }, 10_800));
    expect(restarted.timers).toEqual([{ key: 'd1', atMs: 11_800, body: { op: 'fire', delayId: 'd1' } }]);
    const early = decideDelayedEvents(restarted.state, msg({ op: 'fire', delayId: 'd1' }, 11_000));
    expect(early.state).toBe(restarted.state);
    expect(early.outputs).toBeUndefined();
    const due = decideDelayedEvents(restarted.state, msg({ op: 'fire', delayId: 'd1' }, 11_800));
    expect(due.outputs).toEqual([{ type: 'delayed_event_due', user_id: U, delay_id: 'd1', room_id: '!r:x', event_type: 'm.room.message', content: { body: 'd1' } }]);
    expect(due.state.events).toEqual({});
    expect(due.timers).toEqual([{ key: 'd1', atMs: null }]);
    // A repeated firing finds nothing.
    expect(decideDelayedEvents(due.state, msg({ op: 'fire', delayId: 'd1' }, 12_000)).outputs).toBeUndefined();
    expect(sendTimeOf(restarted.state.events.d1!)).toBe(11_800);
  });

  it('refuses past the per-user maximum and answers 404 for unknown ids', () => {
    let s = empty;
    for (const id of ['a', 'b', 'c']) s = add(s, id, 0).state;
    expect(() => add(s, 'd', 0)).toThrow(ActorRejection);
    for (const op of ['cancel', 'restart', 'send'] as const) {
      try {
        decideDelayedEvents(s, msg({ op, delayId: 'zz' }, 0));
        expect.fail('expected a rejection');
      } catch (e) {
        expect((e as ActorRejection).status).toBe(404);
      }
    }
    expect(decideDelayedEvents(s, msg({ op: 'cancel_all' }, 0)).state.events).toEqual({});
  });

  it('state: others’ changes cancel what was scheduled before them, and keep the index in step', () => {
    const a = add(empty, 's1', 1000, { type: 'org.x', stateKey: 'k' });
    expect(a.derivedWrites).toEqual([{ cmd: 'SADD', key: 'delayed-state:!r:x\u0000org.x\u0000k', args: [U], ordered: true }]);
    const b = add(a.state, 's2', 3000, { type: 'org.x', stateKey: 'k' });
    // A change at 2000 cancels s1 (scheduled at 1000), not s2 (scheduled at 3000); the user keeps a delayed event for the slot.
    const c = decideDelayedEvents(b.state, msg({ op: 'cancel_state', roomId: '!r:x', type: 'org.x', stateKey: 'k', before: 2000 }, 5000));
    expect(Object.keys(c.state.events)).toEqual(['s2']);
    expect(c.derivedWrites).toBeUndefined();
    const d = decideDelayedEvents(c.state, msg({ op: 'cancel_state', roomId: '!r:x', type: 'org.x', stateKey: 'k', before: 9000 }, 9000));
    expect(d.state.events).toEqual({});
    expect(d.derivedWrites).toEqual([{ cmd: 'SREM', key: 'delayed-state:!r:x\u0000org.x\u0000k', args: [U], ordered: true }]);
    // A restart does not make an event scheduled before the change escape it.
    const e = add(empty, 's3', 1000, { type: 'org.x', stateKey: 'k' });
    const r = decideDelayedEvents(e.state, msg({ op: 'restart', delayId: 's3' }, 4000));
    expect(decideDelayedEvents(r.state, msg({ op: 'cancel_state', roomId: '!r:x', type: 'org.x', stateKey: 'k', before: 2000 }, 5000)).state.events).toEqual({});
  });
});
