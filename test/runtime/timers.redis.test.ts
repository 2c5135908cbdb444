/**
 * Durable actor timers (src/runtime/timers.ts) on real Redis, single server and Cluster: a
 * decision's timer fires by itself, is replaced by a later one with the same key, and still fires
 * when the worker that set it is gone and another holds the shard. The typing actor is the
 * subject: its notices expire through a timer.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { shardOf } from '../../src/store/shards';
import { decode } from '../../src/store/codec';
import { roomData } from '../../src/store/keys';
import type { TypingOutput } from '../../actors/typing';
import { MODES, rig, waitFor, type Rig } from './harness';

for (const mode of MODES) {
  describe(`actor timers (${mode} redis)`, () => {
    let r: Rig;
    afterEach(async () => {
      await r?.close();
    });

    async function typingOutputs(roomId: string): Promise<TypingOutput[]> {
      const shard = r.keys.shard('room', shardOf(roomId, r.shardCounts.room));
      const rows = (await r.redis.xrangeBuffer(shard.outbox, '-', '+')) as [Buffer, Buffer[]][];
      const out: TypingOutput[] = [];
      for (const [, f] of rows) {
        const fields = new Map<string, Buffer>();
        for (let i = 0; i + 1 < f.length; i += 2) fields.set(f[i]!.toString(), f[i + 1]!);
        if (fields.get('k')?.toString() === 'typing' && fields.get('a')?.toString() === roomId) out.push(decode<TypingOutput>(fields.get('b')!));
      }
      return out;
    }

    it('a typing notice expires by itself; a renewal moves the expiry instead of adding one', async () => {
      r = await rig(mode);
      await r.startWorker('w1');
      const c = await r.client();
      const roomId = '!timers1:test';
      await c.ask('room', 'typing', roomId, { op: 'set', userId: '@a:test', typing: true, timeoutMs: 300 });
      await c.ask('room', 'typing', roomId, { op: 'set', userId: '@a:test', typing: true, timeoutMs: 700 }); // renewal: no output
      const t0 = Date.now();
      const outs = await waitFor('expiry output', async () => {
        const o = await typingOutputs(roomId);
        return o.length >= 2 ? o : null;
      }, 10_000);
      expect(outs.map((o) => o.user_ids)).toEqual([['@a:test'], []]);
      // The renewal's 700 ms, not the first 300 ms, decided when it ended.
      expect(Date.now() - t0).toBeGreaterThanOrEqual(450);
      const shard = r.keys.shard('room', shardOf(roomId, r.shardCounts.room));
      expect(await r.redis.hlen(shard.data(roomData.typing(roomId)))).toBe(0);
      expect(await r.redis.zcard(shard.timers)).toBe(0);
    });

    it('fires after the worker that set it died and another took the shard', async () => {
      r = await rig(mode, { ttlMs: 800, renewMs: 200 });
      const w1 = await r.startWorker('w1');
      const c = await r.client();
      const roomId = '!timers2:test';
      await c.ask('room', 'typing', roomId, { op: 'set', userId: '@b:test', typing: true, timeoutMs: 1000 });
      w1.crash();
      await r.startWorker('w2');
      const outs = await waitFor('expiry output after takeover', async () => {
        const o = await typingOutputs(roomId);
        return o.length >= 2 ? o : null;
      }, 15_000);
      expect(outs.map((o) => o.user_ids)).toEqual([['@b:test'], []]);
    });
  });
}
