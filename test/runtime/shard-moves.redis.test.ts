/**
 * Moves of shards between live workers (reserveShards, executeMoves, the target's incoming set):
 * - a name in a target's incoming set lasts as long as its reservation: a move that expired or
 *   failed leaves no name behind (every round would try it again, one script call each, for good),
 *   while a move still waiting for its holder keeps its name;
 * - a move is reported done only once the target runs the shard, not as soon as the lease names
 *   the target while its runner is still starting.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { executeMoves } from '../../src/runtime/cluster-admin';
import { connectRedis, runScript } from '../../src/store/redis';
import { MODES, rig, waitFor, type Rig } from './harness';

for (const mode of MODES) {
  describe(`shard moves (${mode} redis)`, () => {
    let r: Rig;
    afterEach(async () => {
      await r?.close();
    });

    it("a reservation that expires leaves no name in its target's incoming set; one still waiting keeps it", async () => {
      r = await rig(mode, { shards: 4 });
      const w1 = await r.startWorker('w1');
      expect(w1.owned()).toHaveLength(8);
      const w2 = await r.startWorker('w2');
      expect(w2.owned()).toHaveLength(0);
      const incoming = r.keys.workerIncoming('w2');
      // Two moves of w1's shards to w2 that w1 is never asked to carry out (no handoff entry: as a
      // move whose holder failed, or whose operator went away): user:1 reserved for 300 ms only,
      // user:2 for a minute. Each the way reserveShards does it: the reservation, then the name.
      await runScript(r.redis, 'leaseReserve', [r.keys.shard('user', 1).lease], ['w2', 300]);
      await runScript(r.redis, 'leaseReserve', [r.keys.shard('user', 2).lease], ['w2', 60_000]);
      await r.redis.sadd(incoming, 'user:1', 'user:2');
      await waitFor("the expired reservation's name to leave the incoming set", async () => !(await r.redis.sismember(incoming, 'user:1')), 10_000);
      // The other waits for its holder: w2's rounds keep its name (and take nothing from w1).
      const beat = Number(await r.redis.hget(r.keys.workerInfo('w2'), 'heartbeat'));
      await waitFor('two more rounds of w2', async () => Number(await r.redis.hget(r.keys.workerInfo('w2'), 'heartbeat')) > beat + 2 * 300);
      expect(await r.redis.smembers(incoming)).toEqual(['user:2']);
      expect(await r.redis.hget(r.keys.shard('user', 1).lease, 'owner')).toBe('w1');
      expect(w2.owned()).toHaveLength(0);
    });

    it('a move is done only once its target runs the shard, not while its runner is starting', async () => {
      r = await rig(mode, { shards: 4 });
      const w1 = await r.startWorker('w1');
      expect(w1.owned()).toHaveLength(8);
      // w2's runner of user:1 waits in its first XGROUP (the start of a takeover) until let go.
      const w2redis = connectRedis(r.target);
      let letGo!: () => void;
      const gate = new Promise<void>((res) => (letGo = res));
      let gated = false;
      const xgroup = w2redis.xgroup.bind(w2redis) as (...a: unknown[]) => Promise<unknown>;
      (w2redis as unknown as { xgroup: (...a: unknown[]) => Promise<unknown> }).xgroup = async (...a: unknown[]) => {
        if (!gated && String(a[1]).includes('{u:1}')) {
          gated = true;
          await gate;
        }
        return xgroup(...a);
      };
      const w2 = await r.startWorker('w2', { redis: w2redis });
      const statesWhenDone: (string | undefined)[] = [];
      const moving = executeMoves(r.redis, r.keys, [{ family: 'user', shard: 1, from: 'w1', to: 'w2' }], { onMoved: () => statesWhenDone.push(w2.runner('user:1')?.state) });
      await waitFor('w2 to hold the lease, its runner starting', async () => gated && (await r.redis.hget(r.keys.shard('user', 1).lease, 'owner')) === 'w2');
      // Several of executeMoves' polls (every 50 ms) while the runner is held in its start.
      await new Promise((res) => setTimeout(res, 500));
      expect(w2.runner('user:1')?.state).toBe('starting');
      letGo();
      const [done] = await moving;
      expect(done?.move).toMatchObject({ family: 'user', shard: 1, to: 'w2' });
      expect(statesWhenDone).toEqual(['running']);
      expect(await r.redis.sismember(r.keys.workerIncoming('w2'), 'user:1')).toBe(0);
    });
  });
}
