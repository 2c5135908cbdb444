/**
 * The deterministic parts of `npm run bench`'s workloads, fixed before any request so that every
 * server of a run gets the same rooms, members and operations.
 */
import { seededRandom } from './bench-util';

/**
 * (A) rooms of `users` users: 4 big rooms where every user is in one (i % 4), and 16 small rooms
 * of ~users/64 members each — about 80 % of the memberships in the 4 big rooms. Members are
 * user indexes; the first member creates the room.
 */
export function roomLayout(users: number): { big: number[][]; small: number[][] } {
  const bigCount = 4;
  const smallCount = 16;
  const smallSize = Math.max(2, Math.round(users / 4 / smallCount));
  const big = Array.from({ length: bigCount }, (_x, r) => Array.from({ length: users }, (_y, i) => i).filter((i) => i % bigCount === r));
  const small = Array.from({ length: smallCount }, (_x, r) => [...new Set(Array.from({ length: smallSize }, (_y, k) => (r * smallSize + k * 7) % users))]);
  return { big, small };
}

export interface MemberOp {
  kind: 'join' | 'leave';
  /** Index of the user in the registered pool. */
  user: number;
}

/**
 * (D) join churn: `count` membership operations, about 10 % of them leaves. A leave picks a member
 * whose join was scheduled at least `settle` operations earlier (so it has landed on a server
 * that keeps up); joins take fresh users, and once more than 20 users have left, half of the
 * joins bring one of them back. Returns the operations and how many distinct users they need.
 */
export function churnSchedule(count: number, seed = 0xd00d, settle = 50): { ops: MemberOp[]; users: number } {
  const rng = seededRandom(seed);
  const ops: MemberOp[] = [];
  const joinedAt = new Map<number, number>(); // user → index of their join
  const left: number[] = [];
  let fresh = 0;
  for (let k = 0; k < count; k++) {
    const settled: number[] = [];
    for (const [u, at] of joinedAt) if (at <= k - settle) settled.push(u);
    if (rng() < 0.1 && settled.length) {
      const u = settled[Math.floor(rng() * settled.length)]!;
      joinedAt.delete(u);
      left.push(u);
      ops.push({ kind: 'leave', user: u });
    } else {
      const u = left.length > 20 && rng() < 0.5 ? left.shift()! : fresh++;
      joinedAt.set(u, k);
      ops.push({ kind: 'join', user: u });
    }
  }
  return { ops, users: fresh };
}
