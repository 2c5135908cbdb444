/**
 * Matrix load from the bed's client host, recording every request and its answer:
 *
 *   ip netns exec <client ns> node --import tsx test/hosts/load-main.ts <config.json>
 *
 * Senders each send one message at a time (`PUT /rooms/{room}/send/m.room.message/{txn}`) and
 * retry a failed or timed-out send with the same txn id until it is acknowledged — on the next
 * front, as a client behind a load balancer would. `burstSenders` more senders do the same only
 * between `burst on` and `burst off` on stdin (a throughput window). Readers long-poll `/sync` and record every
 * event they see. On stdin: `mark <label>` notes a moment in the history (a fault's start or
 * end); `stop` stops the senders once their message in hand is acknowledged, lets the readers
 * catch up, reads every room's whole timeline with `/messages`, writes the history file
 * and prints `{"done":true}`. The history is checked by test/hosts/history.ts.
 */
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import type { History, SendAttempt, SyncPoll, TimelineEvent } from './history';

interface LoadConfig {
  fronts: string[];
  senders: number;
  /** More senders, idle until `burst on` and again after `burst off` (a throughput window). */
  burstSenders?: number;
  readers: number;
  rooms: number;
  historyFile: string;
  /** A request not answered within this time is given up on (and retried). */
  requestTimeoutMs: number;
}

const config = JSON.parse(process.argv[2] ?? '{}') as LoadConfig;
const t0 = Date.now();
const now = () => Date.now() - t0;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const enc = encodeURIComponent;

const history: History = { startedAt: t0, sends: [], polls: [], marks: [], timelines: {}, readersCaughtUp: {} };

interface Answer {
  status: number;
  body: any;
  retryAfter: string | null;
  error?: string;
}

async function call(front: string, token: string | null, method: string, path: string, body?: unknown, timeoutMs = config.requestTimeoutMs): Promise<Answer> {
  try {
    const res = await fetch(`${front}/_matrix/client/v3${path}`, {
      method,
      headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs),
    });
    const text = await res.text();
    let parsed: any = null;
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = { raw: text.slice(0, 200) };
    }
    return { status: res.status, body: parsed, retryAfter: res.headers.get('retry-after') };
  } catch (e) {
    const err = e as Error & { cause?: { code?: string } };
    return { status: 0, body: null, retryAfter: null, error: err.name === 'TimeoutError' ? 'client timeout' : `${err.cause?.code ?? err.message}` };
  }
}

/** A setup request retried on every front until it answers 200 (setup runs before any fault). */
async function must(token: string | null, method: string, path: string, body?: unknown): Promise<any> {
  let last: Answer | null = null;
  for (let i = 0; i < 60; i++) {
    last = await call(config.fronts[i % config.fronts.length]!, token, method, path, body);
    if (last.status === 200) return last.body;
    await sleep(500);
  }
  throw new Error(`${method} ${path}: ${last?.status} ${JSON.stringify(last?.body)} ${last?.error ?? ''}`);
}

interface Account {
  userId: string;
  token: string;
}

async function register(name: string): Promise<Account> {
  const username = `${name}_${randomBytes(3).toString('hex')}`;
  const first = await call(config.fronts[0]!, null, 'POST', '/register', { username, password: 'pw-123456' });
  const done = await must(null, 'POST', '/register', { username, password: 'pw-123456', auth: { type: 'm.login.dummy', session: first.body?.session } });
  return { userId: done.user_id, token: done.access_token };
}

let stopping = false;
let burst = false;

async function sender(index: number, me: Account, rooms: string[]): Promise<void> {
  for (let n = 0; !stopping; n++) {
    // A burst sender starts a new message only during a burst (one already begun is finished).
    if (index >= config.senders && !burst) {
      n--;
      await sleep(50);
      continue;
    }
    const room = rooms[n % rooms.length]!;
    const txn = `t${n}-${randomBytes(2).toString('hex')}`;
    const body = `s${index}#${n}`;
    const content = { msgtype: 'm.text', body };
    for (let attempt = 0; ; attempt++) {
      // The pinned front first; a retry goes to the next one (a load balancer's retry).
      const front = (index + attempt) % config.fronts.length;
      const start = now();
      const a = await call(config.fronts[front]!, me.token, 'PUT', `/rooms/${enc(room)}/send/m.room.message/${enc(txn)}`, content);
      const rec: SendAttempt = { sender: index, user: me.userId, room, txn, body, attempt, front, t0: start, t1: now(), status: a.status };
      if (a.status === 200 && typeof a.body?.event_id === 'string') rec.eventId = a.body.event_id;
      else {
        rec.error = a.error ?? `${a.body?.errcode ?? ''} ${a.body?.error ?? JSON.stringify(a.body)}`.slice(0, 200);
        if (a.retryAfter !== null) rec.retryAfter = a.retryAfter;
      }
      history.sends.push(rec);
      if (rec.eventId) break;
      await sleep(Math.min(2000, 200 * 2 ** Math.min(attempt, 4)));
    }
  }
}

let readersStop = false;

async function reader(index: number, me: Account, rooms: string[], lastSendAckAt: () => number): Promise<void> {
  const filter = enc(JSON.stringify({ room: { timeline: { limit: 200 }, state: { lazy_load_members: true } }, presence: { types: [] } }));
  let since = '';
  for (let attempt = 0; ; ) {
    const front = (index + attempt) % config.fronts.length;
    const start = now();
    const a = await call(config.fronts[front]!, me.token, 'GET', `/sync?filter=${filter}&set_presence=offline&timeout=5000${since ? `&since=${enc(since)}` : ''}`);
    const poll: SyncPoll = { reader: index, front, t0: start, t1: now(), status: a.status, events: [], limited: [] };
    if (a.status === 200 && typeof a.body?.next_batch === 'string') {
      for (const r of rooms) {
        const tl = a.body.rooms?.join?.[r]?.timeline;
        if (!tl) continue;
        if (tl.limited && since) poll.limited.push(r);
        for (const e of tl.events ?? []) {
          if (e.type === 'm.room.message') poll.events.push({ room: r, eventId: e.event_id, sender: e.sender, body: e.content?.body });
        }
      }
      since = a.body.next_batch;
      history.polls.push(poll);
      // Done once stopping and a whole poll finished after the last send was acknowledged.
      if (readersStop && start > lastSendAckAt()) {
        history.readersCaughtUp[index] = true;
        return;
      }
    } else {
      poll.error = a.error ?? `${a.body?.errcode ?? ''} ${a.body?.error ?? ''}`.slice(0, 200);
      if (a.retryAfter !== null) poll.retryAfter = a.retryAfter;
      history.polls.push(poll);
      attempt++;
      await sleep(500);
    }
    if (readersStop && now() > readersDeadline) return;
  }
}
let readersDeadline = Number.POSITIVE_INFINITY;

/** A room's whole timeline, oldest first, through whichever front answers. */
async function readTimeline(me: Account, room: string): Promise<TimelineEvent[]> {
  const out: TimelineEvent[] = [];
  let from = '';
  for (let page = 0; page < 10_000; page++) {
    const b = await must(me.token, 'GET', `/rooms/${enc(room)}/messages?dir=b&limit=500${from ? `&from=${enc(from)}` : ''}`);
    for (const e of b.chunk ?? []) if (e.type === 'm.room.message') out.push({ room, eventId: e.event_id, sender: e.sender, body: e.content?.body });
    if (!b.end || (b.chunk ?? []).length === 0) break;
    from = b.end;
  }
  return out.reverse();
}

async function main(): Promise<void> {
  const owner = await register('owner');
  const rooms: string[] = [];
  for (let i = 0; i < config.rooms; i++) rooms.push((await must(owner.token, 'POST', '/createRoom', { preset: 'public_chat', name: `bed ${i}` })).room_id);
  const senders: Account[] = [];
  for (let i = 0; i < config.senders + (config.burstSenders ?? 0); i++) senders.push(await register(`sender${i}`));
  const readers: Account[] = [];
  for (let i = 0; i < config.readers; i++) readers.push(await register(`reader${i}`));
  for (const a of [...senders, ...readers]) for (const r of rooms) await must(a.token, 'POST', `/join/${enc(r)}`, {});
  history.rooms = rooms;

  const lastSendAckAt = () => history.sends.reduce((m, s) => (s.eventId && s.t1 > m ? s.t1 : m), 0);
  const readerRuns = readers.map((a, i) => reader(i, a, rooms, lastSendAckAt));
  const senderRuns = senders.map((a, i) => sender(i, a, rooms));
  process.stdout.write(`${JSON.stringify({ ready: true, rooms })}\n`);

  const lines = createInterface({ input: process.stdin });
  for await (const line of lines) {
    const [cmd, ...rest] = line.trim().split(' ');
    if (cmd === 'mark') {
      history.marks.push({ t: now(), label: rest.join(' ') });
      process.stdout.write(`${JSON.stringify({ marked: rest.join(' '), sends: history.sends.length })}\n`);
    } else if (cmd === 'burst') {
      burst = rest[0] === 'on';
      history.marks.push({ t: now(), label: `burst ${rest[0]}` });
      process.stdout.write(`${JSON.stringify({ burst, sends: history.sends.length })}\n`);
    } else if (cmd === 'stop') break;
  }
  stopping = true;
  await Promise.all(senderRuns);
  history.marks.push({ t: now(), label: 'senders stopped' });
  readersStop = true;
  readersDeadline = now() + 120_000;
  await Promise.all(readerRuns);
  for (const r of rooms) history.timelines[r] = await readTimeline(owner, r);
  history.endedAt = Date.now();
  writeFileSync(config.historyFile, JSON.stringify(history));
  process.stdout.write(`${JSON.stringify({ done: true, sends: history.sends.length, polls: history.polls.length })}\n`);
  process.exit(0);
}

main().catch((e) => {
  process.stdout.write(`${JSON.stringify({ error: String((e as Error).stack ?? e) })}\n`);
  process.exit(1);
});
