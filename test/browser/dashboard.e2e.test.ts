/**
 * The operator dashboard in a real browser against a real cluster: `npm run cluster -- up` with two
 * workers and a front (real processes, a managed redis-server), the front serving /dashboard on
 * AXON_METRICS_PORT. A non-admin's token is refused (403 M_FORBIDDEN on the API, shown on the
 * page); an admin signs in, sees two workers, and drains one from the page (confirming the dialog)
 * while a Matrix load runs (sends and /sync long-polls over HTTP): the page shows every shard on
 * the other worker and each shard's move as it happens, and the load sees no error and loses no
 * message.
 *
 * The browser is the Hydrogen test's (test/browser/chromium.ts): Debian's chromium-headless-shell
 * driven by puppeteer-core (issue 20 names playwright-core; one driver in the project is enough).
 * Screenshots go to test-artifacts/dashboard/ (gitignored; the paths are printed), also on failure.
 */
import { mkdirSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser, Page } from 'puppeteer-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registerWithSharedSecret } from '../../scripts/register-user';
import { freePort } from '../setup/free-port';
import { ScriptCluster, type Json } from '../setup/script-cluster';
import { findChromium, openPage } from './chromium';

/** The page's document, inside `page.evaluate` callbacks (the project's type-check has no DOM library). */
declare const document: any;

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const artifactDir = join(root, 'test-artifacts/dashboard');
const chromium = findChromium();
const skip = chromium === undefined && !process.env.CI;
if (skip) console.warn('dashboard.e2e: skipped, no Chromium installed (install: sudo apt-get install -y chromium-headless-shell)');

// Generous: two cores shared by many agents start a cluster, a browser and a load at once.
const STEP_MS = 120_000;
const SHARDS = 16;
const sharedSecret = 'dashboard test shared secret';

let cluster: ScriptCluster;
let baseUrl: string;
let dashboardUrl: string;
let browser: Browser | undefined;
let page: Page;
const pageLog: string[] = [];

function call(token: string | null, method: string, path: string, body?: unknown): Promise<{ status: number; body: Json }> {
  return cluster.call(token, method, path, body);
}

async function dashboardApi(token: string | null, method: string, path: string, body?: unknown): Promise<{ status: number; body: Json }> {
  const res = await fetch(`${dashboardUrl}/api/${path}`, {
    method,
    headers: { ...(token ? { Authorization: `Bearer ${token}` } : {}), ...(body !== undefined ? { 'Content-Type': 'application/json' } : {}) },
    body: body !== undefined ? JSON.stringify(body) : undefined,
  });
  return { status: res.status, body: (await res.json()) as Json };
}

async function screenshot(name: string): Promise<string> {
  mkdirSync(artifactDir, { recursive: true });
  const path = join(artifactDir, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  console.log(`dashboard.e2e: screenshot ${path}`);
  return path;
}

/** Runs one browser step; on failure keeps a screenshot and prints what the page logged. */
async function step<T>(name: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    await screenshot(`failed-${name}`).catch(() => undefined);
    console.error(`dashboard.e2e: step '${name}' failed\n${pageLog.join('\n')}`);
    throw err;
  }
}

async function signInOnPage(token: string): Promise<void> {
  await page.waitForSelector('#token', { visible: true });
  await page.type('#token', token);
  await page.click('#login-form button[type=submit]');
}

/**
 * A Matrix load: `senders` loops sending messages into one room, and a reader long-polling /sync,
 * until stopped. Every answer that is not a 200, and every failed request, is an error.
 */
function startLoad(sender: string, reader: string, roomId: string, senders = 4) {
  const sent = new Set<string>();
  const seen = new Set<string>();
  const errors: string[] = [];
  let stopped = false;
  let syncStopped = false;
  const sendLoops = Array.from({ length: senders }, async (_, lane) => {
    for (let i = 0; !stopped; i++) {
      try {
        const r = await call(sender, 'PUT', `/rooms/${encodeURIComponent(roomId)}/send/m.room.message/load-${lane}-${i}`, { msgtype: 'm.text', body: `load ${lane}/${i}` });
        if (r.status === 200) sent.add(r.body.event_id);
        else errors.push(`send: ${r.status} ${JSON.stringify(r.body)}`);
      } catch (e) {
        errors.push(`send: ${String(e)}`);
      }
    }
  });
  const syncLoop = (async () => {
    let since: string | undefined;
    const filter = encodeURIComponent(JSON.stringify({ room: { timeline: { limit: 100 } } }));
    while (!syncStopped) {
      try {
        const r = await call(reader, 'GET', `/sync?timeout=3000&filter=${filter}${since ? `&since=${encodeURIComponent(since)}` : ''}`);
        if (r.status !== 200) {
          errors.push(`sync: ${r.status} ${JSON.stringify(r.body)}`);
          continue;
        }
        since = r.body.next_batch;
        for (const ev of r.body.rooms?.join?.[roomId]?.timeline?.events ?? []) seen.add(ev.event_id);
      } catch (e) {
        errors.push(`sync: ${String(e)}`);
      }
    }
  })();
  return {
    sent,
    seen,
    errors,
    /** Stop sending, wait until the reader's /sync has seen every message sent, then stop it. */
    async stop() {
      stopped = true;
      await Promise.all(sendLoops);
      await expect.poll(() => [...sent].filter((id) => !seen.has(id)).length, { timeout: STEP_MS, interval: 250 }).toBe(0);
      syncStopped = true;
      await syncLoop;
    },
  };
}

beforeAll(async () => {
  if (skip) return;
  if (!chromium) throw new Error('dashboard.e2e: no Chromium installed, and CI requires this test (scripts/lib/ensure.sh: ensure_chromium, or set AXON_CHROMIUM)');
  rmSync(artifactDir, { recursive: true, force: true });
  const metricsPort = await freePort();
  cluster = await ScriptCluster.create({ name: 'dashboard', shards: SHARDS, env: { AXON_METRICS_PORT: String(metricsPort), AXON_REGISTRATION_SHARED_SECRET: sharedSecret } });
  baseUrl = cluster.base;
  const up = await cluster.up(2, 1);
  // The cluster scripts give each process its own metrics port from AXON_METRICS_PORT upward
  // (workers first); the front's, where the dashboard is, is in `up`'s answer.
  const front = (up.processes as { name: string; metricsPort: number | null }[]).find((p) => p.name.startsWith('f'));
  expect(front?.metricsPort).toBeGreaterThanOrEqual(metricsPort);
  dashboardUrl = `http://127.0.0.1:${front!.metricsPort}/dashboard`;
  // The front starts its dashboard right after it listens on the client port.
  const deadline = Date.now() + STEP_MS;
  while ((await fetch(dashboardUrl).then((r) => r.status, () => 0)) !== 200) {
    if (Date.now() > deadline) throw new Error(`the front did not serve ${dashboardUrl}; see ${cluster.dataDir}/logs`);
    await new Promise((r) => setTimeout(r, 250));
  }

  ({ browser, page } = await openPage(chromium, { width: 1400, height: 1000, stepMs: STEP_MS, pageLog }));
}, 300_000);

afterAll(async () => {
  await browser?.close();
  await cluster?.destroy();
}, 180_000);

describe.skipIf(skip)('operator dashboard in headless Chromium against a two-worker cluster', () => {
  it('refuses a non-admin, shows two workers to an admin, drains one from the page under load with no client error', async () => {
    const admin = await registerWithSharedSecret({ baseUrl, sharedSecret, user: 'operator', password: 'operator passphrase', admin: true });
    const alice = await registerWithSharedSecret({ baseUrl, sharedSecret, user: 'alice', password: 'alice passphrase', admin: false });
    const bob = await registerWithSharedSecret({ baseUrl, sharedSecret, user: 'bob', password: 'bob passphrase', admin: false });

    // The API: no token 401, a malformed or unknown one 401, a non-admin 403 — Matrix errors.
    expect(await dashboardApi(null, 'GET', 'state')).toMatchObject({ status: 401, body: { errcode: 'M_MISSING_TOKEN' } });
    expect(await dashboardApi('axo_0_not-a-real-token-at-all-xx', 'GET', 'state')).toMatchObject({ status: 401, body: { errcode: 'M_UNKNOWN_TOKEN' } });
    expect(await dashboardApi(alice.access_token, 'GET', 'state')).toEqual({ status: 403, body: { errcode: 'M_FORBIDDEN', error: 'You are not a server admin' } });
    expect(await dashboardApi(alice.access_token, 'POST', 'drain', { worker: 'w1' })).toMatchObject({ status: 403, body: { errcode: 'M_FORBIDDEN' } });
    // An admin's bad requests are 4xx Matrix errors too, and start nothing.
    expect(await dashboardApi(admin.access_token, 'POST', 'move-shard', { family: 'room', shard: SHARDS, to: 'w2' })).toMatchObject({ status: 400, body: { errcode: 'M_INVALID_PARAM' } });
    expect(await dashboardApi(admin.access_token, 'POST', 'move-shard', { family: 'room' })).toMatchObject({ status: 400, body: { errcode: 'M_BAD_JSON' } });
    expect(await dashboardApi(admin.access_token, 'POST', 'drain', { worker: 'w9' })).toMatchObject({ status: 400, body: { errcode: 'M_INVALID_PARAM' } });
    expect(await dashboardApi(admin.access_token, 'GET', 'nothing-here')).toMatchObject({ status: 404, body: { errcode: 'M_UNRECOGNIZED' } });
    expect(await dashboardApi(admin.access_token, 'GET', 'drain')).toMatchObject({ status: 405, body: { errcode: 'M_UNRECOGNIZED' } });
    const raw = async (body: string) => {
      const res = await fetch(`${dashboardUrl}/api/rebalance`, { method: 'POST', headers: { Authorization: `Bearer ${admin.access_token}`, 'Content-Type': 'application/json' }, body });
      return { status: res.status, body: (await res.json()) as Json };
    };
    expect(await raw('{"not json')).toMatchObject({ status: 400, body: { errcode: 'M_NOT_JSON' } });
    expect(await raw('[1]')).toMatchObject({ status: 400, body: { errcode: 'M_BAD_JSON' } });
    expect(await raw(`{"pad": "${'x'.repeat(10_000)}"}`)).toMatchObject({ status: 413, body: { errcode: 'M_TOO_LARGE' } });
    const state = await dashboardApi(admin.access_token, 'GET', 'state');
    expect(state.status).toBe(200);
    expect(state.body.user_id).toBe(admin.user_id);
    expect(state.body.operation).toBeNull();
    const before = state.body.cluster;
    expect(before.workers.map((w: Json) => [w.worker, w.alive, w.shards])).toEqual([
      ['w1', true, { room: SHARDS / 2, user: SHARDS / 2 }],
      ['w2', true, { room: SHARDS / 2, user: SHARDS / 2 }],
    ]);
    // What w1 holds now: each of these must be seen moving to w2.
    const w1Index = before.owners.indexOf('w1');
    const roomShardOfW1 = (before.heat.room as number[][]).findIndex((c) => c[0] === w1Index);
    expect(roomShardOfW1).toBeGreaterThanOrEqual(0);

    // The page, with a non-admin's token: refused, and it says why.
    await step('non-admin', async () => {
      await page.goto(dashboardUrl, { waitUntil: 'load' });
      await signInOnPage(alice.access_token);
      await page.waitForSelector('#login-error:not([hidden])');
    });
    const refusal = await page.$eval('#login-error', (e: any) => e.textContent);
    expect(refusal).toBe('M_FORBIDDEN: You are not a server admin (HTTP 403)');
    expect(await page.$eval('#dashboard', (e: any) => e.hidden)).toBe(true);
    expect(await page.evaluate(() => (globalThis as any).sessionStorage.getItem('axon.dashboard.token'))).toBeNull();
    await screenshot('1-non-admin-refused');

    // An admin's token: two live workers, half the shards each.
    await step('admin-sign-in', async () => {
      await signInOnPage(admin.access_token);
      await page.waitForSelector('#dashboard:not([hidden])');
      await page.waitForFunction(() => document.querySelector('#connection')?.textContent === 'live');
      await page.waitForFunction(() => document.querySelectorAll('#workers tbody tr[data-alive="true"]').length === 2);
    });
    const rows = () => page.$$eval('#workers tbody tr', (trs: any[]) => trs.map((tr) => ({ worker: tr.dataset.worker, alive: tr.dataset.alive, state: tr.dataset.state, shards: Number(tr.dataset.shards) })));
    expect(await rows()).toEqual([
      { worker: 'w1', alive: 'true', state: 'running', shards: SHARDS },
      { worker: 'w2', alive: 'true', state: 'running', shards: SHARDS },
    ]);
    expect(await page.$eval('#whoami', (e: any) => e.textContent)).toBe(admin.user_id);
    expect(await page.$$eval('#heatmaps .cell', (cells: any[]) => cells.length)).toBe(2 * SHARDS);
    expect(await page.evaluate(() => (globalThis as any).sessionStorage.getItem('axon.dashboard.token'))).toBe(admin.access_token);

    // A load through the front: Alice sends into a room Bob reads with /sync.
    const room = await call(alice.access_token, 'POST', '/createRoom', { preset: 'public_chat', name: 'load' });
    expect(room.status).toBe(200);
    const roomId: string = room.body.room_id;
    expect((await call(bob.access_token, 'POST', `/join/${encodeURIComponent(roomId)}`, {})).status).toBe(200);
    const load = startLoad(alice.access_token, bob.access_token, roomId);
    // Some traffic before the drain, and rates on the page.
    await expect.poll(() => load.sent.size, { timeout: STEP_MS, interval: 200 }).toBeGreaterThan(20);
    await step('rates', () => page.waitForFunction(() => Number(document.querySelector('#messages-rate')?.textContent?.replace(/,/g, '')) > 0));
    await screenshot('2-two-workers-under-load');

    // Every button asks first; the test accepts.
    const dialogs: string[] = [];
    page.on('dialog', (d) => {
      dialogs.push(d.message());
      void d.accept();
    });
    const operationDone = (kind: string) => page.waitForFunction((k: string) => {
      const op = document.querySelector('#operation');
      return op?.dataset.kind === k && op.dataset.state !== 'running';
    }, {}, kind);
    /** Each cell's owner on the page, as `family:shard` → worker. */
    const cellOwners = () => page.$$eval('#heatmaps .cell', (cells: any[]) => Object.fromEntries(cells.map((c) => [`${c.dataset.family}:${c.dataset.shard}`, c.dataset.owner])));

    // Move one of w1's room shards to w2 with the form, then rebalance with the button.
    await step('move-shard', async () => {
      await page.select('#move-family', 'room');
      await page.type('#move-shard', String(roomShardOfW1));
      await page.select('#move-to', 'w2');
      await page.click('#move-form button[type=submit]');
      await operationDone('move-shard');
      await page.waitForFunction((key: string) => document.querySelector(`#moves li[data-family="room"][data-shard="${key}"][data-to="w2"]`) !== null, {}, String(roomShardOfW1));
    });
    expect(await page.$eval('#operation', (e: any) => e.textContent)).toMatch(new RegExp(`^Done: move-shard \\{"family":"room","shard":${roomShardOfW1},"to":"w2"\\}, 1 shard\\(s\\) moved in [0-9.]+ s\\.$`));
    expect((await cellOwners())[`room:${roomShardOfW1}`]).toBe('w2');
    expect(await page.$eval('#workers tr[data-worker="w2"] .room-shards', (e: any) => e.textContent)).toBe(String(SHARDS / 2 + 1));
    await step('rebalance', async () => {
      await page.click('#rebalance');
      await operationDone('rebalance');
      await page.waitForFunction((n: string) => [...document.querySelectorAll('#workers .room-shards')].every((td) => td.textContent === n), {}, String(SHARDS / 2));
    });
    expect(await page.$eval('#operation', (e: any) => e.textContent)).toMatch(/^Done: rebalance, 1 shard\(s\) moved in [0-9.]+ s\.$/);

    // Drain w1 from the page. What w1 holds now must each be seen moving to w2.
    const w1Shards = Object.entries(await cellOwners()).filter(([, owner]) => owner === 'w1').map(([key]) => key);
    expect(w1Shards).toHaveLength(SHARDS);
    const sentBeforeDrain = load.sent.size;
    let sentDuringDrain = 0;
    const drainClickedAt = Date.now();
    await step('drain', async () => {
      await page.click('#workers button[data-drain="w1"]');
      await operationDone('drain');
      sentDuringDrain = load.sent.size - sentBeforeDrain;
      await page.waitForFunction(
        (n: number) => {
          const w2 = document.querySelector('#workers tr[data-worker="w2"]');
          const w1 = document.querySelector('#workers tr[data-worker="w1"]');
          return w2?.dataset.shards === String(n) && (!w1 || w1.dataset.shards === '0');
        },
        {},
        2 * SHARDS,
      );
    });
    expect(dialogs).toEqual([
      `Move room:${roomShardOfW1} to w2?`,
      'Rebalance? Shards move until every live worker holds an even share.',
      `Drain w1? Its ${SHARDS} shard(s) move to the other workers, then the worker stops.`,
    ]);
    expect(await page.$eval('#operation', (e: any) => e.textContent)).toMatch(new RegExp(`^Done: drain \\{"worker":"w1"\\}, ${SHARDS} shard\\(s\\) moved in [0-9.]+ s\\.$`));
    // Every shard w1 held was seen moving to w2 (possibly through "no owner" for a moment).
    const moved = await page.$$eval('#moves li[data-to="w2"]', (lis: any[], since: number) => lis.filter((li) => Number(li.dataset.at) >= since).map((li) => `${li.dataset.family}:${li.dataset.shard}`), drainClickedAt);
    expect(new Set(moved)).toEqual(new Set(w1Shards));
    // Every heat map cell now shows w2 as the owner.
    expect(await page.$$eval('#heatmaps .cell', (cells: any[]) => cells.map((c) => c.dataset.owner))).toEqual(Array(2 * SHARDS).fill('w2'));
    // w1 stops by itself once drained and signs off: the page lists w2 alone.
    await step('w1-stops', () => page.waitForFunction(() => [...document.querySelectorAll('#workers tbody tr')].map((tr) => tr.dataset.worker).join(',') === 'w2'));
    expect(await page.$eval('#live-workers', (e: any) => e.textContent)).toBe('1 / 1');
    await screenshot('3-drained-w1');

    // The load carried on through the drain, with no error and nothing lost.
    await expect.poll(() => load.sent.size, { timeout: STEP_MS, interval: 200 }).toBeGreaterThan(sentBeforeDrain + 20);
    await load.stop();
    expect(load.errors).toEqual([]);
    // The load was not idle while the shards moved (the page shows 'done' within a poll of the end).
    expect(sentDuringDrain).toBeGreaterThan(0);
    console.log(`dashboard.e2e: load sent ${load.sent.size} messages (${sentDuringDrain} acknowledged while the drain ran), all seen by /sync, 0 errors`);

    // The cluster script agrees with the page.
    const status = await cluster.script('status');
    expect(status.workers.filter((w: Json) => w.alive).map((w: Json) => [w.worker, w.shards])).toEqual([['w2', { room: SHARDS, user: SHARDS }]]);
    // With one worker left there is nothing to drain to: a 400, and w2 keeps its shards.
    expect(await dashboardApi(admin.access_token, 'POST', 'drain', { worker: 'w2' })).toMatchObject({ status: 400, body: { errcode: 'M_INVALID_PARAM' } });
    // The script's drain (the same src/runtime/cluster-admin.ts drain) refuses too, before telling
    // the worker anything: w2 stays running with its shards.
    const refused = await cluster.scriptFails('drain', 'w2');
    expect(refused.code).toBe(1);
    expect(refused.answer).toEqual({ ok: false, error: "no other live worker to take w2's shards" });
    const stillRunning = await cluster.script('status');
    expect(stillRunning.workers.filter((w: Json) => w.alive).map((w: Json) => [w.worker, w.state, w.shards])).toEqual([['w2', 'running', { room: SHARDS, user: SHARDS }]]);

    // Signing out forgets the token.
    await page.click('#logout');
    await page.waitForSelector('#login:not([hidden])');
    expect(await page.evaluate(() => (globalThis as any).sessionStorage.getItem('axon.dashboard.token'))).toBeNull();
  }, 600_000);
});
