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
 *   (4) EDUs through one destination: to-device messages (one per request, 32 in flight) from a
 *       local user to a signing peer's user, and typing + read receipts of 20 local users at once
 *       (each starts and stops typing 10 times, then reads 15 events in order); EDUs/s from the
 *       first request until the receiver had them all. With `--vs synapse`: Axon → Synapse
 *       to-device (counted in the Synapse user's /sync), and the same loads sent by Synapse users
 *       to the same signing peer.
 *   (5) presence fan-out: a user sharing a room with users on 100 servers (signing peers in this
 *       process, each joined by send_join) changes presence 5 times; per change, the time until
 *       all 100 have it and the CPU the server spent. With `--vs synapse`, the same from Synapse.
 *
 * Options: --quick (small sizes), --big (phase 3 also with 10,000 members), --only 1,2,3,4,5,
 * --workers N (per Axon, default 1). Env: BENCH_TXNS (phase 1 transactions, default 100),
 * BENCH_MESSAGES (phase 2, default 500), BENCH_MEMBERS (phase 3, default 1000).
 * `--vs synapse`: a Synapse (scripts/lib/synapse-peer.ts; installed by scripts/lib/ensure.sh's
 * ensure_synapse, found through AXON_PEERS_DIR) joins the same Axon-hosted room in the same run.
 */
import { loadavg } from 'node:os';
import { installNativeEd25519Signer } from '../src/crypto/ed25519-native';
import { computeEventId } from '../src/protocol/event-hashing';
import type { JsonObject } from '../src/protocol/json';
import { requireRoomVersion } from '../src/protocol/room-versions';
import { type AxonBench, startAxonBench } from './lib/axon-bench-cluster';
import { freePort, percentile, pool, round, sleep, table, writeBenchResults } from './lib/bench-util';
import { C, enc, MatrixLoad, type User } from './lib/matrix-load';
import { cpuSeconds, pssKb } from './lib/proc-stats';
import { fedRequest, type Json, SigningPeer } from './lib/signing-peer';
import { loopbackServerName, type PeerSession, SYNAPSE_VERSION, type SynapsePeer, startSynapse, synapseInstallation } from './lib/synapse-peer';
import { createTestCa, type TestCa } from './lib/test-ca';

// libsodium as the ed25519 signer where it loads, as in every process entry (src/process-lifecycle.ts).
installNativeEd25519Signer();

const args = process.argv.slice(2);
const flag = (f: string) => args.includes(f);
const opt = (f: string) => {
  const i = args.indexOf(f);
  return i >= 0 ? args[i + 1] : undefined;
};
const QUICK = flag('--quick');
const BIG = flag('--big');
const ONLY = new Set((opt('--only') ?? '1,2,3,4,5').split(','));
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
async function peerJoin(peer: SigningPeer, axon: { serverName: string; federationUrl: string }, roomId: string, localpart: string): Promise<{ userId: string; joinId: string; depth: number; auth: string[] }> {
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

// ---------------------------------------------------------------- (4) EDUs through one destination
/** A client call on either server kind; throws unless 2xx. */
type Caller<U> = (u: U, method: string, path: string, body?: unknown) => Promise<Json>;

const axonCaller =
  (axon: FedAxon): Caller<User> =>
  (u, method, path, body) =>
    axon.m.ok(method, `${C}${path}`, { token: u.token, body: body ?? {}, timeoutMs: 120_000 });

const synapseCaller =
  (s: SynapsePeer): Caller<PeerSession> =>
  async (u, method, path, body) => {
    const r = await s.call(u, method, path, body ?? {});
    if (r.status < 200 || r.status >= 300) throw new Error(`${method} ${path}: ${r.status} ${JSON.stringify(r.body).slice(0, 200)}`);
    return r.body;
  };

/** What one signing peer received: EDUs counted per key (a tag the scenario chose), with the arrival time of the last one. */
class EduCounter {
  private readonly seen = new Map<string, Set<string>>();
  last = 0;
  constructor(private readonly keyOf: (edu: Json) => { key: string; id: string } | null) {}
  take(edus: Json[]): void {
    for (const e of edus) {
      const k = this.keyOf(e);
      if (!k) continue;
      if (!this.seen.has(k.key)) this.seen.set(k.key, new Set());
      const s = this.seen.get(k.key)!;
      if (!s.has(k.id)) {
        s.add(k.id);
        this.last = performance.now();
      }
    }
  }
  count(key: string): number {
    return this.seen.get(key)?.size ?? 0;
  }
}

/** To-device messages of a scenario (their type starts with `bench.`), by sender and type; the message id is the identity. */
function eduKey(e: Json): { key: string; id: string } | null {
  const c = e.content ?? {};
  if (e.edu_type === 'm.direct_to_device' && typeof c.type === 'string' && c.type.startsWith('bench.')) return { key: `${c.sender}|${c.type}`, id: c.message_id };
  return null;
}

/** Typing notices and read receipts (user, event) in a transaction's EDUs (Synapse puts several receipts in one EDU). */
function ephemeralItems(edus: Json[]): number {
  let n = 0;
  for (const e of edus) {
    if (e.edu_type === 'm.typing') n++;
    else if (e.edu_type === 'm.receipt') for (const byType of Object.values((e.content ?? {}) as Record<string, Json>)) n += Object.keys(byType['m.read'] ?? {}).length;
  }
  return n;
}

interface EduRun {
  sender: string;
  receiver: string;
  kind: string;
  edus: number;
  sec: number;
}

/** N to-device messages (32 in flight), one per request, to `to`'s device; timed until `arrived()` reaches N. */
async function toDeviceBurst<U>(call: Caller<U>, from: U, to: string, device: string, n: number, tag: string, arrived: () => number): Promise<number> {
  const t0 = performance.now();
  await pool(
    Array.from({ length: n }, (_x, i) => i),
    32,
    async (i) => {
      await call(from, 'PUT', `/sendToDevice/${tag}/${tag}-${i}`, { messages: { [to]: { [device]: { i } } } });
    },
  );
  const deadline = performance.now() + 300_000;
  while (arrived() < n && performance.now() < deadline) await sleep(20);
  if (arrived() < n) log(`to-device ${tag}: only ${arrived()}/${n} arrived`);
  return (performance.now() - t0) / 1000;
}

/** Each of `users` types and stops `rounds` times (2 EDUs a round), and reads `events` in order (one receipt each): all users at once. */
async function typingAndReceipts<U extends { userId: string }>(call: Caller<U>, users: U[], roomId: string, rounds: number, events: string[]): Promise<void> {
  await Promise.all(
    users.map(async (u) => {
      for (let r = 0; r < rounds; r++) {
        await call(u, 'PUT', `/rooms/${enc(roomId)}/typing/${enc(u.userId)}`, { typing: true, timeout: 30_000 });
        await call(u, 'PUT', `/rooms/${enc(roomId)}/typing/${enc(u.userId)}`, { typing: false });
      }
      for (const e of events) await call(u, 'POST', `/rooms/${enc(roomId)}/receipt/m.read/${enc(e)}`, {});
    }),
  );
}

async function phaseEdus(ca: TestCa, results: Record<string, unknown>): Promise<void> {
  const N = QUICK ? 200 : 2000;
  const USERS = QUICK ? 5 : 20;
  const ROUNDS = QUICK ? 5 : 10;
  const READS = QUICK ? 5 : 15;
  const synapseStarting: Promise<SynapsePeer> | null = synapseInstall?.ok ? loopbackServerName('127.0.0.150').then((serverName) => startSynapse({ serverName, ca, logLevel: 'WARNING' })) : null;
  synapseStarting?.catch(() => undefined);
  const axon = await startFedAxon('127.0.0.148', ca);
  const peer = await SigningPeer.start('127.0.0.149', ca);
  peer.recordRequests = false;
  /** Typing notices and receipts received, and when the last came. */
  let ephemeral = 0;
  let ephemeralAt = 0;
  const counter = new EduCounter(eduKey);
  peer.onTransaction = (t) => {
    counter.take(t.edus);
    const n = ephemeralItems(t.edus);
    if (n) {
      ephemeral += n;
      ephemeralAt = performance.now();
    }
  };
  /** USERS users type and read at once; timed until the peer has every notice and receipt. */
  const ephemeralRun = async <U extends { userId: string }>(call: Caller<U>, users: U[], roomId: string, events: string[]): Promise<{ edus: number; sec: number }> => {
    const [t0, e0] = [performance.now(), ephemeral];
    const expected = users.length * (2 * ROUNDS + events.length);
    await typingAndReceipts(call, users, roomId, ROUNDS, events);
    const deadline = performance.now() + 120_000;
    while (ephemeral - e0 < expected && performance.now() < deadline) await sleep(20);
    if (ephemeral - e0 < expected) log(`typing + receipts: only ${ephemeral - e0}/${expected} arrived`);
    return { edus: ephemeral - e0, sec: (ephemeralAt - t0) / 1000 };
  };
  let synapse: SynapsePeer | undefined;
  const rows: EduRun[] = [];
  const row = (r: EduRun) => {
    rows.push(r);
    log(`EDUs: ${JSON.stringify({ ...r, edusPerSec: round(r.edus / r.sec, 0) })}`);
  };
  try {
    const callA = axonCaller(axon);
    const alice = await axon.m.register('alice');
    const roomId = await axon.m.createRoom(alice, { room_version: '10', preset: 'public_chat' });
    const pat = await peerJoin(peer, axon, roomId, 'pat');
    const axonUsers: User[] = [];
    for (let i = 0; i < USERS; i++) {
      const u = await axon.m.register(`typist${i}`);
      await axon.m.join(u, roomId, 120_000);
      axonUsers.push(u);
    }
    // Synapse's users join first, so that the events to read (Alice's) reach Synapse too.
    const synUsers: PeerSession[] = [];
    let bob: PeerSession | undefined;
    if (synapseStarting !== null) {
      synapse = await synapseStarting;
      bob = await synapse.registerUser('bob', 'bob password');
      for (const u of [bob, ...(await Promise.all(Array.from({ length: USERS }, (_x, i) => synapse!.registerUser(`styp${i}`, 'pw'))))]) {
        const r = await synapse.call(u, 'POST', `/join/${enc(roomId)}?server_name=${enc(axon.serverName)}`, {});
        if (r.status !== 200) throw new Error(`Synapse join: ${r.status} ${JSON.stringify(r.body)}`);
        if (u !== bob) synUsers.push(u);
      }
    }
    const events: string[] = [];
    for (let k = 0; k < READS; k++) events.push(await axon.m.send(alice, roomId, `read me ${k}`, 60_000));
    if (synapse && bob) {
      for (const e of events) {
        for (let k = 0; (await synapse.call(bob, 'GET', `/rooms/${enc(roomId)}/event/${enc(e)}`)).status !== 200; k++) {
          if (k > 600) throw new Error('Synapse never got the events to read');
          await sleep(100);
        }
      }
    }
    await sleep(2000);

    // Axon → signing peer.
    row({ sender: 'Axon', receiver: 'signing peer', kind: 'to-device', edus: N, sec: await toDeviceBurst(callA, alice, pat.userId, 'PATDEV', N, 'bench.axon', () => counter.count(`${alice.userId}|bench.axon`)) });
    row({ sender: 'Axon', receiver: 'signing peer', kind: `typing + receipts (${USERS} users at once)`, ...(await ephemeralRun(callA, axonUsers, roomId, events)) });

    if (synapse && bob) {
      const callS = synapseCaller(synapse);
      const syn = synapse;
      const bobS = bob;
      // Axon → Synapse: to-device, counted in Bob's /sync.
      let bobGot = 0;
      let polling = true;
      const poll = (async () => {
        let since = (await syn.call(bobS, 'GET', '/sync?timeout=0')).body.next_batch as string;
        while (polling) {
          const r = await syn.call(bobS, 'GET', `/sync?timeout=1000&since=${enc(since)}`);
          if (r.status !== 200) continue;
          bobGot += ((r.body.to_device?.events ?? []) as Json[]).filter((e) => e.type === 'bench.tosyn').length;
          since = r.body.next_batch;
        }
      })();
      row({ sender: 'Axon', receiver: `Synapse ${SYNAPSE_VERSION}`, kind: 'to-device (counted in /sync)', edus: N, sec: await toDeviceBurst(callA, alice, bobS.userId, bobS.deviceId, N, 'bench.tosyn', () => bobGot) });
      polling = false;
      await poll;

      // Synapse → signing peer, the same load.
      row({ sender: `Synapse ${SYNAPSE_VERSION}`, receiver: 'signing peer', kind: 'to-device', edus: N, sec: await toDeviceBurst(callS, bobS, pat.userId, 'PATDEV', N, 'bench.synapse', () => counter.count(`${bobS.userId}|bench.synapse`)) });
      row({ sender: `Synapse ${SYNAPSE_VERSION}`, receiver: 'signing peer', kind: `typing + receipts (${USERS} users at once)`, ...(await ephemeralRun(callS, synUsers, roomId, events)) });
    }
  } finally {
    await Promise.all([peer.close(), axon.bench.stop(), synapse?.stop() ?? synapseStarting?.then((x) => x.stop(), () => undefined)]);
  }
  console.log(`\n(4) EDUs through one destination: requests 32 in flight (to-device: one message per request; typing: each of the users starts and stops ${ROUNDS} times, then reads ${READS} events in order, all users at once). Time from the first request until the receiver had every EDU (${WORKERS} worker, 1 front)`);
  console.log(table(rows.map((r) => ({ ...r, edusPerSec: round(r.edus / r.sec, 0), sec: round(r.sec, 2) })), ['sender', 'receiver', 'kind', 'edus', 'sec', 'edusPerSec'], ['sender', 'receiver', 'what', 'EDUs', 's', 'EDUs/s']));
  results.edus = rows;
}

// ---------------------------------------------------------------- (5) presence fan-out
/**
 * A user sharing a room with one user on each of 100 servers (signing peers, all in this process)
 * changes presence `CHANGES` times, one after the other; per change: the time until all 100 have
 * the new status, and the CPU the sending server spent meanwhile (utime + stime of its processes).
 */
async function presenceFanOut(label: string, peers: SigningPeer[], set: (k: number) => Promise<void>, userId: string, cpu: () => number, changes: number): Promise<Record<string, unknown>> {
  const got = peers.map(() => new Map<string, number>()); // status_msg → arrival
  peers.forEach((p, i) => {
    p.onTransaction = (t) => {
      for (const e of t.edus) {
        if (e.edu_type !== 'm.presence') continue;
        for (const u of ((e.content as Json).push ?? []) as Json[]) if (u.user_id === userId && typeof u.status_msg === 'string') got[i]!.set(u.status_msg, performance.now());
      }
    };
  });
  const times: number[] = [];
  const cpus: number[] = [];
  let missing = 0;
  for (let k = 0; k < changes; k++) {
    const msg = `fan-out ${k}`;
    const c0 = cpu();
    const t0 = performance.now();
    await set(k);
    const deadline = performance.now() + 120_000;
    while (got.some((g) => !g.has(msg)) && performance.now() < deadline) await sleep(10);
    missing += got.filter((g) => !g.has(msg)).length;
    times.push(Math.max(...got.map((g) => g.get(msg) ?? performance.now())) - t0);
    cpus.push((cpu() - c0) * 1000);
    await sleep(1500); // the next change is a new one, not coalesced into this one's transactions
  }
  times.sort((a, b) => a - b);
  cpus.sort((a, b) => a - b);
  const out = { server: label, servers: peers.length, changes, allReceivedP50ms: round(percentile(times, 50)), allReceivedMaxMs: round(times[times.length - 1]!), cpuMsP50: round(percentile(cpus, 50)), missing };
  log(`presence fan-out: ${JSON.stringify(out)}`);
  return out;
}

async function phasePresence(ca: TestCa, results: Record<string, unknown>): Promise<void> {
  const SERVERS = QUICK ? 10 : 100;
  const CHANGES = QUICK ? 3 : 5;
  const rows: Record<string, unknown>[] = [];
  const peers: SigningPeer[] = [];
  for (let i = 0; i < SERVERS; i++) {
    const p = await SigningPeer.start('127.0.0.156', ca);
    p.recordRequests = false;
    p.onTransaction = () => undefined;
    peers.push(p);
  }
  try {
    {
      const axon = await startFedAxon('127.0.0.155', ca);
      try {
        const alice = await axon.m.register('alice');
        const roomId = await axon.m.createRoom(alice, { room_version: '10', preset: 'public_chat' });
        for (let i = 0; i < SERVERS; i++) await peerJoin(peers[i]!, axon, roomId, `member${i}`);
        await sleep(3000); // the joins' own transactions go out first
        const cpu = () => axon.bench.pids().reduce((s, pid) => s + (cpuSeconds(pid) ?? 0), 0);
        rows.push(
          await presenceFanOut('Axon', peers, (k) => axon.m.ok('PUT', `${C}/presence/${enc(alice.userId)}/status`, { token: alice.token, body: { presence: k % 2 ? 'unavailable' : 'online', status_msg: `fan-out ${k}` } }), alice.userId, cpu, CHANGES),
        );
      } finally {
        await axon.bench.stop();
      }
    }
    if (synapseInstall?.ok) {
      const synapse = await startSynapse({ serverName: await loopbackServerName('127.0.0.157'), ca, logLevel: 'WARNING' });
      try {
        const carol = await synapse.registerUser('carol', 'carol password');
        const created = await synapse.call(carol, 'POST', '/createRoom', { room_version: '10', preset: 'public_chat' });
        if (created.status !== 200) throw new Error(`Synapse createRoom: ${created.status}`);
        const roomId = created.body.room_id as string;
        const dest = { serverName: synapse.serverName, federationUrl: synapse.federationUrl };
        for (let i = 0; i < SERVERS; i++) await peerJoin(peers[i]!, dest, roomId, `smember${i}`);
        await sleep(5000);
        const cpu = () => cpuSeconds(synapse.pid) ?? 0;
        rows.push(
          await presenceFanOut(
            `Synapse ${SYNAPSE_VERSION}`,
            peers,
            async (k) => {
              const r = await synapse.call(carol, 'PUT', `/presence/${enc(carol.userId)}/status`, { presence: k % 2 ? 'unavailable' : 'online', status_msg: `fan-out ${k}` });
              if (r.status !== 200) throw new Error(`Synapse presence: ${r.status}`);
            },
            carol.userId,
            cpu,
            CHANGES,
          ),
        );
      } finally {
        await synapse.stop();
      }
    }
  } finally {
    await Promise.all(peers.map((p) => p.close()));
  }
  console.log(`\n(5) Presence fan-out: a user sharing a room with one user on each of ${SERVERS} servers (signing peers) changes presence ${CHANGES} times; per change, the time until all ${SERVERS} have it and the CPU the sending server spent (all its processes; Axon: ${WORKERS} worker, 1 front, redis-server)`);
  console.log(table(rows, ['server', 'servers', 'changes', 'allReceivedP50ms', 'allReceivedMaxMs', 'cpuMsP50', 'missing'], ['sender', 'servers', 'changes', 'all have it p50 ms', 'max ms', 'CPU ms p50', 'missing']));
  results.presence = rows;
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
    if (ONLY.has('4')) await phaseEdus(ca, results);
    if (ONLY.has('5')) await phasePresence(ca, results);
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
