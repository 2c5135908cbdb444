/** The presence actor's pure decisions: the state machine and its timers. */
import { describe, expect, it } from 'vitest';
import { decidePresence, IDLE_MS, offlineRecord, presenceContent, SYNC_TIMEOUT_MS, type PresenceActorState, type PresenceMessage } from '../../actors/presence';
import type { ActorMessage } from '../../src/runtime/actor';

const msg = (body: PresenceMessage, at: number): ActorMessage<PresenceMessage> => ({ mid: `m${at}`, actorId: '@a:x', body, enqueuedAt: at });
const fresh: PresenceActorState = { userId: '@a:x', record: offlineRecord(), syncUntil: 0 };
const timer = (d: { timers?: { key: string; atMs: number | null }[] }, key: string) => d.timers?.find((t) => t.key === key)?.atMs;

describe('presence decisions', () => {
  it('a sync brings an offline user online and arms idle and offline timers', () => {
    const d = decidePresence(fresh, msg({ op: 'sync', holdMs: 30_000 }, 1000));
    expect(d.state.record).toEqual({ presence: 'online', last_active: 1000 });
    expect(d.outputs).toEqual([{ type: 'presence', user_id: '@a:x', presence: 'online' }]);
    expect(timer(d, 'idle')).toBe(1000 + IDLE_MS);
    expect(timer(d, 'offline')).toBe(1000 + 30_000 + SYNC_TIMEOUT_MS);
    // Another sync later only moves the offline timer: nothing to publish.
    const again = decidePresence(d.state, msg({ op: 'sync', holdMs: 30_000 }, 20_000));
    expect(again.outputs).toEqual([]);
    expect(timer(again, 'offline')).toBe(20_000 + 30_000 + SYNC_TIMEOUT_MS);
  });

  it('goes unavailable when idle, back online when active, offline when syncs stop', () => {
    const online = decidePresence(fresh, msg({ op: 'sync', holdMs: 0 }, 0)).state;
    expect(decidePresence(online, msg({ op: 'idle' }, IDLE_MS - 1)).state).toBe(online); // too early: no change
    const idle = decidePresence(online, msg({ op: 'idle' }, IDLE_MS));
    expect(idle.state.record.presence).toBe('unavailable');
    expect(timer(idle, 'idle')).toBeNull();
    const active = decidePresence(idle.state, msg({ op: 'active' }, IDLE_MS + 5));
    expect(active.state.record).toMatchObject({ presence: 'online', last_active: IDLE_MS + 5 });
    const early = decidePresence(active.state, msg({ op: 'offline' }, IDLE_MS + 6));
    expect(early.state).toBe(active.state); // still within its sync window
    const gone = decidePresence(active.state, msg({ op: 'offline' }, active.state.syncUntil));
    expect(gone.state.record.presence).toBe('offline');
    expect(timer(gone, 'offline')).toBeNull();
    expect(timer(gone, 'idle')).toBeNull();
  });

  it('set keeps or clears the status message; syncing "offline" changes nothing visible', () => {
    const a = decidePresence(fresh, msg({ op: 'set', presence: 'unavailable', statusMsg: 'away' }, 10));
    expect(a.state.record).toMatchObject({ presence: 'unavailable', status_msg: 'away' });
    const b = decidePresence(a.state, msg({ op: 'set', presence: 'online' }, 20));
    expect(b.state.record.status_msg).toBe('away');
    const c = decidePresence(b.state, msg({ op: 'set', presence: 'online', statusMsg: null }, 30));
    expect(c.state.record.status_msg).toBeUndefined();
    const d = decidePresence(fresh, msg({ op: 'sync', setPresence: 'offline', holdMs: 0 }, 40));
    expect(d.outputs ?? []).toEqual([]);
    expect(d.state.record.presence).toBe('offline');
  });

  it('content: last_active_ago and currently_active derived at read time', () => {
    expect(presenceContent({ presence: 'online', last_active: 1000 }, 31_000)).toEqual({ presence: 'online', last_active_ago: 30_000, currently_active: true });
    expect(presenceContent({ presence: 'online', last_active: 1000 }, 100_000)).toMatchObject({ currently_active: false });
    expect(presenceContent(offlineRecord(), 5)).toEqual({ presence: 'offline' });
  });
});
