/**
 * Fronts and workers restarted under Matrix load, through the operator's own scripts: a front
 * killed with -9 and brought back by `cluster up`, then a planned rolling restart (`cluster
 * restart`: fronts, then workers). Clients behave as real ones do: every `/send` carries a txn id
 * and is retried with the same id after a connection error or a 5xx, and sync loops keep polling.
 *
 * What must hold: every acknowledged event id is the request's own event (its content is the
 * content sent), nothing acknowledged is missing from the room's history, nothing is stored twice,
 * and the sync loops see every acknowledged event exactly once.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Json, ScriptCluster } from '../setup/script-cluster';

interface Ack { roomId: string; body: string; eventId: string; attempts: number; refusals: number }

describe('fronts and workers restarted under load', () => {
  let c: ScriptCluster;

  /** A call retried as a client retries: after connection errors and 5xx, with the same request. */
  async function callRetrying(token: string, method: string, path: string, body: unknown, attempts: { n: number; refusals: number }): Promise<{ status: number; body: Json }> {
    const deadline = Date.now() + 120_000;
    for (;;) {
      attempts.n++;
      try {
        const r = await c.call(token, method, path, body);
        if (r.status < 500 && r.status !== 429) return r;
        attempts.refusals++;
      } catch {
        // Connection refused or reset: the front is restarting.
      }
      if (Date.now() > deadline) throw new Error(`${method} ${path} did not succeed within 120 s`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  beforeAll(async () => {
    c = await ScriptCluster.create({ name: 'restart' });
    await c.up(2);
  }, 240_000);

  afterAll(async () => {
    await c?.destroy();
  }, 120_000);

  /**
   * Load: `senders` loops send messages with fresh txn ids into the users' rooms (retrying each
   * with its own txn id until it is acknowledged), while each user runs a sync loop. `during` runs
   * the operator's action in the middle of it.
   */
  async function underLoad(label: string, during: () => Promise<void>) {
    const users = await Promise.all(['a', 'b', 'c'].map((n) => c.register(`${label}${n}`)));
    const rooms: string[] = [];
    for (let i = 0; i < 2; i++) {
      const created = await c.call(users[0]!.token, 'POST', '/createRoom', { preset: 'public_chat', name: `${label} ${i}` });
      expect(created.status).toBe(200);
      rooms.push(created.body.room_id);
      for (const u of users.slice(1)) expect((await c.call(u.token, 'POST', `/join/${encodeURIComponent(created.body.room_id)}`, {})).status).toBe(200);
    }

    // Sync loops: every timeline event id seen, per user; a duplicate is a defect.
    let syncing = true;
    const seen = users.map(() => new Map<string, number>());
    const syncErrors = users.map(() => 0);
    const filter = JSON.stringify({ room: { timeline: { limit: 1000 }, state: { lazy_load_members: true } }, presence: { types: [] } });
    const loops = users.map(async (u, i) => {
      let since: string | null = null;
      while (syncing) {
        try {
          const q = `/sync?timeout=2000&filter=${encodeURIComponent(filter)}${since ? `&since=${encodeURIComponent(since)}` : ''}`;
          const r = await c.call(u.token, 'GET', q);
          if (r.status !== 200) {
            syncErrors[i]!++;
            await new Promise((res) => setTimeout(res, 200));
            continue;
          }
          for (const room of Object.values<Json>(r.body.rooms?.join ?? {})) {
            for (const e of room.timeline?.events ?? []) seen[i]!.set(e.event_id, (seen[i]!.get(e.event_id) ?? 0) + 1);
          }
          since = r.body.next_batch;
        } catch {
          syncErrors[i]!++;
          await new Promise((res) => setTimeout(res, 200));
        }
      }
    });

    let sending = true;
    const acks: Ack[] = [];
    let n = 0;
    const senders = Array.from({ length: 6 }, async (_, s) => {
      while (sending) {
        const k = n++;
        const user = users[k % users.length]!;
        const roomId = rooms[k % rooms.length]!;
        const body = `${label} message ${k} from sender ${s}`;
        const attempts = { n: 0, refusals: 0 };
        const r = await callRetrying(user.token, 'PUT', `/rooms/${encodeURIComponent(roomId)}/send/m.room.message/${label}-txn-${k}`, { msgtype: 'm.text', body }, attempts);
        expect(r.status, JSON.stringify(r.body)).toBe(200);
        acks.push({ roomId, body, eventId: r.body.event_id, attempts: attempts.n, refusals: attempts.refusals });
      }
    });

    await new Promise((r) => setTimeout(r, 3000));
    const before = acks.length;
    await during();
    const afterAction = acks.length;
    await new Promise((r) => setTimeout(r, 3000));
    sending = false;
    await Promise.all(senders);
    // Sent after the action too: the load went through it, not around it.
    expect(acks.length).toBeGreaterThan(afterAction);
    expect(before).toBeGreaterThan(0);

    // 1. Every acknowledged id is the request's own event.
    const token = users[0]!.token;
    for (const ack of acks) {
      const e = await c.call(token, 'GET', `/rooms/${encodeURIComponent(ack.roomId)}/event/${encodeURIComponent(ack.eventId)}`);
      expect(e.status, `${ack.eventId} (${ack.body})`).toBe(200);
      expect(e.body.content?.body, `${ack.eventId} answered for "${ack.body}"`).toBe(ack.body);
    }
    // 2. Nothing acknowledged is missing from the history; nothing is there twice.
    for (const roomId of rooms) {
      const bodies = new Map<string, number>();
      let from: string | undefined;
      for (;;) {
        const page = await c.call(token, 'GET', `/rooms/${encodeURIComponent(roomId)}/messages?dir=b&limit=500${from ? `&from=${encodeURIComponent(from)}` : ''}`);
        expect(page.status).toBe(200);
        for (const e of page.body.chunk) if (e.type === 'm.room.message') bodies.set(e.content.body, (bodies.get(e.content.body) ?? 0) + 1);
        if (!page.body.end || page.body.chunk.length === 0) break;
        from = page.body.end;
      }
      const mine = acks.filter((a) => a.roomId === roomId);
      for (const a of mine) expect(bodies.get(a.body), `"${a.body}" in ${roomId}`).toBe(1);
      expect([...bodies.values()].filter((c) => c > 1)).toEqual([]);
      expect(bodies.size).toBe(mine.length);
    }
    // 3. The sync loops see every acknowledged event, once.
    const want = new Set(acks.map((a) => a.eventId));
    const deadline = Date.now() + 30_000;
    while (seen.some((m) => [...want].some((id) => !m.has(id))) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    syncing = false;
    await Promise.all(loops);
    for (const m of seen) {
      expect([...want].filter((id) => !m.has(id))).toEqual([]);
      expect([...m.entries()].filter(([, n]) => n > 1)).toEqual([]);
    }
    const retried = acks.filter((a) => a.attempts > 1).length;
    const refusals = acks.reduce((n, a) => n + a.refusals, 0);
    console.log(`${label}: ${acks.length} acknowledged sends (${retried} needed retries, ${refusals} answers were 5xx/429), ${before} before the action, sync errors ${syncErrors.join('/')}`);
    return { acks, retried, refusals };
  }

  it('a front killed with -9 and started again by `cluster up`: every acknowledged id is its own event, none lost', async () => {
    await underLoad('kill', async () => {
      const pid = c.pid('f1');
      process.kill(pid, 'SIGKILL');
      await new Promise((r) => setTimeout(r, 500));
      const up = await c.up(2);
      expect(up.processes.find((p: { name: string }) => p.name === 'f1').pid).not.toBe(pid);
    });
  }, 300_000);

  it('a planned rolling restart (fronts, then workers) under load refuses and loses nothing', async () => {
    const { acks, refusals } = await underLoad('roll', async () => {
      const res = await c.script('restart');
      expect(res.ok).toBe(true);
      expect(res.restarted.map((r: { name: string }) => r.name)).toEqual(['f1', 'w1', 'w2']);
    });
    expect(acks.length).toBeGreaterThan(0);
    // Planned: no request was refused (a connection closed under a request is retried like any
    // network error; the answers themselves were never 5xx).
    expect(refusals).toBe(0);
    const status = await c.script('status');
    expect(status.workers.filter((w: { alive: boolean }) => w.alive).map((w: { worker: string }) => w.worker).sort()).toEqual(['w1', 'w2']);
  }, 300_000);
});
