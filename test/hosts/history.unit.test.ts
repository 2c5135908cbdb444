/**
 * The multi-host bed's history check (history.ts) catches what it is there to catch: an
 * acknowledged message lost, duplicated, pointing at another request's event, a txn acknowledged
 * with two ids, a reader sent an event twice or missing one; and passes a clean history.
 */
import { describe, expect, it } from 'vitest';
import { checkHistory, faultFigures, type History, type SendAttempt, type TimelineEvent } from './history';

const ROOM = '!r:bed.test';
const U0 = '@sender0:bed.test';
const U1 = '@sender1:bed.test';

function send(over: Partial<SendAttempt>): SendAttempt {
  return { sender: 0, user: U0, room: ROOM, txn: 't0', body: 's0#0', attempt: 0, front: 0, t0: 0, t1: 10, status: 200, ...over };
}
function ev(eventId: string, body: string, sender = U0): TimelineEvent {
  return { room: ROOM, eventId, sender, body };
}

function clean(): History {
  return {
    startedAt: 0,
    sends: [
      send({ status: 503, retryAfter: '1', t0: 0, t1: 5 }),
      send({ attempt: 1, front: 1, eventId: '$a', t0: 100, t1: 120 }),
      send({ sender: 1, user: U1, txn: 't0', body: 's1#0', eventId: '$b', t0: 10, t1: 30 }),
    ],
    polls: [{ reader: 0, front: 0, t0: 0, t1: 200, status: 200, events: [ev('$b', 's1#0', U1), ev('$a', 's0#0')], limited: [] }],
    marks: [{ t: 0, label: 'x start' }],
    timelines: { [ROOM]: [ev('$b', 's1#0', U1), ev('$a', 's0#0')] },
    readersCaughtUp: { 0: true },
  };
}

describe('multi-host history check', () => {
  it('passes a history where every acknowledged message is there once', () => {
    const c = checkHistory(clean());
    expect(c.violations).toEqual([]);
    expect(c.acknowledged).toBe(2);
    expect(c.readersChecked).toBe(1);
  });

  it('flags a lost acknowledged message', () => {
    const h = clean();
    h.timelines[ROOM] = [ev('$b', 's1#0', U1)];
    h.polls[0]!.events = [ev('$b', 's1#0', U1)];
    expect(checkHistory(h).violations.some((v) => v.startsWith('lost: $a'))).toBe(true);
  });

  it('flags a retry that made a second event', () => {
    const h = clean();
    h.timelines[ROOM]!.push(ev('$c', 's0#0'));
    expect(checkHistory(h).violations.some((v) => v.startsWith('duplicated: s0#0 appears 2 times'))).toBe(true);
  });

  it('flags a txn acknowledged with two event ids', () => {
    const h = clean();
    h.sends.push(send({ attempt: 2, eventId: '$z', t0: 200, t1: 210 }));
    expect(checkHistory(h).violations.some((v) => v.includes('acknowledged as $a and as $z'))).toBe(true);
  });

  it("flags an acknowledged id pointing at another request's event", () => {
    const h = clean();
    h.timelines[ROOM] = [ev('$b', 's0#0'), ev('$a', 's1#0', U1)];
    expect(checkHistory(h).violations.some((v) => v.startsWith('wrong event: $a'))).toBe(true);
  });

  it('flags a message nobody sent', () => {
    const h = clean();
    h.timelines[ROOM]!.push(ev('$p', 's9#9'));
    expect(checkHistory(h).violations.some((v) => v.startsWith('phantom: s9#9'))).toBe(true);
  });

  it('flags a reader sent an event twice, or never sent an acknowledged one', () => {
    const h = clean();
    h.polls.push({ reader: 0, front: 1, t0: 200, t1: 300, status: 200, events: [ev('$a', 's0#0')], limited: [] });
    h.polls.push({ reader: 1, front: 1, t0: 0, t1: 300, status: 200, events: [ev('$a', 's0#0')], limited: [] });
    h.readersCaughtUp[1] = true;
    const v = checkHistory(h).violations;
    expect(v).toContain('reader 0 was sent $a 2 times');
    expect(v).toContain('reader 1 never saw acknowledged $b (s1#0)');
  });

  it('counts apart a second copy after a failover took back a read made before the acknowledgement', () => {
    // $a acknowledged at 120; reader 0 got it at 50 (before: a read of the unacknowledged commit),
    // a fault began at 150, and it got the re-commit (same id) at 300.
    const h = clean();
    h.polls.unshift({ reader: 0, front: 0, t0: 0, t1: 50, status: 200, events: [ev('$a', 's0#0')], limited: [] });
    h.polls[1]!.events = [ev('$b', 's1#0', U1)];
    h.polls.push({ reader: 0, front: 2, t0: 250, t1: 300, status: 200, events: [ev('$a', 's0#0')], limited: [] });
    h.marks.push({ t: 150, label: 'b start' });
    const c = checkHistory(h);
    expect(c.violations).toEqual([]);
    expect(c.rereadAfterRollback).toEqual([{ reader: 0, eventId: '$a', firstSeenAt: 50, ackedAt: 120, againAt: 300 }]);
    // Without a fault between the copies it is a duplicate delivery.
    h.marks.pop();
    expect(checkHistory(h).violations).toContain('reader 0 was sent $a 2 times');
  });

  it('counts failed attempts, missing Retry-After and the time to recover', () => {
    const h = clean();
    h.sends.push(send({ sender: 1, user: U1, txn: 't1', body: 's1#1', status: 504, t0: 40, t1: 60 }));
    h.sends.push(send({ sender: 1, user: U1, txn: 't1', body: 's1#1', status: 200, eventId: '$d', t0: 80, t1: 90 }));
    h.timelines[ROOM]!.push(ev('$d', 's1#1', U1));
    const f = faultFigures(h, 'x');
    expect(f.sendsFailed).toBe(2);
    expect(f.failedBy).toEqual({ '503': 1, '504': 1 });
    expect(f.unavailableWithoutRetryAfter).toBe(1);
    // Every front acknowledged a send given to it after the start: front 0 at 30, front 1 at 120.
    expect(f.recoverMs).toBe(120);
  });
});
