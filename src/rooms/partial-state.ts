/**
 * Faster joins (MSC3706, MSC3902), the joining side's background work and what readers ask of it.
 *
 * A room our user joined with partial state (the resident's send_join answer omitted the member
 * events: src/rooms/join-remote.ts) is listed in the `PARTIAL_STATE_ROOMS` hash
 * (src/store/keys.ts) with our join and the servers in the room. The resync fetches the full state
 * before our join — `/state/{roomId}?event_id=<join>`, the state and its auth chain — from those
 * servers, the one that took the join first, then the others in turn, with a growing pause
 * between rounds (1 s doubling to a minute), until one answers with a state the room takes: its
 * events are ingested as outliers (signatures, hashes and auth checked on the worker's thread
 * pool, as for a full join), then `complete_partial_state` completes the room (actors/room.ts).
 * One resync per room at a time across the fronts (a lock key renewed while it runs); every front
 * resumes the listed rooms when it starts and looks for listed rooms nobody is resyncing every
 * `SWEEP_MS` (a front that died mid-resync leaves its lock to expire), so a crash only delays it.
 *
 * Once complete, the local members' entries in the membership index are written again, so a /sync
 * that held the room back (non-lazy-loading syncs, as Synapse does) now gives it in full.
 */
import type { Logger } from 'pino';
import type { ApiContext } from '../api/context';
import type { FederationClient } from '../federation/client';
import { FederationError } from '../federation/errors';
import type { ServerKeyStore } from '../federation/keys/key-store';
import { keysForPdus } from '../federation/inbound/pdu-keys';
import { computeEventId } from '../protocol/event-hashing';
import { serverOf } from '../protocol/identifiers';
import { isJsonObject, type JsonObject } from '../protocol/json';
import { getRoomVersion } from '../protocol/room-versions';
import type { MembershipIndex } from '../readers/membership-index';
import { askRoomFamily } from './ask';
import type { IngestReply, PartialStateCompleted, PartialStateInfo } from './model';

/** A partial-state room's entry: our join and the servers in the room, or null when the room has its full state. */
export async function partialStateOf(ctx: Pick<ApiContext, 'redis' | 'keys'>, roomId: string): Promise<PartialStateInfo | null> {
  const raw = await ctx.redis.hget(ctx.keys.partialStateRooms(), roomId);
  return parseEntry(raw);
}

/** Which of `roomIds` are partial-state (one read). */
export async function partialStateAmong(ctx: Pick<ApiContext, 'redis' | 'keys'>, roomIds: readonly string[]): Promise<Set<string>> {
  if (!roomIds.length) return new Set();
  const raws = await ctx.redis.hmget(ctx.keys.partialStateRooms(), ...roomIds);
  return new Set(roomIds.filter((_, i) => raws[i] != null));
}

/**
 * Wait until `roomId` has its full state (as Synapse's /members waits), at most `maxMs`.
 * Answers whether it has.
 */
export async function waitForFullState(ctx: Pick<ApiContext, 'redis' | 'keys'>, roomId: string, maxMs: number): Promise<boolean> {
  const until = Date.now() + maxMs;
  for (;;) {
    if (!(await partialStateOf(ctx, roomId))) return true;
    if (Date.now() >= until) return false;
    await sleep(Math.min(250, Math.max(0, until - Date.now())));
  }
}

function parseEntry(raw: string | null | undefined): PartialStateInfo | null {
  if (!raw) return null;
  try {
    const v = JSON.parse(raw) as PartialStateInfo;
    return typeof v.join === 'string' && Array.isArray(v.servers) ? v : null;
  } catch {
    return null;
  }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms).unref?.());

/** How often a front looks for partial-state rooms whose resync is not running anywhere. */
const SWEEP_MS = 10_000;
/** How long the lock of one room's resync holds without renewal. */
const LOCK_MS = 180_000;
/** The full state of a 10,000-member room and its auth chain. */
const STATE_MAX_BYTES = 64 * 1024 * 1024;
const STATE_TIMEOUT_MS = 120_000;
const FIRST_PAUSE_MS = 1_000;
const MAX_PAUSE_MS = 60_000;

export interface PartialStateResyncDeps {
  client: FederationClient;
  keyStore: ServerKeyStore;
  index: MembershipIndex;
  log: Logger;
}

/** The background resyncs of one front (see the header). */
export class PartialStateResyncer {
  private readonly running = new Map<string, Promise<void>>();
  private stopped = false;
  private sweep: NodeJS.Timeout | undefined;

  constructor(
    private readonly ctx: ApiContext,
    private readonly deps: PartialStateResyncDeps,
  ) {}

  /** Start the resync of `roomId` (nothing if this front runs it already). */
  start(roomId: string): void {
    if (this.stopped || this.running.has(roomId)) return;
    const run = this.run(roomId)
      .catch((e: unknown) => this.deps.log.error({ room_id: roomId, err: e }, 'partial state: resync failed'))
      .finally(() => this.running.delete(roomId));
    this.running.set(roomId, run);
  }

  /** Start the resync of every listed room now (a front starting up), and again every SWEEP_MS. */
  async resumeAll(): Promise<void> {
    if (!this.sweep && !this.stopped) {
      this.sweep = setInterval(() => {
        this.resumeAll().catch((e: unknown) => this.deps.log.warn({ err: e }, 'partial state: sweep failed'));
      }, SWEEP_MS);
      this.sweep.unref?.();
    }
    const all = await this.ctx.redis.hkeys(this.ctx.keys.partialStateRooms());
    for (const roomId of all) this.start(roomId);
  }

  stop(): void {
    this.stopped = true;
    if (this.sweep) clearInterval(this.sweep);
  }

  private lockKey(roomId: string): string {
    return `${this.ctx.keys.partialStateRooms()}:lock:${roomId}`;
  }

  private async run(roomId: string): Promise<void> {
    const lock = this.lockKey(roomId);
    const token = `${process.pid}:${Math.random().toString(36).slice(2)}`;
    if ((await this.ctx.redis.set(lock, token, 'PX', LOCK_MS, 'NX')) !== 'OK') return; // another front has it
    const t0 = performance.now();
    try {
      let pause = FIRST_PAUSE_MS;
      while (!this.stopped) {
        const entry = await partialStateOf(this.ctx, roomId);
        if (!entry) return;
        for (const server of entry.servers.filter((s) => s !== this.ctx.config.serverName)) {
          if (this.stopped) return;
          await this.ctx.redis.pexpire(lock, LOCK_MS);
          const done = await this.tryServer(roomId, entry, server);
          if (done) {
            this.deps.log.info({ room_id: roomId, server, ms: Math.round(performance.now() - t0), added: done.added, rejected: done.rejected.length }, 'partial state: the room has its full state');
            await this.afterComplete(roomId);
            return;
          }
        }
        await sleep(pause);
        pause = Math.min(MAX_PAUSE_MS, pause * 2);
      }
    } finally {
      if ((await this.ctx.redis.get(lock)) === token) await this.ctx.redis.del(lock);
    }
  }

  /** One attempt at one server: the full state taken and the room completed, or null. */
  private async tryServer(roomId: string, entry: PartialStateInfo, server: string): Promise<PartialStateCompleted | null> {
    const log = this.deps.log;
    const meta = await this.ctx.rooms.meta(roomId);
    const version = meta?.version ? getRoomVersion(meta.version) : undefined;
    if (!version) return null;
    let answer: JsonObject;
    try {
      answer = await this.deps.client.get(server, `/_matrix/federation/v1/state/${encodeURIComponent(roomId)}?event_id=${encodeURIComponent(entry.join)}`, { timeoutMs: STATE_TIMEOUT_MS, maxResponseBytes: STATE_MAX_BYTES });
    } catch (e) {
      if (!(e instanceof FederationError)) throw e;
      log.info({ room_id: roomId, server, error: e.message }, 'partial state: the server did not give the state');
      return null;
    }
    const pdus = Array.isArray(answer.pdus) ? answer.pdus.filter(isJsonObject) : [];
    const chain = Array.isArray(answer.auth_chain) ? answer.auth_chain.filter(isJsonObject) : [];
    const stateIds: string[] = [];
    for (const e of pdus) {
      try {
        stateIds.push(computeEventId(e, version));
      } catch {
        /* malformed: the room drops it, and then misses it */
      }
    }
    if (!stateIds.length) {
      log.info({ room_id: roomId, server }, 'partial state: the answer has no state');
      return null;
    }
    const events = [...chain, ...pdus];
    const keys = await keysForPdus(this.deps.keyStore, events, version, Date.now() + 30_000);
    // The same sizing as a full join's ingest (src/rooms/join-remote.ts ingestTimeoutMs).
    const timeoutMs = 10_000 + 5 * events.length;
    try {
      const taken = await askRoomFamily<IngestReply>(this.ctx, 'room', roomId, { op: 'ingest', pdus: events, keys, outlier: true }, { timeoutMs });
      const bad = taken.results.filter((r) => r.status !== 'outlier' && r.status !== 'duplicate');
      if (bad.length) log.info({ room_id: roomId, server, bad: bad.length, first: bad.slice(0, 3) }, 'partial state: some events of the state were not taken');
      return await askRoomFamily<PartialStateCompleted>(this.ctx, 'room', roomId, { op: 'complete_partial_state', join: entry.join, stateIds }, { timeoutMs });
    } catch (e) {
      log.warn({ room_id: roomId, server, err: e }, 'partial state: the room did not take the state');
      return null;
    }
  }

  /** Local members see the room anew in non-lazy /sync (it was held back while partial). */
  private async afterComplete(roomId: string): Promise<void> {
    const joined = await this.ctx.rooms.members(roomId, 'join');
    const ours = [...joined.keys()].filter((u) => serverOf(u) === this.ctx.config.serverName);
    for (const userId of ours) await this.deps.index.markFresh(userId, roomId);
    // The members the resident left out are known now: index them as a full join does
    // (src/rooms/join-remote.ts), at our join's position, so their device list updates, presence
    // and typing reach our users.
    const [ownJoin] = ours.length ? await this.ctx.rooms.currentState(roomId, { type: 'm.room.member', stateKey: ours[0]! }) : [];
    const remote = [...joined.entries()].filter(([u]) => serverOf(u) !== this.ctx.config.serverName);
    if (ownJoin && remote.length) await this.deps.index.recordMany(roomId, remote, ownJoin.pos);
  }
}
