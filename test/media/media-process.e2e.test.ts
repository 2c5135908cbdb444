/**
 * The media front as a real process (`scripts/cluster up`: one worker, one front): a 100 MiB
 * upload and download streamed through it while its resident memory is sampled from /proc (the
 * body must never sit whole in memory: its RSS stays far below the body's size), and the front
 * killed with -9 in the middle of an upload (nothing half-written becomes visible: no record, no
 * blob under a content address; the next front serves what was there before), and the worker
 * killed with -9 while uploads are being recorded (every media id then serves its whole content or
 * nothing: never a part, never another upload's bytes).
 *
 * Memory figures are printed (`media front RSS …`); the test asserts only that the growth stays
 * well under the body size, never timing.
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ScriptCluster } from '../setup/script-cluster';
const MiB = 1024 * 1024;
const BIG = 100 * MiB;

/** Deterministic pseudo-random bytes (xorshift), so the sender needs no copy of the body to check it. */
function* bodyChunks(total: number, seed: number, chunk = 256 * 1024): Generator<Buffer> {
  let x = seed >>> 0 || 1;
  for (let sent = 0; sent < total; sent += chunk) {
    const n = Math.min(chunk, total - sent);
    const buf = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i += 4) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      buf.writeUInt32LE(x >>> 0, i);
    }
    yield buf;
  }
}

function rssOf(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

/** Sample a process's RSS every 50 ms until stopped; returns the peak. */
function sampleRss(pid: number): { stop(): number } {
  let peak = rssOf(pid);
  const timer = setInterval(() => {
    try {
      peak = Math.max(peak, rssOf(pid));
    } catch {
      // the process is gone
    }
  }, 50);
  return {
    stop() {
      clearInterval(timer);
      return peak;
    },
  };
}

describe('the media front as a process', () => {
  let cluster: ScriptCluster;
  let base: string;
  let dataDir: string;
  let token: string;

  const frontPid = () => cluster.pid('f1');

  /** Stream `total` bytes of `seed` as an upload; resolves with the answer. `onSent` sees progress (the request is passed so a test can stop). */
  function streamUpload(total: number, seed: number, onSent?: (sent: number) => void, target = { method: 'POST', path: '/_matrix/media/v3/upload?filename=big.bin' }): Promise<{ status: number; body: string; sha256: string }> {
    const hash = createHash('sha256');
    return new Promise((resolve, reject) => {
      const req = httpRequest(`${base}${target.path}`, { method: target.method, headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/octet-stream', 'Content-Length': String(total) } }, (res) => {
        let body = '';
        res.on('data', (d) => {
          body += d;
        });
        res.on('end', () => resolve({ status: res.statusCode!, body, sha256: hash.digest('hex') }));
      });
      req.on('error', reject);
      const chunks = bodyChunks(total, seed);
      let sent = 0;
      const write = () => {
        for (;;) {
          const next = chunks.next();
          if (next.done) return void req.end();
          hash.update(next.value);
          sent += next.value.length;
          onSent?.(sent);
          if (!req.write(next.value)) return void req.once('drain', write);
        }
      };
      write();
    });
  }

  /** Download without keeping the body: its sha256 and size. */
  function streamDownload(path: string): Promise<{ status: number; sha256: string; size: number }> {
    return new Promise((resolve, reject) => {
      const hash = createHash('sha256');
      let size = 0;
      httpRequest(`${base}${path}`, { headers: { Authorization: `Bearer ${token}` } }, (res) => {
        res.on('data', (d: Buffer) => {
          hash.update(d);
          size += d.length;
        });
        res.on('end', () => resolve({ status: res.statusCode!, sha256: hash.digest('hex'), size }));
        res.on('error', reject);
      })
        .on('error', reject)
        .end();
    });
  }

  beforeAll(async () => {
    cluster = await ScriptCluster.create({ name: 'media-proc', env: { AXON_LOG_LEVEL: 'warn', AXON_FEDERATION_ENABLED: 'false', AXON_MEDIA_MAX_UPLOAD_BYTES: String(BIG + MiB) } });
    ({ base, dataDir } = cluster);
    await cluster.up(1, 1);
    ({ token } = await cluster.register('big'));
  }, 300_000);

  afterAll(async () => {
    await cluster?.destroy();
  }, 120_000);

  let uploaded: { mxc: string; sha256: string } | null = null;

  it('streams a 100 MiB upload and download through the front with flat memory', async () => {
    const pid = frontPid();
    // Warm up (code paths compiled, buffers allocated) so the baseline is the serving front.
    const warm = await streamUpload(MiB, 7);
    expect(warm.status).toBe(200);
    const baseline = rssOf(pid);
    const up = sampleRss(pid);
    const result = await streamUpload(BIG, 42);
    const upPeak = up.stop();
    expect(result.status).toBe(200);
    const mxc = (JSON.parse(result.body) as { content_uri: string }).content_uri;
    const afterUpload = rssOf(pid);
    const down = sampleRss(pid);
    const got = await streamDownload(`/_matrix/client/v1/media/download/${mxc.slice('mxc://'.length)}`);
    const downPeak = down.stop();
    expect(got.status).toBe(200);
    expect(got.size).toBe(BIG);
    expect(got.sha256).toBe(result.sha256);
    uploaded = { mxc, sha256: result.sha256 };
    const mb = (n: number) => `${(n / MiB).toFixed(1)} MiB`;
    console.log(`media front RSS: baseline ${mb(baseline)}; 100 MiB upload peak ${mb(upPeak)} (+${mb(upPeak - baseline)}); after ${mb(afterUpload)}; 100 MiB download peak ${mb(downPeak)} (+${mb(downPeak - afterUpload)})`);
    // Holding the body would add at least its 100 MiB; streaming adds a few buffers.
    expect(upPeak - baseline).toBeLessThan(60 * MiB);
    expect(downPeak - afterUpload).toBeLessThan(60 * MiB);
  }, 300_000);

  it('a client that goes away mid-download stops the reading (no file left open by the front)', async () => {
    expect(uploaded).not.toBeNull();
    const pid = frontPid();
    const openBlobs = () =>
      readdirSync(`/proc/${pid}/fd`).filter((fd) => {
        try {
          return readlinkSync(`/proc/${pid}/fd/${fd}`).includes(join('media', 'content'));
        } catch {
          return false;
        }
      }).length;
    let openWhileReading = -1;
    await new Promise<void>((resolve, reject) => {
      const req = httpRequest(`${base}/_matrix/client/v1/media/download/${uploaded!.mxc.slice('mxc://'.length)}`, { headers: { Authorization: `Bearer ${token}` } }, (res) => {
        let got = 0;
        res.on('data', (d: Buffer) => {
          got += d.length;
          if (got >= 5 * MiB && openWhileReading < 0) {
            // Backpressure: 5 MiB into 100 MiB, the front is still reading the file.
            openWhileReading = openBlobs();
            req.destroy();
            resolve();
          }
        });
      });
      req.on('error', (e: NodeJS.ErrnoException) => (e.code === 'ECONNRESET' ? undefined : reject(e)));
      req.end();
    });
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline && openBlobs() > 0) await new Promise((r) => setTimeout(r, 100));
    expect(openWhileReading).toBe(1);
    expect(openBlobs()).toBe(0);
  }, 120_000);

  it('a front killed with -9 mid-upload leaves no half-written media visible', async () => {
    const redis = new Redis({ port: cluster.redisPort, host: '127.0.0.1', lazyConnect: true });
    await redis.connect();
    try {
      const records = async () => (await redis.keys('*media:*')).filter((k) => /:media:[A-Za-z0-9_-]+$/.test(k)).length;
      const before = await records();
      const contentDir = join(dataDir, 'media', 'content');
      const blobsBefore = existsSync(contentDir) ? readdirSync(contentDir, { recursive: true }).length : 0;
      const pid = frontPid();
      let killed = false;
      const cut = await streamUpload(50 * MiB, 99, (sent) => {
        if (!killed && sent >= 20 * MiB) {
          killed = true;
          process.kill(pid, 'SIGKILL');
        }
      }).catch((e: Error) => e);
      expect(cut).toBeInstanceOf(Error);
      // The operator's script brings the front back.
      await cluster.up(1, 1);
      expect(await records()).toBe(before);
      expect(existsSync(contentDir) ? readdirSync(contentDir, { recursive: true }).length : 0).toBe(blobsBefore);
      // Only an unaddressed temp file can remain (swept an hour later), and what was there is still served.
      for (const name of readdirSync(join(dataDir, 'media', 'tmp'))) expect(name).toMatch(/^\d+-[0-9a-f]{16}$/);
      if (uploaded) {
        const again = await streamDownload(`/_matrix/client/v1/media/download/${uploaded.mxc.slice('mxc://'.length)}`);
        expect(again.sha256).toBe(uploaded.sha256);
      }
    } finally {
      redis.disconnect();
    }
  }, 300_000);

  it('a worker killed with -9 while uploads are recorded: every media id serves its whole content or nothing', async () => {
    const size = MiB;
    const made: { mediaId: string; seed: number; sha256: string; status: number }[] = [];
    let answered = 0;
    let killed = false;
    let restarted: Promise<{ ok?: boolean }> | null = null;
    const loop = async (lane: number) => {
      for (let k = 0; k < 8; k++) {
        const seed = 1000 + lane * 100 + k;
        // create first, so the test knows every media id, also of uploads whose PUT fails.
        const created = await fetch(`${base}/_matrix/media/v1/create`, { method: 'POST', headers: { Authorization: `Bearer ${token}` } }).catch(() => null);
        if (!created || created.status !== 200) {
          await new Promise((r) => setTimeout(r, 500));
          continue;
        }
        const { content_uri } = (await created.json()) as { content_uri: string };
        const mediaId = content_uri.slice('mxc://'.length);
        const put = await streamUpload(size, seed, undefined, { method: 'PUT', path: `/_matrix/media/v3/upload/${mediaId}?filename=part.bin` }).catch(() => ({ status: 0, body: '', sha256: '' }));
        let sha256 = put.sha256;
        if (!sha256) {
          const h = createHash('sha256');
          for (const c of bodyChunks(size, seed)) h.update(c);
          sha256 = h.digest('hex');
        }
        made.push({ mediaId, seed, sha256, status: put.status });
        if (put.status === 200 && ++answered >= 6 && !killed) {
          killed = true;
          process.kill(cluster.pid('w1'), 'SIGKILL');
          // The operator's script brings a worker back; uploads meanwhile wait or fail, never half-land.
          restarted = cluster.script('up', '--workers', '1', '--fronts', '1');
        }
      }
    };
    await Promise.all([0, 1, 2, 3].map(loop));
    expect(killed).toBe(true);
    expect((await restarted!)?.ok).toBe(true);
    const statuses: Record<string, number> = {};
    for (const m of made) statuses[m.status] = (statuses[m.status] ?? 0) + 1;
    console.log(`media worker kill: ${made.length} uploads, PUT answers ${JSON.stringify(statuses)}`);
    for (const m of made) {
      const got = await streamDownload(`/_matrix/client/v1/media/download/${m.mediaId}?timeout_ms=0`);
      if (m.status === 200) expect(got.status, m.mediaId).toBe(200);
      if (got.status === 200) {
        expect(got.size, m.mediaId).toBe(size);
        expect(got.sha256, m.mediaId).toBe(m.sha256);
      } else {
        expect([404, 504], m.mediaId).toContain(got.status);
      }
    }
  }, 600_000);
});
