/**
 * `npm run bench:push-delivery [-- --vs synapse] [--quick]`: push delivery figures (issue 19 item 5). Axon
 * runs as separate processes (scripts/lib/axon-bench-cluster.ts: managed redis-server, one worker,
 * one front; `AXON_PUSH_IP_ALLOWLIST=127.0.0.0/8`), and with `--vs synapse` a Synapse 1.163.2
 * (SQLite, `ip_range_whitelist` for loopback) in the same run, one after the other, both pushing to
 * one push-gateway recorder in this process (answers `{"rejected": []}` at once):
 *
 *   latency     one sender, one recipient with a pusher, in a DM: BENCH_LATENCY_MESSAGES messages
 *               one after another; per message, from the `/send` call to the recorder receiving
 *               its notification: p50 / p99 / max (ms);
 *   throughput  BENCH_RECIPIENTS recipients with a pusher each in one room, BENCH_MESSAGES messages
 *               sent 8 at a time: notifications the gateway received per second, from the first
 *               `/send` until the last notification arrived.
 *
 * A script, not a test: it prints figures and checks only that every notification arrived.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { cpus, loadavg } from 'node:os';
import { randomBytes } from 'node:crypto';
import { type AxonBench, startAxonBench } from './lib/axon-bench-cluster';
import { freePort, percentile, pool, round, sleep, table, writeBenchResults } from './lib/bench-util';
import { MatrixLoad, type User } from './lib/matrix-load';
import { loopbackServerName, SYNAPSE_VERSION, type SynapsePeer, startSynapse, synapseInstallation } from './lib/synapse-peer';
import { createTestCa } from './lib/test-ca';

const args = process.argv.slice(2);
const QUICK = args.includes('--quick');
const VS_SYNAPSE = args[args.indexOf('--vs') + 1] === 'synapse' && args.includes('--vs');
const LATENCY_MESSAGES = Number(process.env.BENCH_LATENCY_MESSAGES ?? (QUICK ? 20 : 100));
const RECIPIENTS = Number(process.env.BENCH_RECIPIENTS ?? (QUICK ? 5 : 20));
const MESSAGES = Number(process.env.BENCH_MESSAGES ?? (QUICK ? 20 : 100));
const log = (msg: string) => process.stderr.write(`[bench-push-delivery ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);

/** The gateway: when each event's notification arrived, per pushkey. */
class Recorder {
  readonly arrivals = new Map<string, number>();
  count = 0;
  private server!: Server;
  url = '';
  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const at = performance.now();
        try {
          const n = JSON.parse(Buffer.concat(chunks).toString('utf8')).notification;
          if (typeof n?.event_id === 'string') {
            this.count++;
            for (const d of n.devices ?? []) this.arrivals.set(`${d.pushkey}|${n.event_id}`, at);
          }
        } catch {
          // not a notification
        }
        res.writeHead(200, { 'content-type': 'application/json' }).end('{"rejected":[]}');
      });
    });
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/_matrix/push/v1/notify`;
  }
  stop(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

async function setPusher(m: MatrixLoad, u: User, pushkey: string, url: string): Promise<void> {
  await m.ok('POST', '/_matrix/client/v3/pushers/set', { token: u.token, body: { kind: 'http', app_id: 'bench.push', pushkey, app_display_name: 'Bench', device_display_name: 'Bench', lang: 'en', data: { url } } });
}

async function waitFor(what: string, ok: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

async function measure(name: string, m: MatrixLoad, rec: Recorder): Promise<Record<string, unknown>[]> {
  const tag = randomBytes(3).toString('hex');
  // Latency: a DM, one message at a time.
  const alice = await m.register(`pa${tag}`);
  const bob = await m.register(`pb${tag}`);
  const dm = await m.createRoom(alice, { preset: 'trusted_private_chat', is_direct: true, invite: [bob.userId] });
  await m.join(bob, dm);
  const bobKey = `lat-${name}-${tag}`;
  await setPusher(m, bob, bobKey, rec.url);
  await sleep(1500); // the pusher reaches the evaluator's cache (a commit's wake-up) before the first message
  const latencies: number[] = [];
  for (let i = 0; i < LATENCY_MESSAGES; i++) {
    const t0 = performance.now();
    const eventId = await m.send(alice, dm, `latency ${i}`);
    await waitFor(`notification ${i}`, () => rec.arrivals.has(`${bobKey}|${eventId}`), 60_000);
    latencies.push(rec.arrivals.get(`${bobKey}|${eventId}`)! - t0);
  }
  latencies.sort((a, b) => a - b);
  log(`${name}: latency p50 ${round(percentile(latencies, 50))} ms`);

  // Throughput: one room, RECIPIENTS users with a pusher each.
  const room = await m.createRoom(alice, { preset: 'public_chat' });
  const recipients: { user: User; key: string }[] = [];
  for (let i = 0; i < RECIPIENTS; i++) {
    const u = await m.register(`pr${tag}${i}`);
    await m.join(u, room);
    const key = `tp-${name}-${tag}-${i}`;
    await setPusher(m, u, key, rec.url);
    recipients.push({ user: u, key });
  }
  await sleep(1500);
  const before = rec.count;
  const expected = MESSAGES * RECIPIENTS;
  const t0 = performance.now();
  const ids = await pool(
    Array.from({ length: MESSAGES }, (_, i) => i),
    8,
    (i) => m.send(alice, room, `throughput ${i}`),
  );
  const sentMs = performance.now() - t0;
  await waitFor(`${expected} notifications`, () => recipients.every((r) => ids.every((id) => rec.arrivals.has(`${r.key}|${id}`))), 600_000);
  const lastArrival = Math.max(...recipients.flatMap((r) => ids.map((id) => rec.arrivals.get(`${r.key}|${id}`)!)));
  const seconds = (lastArrival - t0) / 1000;
  log(`${name}: ${expected} notifications in ${round(seconds, 2)} s (sends took ${round(sentMs / 1000, 2)} s; ${rec.count - before} received)`);
  return [
    { server: name, phase: 'latency /send → gateway', value: `p50 ${round(percentile(latencies, 50))} / p99 ${round(percentile(latencies, 99))} / max ${round(latencies[latencies.length - 1]!)} ms (${LATENCY_MESSAGES} messages)` },
    { server: name, phase: `throughput (${RECIPIENTS} pushers × ${MESSAGES} messages)`, value: `${round(expected / seconds)} notifications/s (${expected} in ${round(seconds, 2)} s; sends done in ${round(sentMs / 1000, 2)} s)` },
  ];
}

async function main(): Promise<void> {
  const install = VS_SYNAPSE ? synapseInstallation() : null;
  if (install && !install.ok) log(`--vs synapse: skipped. ${install.reason}`);
  const rec = new Recorder();
  await rec.start();
  const rows: Record<string, unknown>[] = [];
  let axon: AxonBench | undefined;
  let synapse: SynapsePeer | undefined;
  const ca = createTestCa();
  try {
    const ip = '127.0.0.233';
    axon = await startAxonBench({ workers: 1, fronts: 1, shards: 64, host: ip, serverName: `${ip}:${await freePort(ip)}`, stderr: 'ignore', env: { AXON_RATE_LIMIT_ENABLED: 'false', AXON_PUSH_IP_ALLOWLIST: '127.0.0.0/8' } });
    const m = new MatrixLoad(axon.url);
    await m.waitUp(120_000);
    rows.push(...(await measure('Axon', m, rec)));
    m.close();
    await axon.stop();
    axon = undefined;
    if (install?.ok) {
      log(`starting Synapse ${SYNAPSE_VERSION}`);
      synapse = await startSynapse({
        serverName: await loopbackServerName('127.0.0.234'),
        ca,
        logLevel: 'WARNING',
        configure: (c) => {
          c.enable_registration = true;
          c.enable_registration_without_verification = true;
          c.ip_range_whitelist = ['127.0.0.0/8'];
        },
      });
      const sm = new MatrixLoad(synapse.baseUrl, (u) => `${u} password`);
      rows.push(...(await measure(`Synapse ${SYNAPSE_VERSION}`, sm, rec)));
      sm.close();
    }
  } finally {
    await axon?.stop();
    await synapse?.stop();
    ca.cleanup();
    await rec.stop();
  }
  const env = { node: process.version, cpus: cpus().length, loadavg: loadavg().map((l) => round(l, 2)), latencyMessages: LATENCY_MESSAGES, recipients: RECIPIENTS, messages: MESSAGES };
  console.log(`push (${JSON.stringify(env)})`);
  console.log(table(rows, ['server', 'phase', 'value'], ['server', 'phase', 'figure']));
  console.log(`written to ${writeBenchResults((stamp) => `push-delivery-${stamp}.json`, { env, rows })}`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
