/**
 * `runScript` / `runScriptBuffer` send EVALSHA and, when the server does not have the script (a
 * fresh server, a restart, SCRIPT FLUSH), EVAL of its text — which loads it, so the next call is
 * an EVALSHA again. Checked on a redis-server of this file's own (its command counts and script
 * cache are not shared with the test files running beside it) and on the test setup's 3-master
 * Cluster (where the call goes to the master of its keys' slot, which must load the script
 * itself). Scripts are not registered as client commands: a pipeline carries none of them.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { Redis, type Cluster } from 'ioredis';
import { clusterSlot } from '../../src/store/cluster-slot';
import { startManagedRedis, type ManagedRedis } from '../../src/runtime/managed-redis';
import { connectRedis, isNoScript, runScript, runScriptBuffer, type RedisClient } from '../../src/store/redis';
import { freePort } from '../setup/free-port';

const run = randomBytes(4).toString('hex');
let own: ManagedRedis;
let dir: string;
let single: RedisClient;
let cluster: RedisClient;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'axon-run-script-'));
  own = await startManagedRedis({ dir, port: await freePort() });
  single = connectRedis({ url: own.url });
  cluster = connectRedis({ clusterNodes: inject('redisClusterNodes') });
});
afterAll(async () => {
  single?.disconnect();
  cluster?.disconnect();
  await own?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** EVALSHA calls and EVAL calls the server has answered so far (INFO commandstats). */
async function evalCounts(server: Redis): Promise<{ evalsha: number; eval: number }> {
  const info = await server.info('commandstats');
  const calls = (cmd: string) => Number(new RegExp(`^cmdstat_${cmd}:calls=(\\d+)`, 'm').exec(info)?.[1] ?? 0);
  return { evalsha: calls('evalsha'), eval: calls('eval') };
}

/** One rate-limit request (rate-limit-2.lua): 0 while the burst allows it, else the ms to wait. */
const take = (client: RedisClient, key: string) => runScript(client, 'rateLimit', [key], [60_000, 2]);

describe('runScript on a single server', () => {
  it('runs the script by its hash, and by its text after SCRIPT FLUSH (loading it again)', async () => {
    const admin = new Redis(own.url);
    try {
      const key = `runscript:${run}:a`;
      expect(await take(single, key)).toBe(0);
      await admin.script('FLUSH');
      const before = await evalCounts(admin);
      expect(await take(single, key)).toBe(0); // NOSCRIPT, then EVAL: counted once, state kept
      const afterFlush = await evalCounts(admin);
      expect(afterFlush.evalsha - before.evalsha).toBe(1);
      expect(afterFlush.eval - before.eval).toBe(1);
      const refused = Number(await take(single, key)); // the burst of 2 is used: a wait, by EVALSHA
      expect(refused).toBeGreaterThan(0);
      const after = await evalCounts(admin);
      expect(after.evalsha - afterFlush.evalsha).toBe(1);
      expect(after.eval - afterFlush.eval).toBe(0);
    } finally {
      admin.disconnect();
    }
  });

  it('runs the script through runScriptBuffer too (an integer reply stays a number)', async () => {
    const key = `runscript:${run}:b`;
    const reply = await runScriptBuffer(single, 'rateLimit', [key], [60_000, 1]);
    expect(reply).toBe(0);
  });

  it('passes a script error through, and a pipeline carries no script commands', async () => {
    // rate-limit-2.lua reads the key as a number; a hash there makes GET fail inside the script.
    await single.hset(`runscript:${run}:hash`, 'f', 'v');
    const err = await take(single, `runscript:${run}:hash`).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    expect(isNoScript(err)).toBe(false);
    expect((err as Error).message).toMatch(/WRONGTYPE/);
    const p = single.pipeline() as unknown as Record<string, unknown>;
    expect(p.rateLimit).toBeUndefined();
    expect(p.commitManyBuffer).toBeUndefined();
  });
});

describe('runScript on a Redis Cluster', () => {
  it('loads the script on the master of the keys when that master does not have it', async () => {
    const nodes = inject('redisClusterNodes');
    const masters = nodes.map((n) => new Redis({ host: n.host, port: n.port }));
    try {
      for (const m of masters) await m.script('FLUSH');
      // Keys of several slots: each call goes to its slot's master, which has no script yet.
      const used = new Set<string>();
      for (let i = 0; i < 12; i++) {
        const key = `runscript:${run}:{k${i}}`;
        expect(await take(cluster, key)).toBe(0);
        expect(await take(cluster, key)).toBe(0);
        expect(Number(await take(cluster, key))).toBeGreaterThan(0);
        used.add((cluster as Cluster).slots[clusterSlot(key)]![0]!); // the slot map is loaded by now
      }
      expect(used.size).toBeGreaterThanOrEqual(2);
      // The masters the calls went to hold the script now (loaded by the EVAL after NOSCRIPT).
      // (Not asserted: that the others lack it — test files running beside this one use the
      // same scripts on this Cluster.)
      const sha = createHash('sha1').update(readFileSync(join(import.meta.dirname, '../../src/store/scripts/rate-limit-2.lua'))).digest('hex');
      for (const [i, m] of masters.entries()) {
        if (!used.has(`${nodes[i]!.host}:${nodes[i]!.port}`)) continue;
        expect((await m.script('EXISTS', sha)) as number[]).toEqual([1]);
      }
    } finally {
      for (const m of masters) m.disconnect();
    }
  });
});
