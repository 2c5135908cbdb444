/**
 * `npm run bench:appservice [-- --vs synapse] [--quick]`: figures of transactions pushed to an
 * application service (issue 22.5). Axon runs as separate processes (scripts/lib/
 * axon-bench-cluster.ts: managed redis-server, one worker, one front) and, with `--vs synapse`, a
 * Synapse 1.163.2 (SQLite) in the same run, one after the other, each with one registration
 * (non-exclusive user namespace `@asb_.*`) pointing at the same kind of appservice in this
 * process (scripts/lib/appservice-receiver.ts: a node:http server answering 200 at once):
 *
 *   latency     a user of the namespace sends BENCH_LATENCY_MESSAGES messages one after another;
 *               per message, from the `/send` call to the transaction carrying it arriving:
 *               p50 / p99 / max (ms);
 *   throughput  BENCH_MESSAGES messages sent 8 at a time: events delivered per second, from the
 *               first `/send` to the arrival of the last one, and the transactions they took;
 *   catch-up    the appservice down while BENCH_BACKLOG messages are sent, then up again: the
 *               time from its first transaction after coming back to the last event arriving,
 *               and the transactions the backlog took (Synapse: synapse#8704). The wait before
 *               that first transaction is the backoff of each server (Axon's here: 2 s doubling
 *               up to 5 s, set for the bench; Synapse's: 2 s doubling up to 512 s) and is
 *               printed apart.
 *
 * A script, not a test: it prints figures and checks only that every event arrived, once.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { AppserviceReceiver, registrationYaml } from './lib/appservice-receiver';
import { type AxonBench, startAxonBench } from './lib/axon-bench-cluster';
import { freePort, percentile, pool, round, sleep, table, writeBenchResults } from './lib/bench-util';
import { MatrixLoad } from './lib/matrix-load';
import { loopbackServerName, SYNAPSE_VERSION, type SynapsePeer, startSynapse, synapseInstallation } from './lib/synapse-peer';
import { createTestCa } from './lib/test-ca';

const args = process.argv.slice(2);
const QUICK = args.includes('--quick');
const VS_SYNAPSE = args.includes('--vs') && args[args.indexOf('--vs') + 1] === 'synapse';
const LATENCY_MESSAGES = Number(process.env.BENCH_LATENCY_MESSAGES ?? (QUICK ? 20 : 100));
const MESSAGES = Number(process.env.BENCH_MESSAGES ?? (QUICK ? 100 : 500));
const BACKLOG = Number(process.env.BENCH_BACKLOG ?? (QUICK ? 100 : 500));
const log = (msg: string) => process.stderr.write(`[bench-appservice ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);

async function waitFor(what: string, ok: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

/** When each event id first arrived (performance.now()). */
function arrivals(rec: AppserviceReceiver): Map<string, number> {
  const out = new Map<string, number>();
  rec.onTxn = (t) => {
    const at = performance.now();
    for (const e of (t.body.events as { event_id?: string }[]) ?? []) if (e.event_id && !out.has(e.event_id)) out.set(e.event_id, at);
  };
  return out;
}

async function measure(name: string, m: MatrixLoad, rec: AppserviceReceiver): Promise<Record<string, unknown>[]> {
  const seen = arrivals(rec);
  const tag = randomBytes(3).toString('hex');
  const alice = await m.register(`asb_${tag}`);
  const room = await m.createRoom(alice, { preset: 'private_chat' });
  const warm = await m.send(alice, room, 'warm-up');
  await waitFor('the warm-up event', () => seen.has(warm), 60_000);

  const latencies: number[] = [];
  for (let i = 0; i < LATENCY_MESSAGES; i++) {
    const t0 = performance.now();
    const id = await m.send(alice, room, `latency ${i}`);
    await waitFor(`event ${i}`, () => seen.has(id), 60_000);
    latencies.push(seen.get(id)! - t0);
  }
  latencies.sort((a, b) => a - b);
  log(`${name}: latency p50 ${round(percentile(latencies, 50))} ms`);

  const txnsBefore = rec.txns.length;
  const t0 = performance.now();
  const ids = await pool(Array.from({ length: MESSAGES }, (_, i) => i), 8, (i) => m.send(alice, room, `throughput ${i}`));
  await waitFor(`${MESSAGES} events`, () => ids.every((id) => seen.has(id)), 600_000);
  const last = Math.max(...ids.map((id) => seen.get(id)!));
  const seconds = (last - t0) / 1000;
  const throughputTxns = rec.txns.length - txnsBefore;
  log(`${name}: ${MESSAGES} events in ${round(seconds, 2)} s, ${throughputTxns} transactions`);

  // Catch-up: the appservice down while the backlog is sent.
  await rec.down();
  const backlog = await pool(Array.from({ length: BACKLOG }, (_, i) => i), 8, (i) => m.send(alice, room, `backlog ${i}`));
  await sleep(3_000); // every server has tried and failed at least once
  const backlogTxnsBefore = rec.txns.length;
  await rec.up();
  const upAt = performance.now();
  let firstAt = 0;
  const onTxn = rec.onTxn;
  rec.onTxn = (t) => {
    if (!firstAt) firstAt = performance.now();
    onTxn?.(t);
  };
  await waitFor(`${BACKLOG} backlog events`, () => backlog.every((id) => seen.has(id)), 1_800_000);
  const lastBacklog = Math.max(...backlog.map((id) => seen.get(id)!));
  const catchUpTxns = rec.txns.length - backlogTxnsBefore;
  const delivered = rec.events().filter((e) => backlog.includes(e.event_id)).length;
  if (delivered !== BACKLOG) throw new Error(`${name}: ${delivered} backlog events delivered for ${BACKLOG} sent (repeats?)`);
  log(`${name}: backlog of ${BACKLOG} in ${round((lastBacklog - firstAt) / 1000, 2)} s after the first retry (${catchUpTxns} transactions)`);
  return [
    { server: name, phase: 'latency /send → transaction', value: `p50 ${round(percentile(latencies, 50))} / p99 ${round(percentile(latencies, 99))} / max ${round(latencies[latencies.length - 1]!)} ms (${LATENCY_MESSAGES} messages)` },
    { server: name, phase: `throughput (${MESSAGES} messages, 8 senders)`, value: `${round(MESSAGES / seconds)} events/s (${throughputTxns} transactions)` },
    { server: name, phase: `catch-up (${BACKLOG} events after downtime)`, value: `${round((lastBacklog - firstAt) / 1000, 2)} s in ${catchUpTxns} transactions (first retry ${round((firstAt - upAt) / 1000, 1)} s after it came back)` },
  ];
}

async function main(): Promise<void> {
  const install = VS_SYNAPSE ? synapseInstallation() : null;
  if (install && !install.ok) log(`--vs synapse: skipped. ${install.reason}`);
  const rows: Record<string, unknown>[] = [];
  const dir = mkdtempSync(join(tmpdir(), 'bench-as-'));
  let axon: AxonBench | undefined;
  let synapse: SynapsePeer | undefined;
  const ca = createTestCa();
  const receivers: AppserviceReceiver[] = [];
  try {
    const ip = '127.0.0.235';
    const axonName = `${ip}:${await freePort(ip)}`;
    const hsToken = randomBytes(16).toString('hex');
    const rec = new AppserviceReceiver(hsToken);
    receivers.push(rec);
    await rec.start();
    const file = join(dir, 'axon-as.yaml');
    writeFileSync(file, registrationYaml({ id: 'bench', url: rec.url, asToken: `as-${hsToken}`, hsToken, senderLocalpart: 'benchbot', users: [`@asb_.*:${axonName.replace(/[.]/g, '\\.')}`] }));
    axon = await startAxonBench({ workers: 1, fronts: 1, shards: 64, host: ip, serverName: axonName, stderr: 'ignore', env: { AXON_APPSERVICE_CONFIG_FILES: file, AXON_APPSERVICE_BACKOFF_MAX_MS: '5000' } });
    const m = new MatrixLoad(axon.url);
    await m.waitUp(120_000);
    rows.push(...(await measure('Axon', m, rec)));
    m.close();
    await axon.stop();
    axon = undefined;
    if (install?.ok) {
      log(`starting Synapse ${SYNAPSE_VERSION}`);
      const serverName = await loopbackServerName('127.0.0.236');
      const sHs = randomBytes(16).toString('hex');
      const srec = new AppserviceReceiver(sHs);
      receivers.push(srec);
      await srec.start();
      const sfile = join(dir, 'synapse-as.yaml');
      writeFileSync(sfile, registrationYaml({ id: 'bench', url: srec.url, asToken: `as-${sHs}`, hsToken: sHs, senderLocalpart: 'benchbot', users: [`@asb_.*:${serverName.replace(/[.]/g, '\\.')}`] }));
      synapse = await startSynapse({
        serverName,
        ca,
        logLevel: 'WARNING',
        configure: (c) => {
          c.enable_registration = true;
          c.enable_registration_without_verification = true;
          c.app_service_config_files = [sfile];
        },
      });
      const sm = new MatrixLoad(synapse.baseUrl, (u) => `${u} password`);
      rows.push(...(await measure(`Synapse ${SYNAPSE_VERSION}`, sm, srec)));
      sm.close();
    }
  } finally {
    await axon?.stop();
    await synapse?.stop();
    for (const r of receivers) await r.down();
    ca.cleanup();
    rmSync(dir, { recursive: true, force: true });
  }
  const env = { node: process.version, cpus: cpus().length, loadavg: loadavg().map((l) => round(l, 2)), latencyMessages: LATENCY_MESSAGES, messages: MESSAGES, backlog: BACKLOG };
  console.log(`appservice transactions (${JSON.stringify(env)})`);
  console.log(table(rows, ['server', 'phase', 'value'], ['server', 'phase', 'figure']));
  console.log(`written to ${writeBenchResults((stamp) => `appservice-${stamp}.json`, { env, rows })}`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
