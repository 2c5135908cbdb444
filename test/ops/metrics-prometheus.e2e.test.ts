/**
 * Metrics as an operator meets them: `npm run cluster -- up` with two workers and a front, each
 * process serving `/metrics` on its own port from AXON_METRICS_PORT upward (listed by `status`);
 * `promtool check metrics` (Debian's prometheus package, unpacked by ensure_prometheus) passes
 * clean on every process's output; a real Prometheus scrapes the three on loopback and its HTTP
 * API returns samples of the series the README and docs/grafana/axon.json name, after real
 * traffic: registration, a room, messages, a /sync woken by one, a live shard move.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../setup/free-port';
import { ScriptCluster } from '../setup/script-cluster';
import { KeySpace } from '../../src/store/keys';
import { connectRedis } from '../../src/store/redis';
import { prometheusInstalled, promtoolCheckMetrics, startPrometheus, type PrometheusPeer } from '../peers/prometheus';

const root = join(import.meta.dirname, '../..');
// In CI the package must be there (scripts/test runs ensure_prometheus); elsewhere the test skips.
const skip = !prometheusInstalled() && !process.env.CI;

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

/** The first of `n` consecutive ports that were free a moment ago. */
async function consecutiveFreePorts(n: number): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = await freePort();
    if (base + n > 65535) continue;
    let ok = true;
    for (let i = 1; i < n && ok; i++) ok = await portFree(base + i);
    if (ok) return base;
  }
  throw new Error(`no ${n} consecutive free ports`);
}

async function until<T>(what: string, f: () => Promise<T | null | undefined | false>, ms = 90_000): Promise<T> {
  const deadline = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const v = await f();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

describe.skipIf(skip)('metrics of `npm start` (one process: front, worker and all)', () => {
  it('serves every metric of its one process, clean for promtool', { timeout: 200_000 }, async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'axon-metrics-main-'));
    const [httpPort, metricsPort] = [await freePort(), await freePort()];
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
      cwd: root,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        ...process.env,
        AXON_DATA_DIR: dataDir, AXON_PORT: String(httpPort), AXON_FEDERATION_PORT: String(await freePort()), AXON_REDIS_MANAGED_PORT: String(await freePort()),
        AXON_METRICS_PORT: String(metricsPort), AXON_ROOM_SHARDS: '16', AXON_USER_SHARDS: '16', AXON_RATE_LIMIT_ENABLED: 'false',
      },
    });
    let output = '';
    child.stdout!.on('data', (d) => (output += d));
    child.stderr!.on('data', (d) => (output += d));
    try {
      const metrics = () => fetch(`http://127.0.0.1:${metricsPort}/metrics`).then((r) => r.text());
      await until(`npm start serving metrics (output so far: ${output.slice(-2000)})`, async () => child.exitCode === null && /axon_lease_shards_owned\{family="user"\} 16/.test(await metrics()));
      // Piped, not a terminal: JSON lines, and one summary line for the shards taken.
      const lines = output.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { msg: string; level: number });
      expect(lines.filter((l) => l.msg === 'shard acquired')).toEqual([]);
      expect(lines.filter((l) => /^acquired 32 shards in \d+\.\d s$/.test(l.msg))).toHaveLength(1);
      const api = (path: string, body: unknown, token?: string) =>
        fetch(`http://127.0.0.1:${httpPort}/_matrix/client/v3${path}`, { method: 'POST', headers: { 'Content-Type': 'application/json', ...(token ? { Authorization: `Bearer ${token}` } : {}) }, body: JSON.stringify(body) }).then(async (r) => ({ status: r.status, body: (await r.json()) as any }));
      const first = await api('/register', { username: 'solo', password: 'solo-password' });
      const reg = await api('/register', { username: 'solo', password: 'solo-password', auth: { type: 'm.login.dummy', session: first.body.session } });
      expect(reg.status).toBe(200);
      expect((await api('/createRoom', { name: 'solo' }, reg.body.access_token)).status).toBe(200);
      const text = await until('events persisted', async () => {
        const t = await metrics();
        return /^axon_events_persisted_events_total [1-9]/m.test(t) && t;
      });
      expect(text).toMatch(/axon_process_info\{role="main",id="main",version="[^"]+"\} 1/);
      expect(text).toMatch(/axon_http_server_responses_total\{listener="client",method="POST",endpoint="client\/createRoom",code="200"\} 1/);
      expect(text).toMatch(/^axon_actor_inbox_lag_messages\{family="room"\} \d+/m);
      expect(text).toMatch(/^nodejs_eventloop_lag_seconds \d/m);
      expect(await promtoolCheckMetrics(text)).toEqual({ code: 0, output: '' });
    } finally {
      child.kill('SIGTERM');
      if (child.exitCode === null) await new Promise((r) => child.once('exit', r));
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

describe.skipIf(skip)('metrics: promtool and a real Prometheus against a running cluster', () => {
  let cluster: ScriptCluster;
  let metricsBase: number;
  let prometheus: PrometheusPeer | null = null;
  const call = (method: string, path: string, token: string | null, body?: unknown) => cluster.call(token, method, path, body);

  beforeAll(async () => {
    metricsBase = await consecutiveFreePorts(3);
    cluster = await ScriptCluster.create({ name: 'metrics', env: { AXON_METRICS_PORT: String(metricsBase) }, scriptTimeoutMs: 120_000 });
  });

  afterAll(async () => {
    await prometheus?.stop();
    await cluster?.destroy();
  });

  it('serves every process its own /metrics port, clean for promtool, scraped by Prometheus', { timeout: 400_000 }, async () => {
    const up = await cluster.up(2, 1);
    // From the base upward, in start order: the workers, then the front.
    expect(up.processes.map((p: { name: string; metricsPort: number }) => [p.name, p.metricsPort])).toEqual([['w1', metricsBase], ['w2', metricsBase + 1], ['f1', metricsBase + 2]]);
    const status = await cluster.script('status');
    expect(status.workers.filter((w: { alive: boolean }) => w.alive).map((w: { worker: string; metricsPort: number }) => [w.worker, w.metricsPort])).toEqual([['w1', metricsBase], ['w2', metricsBase + 1]]);
    expect(status.fronts.map((f: { id: string; metricsPort: number }) => [f.id, f.metricsPort])).toEqual([['f1', metricsBase + 2]]);

    // Traffic through the front: an account, a room, messages, and a /sync long-poll a message wakes.
    const first = await call('POST', '/register', null, { username: 'metrics', password: 'metrics-password' });
    const reg = await call('POST', '/register', null, { username: 'metrics', password: 'metrics-password', auth: { type: 'm.login.dummy', session: first.body.session } });
    expect(reg.status).toBe(200);
    const token = reg.body.access_token as string;
    const room = await call('POST', '/createRoom', token, { name: 'metrics' });
    expect(room.status).toBe(200);
    const roomId = encodeURIComponent(room.body.room_id);
    for (let i = 0; i < 5; i++) expect((await call('PUT', `/rooms/${roomId}/send/m.room.message/t${i}`, token, { msgtype: 'm.text', body: `hello ${i}` })).status).toBe(200);
    const initial = await call('GET', '/sync?timeout=0', token);
    expect(initial.status).toBe(200);
    const waiting = call('GET', `/sync?timeout=30000&since=${encodeURIComponent(initial.body.next_batch)}`, token);
    await new Promise((r) => setTimeout(r, 1000));
    expect((await call('PUT', `/rooms/${roomId}/send/m.room.message/wake`, token, { msgtype: 'm.text', body: 'wake up' })).status).toBe(200);
    const woken = await waiting;
    expect(woken.status).toBe(200);
    expect(woken.body.rooms?.join?.[room.body.room_id]?.timeline?.events?.some((e: { content?: { body?: string } }) => e.content?.body === 'wake up')).toBe(true);
    await call('GET', '/no/such/endpoint', token);

    // A live shard move: the target worker counts a move in, the source one a move out.
    const redis = connectRedis({ url: `redis://127.0.0.1:${cluster.redisPort}` });
    const [owner] = await redis.hmget(new KeySpace('axon:').shard('user', 3).lease, 'owner');
    redis.disconnect();
    const moved = await cluster.script('move-shard', 'user', '3', owner === 'w1' ? 'w2' : 'w1');
    expect(moved.ok).toBe(true);

    // promtool on every process's exposition: no problems at all.
    const texts: string[] = [];
    for (const port of [metricsBase, metricsBase + 1, metricsBase + 2]) {
      const res = await fetch(`http://127.0.0.1:${port}/metrics`);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toContain('text/plain');
      const text = await res.text();
      texts.push(text);
      const check = await promtoolCheckMetrics(text);
      expect(check, `promtool on port ${port}`).toEqual({ code: 0, output: '' });
    }
    const [w1Text, w2Text, frontText] = texts as [string, string, string];
    expect(frontText).toMatch(/axon_http_server_requests_received_total\{listener="client",method="PUT",endpoint="client\/rooms\/send"\} 6/);
    expect(frontText).toMatch(/axon_http_server_responses_total\{listener="client",method="GET",endpoint="unrecognized",code="404"\} 1/);
    expect(frontText).toMatch(/axon_process_info\{role="front",id="f1",version="[^"]+"\} 1/);
    expect(w1Text).toMatch(/axon_process_info\{role="worker",id="w1",/);
    expect(w2Text).toMatch(/axon_process_info\{role="worker",id="w2",/);

    prometheus = await startPrometheus([metricsBase, metricsBase + 1, metricsBase + 2].map((p) => `127.0.0.1:${p}`));
    const p = prometheus;
    const ups = await until('all three targets up', async () => {
      const r = await p.query('up');
      return r.length === 3 && r.every((s) => s.value[1] === '1') && r;
    });
    expect(ups.map((s) => s.metric.instance).sort()).toEqual([metricsBase, metricsBase + 1, metricsBase + 2].map((x) => `127.0.0.1:${x}`).sort());

    const scalar = async (q: string) => {
      const r = await p.query(q);
      return r.length ? Number(r[0]!.value[1]) : null;
    };
    // Samples of the named series, with values the traffic above explains.
    await until('HTTP requests by endpoint group', async () => (await scalar('sum(axon_http_server_requests_received_total{endpoint="client/rooms/send",method="PUT"})')) === 6);
    await until('response time histogram', async () => ((await scalar('sum(axon_http_server_response_time_seconds_count{endpoint="client/sync"})')) ?? 0) >= 2);
    await until('events persisted', async () => ((await scalar('sum(axon_events_persisted_events_total)')) ?? 0) >= 6);
    await until('sync wake-ups', async () => ((await scalar('sum(axon_sync_wakeups_total)')) ?? 0) >= 1);
    await until('sync waiting gauge', async () => (await scalar('sum(axon_sync_waiting_requests)')) !== null);
    await until('every shard owned', async () => (await scalar('sum(axon_lease_shards_owned)')) === 32);
    await until('inbox lag and pending', async () => (await p.query('axon_actor_inbox_lag_messages')).length === 4 && (await p.query('axon_actor_inbox_pending_messages')).length === 4);
    await until('dead letters', async () => (await p.query('axon_actor_dead_letters_total')).length >= 2 && (await p.query('axon_actor_dead_letter_messages')).length === 4);
    // `up` rebalanced (moves) and the operator moved one more; every other shard was taken free once.
    const moves = up.rebalanced + 1;
    await until('shards moved in and out', async () => (await scalar('sum(axon_shard_moves_total{direction="in"})')) === moves && (await scalar('sum(axon_shard_moves_total{direction="out"})')) === moves);
    await until('lease acquisitions', async () => (await scalar('sum(axon_lease_acquisitions_total{reason="free"})')) === 32 && (await scalar('sum(axon_lease_acquisitions_total{reason="move"})')) === moves);
    await until('lease takeovers series', async () => (await p.query('axon_lease_acquisitions_total{reason="takeover"}')).length === 4);
    await until('federation queue gauges', async () => (await p.query('axon_federation_transaction_queue_pending_pdus')).length === 3 && (await p.query('axon_federation_destinations_backing_off')).length === 3);
    await until('push sends', async () => (await p.query('axon_push_http_pushes_processed_total')).length >= 2);
    await until('process defaults', async () => (await p.query('nodejs_eventloop_lag_seconds')).length === 3 && (await p.query('process_cpu_seconds_total')).length === 3 && (await p.query('nodejs_gc_duration_seconds_count')).length >= 3);
    const roles = await p.query('axon_process_info');
    expect(roles.map((s) => `${s.metric.role}:${s.metric.id}`).sort()).toEqual(['front:f1', 'worker:w1', 'worker:w2']);
  });
});
