/**
 * Delayed events (MSC4140) across a worker killed with -9, through the operator's scripts: a
 * cluster of one front and one worker (`scripts/cluster up`, managed Redis with AOF), a delayed
 * message and a delayed state event scheduled, the only worker killed with SIGKILL before they are
 * due, the due time passing with no worker alive, then `cluster up` again. The durable timers
 * fire at the new holder: each delayed event lands exactly once, late but never lost, and one
 * cancelled before the kill never lands.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../setup/free-port';

const run = promisify(execFile);
const root = join(import.meta.dirname, '../..');
type Json = Record<string, any>;

describe('delayed events survive a worker killed with -9', () => {
  let env: Record<string, string>;
  let dataDir: string;
  let base: string;

  async function cluster(...args: string[]): Promise<any> {
    const { stdout } = await run('bash', ['scripts/cluster', ...args, '--json'], { cwd: root, env, timeout: 240_000 });
    return JSON.parse(stdout);
  }

  async function call(token: string | null, method: string, path: string, body?: unknown): Promise<{ status: number; body: Json }> {
    const url = path.startsWith('/_matrix') ? `${base}${path}` : `${base}/_matrix/client/v3${path}`;
    const r = await fetch(url, {
      method,
      headers: { ...(token ? { Authorization: `Bearer ${token}` } : {}), 'Content-Type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(60_000),
    });
    return { status: r.status, body: (await r.json()) as Json };
  }

  async function register(username: string): Promise<{ userId: string; token: string }> {
    const first = await call(null, 'POST', '/register', { username, password: `pw-${username}` });
    const done = await call(null, 'POST', '/register', { username, password: `pw-${username}`, auth: { type: 'm.login.dummy', session: first.body.session } });
    expect(done.status, JSON.stringify(done.body)).toBe(200);
    return { userId: done.body.user_id, token: done.body.access_token };
  }

  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'axon-delayed-'));
    const httpPort = await freePort();
    base = `http://127.0.0.1:${httpPort}`;
    env = {
      ...(process.env as Record<string, string>),
      AXON_DATA_DIR: dataDir, AXON_PORT: String(httpPort), AXON_REDIS_MANAGED_PORT: String(await freePort()),
      AXON_ROOM_SHARDS: '8', AXON_USER_SHARDS: '8', AXON_LOG_LEVEL: 'info', AXON_RATE_LIMIT_ENABLED: 'false', AXON_FEDERATION_ENABLED: 'false',
    };
    const up = await cluster('up', '--workers', '1', '--fronts', '1');
    expect(up.ok).toBe(true);
  }, 240_000);

  afterAll(async () => {
    await run('bash', ['scripts/cluster', 'down'], { cwd: root, env }).catch(() => undefined);
    rmSync(dataDir, { recursive: true, force: true });
  }, 120_000);

  it('fires each delayed event once after the restart; a cancelled one never', async () => {
    const alice = await register('dk_alice');
    const created = await call(alice.token, 'POST', '/createRoom', { preset: 'private_chat' });
    expect(created.status).toBe(200);
    const roomId = created.body.room_id as string;
    const r = encodeURIComponent(roomId);
    const DELAY = 6000;
    const msg = await call(alice.token, 'PUT', `/rooms/${r}/send/m.room.message/dk1?org.matrix.msc4140.delay=${DELAY}`, { msgtype: 'm.text', body: 'sent by the server' });
    const state = await call(alice.token, 'PUT', `/rooms/${r}/state/org.matrix.msc3401.call.member/_dk?org.matrix.msc4140.delay=${DELAY}`, { hangup: true });
    const cancelled = await call(alice.token, 'PUT', `/rooms/${r}/send/m.room.message/dk2?org.matrix.msc4140.delay=${DELAY}`, { msgtype: 'm.text', body: 'cancelled' });
    expect([msg.status, state.status, cancelled.status]).toEqual([200, 200, 200]);
    expect((await call(null, 'POST', `/_matrix/client/unstable/org.matrix.msc4140/delayed_events/${cancelled.body.delay_id}/cancel`, {})).status).toBe(200);
    const scheduledAt = Date.now();

    // Kill the only worker before anything is due, and keep it down past the due time.
    const pid = Number(readFileSync(join(dataDir, 'run', 'w1.pid'), 'utf8'));
    process.kill(pid, 'SIGKILL');
    await new Promise((res) => setTimeout(res, Math.max(0, scheduledAt + DELAY + 1500 - Date.now())));
    const restartedAt = Date.now();
    const up = await cluster('up', '--workers', '1', '--fronts', '1');
    expect(up.ok).toBe(true);
    expect(up.processes.find((p: { name: string }) => p.name === 'w1').pid).not.toBe(pid);

    const bodies = async () => {
      const m = await call(alice.token, 'GET', `/rooms/${r}/messages?dir=b&limit=100`);
      return m.status === 200 ? (m.body.chunk as Json[]) : [];
    };
    const deadline = Date.now() + 60_000;
    let chunk: Json[] = [];
    while (Date.now() < deadline) {
      chunk = await bodies();
      if (chunk.some((e) => e.content?.body === 'sent by the server') && chunk.some((e) => e.type === 'org.matrix.msc3401.call.member')) break;
      await new Promise((res) => setTimeout(res, 250));
    }
    // Give a duplicate time to show up, then count.
    await new Promise((res) => setTimeout(res, 2000));
    chunk = await bodies();
    expect(chunk.filter((e) => e.content?.body === 'sent by the server')).toHaveLength(1);
    expect(chunk.filter((e) => e.type === 'org.matrix.msc3401.call.member' && e.state_key === '_dk')).toHaveLength(1);
    expect(chunk.some((e) => e.content?.body === 'cancelled')).toBe(false);
    const sent = chunk.find((e) => e.content?.body === 'sent by the server')!;
    expect(sent.origin_server_ts).toBeGreaterThanOrEqual(scheduledAt + DELAY);
    // A figure, not an assertion: how long after the restart began the overdue event was persisted.
    console.log(`delayed-events-restart.e2e: overdue delayed message persisted ${sent.origin_server_ts - restartedAt} ms after \`cluster up\` was started`);
    expect((await call(alice.token, 'GET', '/_matrix/client/unstable/org.matrix.msc4140/delayed_events')).body).toEqual({ delayed_events: [] });
  }, 300_000);
});
