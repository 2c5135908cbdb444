/**
 * `npm run bench:media [-- --vs synapse] [--quick]`: media figures (issue 15 item 9). Axon runs as
 * separate processes (scripts/lib/axon-bench-cluster.ts: managed redis-server, one worker, one
 * front; media on the local store under its data dir), and with `--vs synapse` a Synapse 1.163.2
 * (scripts/lib/synapse-peer.ts, SQLite, its local media store) in the same run, each on its own
 * loopback IP, measured with the same client code one after the other:
 *
 *   upload    `POST /_matrix/media/v3/upload` of 1 MB files (BENCH_SMALL_COUNT, 8 in flight) and
 *             50 MB files (BENCH_LARGE_COUNT, 3 in flight): MB/s over the phase;
 *   download  `GET /_matrix/client/v1/media/download/…` (authenticated) of those same files, same
 *             concurrency, every byte read: MB/s;
 *   thumbnails `GET /_matrix/client/v1/media/thumbnail/…` of an uploaded 12 Mpx JPEG, 2:1 crops at
 *             sizes not asked before (so each is made, not served from a pre-generated or cached one; Synapse with
 *             dynamic_thumbnails on), 4 in flight: thumbnails/s. When Axon's endpoint answers 501
 *             (the thumbnail module not wired into the front yet), Axon's figure is the module
 *             itself in this process (src/media/thumbnails.ts, as scripts/bench-thumbnails.ts does)
 *             and the table says so;
 *   memory    RSS of the serving process (Axon's front; Synapse's one process), sampled every 50 ms
 *             from /proc: before, and the peak during each phase.
 *
 * A script, not a test: it prints figures and checks only that each answer was 200 with the right size.
 */
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import { cpus, loadavg } from 'node:os';
import sharp from 'sharp';
import { Thumbnailer } from '../src/media/thumbnails';
import { type AxonBench, startAxonBench } from './lib/axon-bench-cluster';
import { freePort, pool, round, sleep, table, writeBenchResults } from './lib/bench-util';
import { MatrixLoad } from './lib/matrix-load';
import { rssKb } from './lib/proc-stats';
import { loopbackServerName, SYNAPSE_VERSION, type SynapsePeer, startSynapse, synapseInstallation } from './lib/synapse-peer';
import { createTestCa } from './lib/test-ca';

const args = process.argv.slice(2);
const flag = (f: string) => args.includes(f);
const opt = (f: string) => {
  const i = args.indexOf(f);
  return i >= 0 ? args[i + 1] : undefined;
};
const QUICK = flag('--quick');
const VS_SYNAPSE = opt('--vs') === 'synapse';
const SMALL = 1_000_000;
const LARGE = 50_000_000;
const SMALL_COUNT = Number(process.env.BENCH_SMALL_COUNT ?? (QUICK ? 16 : 48));
const LARGE_COUNT = Number(process.env.BENCH_LARGE_COUNT ?? (QUICK ? 3 : 6));
const THUMBS = Number(process.env.BENCH_THUMBNAILS ?? (QUICK ? 12 : 40));
const log = (msg: string) => process.stderr.write(`[bench-media ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);

interface Target {
  name: string;
  baseUrl: string;
  serverName: string;
  token: string;
  /** The process whose memory is sampled. */
  pid: () => number;
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });

function upload(t: Target, body: Buffer, contentType: string, filename: string): Promise<string> {
  const u = new URL(`${t.baseUrl}/_matrix/media/v3/upload?filename=${encodeURIComponent(filename)}`);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: u.hostname, port: u.port, path: `${u.pathname}${u.search}`, method: 'POST', agent, headers: { Authorization: `Bearer ${t.token}`, 'Content-Type': contentType, 'Content-Length': body.length } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString();
        if (res.statusCode !== 200) return reject(new Error(`${t.name} upload: ${res.statusCode} ${text.slice(0, 300)}`));
        resolve((JSON.parse(text) as { content_uri: string }).content_uri);
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    // In 1 MiB writes, as a client streaming a file would.
    for (let i = 0; i < body.length; i += 1 << 20) req.write(body.subarray(i, i + (1 << 20)));
    req.end();
  });
}

/** GET `path`, every byte read and counted (not kept). */
function getBytes(t: Target, path: string): Promise<{ status: number; bytes: number }> {
  const u = new URL(`${t.baseUrl}${path}`);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: u.hostname, port: u.port, path: `${u.pathname}${u.search}`, method: 'GET', agent, headers: { Authorization: `Bearer ${t.token}` } }, (res) => {
      let bytes = 0;
      res.on('data', (c: Buffer) => {
        bytes += c.length;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, bytes }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

const mediaPath = (mxc: string) => mxc.replace(/^mxc:\/\//, '');

/** Peak RSS of `pid` while `work` runs (sampled every 50 ms), with the RSS before. */
async function withRss<T>(pid: number, work: () => Promise<T>): Promise<{ result: T; beforeMb: number; peakMb: number }> {
  const before = rssKb(pid) ?? 0;
  let peak = before;
  const timer = setInterval(() => {
    peak = Math.max(peak, rssKb(pid) ?? 0);
  }, 50);
  try {
    const result = await work();
    return { result, beforeMb: round(before / 1024, 0), peakMb: round(peak / 1024, 0) };
  } finally {
    clearInterval(timer);
  }
}

async function transfer(t: Target, size: number, count: number, inFlight: number): Promise<Record<string, unknown>[]> {
  // Distinct content per file (identical content would be stored once by Axon and say nothing).
  const files = Array.from({ length: count }, () => randomBytes(size));
  const mb = (size * count) / 1e6;
  let t0 = performance.now();
  const up = await withRss(t.pid(), () => pool(files, inFlight, (f, i) => upload(t, f, 'application/octet-stream', `f${i}.bin`)));
  const upS = (performance.now() - t0) / 1000;
  t0 = performance.now();
  const down = await withRss(t.pid(), () =>
    pool(up.result, inFlight, async (mxc, i) => {
      const r = await getBytes(t, `/_matrix/client/v1/media/download/${mediaPath(mxc)}`);
      if (r.status !== 200 || r.bytes !== files[i]!.length) throw new Error(`${t.name} download: ${r.status}, ${r.bytes} of ${files[i]!.length} bytes`);
    }),
  );
  const downS = (performance.now() - t0) / 1000;
  const label = `${size / 1e6} MB × ${count} (${inFlight} in flight)`;
  return [
    { server: t.name, phase: `upload ${label}`, rate: `${round(mb / upS, 1)} MB/s`, rssBefore: up.beforeMb, rssPeak: up.peakMb },
    { server: t.name, phase: `download ${label}`, rate: `${round(mb / downS, 1)} MB/s`, rssBefore: down.beforeMb, rssPeak: down.peakMb },
  ];
}

async function thumbnails(t: Target, photo: Buffer): Promise<Record<string, unknown>> {
  const mxc = await upload(t, photo, 'image/jpeg', 'photo.jpg');
  // Crops of a 2:1 shape at sizes never asked before: no pre-generated thumbnail (squares and 4:3
  // scales) may answer them, so each is decoded and made on demand, on both servers.
  const path = (w: number, h: number) => `/_matrix/client/v1/media/thumbnail/${mediaPath(mxc)}?width=${w}&height=${h}&method=crop`;
  const probe = await getBytes(t, path(100, 75));
  if (probe.status === 501 && t.name === 'Axon') {
    // The endpoint is not wired to the thumbnail module yet: measure the module itself.
    const thumbnailer = new Thumbnailer();
    const t0 = performance.now();
    await pool(Array.from({ length: THUMBS }, (_, i) => i), 4, (i) => thumbnailer.thumbnail(photo, 'image/jpeg', { width: 101 + i, height: 76 + i, method: 'scale' }));
    const perSec = THUMBS / ((performance.now() - t0) / 1000);
    return { server: t.name, phase: `thumbnails of a 12 Mpx JPEG × ${THUMBS} (module in-process: endpoint answers 501)`, rate: `${round(perSec, 1)} /s`, rssBefore: '—', rssPeak: '—' };
  }
  if (probe.status !== 200) throw new Error(`${t.name} thumbnail: ${probe.status}`);
  const t0 = performance.now();
  const r = await withRss(t.pid(), () =>
    pool(Array.from({ length: THUMBS }, (_, i) => i), 4, async (i) => {
      const a = await getBytes(t, path(200 + 2 * i, 100 + i));
      if (a.status !== 200 || a.bytes === 0) throw new Error(`${t.name} thumbnail: ${a.status}`);
    }),
  );
  const perSec = THUMBS / ((performance.now() - t0) / 1000);
  return { server: t.name, phase: `thumbnails of a 12 Mpx JPEG × ${THUMBS} (endpoint, new 2:1 crops made on demand, 4 in flight)`, rate: `${round(perSec, 1)} /s`, rssBefore: r.beforeMb, rssPeak: r.peakMb };
}

async function measure(t: Target, photo: Buffer): Promise<Record<string, unknown>[]> {
  log(`${t.name}: 1 MB files`);
  const rows = await transfer(t, SMALL, SMALL_COUNT, 8);
  log(`${t.name}: 50 MB files`);
  rows.push(...(await transfer(t, LARGE, LARGE_COUNT, 3)));
  log(`${t.name}: thumbnails`);
  rows.push(await thumbnails(t, photo));
  return rows;
}

async function main() {
  const install = VS_SYNAPSE ? synapseInstallation() : null;
  if (install && !install.ok) log(`--vs synapse: skipped. ${install.reason}`);
  const photo = await sharp({ create: { width: 4000, height: 3000, channels: 3, background: '#808080', noise: { type: 'gaussian', mean: 128, sigma: 40 } } }).blur(1.2).jpeg({ quality: 90 }).toBuffer();
  const rows: Record<string, unknown>[] = [];
  let axon: AxonBench | undefined;
  let synapse: SynapsePeer | undefined;
  const ca = createTestCa();
  try {
    const ip = '127.0.0.231';
    axon = await startAxonBench({ workers: 1, fronts: 1, shards: 64, host: ip, serverName: `${ip}:${await freePort(ip)}`, stderr: 'ignore', env: { AXON_RATE_LIMIT_ENABLED: 'false' } });
    const m = new MatrixLoad(axon.url);
    await m.waitUp(120_000);
    const user = await m.register(`bench${randomBytes(3).toString('hex')}`);
    const frontPid = axon.frontPids[0]!;
    rows.push(...(await measure({ name: 'Axon', baseUrl: axon.url, serverName: '', token: user.token, pid: () => frontPid }, photo)));
    await axon.stop();
    axon = undefined;
    if (install?.ok) {
      log(`starting Synapse ${SYNAPSE_VERSION}`);
      synapse = await startSynapse({
        serverName: await loopbackServerName('127.0.0.232'),
        ca,
        logLevel: 'WARNING',
        configure: (c) => {
          c.dynamic_thumbnails = true;
          c.max_upload_size = '60M';
        },
      });
      const s = await synapse.registerUser('bench', 'a long passphrase');
      const peer = synapse;
      rows.push(...(await measure({ name: `Synapse ${SYNAPSE_VERSION}`, baseUrl: synapse.baseUrl, serverName: synapse.serverName, token: s.token, pid: () => peer.pid }, photo)));
    }
  } finally {
    await axon?.stop();
    await synapse?.stop();
    ca.cleanup();
    agent.destroy();
  }
  const env = { node: process.version, cpus: cpus().length, loadavg: loadavg().map((l) => round(l, 2)), small: SMALL_COUNT, large: LARGE_COUNT, thumbnails: THUMBS, checksum: createHash('sha256').update(photo).digest('hex').slice(0, 8) };
  console.log(`media (${JSON.stringify(env)})`);
  console.log(table(rows, ['server', 'phase', 'rate', 'rssBefore', 'rssPeak'], ['server', 'phase', 'rate', 'RSS before (MB)', 'RSS peak (MB)']));
  const file = writeBenchResults((stamp) => `media-${stamp}.json`, { env, rows });
  console.log(`written to ${file}`);
  await sleep(10);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
