/**
 * Past one machine (issue 24): Axon on three "hosts" (network namespaces on one bridge) over a
 * Redis Cluster of three masters, each with its replica on another host; a worker and a front on
 * every host; Matrix load from a fourth namespace (test/hosts/load-main.ts). Faults are made under
 * that load, then the recorded history is checked (test/hosts/history.ts) and figures are written
 * to `<AXON_HOSTS_RESULTS or test/hosts/last-run.json>`.
 *
 *   (a) a worker's host cut off for 30 s, then healed: its shards move to the other workers,
 *       whatever it still had in flight is fenced, service returns by itself;
 *   (b) the host of a Redis master cut off until its replica is promoted, then healed;
 *   (b2) a split brain: a master's host cut off from the other hosts but not from the clients, so
 *        the master keeps taking writes (for up to cluster-node-timeout) while its replica is
 *        promoted on the other side — the case where Redis's asynchronous replication loses
 *        acknowledged writes unless `redis.waitReplicas` makes commits wait for a replica;
 *   (c) 200 ms of added latency (each way) and 5 % packet loss between the hosts for a minute:
 *       the kernel here has no netem, so every connection between two hosts goes through a delay
 *       proxy in its host's namespace from the start (test/hosts/delay-proxy-main.ts, passing bytes
 *       on at once until this fault), and nftables `numgen random` drops the packets;
 *   (d) a front's host cut off while requests are in flight on it.
 *
 * `AXON_HOSTS_WAIT_REPLICAS` (default 1) sets `redis.waitReplicas` for the run. With 0, messages
 * acknowledged during the split brain and then lost are reported (and tolerated: that is the
 * documented cost of not waiting); any other violation fails the run either way.
 * (b2) and (c) need the `nft` command (Debian: nftables); without it they are skipped.
 * `AXON_HOSTS_DELAY_PROXY=0` leaves the proxies out ((c) is then loss only).
 *
 * Before the faults, a throughput window: 24 more senders for 30 s. `AXON_HOSTS_ONE_HOST=1` runs
 * the same bed with every process on one host (the same Redis Cluster, workers and fronts, no
 * link between hosts), the baseline and the throughput window only: the figure to set the
 * three-host one beside.
 *
 * Needs root (`ip netns`); skips with the reason otherwise. Slow (minutes): `npm run test:hosts`.
 * Everything it starts lives in namespaces named `axh<pid>-…`, removed in afterAll and on exit.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadOrCreateSigningKeys } from '../../src/runtime/signing-key-store';
import { checkHistory, faultFigures, type FaultFigures, type History } from './history';
import { NetnsBed, bedUnavailable, nftAvailable, removeStaleBeds, type BedProcess, type DelayProxy } from './netns-bed';
import { handOver, masterHosts, probeSurvivors, promotedFor, roleOf, startBedRedisCluster, startReplicationProbe, waitClusterHealthy, type BedRedisCluster, type BedRedisNode } from './redis-cluster-bed';

const root = join(import.meta.dirname, '..', '..');
const unavailable = bedUnavailable();
if (unavailable) console.warn(`[hosts] skipped: ${unavailable}`);

const HOSTS = ['h1', 'h2', 'h3'];
const CLIENT = 'c';
const PORT = 8008;
const NODE_TIMEOUT_MS = 3000;
const LEASE_TTL_MS = 3000;
const SHARDS = 64;
/** The issue's 30 s cut of a worker's host. */
const WORKER_CUT_MS = 30_000;
/** Load between faults, so each starts from a settled cluster under load. */
const SETTLE_MS = 15_000;

const WAIT_REPLICAS = Number(process.env.AXON_HOSTS_WAIT_REPLICAS ?? '1');
const NFT = nftAvailable();
/** Everything on h1: the one-host comparison (no faults). */
const ONE_HOST = process.env.AXON_HOSTS_ONE_HOST === '1';
/** `AXON_HOSTS_FAULTS=0`: the baseline and the throughput window only. */
const FAULTS = !ONE_HOST && process.env.AXON_HOSTS_FAULTS !== '0';
/** Connections between hosts through delay proxies (fault c's latency); needs nft's redirect. */
const DELAY_PROXY = !ONE_HOST && NFT && process.env.AXON_HOSTS_DELAY_PROXY !== '0';
/** Fault (c): each byte between two hosts this late, each way. */
const ADDED_LATENCY_MS = 200;
const BURST_SENDERS = 24;
/** Replicas per master (`AXON_HOSTS_REPLICAS`, 1 or 2: with 2, every range keeps one when a host is cut). */
const REPLICAS = Number(process.env.AXON_HOSTS_REPLICAS ?? '1');
/**
 * Redis's own guard on each master (`AXON_HOSTS_MIN_REPLICAS=<n>:<max lag s>`): refuse writes
 * (NOREPLICAS) while fewer than n replicas acknowledged within the lag. Off by default.
 */
/**
 * Redis `repl-timeout` on every node (`AXON_HOSTS_REPL_TIMEOUT`, s; Redis's default is 60): a
 * replication link left silent by a partition (TCP's backed-off retransmissions) is dropped and
 * made again this soon after the heal, rather than after a minute in which the replica falls behind.
 */
const REPL_TIMEOUT_SEC = Number(process.env.AXON_HOSTS_REPL_TIMEOUT ?? '5');
const MIN_REPLICAS = process.env.AXON_HOSTS_MIN_REPLICAS ? (([n, lag]) => ({ replicas: Number(n), maxLagSec: Number(lag ?? '10') }))(process.env.AXON_HOSTS_MIN_REPLICAS.split(':')) : undefined;
const BURST_MS = 30_000;
/** Redis's ports and cluster bus ports on the three-host bed (7001 a master, 7002… replicas). */
const REDIS_PORTS = Array.from({ length: 1 + REPLICAS }, (_, i) => 7001 + i).flatMap((p) => [p, p + 10_000]);
const place = (h: string) => (ONE_HOST ? 'h1' : h);
/** Each process its own port on its host (all on one host in the one-host run). */
const portOf = (i: number, kind: 'front' | 'worker') => (kind === 'front' ? PORT : PORT + 100) + (ONE_HOST ? i : 0);
if (!unavailable && !NFT) console.warn('[hosts] nft not installed: faults (b2) split brain and (c) packet loss are skipped (apt-get install nftables)');

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let bed: NetnsBed;
let cluster: BedRedisCluster;
let dataDir: string;
let load: { proc: BedProcess; lines: AsyncIterator<string> };
const workers = new Map<string, BedProcess>();
const fronts = new Map<string, BedProcess>();
const notes: Record<string, unknown> = {};
const proxies: DelayProxy[] = [];

function axonEnv(host: string, name: string, port = PORT): Record<string, string> {
  return {
    AXON_SERVER_NAME: 'bed.test',
    AXON_BIND_HOST: bed.address(host),
    AXON_PORT: String(port),
    AXON_PUBLIC_BASE_URL: `http://${bed.address(host)}:${port}`,
    AXON_DATA_DIR: join(dataDir, name),
    AXON_SIGNING_KEY_PATH: join(dataDir, 'signing.key'),
    AXON_REDIS_MODE: 'cluster',
    AXON_REDIS_CLUSTER_NODES: cluster.seeds.join(','),
    AXON_REDIS_KEY_PREFIX: 'bed:',
    AXON_ROOM_SHARDS: String(SHARDS),
    AXON_USER_SHARDS: String(SHARDS),
    AXON_LEASE_TTL_MS: String(LEASE_TTL_MS),
    AXON_FEDERATION_ENABLED: 'false',
    AXON_RATE_LIMIT_ENABLED: 'false',
    AXON_REGISTRATION_ENABLED: 'true',
    AXON_PRESENCE_ENABLED: 'false',
    AXON_LOG_LEVEL: 'info',
    AXON_METRICS_PORT: '0',
    AXON_REDIS_WAIT_REPLICAS: String(WAIT_REPLICAS),
  };
}

async function waitLog(p: BedProcess, text: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!readFileSync(p.logFile, 'utf8').includes(text)) {
    if (p.child.exitCode !== null) throw new Error(`${p.name} exited (${p.child.exitCode}); log ${p.logFile}:\n${readFileSync(p.logFile, 'utf8').slice(-2000)}`);
    if (Date.now() > deadline) throw new Error(`${p.name}: no "${text}" within ${timeoutMs / 1000} s; log ${p.logFile}`);
    await sleep(250);
  }
}

function send(line: string): void {
  load.proc.child.stdin!.write(`${line}\n`);
}

async function nextLine(match: (o: any) => boolean, timeoutMs: number): Promise<any> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const r = await Promise.race([load.lines.next(), sleep(deadline - Date.now()).then(() => null)]);
    if (r === null) break;
    if (r.done) throw new Error(`load process ended; log ${load.proc.logFile}`);
    const o = JSON.parse(r.value);
    if (o.error) throw new Error(`load process failed: ${o.error}`);
    if (match(o)) return o;
  }
  throw new Error(`load process: no answer within ${timeoutMs / 1000} s`);
}

async function mark(label: string): Promise<void> {
  send(`mark ${label}`);
  await nextLine((o) => o.marked === label, 30_000);
}

/** `npm run cluster -- status --json`, run on a host of the bed (the runner has no address there). */
function clusterStatus(host: string): { workers: { worker: string; alive: boolean; shards: { room: number; user: number } }[] } {
  const out = bed.exec(host, [process.execPath, '--import', 'tsx', join(root, 'scripts', 'cluster.ts'), 'status', '--json'], { allowFail: true, env: axonEnv(host, 'status') });
  try {
    return JSON.parse(out);
  } catch {
    return { workers: [] };
  }
}

async function waitShardsOwnedBy(host: string, live: string[], timeoutMs: number): Promise<number> {
  const started = Date.now();
  while (Date.now() - started < timeoutMs) {
    const s = clusterStatus(host);
    const owned = s.workers.filter((w) => live.includes(w.worker)).reduce((n, w) => n + w.shards.room + w.shards.user, 0);
    if (owned === 2 * SHARDS) return Date.now() - started;
    await sleep(1000);
  }
  throw new Error(`shards not all held by ${live.join(', ')} within ${timeoutMs / 1000} s`);
}

describe.skipIf(unavailable !== null)('past one machine: three hosts, a Redis Cluster, faults under load', () => {
  beforeAll(async () => {
    const stale = removeStaleBeds();
    if (stale.length) console.warn(`[hosts] removed a dead run's namespaces: ${stale.join(' ')}`);
    dataDir = mkdtempSync(join(tmpdir(), 'axon-hosts-'));
    bed = new NetnsBed(
      [...HOSTS.map((name, i) => ({ name, octet: i + 1 })), { name: CLIENT, octet: 10 }],
      join(dataDir, 'logs'),
    );
    bed.build();
    // Before anything connects: only connections opened after the redirect go through a proxy.
    if (DELAY_PROXY) for (const h of HOSTS) proxies.push(await bed.routeThroughProxy(h, HOSTS.filter((o) => o !== h), REDIS_PORTS, 10_000));
    notes.layout = ONE_HOST ? 'one host' : DELAY_PROXY ? 'three hosts, links through delay proxies' : 'three hosts, direct links';
    cluster = await startBedRedisCluster(bed, HOSTS, dataDir, { nodeTimeoutMs: NODE_TIMEOUT_MS, replicas: REPLICAS, place, minReplicasToWrite: MIN_REPLICAS, replTimeoutSec: REPL_TIMEOUT_SEC });
    notes.redis = { replicasPerMaster: REPLICAS, minReplicasToWrite: MIN_REPLICAS ?? null, replTimeoutSec: REPL_TIMEOUT_SEC };
    loadOrCreateSigningKeys(join(dataDir, 'signing.key'));
    HOSTS.forEach((h, i) => {
      const w = `w${i + 1}`;
      workers.set(h, bed.spawn(place(h), w, [process.execPath, '--import', 'tsx', join(root, 'src', 'worker-main.ts'), '--id', w], axonEnv(place(h), w, portOf(i, 'worker'))));
    });
    for (const w of workers.values()) await waitLog(w, 'worker started', 180_000);
    HOSTS.forEach((h, i) => {
      const f = `f${i + 1}`;
      fronts.set(h, bed.spawn(place(h), f, [process.execPath, '--import', 'tsx', join(root, 'src', 'front-main.ts'), '--id', f], axonEnv(place(h), f, portOf(i, 'front'))));
    });
    for (const f of fronts.values()) await waitLog(f, 'front listening', 180_000);
    const config = {
      fronts: HOSTS.map((h, i) => `http://${bed.address(place(h))}:${portOf(i, 'front')}`),
      senders: 6,
      burstSenders: BURST_SENDERS,
      readers: 2,
      rooms: 4,
      historyFile: join(dataDir, 'history.json'),
      requestTimeoutMs: 20_000,
    };
    const proc = bed.spawn(CLIENT, 'load', [process.execPath, '--import', 'tsx', join(root, 'test', 'hosts', 'load-main.ts'), JSON.stringify(config)], {}, { pipeStdio: true });
    load = { proc, lines: createInterface({ input: proc.child.stdout! })[Symbol.asyncIterator]() };
    await nextLine((o) => o.ready, 180_000);
  }, 600_000);

  afterAll(() => {
    bed?.destroy();
    if (bed) expect(bed.leftovers()).toEqual([]);
    if (dataDir && !process.env.AXON_HOSTS_KEEP) rmSync(dataDir, { recursive: true, force: true });
  });

  it('serves load across hosts (baseline)', async () => {
    await mark('baseline start');
    await sleep(SETTLE_MS);
  }, 120_000);

  it(`takes ${BURST_SENDERS} more senders for ${BURST_MS / 1000} s (throughput window)`, async () => {
    await mark('throughput start');
    send('burst on');
    await nextLine((o) => o.burst === true, 30_000);
    await sleep(BURST_MS);
    send('burst off');
    await nextLine((o) => o.burst === false, 30_000);
    await sleep(SETTLE_MS);
  }, 180_000);

  it.skipIf(!FAULTS)('(a) a worker host cut off 30 s: its shards move, it is fenced, service returns', async () => {
    // Keep this fault to a worker: move h3's Redis master role to its replica first.
    const h3Master = cluster.nodes.find((n) => n.host === 'h3' && roleOf(bed, n) === 'master');
    await mark('handover-a start');
    if (h3Master) await handOver(bed, cluster.nodes, h3Master, 60_000);
    notes.aMasters = masterHosts(bed, cluster.nodes).map((n) => `${n.host}:${n.port}`);
    await sleep(5000);
    await mark('a start');
    const cutAt = Date.now();
    bed.cut('h3');
    try {
      notes.aShardsMovedMs = await waitShardsOwnedBy('h1', ['w1', 'w2'], WORKER_CUT_MS);
      await sleep(Math.max(0, WORKER_CUT_MS - (Date.now() - cutAt)));
    } finally {
      await mark('a heal');
      bed.heal('h3');
    }
    await waitClusterHealthy(bed, cluster.nodes, 120_000);
    await sleep(SETTLE_MS);
    const w3log = readFileSync(workers.get('h3')!.logFile, 'utf8');
    // Its commits refused by the fencing token once it was back, and the leases it found taken.
    notes.aW3FencedWrites = (w3log.match(/lease lost: a newer holder fenced this worker out/g) ?? []).length;
    notes.aW3LeasesFoundLost = (w3log.match(/"msg":"lease lost"/g) ?? []).length;
    expect(workers.get('h3')!.child.exitCode).toBeNull();
  }, 300_000);

  it.skipIf(!FAULTS)('(b) a Redis master host cut off until its replica is promoted', async () => {
    // h2 holds a master whose replica is on h3.
    const m2 = cluster.nodes.find((n) => n.host === 'h2' && roleOf(bed, n) === 'master') as BedRedisNode;
    expect(m2, 'h2 holds a master').toBeTruthy();
    await mark('b start');
    const cutAt = Date.now();
    bed.cut('h2');
    try {
      while (!promotedFor(bed, cluster.nodes, m2)) {
        if (Date.now() - cutAt > 120_000) throw new Error('replica not promoted within 120 s');
        await sleep(200);
      }
      notes.bPromotedMs = Date.now() - cutAt;
      await sleep(10_000);
    } finally {
      await mark('b heal');
      bed.heal('h2');
    }
    await waitClusterHealthy(bed, cluster.nodes, 120_000);
    await sleep(SETTLE_MS);
  }, 300_000);

  it.skipIf(!FAULTS || !NFT)('(b2) split brain: a master cut off from the other hosts, not from the clients', async () => {
    // Give h2 a master again (its slots' home), then cut h2 from h1 and h3 only.
    const h2Home = cluster.nodes.find((n) => n.home === 'h2' && roleOf(bed, n) === 'master')!;
    await mark('handover-b2 start');
    const m2 = h2Home.host === 'h2' ? h2Home : await handOver(bed, cluster.nodes, h2Home, 60_000, 'h2');
    await sleep(5000);
    // Redis-level evidence beside Axon's history: writers on h2 acknowledged by the master alone,
    // and acknowledged only after WAIT 1; which of them survive the master's return as a replica.
    const probe = startReplicationProbe(bed, 'h2', m2, 1500, 200);
    await sleep(2000);
    await mark('b2 start');
    const cutAt = Date.now();
    bed.isolateFrom('h2', ['h1', 'h3']);
    try {
      while (!promotedFor(bed, cluster.nodes, m2)) {
        if (Date.now() - cutAt > 120_000) throw new Error('replica not promoted within 120 s');
        await sleep(200);
      }
      notes.b2PromotedMs = Date.now() - cutAt;
      await sleep(10_000);
    } finally {
      // Healed even when the fault failed, so that the faults after it start from a whole bed.
      await mark('b2 heal');
      bed.clearFilters('h2');
    }
    await waitClusterHealthy(bed, cluster.nodes, 120_000);
    const acked = await probe.done;
    const slotMaster = cluster.nodes.find((n) => n.home === m2.home && roleOf(bed, n) === 'master')!;
    const plainKept = probeSurvivors(bed, 'h2', slotMaster, probe.tag, 'plain', acked.plain);
    const waitedKept = probeSurvivors(bed, 'h2', slotMaster, probe.tag, 'wait', acked.waited);
    notes.b2RedisProbe = {
      plainAcknowledged: acked.plain.length,
      plainLost: acked.plain.length - plainKept.length,
      waitAcknowledged: acked.waited.length,
      waitLost: acked.waited.length - waitedKept.length,
    };
    // A write acknowledged after WAIT 1 reached the replica that was promoted: none may be lost.
    expect(waitedKept.length).toBe(acked.waited.length);
    await sleep(SETTLE_MS);
  }, 300_000);

  it.skipIf(!FAULTS || !NFT)(`(c) ${DELAY_PROXY ? `${ADDED_LATENCY_MS} ms added latency and ` : ''}5 % packet loss between the hosts for a minute`, async () => {
    notes.cAddedLatencyMs = DELAY_PROXY ? ADDED_LATENCY_MS : 0;
    await mark('c start');
    for (const p of proxies) await p.setDelay(ADDED_LATENCY_MS);
    for (const h of HOSTS) bed.lossTo(h, HOSTS.filter((o) => o !== h), 5);
    await sleep(60_000);
    await mark('c heal');
    for (const p of proxies) await p.setDelay(0);
    for (const h of HOSTS) bed.clearFilters(h);
    await waitClusterHealthy(bed, cluster.nodes, 120_000);
    await sleep(SETTLE_MS);
  }, 300_000);

  it.skipIf(!FAULTS)('(d) a front host cut off mid-request', async () => {
    // Hand h1's master roles away first so that this cut is the front's (and its worker's) alone.
    await mark('handover-d start');
    for (const n of cluster.nodes.filter((x) => x.host === 'h1' && roleOf(bed, x) === 'master')) await handOver(bed, cluster.nodes, n, 60_000);
    notes.dMasters = masterHosts(bed, cluster.nodes).map((n) => `${n.host}:${n.port}`);
    await sleep(5000);
    await mark('d start');
    bed.cut('h1');
    await sleep(20_000);
    await mark('d heal');
    bed.heal('h1');
    await waitClusterHealthy(bed, cluster.nodes, 120_000);
    await sleep(SETTLE_MS);
  }, 300_000);

  it('loses, duplicates or mixes up no acknowledged message (history check)', async () => {
    send('stop');
    await nextLine((o) => o.done, 300_000);
    const history = JSON.parse(readFileSync(join(dataDir, 'history.json'), 'utf8')) as History;
    const check = checkHistory(history);
    // Without waitReplicas, a message acknowledged by the cut-off master during the split brain may
    // be lost when it rejoins as a replica: documented, counted, tolerated in that mode only.
    const b2 = { start: history.marks.find((m) => m.label === 'b2 start')?.t, heal: history.marks.find((m) => m.label === 'b2 heal')?.t };
    const lostToAsyncReplication =
      WAIT_REPLICAS === 0 && b2.start !== undefined ? check.lost.filter((l) => l.ackedAt >= b2.start! && l.ackedAt <= (b2.heal ?? Number.POSITIVE_INFINITY)) : [];
    const tolerated = new Set(lostToAsyncReplication.map((l) => l.eventId));
    const violations = check.violations.filter((v) => ![...tolerated].some((id) => v.includes(id)));
    const figures: FaultFigures[] = ['baseline', 'throughput', 'handover-a', 'a', 'b', 'handover-b2', 'b2', 'c', 'handover-d', 'd'].filter((f) => history.marks.some((m) => m.label === `${f} start`)).map((f) => faultFigures(history, f));
    const at = (label: string) => history.marks.find((m) => m.label === label)?.t;
    /** Acknowledged sends per second and the acknowledged attempts' latency between two moments. */
    const window = (from: number, to: number) => {
      const acks = history.sends.filter((s) => s.eventId && s.t1 >= from && s.t1 < to);
      const latencies = acks.map((s) => s.t1 - s.t0).sort((a, b) => a - b);
      return {
        sendsPerSecond: Math.round((acks.length / ((to - from) / 1000)) * 10) / 10,
        p50Ms: latencies[Math.floor(latencies.length * 0.5)] ?? null,
        p99Ms: latencies[Math.floor(latencies.length * 0.99)] ?? null,
      };
    };
    const results = {
      ranAt: new Date().toISOString(),
      waitReplicas: WAIT_REPLICAS,
      check: { ...check, violations: check.violations.slice(0, 50), lost: check.lost.slice(0, 50) },
      lostToAsyncReplication: lostToAsyncReplication.length,
      rereadAfterRollback: check.rereadAfterRollback.length,
      layout: notes.layout,
      baseline: window(at('baseline start')!, at('throughput start')!),
      // The throughput window: 6 + 24 senders, one message in flight each.
      throughput: { senders: 6 + BURST_SENDERS, ...window(at('burst on')!, at('burst off')!) },
      figures,
      notes,
    };
    const variant = `${ONE_HOST ? 'onehost-' : FAULTS ? '' : `nofaults-${DELAY_PROXY ? 'proxied-' : 'direct-'}`}wait${WAIT_REPLICAS}${REPLICAS > 1 ? `-replicas${REPLICAS}` : ''}${MIN_REPLICAS ? `-minreplicas${MIN_REPLICAS.replicas}` : ''}`;
    const out = process.env.AXON_HOSTS_RESULTS ?? join(root, 'test', 'hosts', `last-run-${variant}.json`);
    writeFileSync(out, `${JSON.stringify(results, null, 2)}\n`);
    console.log(JSON.stringify(results, null, 2));
    expect(check.acknowledged).toBeGreaterThan(0);
    expect(violations).toEqual([]);
  }, 600_000);
});
