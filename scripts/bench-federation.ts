/**
 * `npm run bench:federation`: federation figures (issue 14 item 10). Every server runs on its own
 * loopback IP with an IP-literal server name, TLS from a throwaway CA (scripts/lib/test-ca.ts), as
 * the federation e2e tests do. Axon runs as separate processes (scripts/lib/axon-bench-cluster.ts:
 * managed redis-server with `appendfsync always`, worker and front processes). A script, not a
 * test: it prints figures and asserts only that what it counted arrived.
 *
 *   (1) ingest: a signing peer (scripts/lib/signing-peer.ts) joins Axon rooms with make_join/send_join
 *       and sends transactions of 50 PDUs, one in flight, as a peer's sender does: all into one
 *       room (each PDU on the previous one), and spread over 10 rooms (a chain per room). PDUs/s
 *       and the p50/p99 of the transaction's round trip.
 *   (2) send: a local user sends M messages into a room whose other members are on N servers
 *       (N = 1, 4, 10 signing peers in this script, each joined by send_join, each accepting and
 *       counting transactions). Time from the first send until every destination has every event.
 *   (3) remote join: a room of K members is built on a second Axon (its local users register and
 *       join), then a user of the first Axon joins it over federation (make_join/send_join; with
 *       faster joins, MSC3706, the answer leaves the members out and the rest comes in the
 *       background). Time of the /join call, time until the user's first message is accepted
 *       (can send), time until the joining server has the full state (its /joined_members counts
 *       every member), and PSS (from /proc/<pid>/smaps_rollup) of the joining Axon's processes and
 *       its redis-server before and after. The same join by a user of a third Axon with
 *       `federation.fasterJoins` off (BENCH_FULL_JOIN=0 leaves it out), and, with --vs synapse,
 *       by a Synapse user (Synapse joins with partial state by default).
 *
 * Options: --quick (small sizes), --big (phase 3 also with 10,000 members), --only 1,2,3,
 * --workers N (per Axon, default 1). Env: BENCH_TXNS (phase 1 transactions, default 100),
 * BENCH_MESSAGES (phase 2, default 500), BENCH_MEMBERS (phase 3, default 1000).
 * `--vs synapse`: a Synapse (scripts/lib/synapse-peer.ts; installed by scripts/lib/ensure.sh's
 * ensure_synapse, found through AXON_PEERS_DIR) joins the same Axon-hosted room in the same run.
 */
import { loadavg } from 'node:os';
import { computeEventId } from '../src/protocol/event-hashing';
import type { JsonObject } from '../src/protocol/json';
import { requireRoomVersion } from '../src/protocol/room-versions';
import { type AxonBench, startAxonBench } from './lib/axon-bench-cluster';
import { freePort, percentile, pool, round, sleep, table, writeBenchResults } from './lib/bench-util';
import { C, enc, MatrixLoad, type User } from './lib/matrix-load';
import { pssKb } from './lib/proc-stats';
import { fedRequest, SigningPeer } from './lib/signing-peer';
import { loopbackServerName, SYNAPSE_VERSION, type SynapsePeer, startSynapse, synapseInstallation } from './lib/synapse-peer';
import { createTestCa, type TestCa } from './lib/test-ca';

const args = process.argv.slice(2);
const flag = (f: string) => args.includes(f);
const opt = (f: string) => {
  const i = args.indexOf(f);
  return i >= 0 ? args[i + 1] : undefined;
};
const QUICK = flag('--quick');
const BIG = flag('--big');
const ONLY = new Set((opt('--only') ?? '1,2,3').split(','));
const WORKERS = Number(opt('--workers') ?? 1);
const VS_SYNAPSE = opt('--vs') === 'synapse';
const synapseInstall = VS_SYNAPSE ? synapseInstallation() : null;
if (synapseInstall && !synapseInstall.ok) console.warn(`--vs synapse: skipped. ${synapseInstall.reason}`);
const TXNS = Number(process.env.BENCH_TXNS ?? (QUICK ? 10 : 100));
const MESSAGES = Number(process.env.BENCH_MESSAGES ?? (QUICK ? 50 : 500));
/** Local joins in flight while the big room is built (BENCH_BUILD_CONCURRENCY; 20 by default). */
const BUILD_CONCURRENCY = Number(process.env.BENCH_BUILD_CONCURRENCY ?? 20);
const MEMBERS = process.env.BENCH_MEMBERS ? [Number(process.env.BENCH_MEMBERS)] : QUICK ? [100] : BIG ? [1000, 10_000] : [1000];
const DESTINATIONS = QUICK ? [1, 4] : [1, 4, 10];
const V10 = requireRoomVersion('10');
const PDUS_PER_TXN = 50;

const log = (msg: string) => process.stderr.write(`[bench-federation ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);

interface FedAxon {
  bench: AxonBench;
  serverName: string;
  federationUrl: string;
  m: MatrixLoad;
}

/** An Axon cluster on `ip` with its federation listener (TLS from `ca`), loopback allowed, ready. */
async function startFedAxon(ip: string, ca: TestCa, extraEnv: Record<string, string> = {}): Promise<FedAxon> {
  const fedPort = await freePort(ip);
  const leaf = ca.leaf(ip);
  const serverName = `${ip}:${fedPort}`;
  const bench = await startAxonBench({
    workers: WORKERS,
    fronts: 1,
    shards: 64,
    host: ip,
    serverName,
    stderr: 'inherit',
    env: { AXON_FEDERATION_ENABLED: 'true', AXON_FEDERATION_PORT: String(fedPort), AXON_FEDERATION_TLS_CERT: leaf.certPath, AXON_FEDERATION_TLS_KEY: leaf.keyPath, AXON_FEDERATION_CA: ca.caPath, AXON_FEDERATION_IP_BLOCKLIST: '', ...extraEnv },
  });
  const federationUrl = `https://${ip}:${fedPort}`;
  const m = new MatrixLoad(bench.url);
  await m.waitUp(120_000);
  const deadline = Date.now() + 60_000;
  for (;;) {
    const r = await fedRequest(ca.caPath, `${federationUrl}/_matrix/federation/v1/version`, 'GET', {}).catch(() => null);
    if (r?.status === 200) break;
    if (Date.now() > deadline) throw new Error(`${serverName}: federation listener not up`);
    await sleep(200);
  }
  return { bench, serverName, federationUrl, m };
}

/** A signing peer's user joins `roomId` on `axon` (make_join, sign, send_join v2); what it needs to build events after. */
async function peerJoin(peer: SigningPeer, axon: FedAxon, roomId: string, localpart: string): Promise<{ userId: string; joinId: string; depth: number; auth: string[] }> {
  const userId = `@${localpart}:${peer.serverName}`;
  const made = await peer.request(axon, 'GET', `/_matrix/federation/v1/make_join/${enc(roomId)}/${enc(userId)}?ver=10`);
  if (made.status !== 200) throw new Error(`make_join: ${made.status} ${made.text}`);
  const { pdu, id } = peer.sign(made.body.event as JsonObject, V10);
  const sent = await peer.request(axon, 'PUT', `/_matrix/federation/v2/send_join/${enc(roomId)}/${enc(id)}`, pdu);
  if (sent.status !== 200) throw new Error(`send_join: ${sent.status} ${sent.text}`);
  const state = sent.body.state as JsonObject[];
  const idOf = (type: string) => {
    const e = state.find((x) => x.type === type && x.state_key === '');
    if (!e) throw new Error(`send_join answer without ${type}`);
    return computeEventId(e, V10);
  };
  return { userId, joinId: id, depth: pdu.depth as number, auth: [idOf('m.room.create'), idOf('m.room.power_levels'), id] };
}

interface Chain {
  roomId: string;
  sender: string;
  auth: string[];
  prev: string;
  depth: number;
}

function nextMessage(peer: SigningPeer, c: Chain, n: number): JsonObject {
  c.depth += 1;
  const { pdu, id } = peer.sign({ room_id: c.roomId, sender: c.sender, type: 'm.room.message', content: { msgtype: 'm.text', body: `ingest ${n}` }, origin_server_ts: Date.now(), depth: c.depth, prev_events: [c.prev], auth_events: c.auth }, V10);
  peer.events.delete(id); // the bench peer serves no history: keep memory flat
  c.prev = id;
  return pdu;
}

function pssOf(pids: number[]): number {
  return pids.reduce((sum, pid) => sum + pssKb(pid), 0);
}

// ---------------------------------------------------------------- (1) ingest
async function phaseIngest(ca: TestCa, results: Record<string, unknown>): Promise<void> {
  const axon = await startFedAxon('127.0.0.141', ca);
  const peer = await SigningPeer.start('127.0.0.142', ca);
  peer.recordRequests = false;
  try {
    const alice = await axon.m.register('alice');
    const rows: Record<string, unknown>[] = [];
    for (const rooms of [1, 10]) {
      const chains: Chain[] = [];
      for (let r = 0; r < rooms; r++) {
        const roomId = await axon.m.createRoom(alice, { room_version: '10' });
        const j = await peerJoin(peer, axon, roomId, 'pat');
        chains.push({ roomId, sender: j.userId, auth: j.auth, prev: j.joinId, depth: j.depth });
      }
      const latencies: number[] = [];
      let failed = 0;
      let pduSeq = 0;
      // Built and signed before the clock starts: the figure is Axon's, not the peer's signing.
      const txns = Array.from({ length: TXNS }, () => Array.from({ length: PDUS_PER_TXN }, (_x, i) => nextMessage(peer, chains[i % rooms]!, pduSeq++)));
      const started = performance.now();
      for (let t = 0; t < TXNS; t++) {
        const pdus = txns[t]!;
        const t0 = performance.now();
        const r = await peer.sendTransaction(axon, `bench-${rooms}-${t}-${Date.now()}`, pdus);
        latencies.push(performance.now() - t0);
        if (r.status !== 200) throw new Error(`send: ${r.status} ${r.text.slice(0, 300)}`);
        failed += Object.values((r.body.pdus ?? {}) as Record<string, { error?: string }>).filter((x) => x.error).length;
      }
      const seconds = (performance.now() - started) / 1000;
      latencies.sort((a, b) => a - b);
      // Check that the last PDU of every chain is in the room (the timeline's newest event).
      let persisted = 0;
      for (const c of chains) {
        const page = await axon.m.ok('GET', `${C}/rooms/${enc(c.roomId)}/messages?dir=b&limit=1`, { token: alice.token });
        if (page.chunk?.[0]?.event_id === c.prev) persisted++;
      }
      const row = { rooms, txns: TXNS, pdus: TXNS * PDUS_PER_TXN, failed, pdusPerSec: round((TXNS * PDUS_PER_TXN) / seconds, 0), p50ms: round(percentile(latencies, 50)), p99ms: round(percentile(latencies, 99)), chainsHeadPersisted: `${persisted}/${rooms}` };
      rows.push(row);
      log(`ingest into ${rooms} room(s): ${JSON.stringify(row)}`);
    }
    console.log(`\n(1) Inbound transactions of ${PDUS_PER_TXN} PDUs from one signing peer, one in flight (Axon: ${WORKERS} worker, 1 front)`);
    console.log(table(rows, ['rooms', 'txns', 'pdus', 'failed', 'pdusPerSec', 'p50ms', 'p99ms', 'chainsHeadPersisted'], ['rooms', 'txns', 'PDUs', 'failed', 'PDUs/s', 'txn p50 ms', 'txn p99 ms', 'last PDU in timeline']));
    results.ingest = rows;
  } finally {
    await peer.close();
    await axon.bench.stop();
  }
}

// ---------------------------------------------------------------- (2) send
async function phaseSend(ca: TestCa, results: Record<string, unknown>): Promise<void> {
  const axon = await startFedAxon('127.0.0.143', ca);
  const maxN = Math.max(...DESTINATIONS);
  const peers: SigningPeer[] = [];
  for (let i = 0; i < maxN; i++) peers.push(await SigningPeer.start('127.0.0.144', ca));
  const seen = peers.map(() => new Map<string, Set<string>>()); // per peer: room → event ids
  const arrived = peers.map(() => new Map<string, number>()); // per peer: event id → when it arrived
  peers.forEach((p, i) => {
    p.recordRequests = false;
    p.onTransaction = (txn) => {
      for (const pdu of txn.pdus) {
        if (pdu.type !== 'm.room.message') continue;
        const room = pdu.room_id as string;
        if (!seen[i]!.has(room)) seen[i]!.set(room, new Set());
        const id = computeEventId(pdu, V10);
        seen[i]!.get(room)!.add(id);
        arrived[i]!.set(id, performance.now());
      }
    };
  });
  try {
    const alice = await axon.m.register('alice');
    const rows: Record<string, unknown>[] = [];
    for (const n of DESTINATIONS) {
      const roomId = await axon.m.createRoom(alice, { room_version: '10' });
      for (let i = 0; i < n; i++) await peerJoin(peers[i]!, axon, roomId, `member${i}`);
      await sleep(500); // let the joins' own transactions go out first
      const ids: string[] = [];
      const acked = new Map<string, number>();
      const started = performance.now();
      await pool(
        Array.from({ length: MESSAGES }, (_x, k) => k),
        10,
        async (k) => {
          ids[k] = await axon.m.send(alice, roomId, `fanout ${n} #${k}`, 60_000);
          acked.set(ids[k]!, performance.now());
        },
      );
      const sentMs = performance.now() - started;
      const deadline = performance.now() + 120_000;
      const complete = () => peers.slice(0, n).every((_p, i) => ids.every((id) => seen[i]!.get(roomId)?.has(id)));
      while (!complete() && performance.now() < deadline) await sleep(20);
      const doneMs = performance.now() - started;
      const missing = peers.slice(0, n).reduce((sum, _p, i) => sum + ids.filter((id) => !seen[i]!.get(roomId)?.has(id)).length, 0);
      // Per event: from the /send answer until the last of the N destinations has it.
      const lags = ids.map((id) => Math.max(...peers.slice(0, n).map((_p, i) => (arrived[i]!.get(id) ?? Infinity) - acked.get(id)!))).sort((a, b) => a - b);
      const row = { destinations: n, messages: MESSAGES, sendSec: round(sentMs / 1000, 2), allDeliveredSec: complete() ? round(doneMs / 1000, 2) : NaN, eventsPerSec: round(MESSAGES / (doneMs / 1000), 0), deliveriesPerSec: round((MESSAGES * n) / (doneMs / 1000), 0), lagP50ms: round(percentile(lags, 50)), lagP99ms: round(percentile(lags, 99)), missing };
      rows.push(row);
      log(`send to ${n} destination(s): ${JSON.stringify(row)}`);
    }
    console.log(`\n(2) Outbound: one local user sends M messages (10 in flight) into a room with one member on each of N servers (Axon: ${WORKERS} worker, 1 front)`);
    console.log(table(rows, ['destinations', 'messages', 'sendSec', 'allDeliveredSec', 'eventsPerSec', 'deliveriesPerSec', 'lagP50ms', 'lagP99ms', 'missing'], ['N', 'M', 'sends done s', 'all at all N s', 'events/s', 'PDU deliveries/s', 'send→all N p50 ms', 'p99 ms', 'missing']));
    results.send = rows;
  } finally {
    await Promise.all(peers.map((p) => p.close()));
    await axon.bench.stop();
  }
}

// ---------------------------------------------------------------- (3) remote join
async function phaseJoin(ca: TestCa, results: Record<string, unknown>): Promise<void> {
  const rows: Record<string, unknown>[] = [];
  for (const members of MEMBERS) {
    const synapseStarting: Promise<SynapsePeer> | null = synapseInstall?.ok ? loopbackServerName('127.0.0.147').then((serverName) => startSynapse({ serverName, ca, logLevel: 'WARNING' })) : null;
    synapseStarting?.catch(() => undefined);
    const host = await startFedAxon('127.0.0.145', ca);
    const joiner = await startFedAxon('127.0.0.146', ca);
    let slowJoiner: FedAxon | undefined;
    let synapse: SynapsePeer | undefined;
    try {
      const owner = await host.m.register('owner');
      const roomId = await host.m.createRoom(owner, { room_version: '10' });
      const buildStart = performance.now();
      let built = 1;
      await pool(
        Array.from({ length: members - 1 }, (_x, k) => k),
        BUILD_CONCURRENCY,
        async (k) => {
          const u: User = await host.m.register(`m${k}`);
          // A local join the room actor did not answer within its ask timeout (504 on a loaded
          // machine) is still applied; joining again is harmless, so the build retries rather than
          // losing a 20-minute room to one slow answer.
          for (let attempt = 1; ; attempt++) {
            try {
              await host.m.join(u, roomId, 120_000);
              break;
            } catch (err) {
              if (attempt >= 5) throw err;
              log(`big room: join of m${k} failed (${(err as Error).message.slice(0, 80)}), retrying`);
              await sleep(2000 * attempt);
            }
          }
          built++;
          if (built % 1000 === 0) log(`big room: ${built}/${members} members`);
        },
      );
      const buildSec = round((performance.now() - buildStart) / 1000, 1);
      /** One Axon user's join, timed: /join, first message accepted, full state on the joining server. */
      const axonJoin = async (axon: FedAxon, label: string, localpart: string, expectMembers: number) => {
        const user = await axon.m.register(localpart);
        await sleep(1000);
        const pssBefore = pssOf(axon.bench.pids());
        const t0 = performance.now();
        let joinError = '';
        await axon.m.ok('POST', `${C}/join/${enc(roomId)}?server_name=${enc(host.serverName)}`, { token: user.token, body: {}, timeoutMs: 600_000 }).catch((err: Error) => {
          joinError = err.message.slice(0, 200); // e.g. 504 at 10,000 members: printed, and the run goes on
        });
        const joinMs = performance.now() - t0;
        let sendMs = Number.NaN;
        let fullMs = Number.NaN;
        let seen = 0;
        if (!joinError) {
          await axon.m.ok('PUT', `${C}/rooms/${enc(roomId)}/send/m.room.message/${localpart}-first`, { token: user.token, body: { msgtype: 'm.text', body: 'first message' } });
          sendMs = performance.now() - t0;
          const deadline = Date.now() + 600_000;
          for (;;) {
            const joined = await axon.m.ok('GET', `${C}/rooms/${enc(roomId)}/joined_members`, { token: user.token });
            seen = Object.keys(joined.joined ?? {}).length;
            if (seen >= expectMembers || Date.now() > deadline) break;
            await sleep(100);
          }
          fullMs = performance.now() - t0;
        }
        await sleep(1000);
        const pssAfter = pssOf(axon.bench.pids());
        const row = { server: label, members, buildSec, joinSec: round(joinMs / 1000, 2), sendSec: round(sendMs / 1000, 2), fullSec: round(fullMs / 1000, 2), membersSeen: seen, pssBeforeMb: round(pssBefore / 1024), pssAfterMb: round(pssAfter / 1024), pssDeltaMb: round((pssAfter - pssBefore) / 1024), ...(joinError ? { error: joinError } : {}) };
        if (joinError) console.log(`(3) ${label}'s /join of the ${members}-member room failed after ${round(joinMs / 1000, 1)} s: ${joinError}`);
        rows.push(row);
        log(`remote join: ${JSON.stringify(row)}`);
      };
      await axonJoin(joiner, 'Axon (faster joins)', 'bob', members + 1);
      if (process.env.BENCH_FULL_JOIN !== '0') {
        slowJoiner = await startFedAxon('127.0.0.148', ca, { AXON_FEDERATION_FASTER_JOINS: 'false' });
        await axonJoin(slowJoiner, 'Axon (fasterJoins off)', 'dave', members + 2);
      }
      if (synapseStarting !== null) {
        synapse = await synapseStarting;
        const carol = await synapse.registerUser('carol', 'carol password');
        await sleep(1000);
        const before = pssKb(synapse.pid);
        const t1 = performance.now();
        const r = await synapse.call(carol, 'POST', `/join/${enc(roomId)}?server_name=${enc(host.serverName)}`, {});
        const ms = performance.now() - t1;
        if (r.status !== 200) throw new Error(`Synapse join: ${r.status} ${JSON.stringify(r.body)}\n${synapse.logTail(30)}`);
        const first = await synapse.call(carol, 'PUT', `/rooms/${enc(roomId)}/send/m.room.message/carol-first`, { msgtype: 'm.text', body: 'first message' });
        if (first.status !== 200) throw new Error(`Synapse send: ${first.status} ${JSON.stringify(first.body)}`);
        const sendMs = performance.now() - t1;
        const expectMembers = members + (slowJoiner ? 3 : 2);
        let seenCount = 0;
        const deadline = Date.now() + 600_000;
        for (;;) {
          const seen = await synapse.call(carol, 'GET', `/rooms/${enc(roomId)}/joined_members`);
          seenCount = Object.keys(seen.body.joined ?? {}).length;
          if (seenCount >= expectMembers || Date.now() > deadline) break;
          await sleep(100);
        }
        const fullMs = performance.now() - t1;
        await sleep(1000);
        const after = pssKb(synapse.pid);
        const srow = { server: `Synapse ${SYNAPSE_VERSION}`, members, buildSec, joinSec: round(ms / 1000, 2), sendSec: round(sendMs / 1000, 2), fullSec: round(fullMs / 1000, 2), membersSeen: seenCount, pssBeforeMb: round(before / 1024), pssAfterMb: round(after / 1024), pssDeltaMb: round((after - before) / 1024) };
        rows.push(srow);
        log(`remote join: ${JSON.stringify(srow)}`);
      }
    } finally {
      await Promise.all([host.bench.stop(), joiner.bench.stop(), slowJoiner?.bench.stop(), synapse?.stop() ?? synapseStarting?.then((x) => x.stop(), () => undefined)]);
    }
  }
  console.log(`\n(3) A user joins a remote room over federation (room built on a second Axon by local joins; PSS of the joining server's processes + its redis-server, or of the Synapse process (SQLite); ${WORKERS} worker, 1 front each)`);
  console.log(table(rows, ['server', 'members', 'buildSec', 'joinSec', 'sendSec', 'fullSec', 'membersSeen', 'pssBeforeMb', 'pssAfterMb', 'pssDeltaMb'], ['joining server', 'members', 'room built s', '/join s', 'can send s', 'full state s', 'joined_members', 'PSS before MB', 'PSS after MB', 'PSS Δ MB']));
  results.join = rows;
}

async function main(): Promise<void> {
  const meta = { date: new Date().toISOString(), loadAvgStart: loadavg().map((x) => round(x, 2)), quick: QUICK, workersPerAxon: WORKERS, txns: TXNS, pdusPerTxn: PDUS_PER_TXN, messages: MESSAGES, destinations: DESTINATIONS, members: MEMBERS, node: process.version };
  console.log(`bench-federation ${meta.date}  load average at start ${meta.loadAvgStart.join(' ')}  ${QUICK ? '(--quick)' : ''}`);
  console.log(`sizes: ${TXNS} txns × ${PDUS_PER_TXN} PDUs; ${MESSAGES} messages to N = ${DESTINATIONS.join(', ')}; remote room of ${MEMBERS.join(', ')} members; one run each`);
  const ca = createTestCa();
  const results: Record<string, unknown> = { meta };
  try {
    if (ONLY.has('1')) await phaseIngest(ca, results);
    if (ONLY.has('2')) await phaseSend(ca, results);
    if (ONLY.has('3')) await phaseJoin(ca, results);
  } finally {
    ca.cleanup();
  }
  (meta as Record<string, unknown>).loadAvgEnd = loadavg().map((x) => round(x, 2));
  console.log(`\nload average at end ${loadavg().map((x) => round(x, 2)).join(' ')}`);
  console.log(`results: ${writeBenchResults((stamp) => `federation-${stamp}.json`, results)}`);
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
