/**
 * A Redis Cluster across the bed's hosts: a master on each (port 7001) and, on the next host, its
 * replica (port 7002) — host i's replica follows host i-1's master, so no host holds two copies of
 * a slot. With two replicas per master, host i also follows host i-2's master (port 7003). For the
 * one-host comparison every node runs on one host (ports 7001 on). Same durability flags as Axon's managed Redis (AOF, fsync on every write). Nodes are
 * driven with `redis-cli` run inside their host's namespace (the test runner has no address on
 * the bed's network).
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { clusterSlot } from '../../src/store/cluster-slot';
import type { NetnsBed } from './netns-bed';

export const MASTER_PORT = 7001;
const SLOTS = 16_384;

export interface BedRedisNode {
  host: string;
  port: number;
  /** Created as the master of its slot range (true) or as its replica. */
  createdMaster: boolean;
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

/**
 * `place` maps a logical host (a slot range's home) to the bed host its nodes run on: the identity
 * for the three-host bed; everything on one host for the one-host comparison, where the nodes
 * then take the next ports (7001…7006).
 */
export async function startBedRedisCluster(
  bed: NetnsBed,
  hosts: string[],
  dataDir: string,
  opts: {
    nodeTimeoutMs: number;
    replicas: number;
    place?: (host: string) => string;
    minReplicasToWrite?: { replicas: number; maxLagSec: number };
    /** `repl-timeout` (s): how long a silent replication link is kept; the master pings its replicas every second. */
    replTimeoutSec: number;
  },
): Promise<BedRedisCluster> {
  const place = opts.place ?? ((h: string) => h);
  const nodes: BedRedisNode[] = [];
  const nextPort = new Map<string, number>();
  const add = (logical: string, home: string, createdMaster: boolean) => {
    const host = place(logical);
    const port = nextPort.get(host) ?? MASTER_PORT;
    nextPort.set(host, port + 1);
    nodes.push({ host, port, home, createdMaster });
  };
  hosts.forEach((h, i) => {
    add(h, h, true);
    // Host i holds replicas of the masters of hosts i-1, i-2…: never two copies of one range.
    for (let r = 1; r <= opts.replicas; r++) add(h, hosts[(i + hosts.length - r) % hosts.length]!, false);
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
      '--cluster-node-timeout', String(opts.nodeTimeoutMs),
      // Keep the placement: with two replicas per master Redis would otherwise move one to a master
      // left without a reachable replica (a cut host), and the master it left may then have its
      // only other replica on the next host cut off (seen in fault d: WAIT 1 failing for a range).
      '--cluster-allow-replica-migration', 'no',
      '--repl-timeout', String(opts.replTimeoutSec),
      '--repl-ping-replica-period', '1',
      ...(opts.minReplicasToWrite ? ['--min-replicas-to-write', String(opts.minReplicasToWrite.replicas), '--min-replicas-max-lag', String(opts.minReplicasToWrite.maxLagSec)] : []),
      // Say its own address: the bed's delay proxy connects from a host's second address, which
      // Redis would otherwise take for the node's on the cluster bus.
      '--cluster-announce-ip', bed.address(n.host),
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
  const masters = nodes.filter((n) => n.createdMaster);
  bed.exec(masters[0]!.host, ['redis-cli', '--cluster', 'create', ...masters.map((m) => `${bed.address(m.host)}:${m.port}`), '--cluster-replicas', '0', '--cluster-yes']);
  const ids = new Map(masters.map((m) => [m.home, redisCli(bed, m.host, m.port, ['CLUSTER', 'MYID']).trim()]));
  const first = masters[0]!;
  for (const r of nodes.filter((n) => !n.createdMaster)) {
    redisCli(bed, r.host, r.port, ['CLUSTER', 'MEET', bed.address(first.host), String(first.port)]);
  }
  // A node must know its master (through gossip) before it can be told to replicate it.
  for (const r of nodes.filter((n) => !n.createdMaster)) {
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
      const want = nodes.filter((x) => x.home === n.home).length - 1;
      if (Number(r.connected_slaves) < want) return `${n.host}:${n.port} master with ${r.connected_slaves} of ${want} replicas`;
    } else if (r.master_link_status !== 'up' || r.master_sync_in_progress === '1') return `${n.host}:${n.port} replica link ${r.master_link_status}`;
  }
  const ranges = new Set(nodes.map((n) => n.home)).size;
  return masters === ranges ? '' : `${masters} masters, want ${ranges}`;
}

export function roleOf(bed: NetnsBed, n: BedRedisNode): string {
  return nodeInfo(bed, n, 'replication').role ?? 'unreachable';
}

/** Another node of `m`'s slot range that is master now (its replica promoted), or null. */
export function promotedFor(bed: NetnsBed, nodes: BedRedisNode[], m: BedRedisNode): BedRedisNode | null {
  return nodes.find((n) => n !== m && n.home === m.home && roleOf(bed, n) === 'master') ?? null;
}

/** Hosts that hold a master now. */
export function masterHosts(bed: NetnsBed, nodes: BedRedisNode[]): BedRedisNode[] {
  return nodes.filter((n) => roleOf(bed, n) === 'master');
}

/**
 * Move the master role of `home`'s slots to its replica with `CLUSTER FAILOVER` (a coordinated
 * handover: the replica catches up first, nothing is lost), and wait until it is master.
 */
export async function handOver(bed: NetnsBed, nodes: BedRedisNode[], from: BedRedisNode, timeoutMs: number, toHost?: string): Promise<BedRedisNode> {
  // With two replicas per master, `toHost` says which one (the first other node otherwise).
  const to = nodes.find((n) => n !== from && n.home === from.home && (toHost === undefined || n.host === toHost))!;
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
