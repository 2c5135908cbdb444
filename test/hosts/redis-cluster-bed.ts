/**
 * A Redis Cluster across the bed's hosts: a master on each (port 7001) and, on the next host, its
 * replica (port 7002) — host i's replica follows host i-1's master, so no host holds both copies of
 * a slot. Same durability flags as Axon's managed Redis (AOF, fsync on every write). Nodes are
 * driven with `redis-cli` run inside their host's namespace (the test runner has no address on
 * the bed's network).
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { clusterSlot } from '../../src/store/cluster-slot';
import type { NetnsBed } from './netns-bed';

export const MASTER_PORT = 7001;
export const REPLICA_PORT = 7002;
const SLOTS = 16_384;

export interface BedRedisNode {
  host: string;
  port: number;
  /** The host whose master this node was created to hold or follow (the slot range's home). */
  home: string;
}

export interface BedRedisCluster {
  nodes: BedRedisNode[];
  /** `ip:port` seed list for AXON_REDIS_CLUSTER_NODES. */
  seeds: string[];
}

function parseInfo(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split(/\r?\n/)) {
    const i = line.indexOf(':');
    if (i > 0) out[line.slice(0, i)] = line.slice(i + 1).trim();
  }
  return out;
}

export function redisCli(bed: NetnsBed, host: string, port: number, args: string[], allowFail = false): string {
  return bed.exec(host, ['redis-cli', '-h', bed.address(host), '-p', String(port), ...args], { allowFail });
}

export function nodeInfo(bed: NetnsBed, n: BedRedisNode, section: string): Record<string, string> {
  return parseInfo(redisCli(bed, n.host, n.port, section === 'cluster' ? ['CLUSTER', 'INFO'] : ['INFO', section], true));
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function startBedRedisCluster(bed: NetnsBed, hosts: string[], dataDir: string, nodeTimeoutMs: number): Promise<BedRedisCluster> {
  const nodes: BedRedisNode[] = [];
  hosts.forEach((h, i) => {
    nodes.push({ host: h, port: MASTER_PORT, home: h });
    nodes.push({ host: h, port: REPLICA_PORT, home: hosts[(i + hosts.length - 1) % hosts.length]! });
  });
  for (const n of nodes) {
    const dir = join(dataDir, `redis-${n.host}-${n.port}`);
    mkdirSync(dir, { recursive: true });
    bed.spawn(n.host, `redis-${n.host}-${n.port}`, [
      'redis-server',
      '--port', String(n.port),
      '--bind', bed.address(n.host),
      '--dir', dir,
      '--appendonly', 'yes',
      '--appendfsync', 'always',
      '--save', '',
      '--daemonize', 'no',
      '--protected-mode', 'no',
      '--cluster-enabled', 'yes',
      '--cluster-config-file', join(dir, 'nodes.conf'),
      '--cluster-node-timeout', String(nodeTimeoutMs),
    ]);
  }
  // Every node answering PING.
  const deadline = Date.now() + 60_000;
  for (const n of nodes) {
    while (redisCli(bed, n.host, n.port, ['PING'], true).trim() !== 'PONG') {
      if (Date.now() > deadline) throw new Error(`redis ${n.host}:${n.port} did not start`);
      await sleep(100);
    }
  }
  const masters = nodes.filter((n) => n.port === MASTER_PORT);
  bed.exec(hosts[0]!, ['redis-cli', '--cluster', 'create', ...masters.map((m) => `${bed.address(m.host)}:${m.port}`), '--cluster-replicas', '0', '--cluster-yes']);
  const ids = new Map(masters.map((m) => [m.home, redisCli(bed, m.host, m.port, ['CLUSTER', 'MYID']).trim()]));
  for (const r of nodes.filter((n) => n.port === REPLICA_PORT)) {
    redisCli(bed, r.host, r.port, ['CLUSTER', 'MEET', bed.address(hosts[0]!), String(MASTER_PORT)]);
  }
  // A node must know its master (through gossip) before it can be told to replicate it.
  for (const r of nodes.filter((n) => n.port === REPLICA_PORT)) {
    const masterId = ids.get(r.home)!;
    while (!redisCli(bed, r.host, r.port, ['CLUSTER', 'NODES'], true).includes(masterId)) {
      if (Date.now() > deadline) throw new Error(`replica ${r.host}:${r.port} never learnt of its master`);
      await sleep(100);
    }
    redisCli(bed, r.host, r.port, ['CLUSTER', 'REPLICATE', masterId]);
  }
  await waitClusterHealthy(bed, nodes, 60_000);
  return { nodes, seeds: masters.map((m) => `${bed.address(m.host)}:${m.port}`) };
}

/**
 * Every node reports `cluster_state:ok` with all slots served, the cluster has one master per
 * slot range, and each master has a connected replica whose link is up.
 */
export async function waitClusterHealthy(bed: NetnsBed, nodes: BedRedisNode[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let why = '';
  while (Date.now() < deadline) {
    why = clusterProblem(bed, nodes);
    if (!why) return;
    await sleep(250);
  }
  throw new Error(`Redis Cluster on the bed not healthy within ${timeoutMs / 1000} s: ${why}`);
}

function clusterProblem(bed: NetnsBed, nodes: BedRedisNode[]): string {
  let masters = 0;
  for (const n of nodes) {
    const c = nodeInfo(bed, n, 'cluster');
    if (c.cluster_state !== 'ok' || Number(c.cluster_slots_ok) !== SLOTS) return `${n.host}:${n.port} state=${c.cluster_state} slots_ok=${c.cluster_slots_ok}`;
    const r = nodeInfo(bed, n, 'replication');
    if (r.role === 'master') {
      masters++;
      if (Number(r.connected_slaves) < 1) return `${n.host}:${n.port} master without a replica`;
    } else if (r.master_link_status !== 'up' || r.master_sync_in_progress === '1') return `${n.host}:${n.port} replica link ${r.master_link_status}`;
  }
  return masters === nodes.length / 2 ? '' : `${masters} masters, want ${nodes.length / 2}`;
}

export function roleOf(bed: NetnsBed, n: BedRedisNode): string {
  return nodeInfo(bed, n, 'replication').role ?? 'unreachable';
}

/** Hosts that hold a master now. */
export function masterHosts(bed: NetnsBed, nodes: BedRedisNode[]): BedRedisNode[] {
  return nodes.filter((n) => roleOf(bed, n) === 'master');
}

/**
 * Move the master role of `home`'s slots to its replica with `CLUSTER FAILOVER` (a coordinated
 * handover: the replica catches up first, nothing is lost), and wait until it is master.
 */
export async function handOver(bed: NetnsBed, nodes: BedRedisNode[], from: BedRedisNode, timeoutMs: number): Promise<BedRedisNode> {
  const to = nodes.find((n) => n !== from && n.home === from.home)!;
  redisCli(bed, to.host, to.port, ['CLUSTER', 'FAILOVER']);
  const deadline = Date.now() + timeoutMs;
  while (roleOf(bed, to) !== 'master' || roleOf(bed, from) !== 'slave') {
    if (Date.now() > deadline) throw new Error(`CLUSTER FAILOVER to ${to.host}:${to.port} did not finish`);
    await sleep(200);
  }
  return to;
}

/** A hash tag whose keys live in `slot` (found by trying tags). */
function tagForSlot(slot: number): string {
  for (let i = 0; ; i++) if (clusterSlot(`p${i}`) === slot) return `p${i}`;
}

/** The first slot a master serves (from its own `CLUSTER NODES` line). */
function firstSlotOf(bed: NetnsBed, master: BedRedisNode): number {
  const mine = redisCli(bed, master.host, master.port, ['CLUSTER', 'NODES']).split('\n').find((l) => l.includes('myself'));
  const range = mine?.split(' ').slice(8)[0];
  if (!range) throw new Error(`${master.host}:${master.port} serves no slot`);
  return Number(range.split('-')[0]);
}

export interface ReplicationProbe {
  /** Resolves with the acknowledged key numbers once the writer is done. */
  done: Promise<{ plain: number[]; waited: number[] }>;
  tag: string;
}

/**
 * Redis-level evidence of what asynchronous replication loses: two writers on `host` (the
 * master's side of a partition) each `SET {tag}:plain:i` / `SET {tag}:wait:i` every 10 ms for
 * `count` writes on one connection; the second follows each SET with `WAIT 1 <waitMs>` and counts
 * a write acknowledged only when a replica had it. Which acknowledged keys survive is read later
 * (probeSurvivors).
 */
export function startReplicationProbe(bed: NetnsBed, host: string, master: BedRedisNode, count: number, waitMs: number): ReplicationProbe {
  const tag = tagForSlot(firstSlotOf(bed, master));
  const writer = (name: string, wait: boolean) => {
    const script = `for i in $(seq 1 ${count}); do echo "SET {${tag}}:${name}:$i $i"; ${wait ? `echo "WAIT 1 ${waitMs}";` : ''} sleep 0.01; done | redis-cli -h ${bed.address(master.host)} -p ${master.port}`;
    const p = bed.spawn(host, `probe-${name}`, ['bash', '-c', script], {}, { pipeStdio: true });
    let out = '';
    p.child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
    });
    return p.exited.then(() => {
      const lines = out.split('\n').map((l) => l.trim()).filter((l) => l !== '');
      const acked: number[] = [];
      if (!wait) lines.forEach((l, i) => l === 'OK' && acked.push(i + 1));
      else for (let i = 0; i + 1 < lines.length; i += 2) if (lines[i] === 'OK' && Number(lines[i + 1]) >= 1) acked.push(i / 2 + 1);
      return acked;
    });
  };
  const plain = writer('plain', false);
  const waited = writer('wait', true);
  return { tag, done: Promise.all([plain, waited]).then(([p, w]) => ({ plain: p, waited: w })) };
}

/** Which of the acknowledged probe keys the cluster holds now, read from `master` (the slot's master now). */
export function probeSurvivors(bed: NetnsBed, host: string, master: BedRedisNode, tag: string, name: string, acked: number[]): number[] {
  if (acked.length === 0) return [];
  const input = acked.map((i) => `GET {${tag}}:${name}:${i}`).join('\n');
  const out = bed.execInput(host, ['redis-cli', '-h', bed.address(master.host), '-p', String(master.port)], input);
  const values = out.split('\n').map((l) => l.trim());
  return acked.filter((i, n) => values[n] === String(i));
}
