/**
 * The managed Redis while it replays its AOF: a real redis-server made to load slowly with its
 * `key-load-delay` setting (a delay per key loaded). While loading, Redis answers -LOADING or, deep
 * in the file, nothing at all; `npm start` and `cluster up` must wait for it rather than kill it at
 * the start timeout (which would start the replay over on every try) or call it another process.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { logSaysLoading, startManagedRedis, type ManagedRedis } from '../../src/runtime/managed-redis';
import { connectRedis } from '../../src/store/redis';
import { freePort } from '../setup/free-port';

const KEYS = 1500;
/**
 * µs per key loaded: 1,500 keys take ~7.5 s to load, far past the start timeouts below. The start
 * timeout of the first test is 2.5 s, not 1: on a loaded CI machine a redis-server once took over
 * 1 s from its spawn to its listening port (not yet loading: counted against the timeout).
 */
const DELAY_US = '5000';
const START_TIMEOUT_MS = 2500;

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A managed Redis with KEYS keys in its AOF (rewritten, so they load from its RDB base), stopped. */
async function filledDataDir(): Promise<{ dir: string; port: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'axon-managed-load-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const port = await freePort();
  const r = await startManagedRedis({ dir, port });
  const c = connectRedis({ url: r.url });
  const p = c.pipeline();
  for (let i = 0; i < KEYS; i++) p.set(`k${i}`, `value ${i}`);
  await p.exec();
  await c.bgrewriteaof();
  for (;;) {
    const info = await c.info('persistence');
    if (/aof_rewrite_in_progress:0/.test(info) && /aof_rewrite_scheduled:0/.test(info)) break;
    await new Promise((res) => setTimeout(res, 50));
  }
  c.disconnect();
  await r.stop();
  return { dir, port };
}

function stopLater(r: ManagedRedis): void {
  cleanups.push(() => r.stop());
}

describe('the managed Redis loading a large AOF', () => {
  it('is waited for past the start timeout while its log says it loads, and comes up with every key', async () => {
    const { dir, port } = await filledDataDir();
    const loadingSeen: number[] = [];
    const t0 = Date.now();
    const r = await startManagedRedis({ dir, port, startTimeoutMs: START_TIMEOUT_MS, extraArgs: ['--key-load-delay', DELAY_US], onLoading: (s) => loadingSeen.push(s) });
    stopLater(r);
    const waited = Date.now() - t0;
    expect(r.started).toBe(true);
    // It loaded for longer than the start timeout (each key sleeps DELAY_US): before, the start gave up at the timeout and killed it.
    expect(waited).toBeGreaterThan(START_TIMEOUT_MS);
    const c = connectRedis({ url: r.url });
    cleanups.push(() => c.disconnect());
    expect(await c.dbsize()).toBe(KEYS);
    expect(await c.get(`k${KEYS - 1}`)).toBe(`value ${KEYS - 1}`);
    expect(logSaysLoading(dir)).toBe(false);
    console.log(`managed-redis: ${KEYS} keys loaded with a ${DELAY_US} µs delay each in ${waited} ms; start timeout ${START_TIMEOUT_MS} ms; loading reports ${JSON.stringify(loadingSeen)}`);
  }, 120_000);

  it('is adopted while it loads (its pid file in our data dir), not taken for another process on the port', async () => {
    const { dir, port } = await filledDataDir();
    const first = startManagedRedis({ dir, port, extraArgs: ['--key-load-delay', DELAY_US] });
    // The second start comes while the first one's redis-server is up and loading.
    const pidFile = join(dir, 'redis.pid');
    while (!existsSync(pidFile) || !logSaysLoading(dir)) await new Promise((res) => setTimeout(res, 20));
    const second = await startManagedRedis({ dir, port, startTimeoutMs: 1000 });
    const started = await first;
    stopLater(started);
    expect(second.started).toBe(false);
    expect(second.pid).toBe(started.pid);
    expect(Number(readFileSync(pidFile, 'utf8'))).toBe(started.pid);
    const c = connectRedis({ url: second.url });
    cleanups.push(() => c.disconnect());
    expect(await c.dbsize()).toBe(KEYS);
  }, 120_000);

  it('still refuses a port held by something else that takes connections and never answers', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'axon-managed-load-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const port = await freePort();
    const silent: Server = createServer(() => undefined);
    await new Promise<void>((res) => silent.listen(port, '127.0.0.1', () => res()));
    cleanups.push(() => new Promise<void>((res) => silent.close(() => res())));
    await expect(startManagedRedis({ dir, port, startTimeoutMs: 1000 })).rejects.toThrow(/taken by another process/);
  });
});
