import { describe, expect, it } from 'vitest';
import { RECEIPT_TYPES, readFields, readPositions, receiptField, receiptPos, sentMembers, sentPos } from '../../src/store/read-receipts';
import { listScore } from '../../src/readers/push-evaluator';

const U = '@u:example.org';
const r = (pos: number) => JSON.stringify({ event_id: `$e${pos}`, ts: 1, pos });

describe('read positions from receipts', () => {
  it('asks for unthreaded, main and the thread’s receipts, public and private', () => {
    expect(readFields(U, null)).toEqual([`m.read\0\0${U}`, `m.read.private\0\0${U}`, `m.read\0main\0${U}`, `m.read.private\0main\0${U}`]);
    expect(readFields(U, '$root').slice(4)).toEqual([`m.read\0$root\0${U}`, `m.read.private\0$root\0${U}`]);
  });

  it('takes the later of public and private; unthreaded covers main and threads', () => {
    expect(readPositions([r(5), r(7), null, null], null)).toEqual({ unthreaded: 7, main: 7, thread: 7 });
    expect(readPositions([r(5), null, r(9), r(3)], null)).toEqual({ unthreaded: 5, main: 9, thread: 9 });
    expect(readPositions([r(5), null, r(9), null, r(6), r(8)], '$t')).toEqual({ unthreaded: 5, main: 9, thread: 8 });
    expect(readPositions([r(10), null, null, null, r(6), null], '$t')).toEqual({ unthreaded: 10, main: 10, thread: 10 });
    expect(readPositions([null, null, null, null], null)).toEqual({ unthreaded: 0, main: 0, thread: 0 });
  });

  it("counts the user's own latest events as receipts: in the main timeline as an unthreaded one, in a thread in that thread", () => {
    expect(sentMembers(U, null)).toEqual([U]);
    expect(sentMembers(U, '$t')).toEqual([U, `$t\0${U}`]);
    // Sent at 12 in the main timeline: everything up to it read, threads included.
    expect(readPositions([r(5), null, r(9), null], null, ['12'])).toEqual({ unthreaded: 12, main: 12, thread: 12 });
    // Sent at 11 in thread $t only: that thread read up to it, not the main timeline.
    expect(readPositions([r(5), null, r(9), null, r(6), null], '$t', [null, '11'])).toEqual({ unthreaded: 5, main: 9, thread: 11 });
    // A receipt later than the own event wins; no or malformed scores read as nothing.
    expect(readPositions([r(20), null, null, null], null, ['12'])).toEqual({ unthreaded: 20, main: 20, thread: 20 });
    expect(readPositions([null, null, null, null], null, [null])).toEqual({ unthreaded: 0, main: 0, thread: 0 });
    expect(sentPos('nonsense')).toBe(0);
  });

  it('reads nothing from malformed values', () => {
    expect(receiptPos('not json')).toBe(0);
    expect(receiptPos('{"pos":"3"}')).toBe(0);
    expect(receiptPos(null)).toBe(0);
  });

  it("reads one user's positions out of a room's whole receipts hash: other users, other threads, m.fully_read, malformed values and junk fields do not count", () => {
    // What a user has read, worked out from every field of the hash (not from the fields
    // readFields names): the latest m.read / m.read.private of theirs, unthreaded; main is the
    // later of that and their `main` ones; a thread the later of unthreaded and that thread's.
    const reference = (hash: Record<string, string>, user: string, thread: string | null) => {
      const latest = (threadId: string) => {
        let pos = 0;
        for (const [field, value] of Object.entries(hash)) {
          const [type, t, u] = field.split('\0');
          if (u !== user || t !== threadId || !(RECEIPT_TYPES as readonly string[]).includes(type!)) continue;
          const v = (() => {
            try {
              return (JSON.parse(value) as { pos?: unknown }).pos;
            } catch {
              return undefined;
            }
          })();
          if (typeof v === 'number') pos = Math.max(pos, v);
        }
        return pos;
      };
      const unthreaded = latest('');
      const main = Math.max(unthreaded, latest('main'));
      return { unthreaded, main, thread: thread ? Math.max(unthreaded, latest(thread)) : main };
    };
    // Random hashes: several users, unthreaded, main and thread receipts of both types, junk. The
    // generator's high bits: its low ones repeat with a short period (the first version of this
    // test took `seed % n`, and its hashes held 8 of the 48 type × thread × user fields, nearly
    // all unthreaded ones).
    let seed = 7;
    const rand = (n: number) => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0), (seed >>> 16) % n);
    const users = ['@a:x', '@b:x', '@c:x', '@d:x'];
    const threads = ['', 'main', '$t1', '$t2'];
    for (let round = 0; round < 200; round++) {
      const hash: Record<string, string> = {};
      for (let i = rand(12); i > 0; i--) {
        const type = [...RECEIPT_TYPES, 'm.fully_read'][rand(3)]!;
        hash[receiptField(type, threads[rand(4)] || undefined, users[rand(4)]!)] = rand(10) === 0 ? 'not json' : r(1 + rand(50));
      }
      hash['junk field'] = r(99);
      for (const u of users) {
        // $t3: a thread no one has a receipt in.
        for (const thread of [null, '$t1', '$t2', '$t3']) {
          const got = readPositions(readFields(u, thread).map((f) => hash[f] ?? null), thread);
          expect(got, JSON.stringify({ hash, u, thread })).toEqual(reference(hash, u, thread));
        }
      }
    }
  });

  it('orders the notification list by outbox entry id, exactly', () => {
    expect(listScore(1_763_000_000_000, 0)).toBeLessThan(listScore(1_763_000_000_000, 1));
    expect(listScore(1_763_000_000_000, 999)).toBeLessThan(listScore(1_763_000_000_001, 0));
    expect(Number.isSafeInteger(listScore(4_000_000_000_000, 999))).toBe(true);
  });
});
