/**
 * Raw-HTTP Matrix load generation for the benchmark scripts: a keep-alive client bound to one
 * server, the Client-Server calls the workloads need, /sync long-poll loops that record when each
 * event reaches each member, and an open-loop send phase that measures /send and send→sync
 * delivery latency. Server-agnostic: the same code drives Axon and Synapse.
 */
import http from 'node:http';
import { percentile, round, sleep } from './bench-util';

export interface HttpReply {
  status: number;
  body: any;
  bytes: number;
}

export interface RequestOptions {
  token?: string;
  body?: unknown;
  agent?: http.Agent;
  timeoutMs?: number;
}

export function newAgent(maxSockets: number): http.Agent {
  return new http.Agent({ keepAlive: true, maxSockets, maxFreeSockets: maxSockets });
}

export const C = '/_matrix/client/v3';
export const enc = encodeURIComponent;

export interface User {
  userId: string;
  token: string;
}

/** An error answer from the server (kept apart from network errors for the reports). */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export class MatrixLoad {
  readonly host: string;
  readonly port: number;
  readonly agent: http.Agent;
  private txn = 0;
  private readonly createChains = new Map<string, Promise<unknown>>();

  constructor(
    readonly baseUrl: string,
    /** Registration body extras (Synapse's /register requires a password; Axon takes none). */
    private readonly registerPassword: ((username: string) => string) | null = null,
  ) {
    const u = new URL(baseUrl);
    this.host = u.hostname;
    this.port = Number(u.port || 80);
    this.agent = newAgent(256);
  }

  request(method: string, path: string, opts: RequestOptions = {}): Promise<HttpReply> {
    return new Promise((resolve, reject) => {
      const payload = opts.body === undefined ? undefined : Buffer.from(JSON.stringify(opts.body));
      const headers: Record<string, string | number> = {};
      if (opts.token) headers.authorization = `Bearer ${opts.token}`;
      if (payload) {
        headers['content-type'] = 'application/json';
        headers['content-length'] = payload.length;
      }
      const req = http.request({ host: this.host, port: this.port, method, path, headers, agent: opts.agent ?? this.agent }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const buf = Buffer.concat(chunks);
          let body: unknown = null;
          try {
            body = buf.length ? JSON.parse(buf.toString('utf8')) : null;
          } catch {
            body = buf.toString('utf8');
          }
          resolve({ status: res.statusCode ?? 0, body, bytes: buf.length });
        });
        res.on('error', reject);
      });
      req.on('error', reject);
      if (opts.timeoutMs) req.setTimeout(opts.timeoutMs, () => req.destroy(new Error('client timeout')));
      req.end(payload);
    });
  }

  /** A 2xx body, or an HttpError; 5xx (shards settling, actor timeouts under load) is retried a few times. */
  async ok(method: string, path: string, opts: RequestOptions = {}): Promise<any> {
    for (let attempt = 0; ; attempt++) {
      const r = await this.request(method, path, opts);
      if (r.status >= 200 && r.status < 300) return r.body;
      if (r.status >= 500 && attempt < 4) {
        await sleep(200 * (attempt + 1));
        continue;
      }
      throw new HttpError(r.status, `${method} ${path.split('?')[0]} → ${r.status} ${JSON.stringify(r.body).slice(0, 300)}`);
    }
  }

  /** Answers 200 on /versions within `timeoutMs`. */
  async waitUp(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        if ((await this.request('GET', '/_matrix/client/versions')).status === 200) return;
      } catch {
        /* not yet */
      }
      if (Date.now() > deadline) throw new Error(`${this.baseUrl} did not answer /versions within ${timeoutMs / 1000} s`);
      await sleep(200);
    }
  }

  /** `POST /register` with the m.login.dummy stage in the first request (both servers accept that). */
  async register(username: string): Promise<User> {
    const body: Record<string, unknown> = { username, auth: { type: 'm.login.dummy' }, initial_device_display_name: 'bench' };
    if (this.registerPassword) body.password = this.registerPassword(username);
    const r = await this.ok('POST', `${C}/register`, { body });
    return { userId: r.user_id, token: r.access_token };
  }

  /**
   * One createRoom at a time per user: concurrent createRoom calls by one user failed on Axon
   * (400 M_INVALID_ROOM_STATE for the creator's own join, found by bench-sync), and a client does
   * them one after another anyway.
   */
  createRoom(u: User, extra: Record<string, unknown> = {}): Promise<string> {
    const prev = this.createChains.get(u.userId) ?? Promise.resolve();
    const mine = prev.catch(() => undefined).then(async () => (await this.ok('POST', `${C}/createRoom`, { token: u.token, body: { preset: 'public_chat', ...extra } })).room_id as string);
    this.createChains.set(u.userId, mine.catch(() => undefined));
    return mine;
  }

  async join(u: User, roomId: string, timeoutMs?: number): Promise<void> {
    await this.ok('POST', `${C}/rooms/${enc(roomId)}/join`, { token: u.token, body: {}, ...(timeoutMs ? { timeoutMs } : {}) });
  }

  async leave(u: User, roomId: string, timeoutMs?: number): Promise<void> {
    await this.ok('POST', `${C}/rooms/${enc(roomId)}/leave`, { token: u.token, body: {}, ...(timeoutMs ? { timeoutMs } : {}) });
  }

  async send(u: User, roomId: string, body: string, timeoutMs?: number): Promise<string> {
    return (await this.ok('PUT', `${C}/rooms/${enc(roomId)}/send/m.room.message/b${process.pid}-${this.txn++}`, { token: u.token, body: { msgtype: 'm.text', body }, ...(timeoutMs ? { timeoutMs } : {}) })).event_id;
  }

  async setState(u: User, roomId: string, type: string, stateKey: string, content: unknown): Promise<string> {
    return (await this.ok('PUT', `${C}/rooms/${enc(roomId)}/state/${enc(type)}/${enc(stateKey)}`, { token: u.token, body: content })).event_id;
  }

  /** A `since` token from an initial sync that carries no timeline or state (cheap on both servers). */
  async initialSince(u: User): Promise<string> {
    return (await this.ok('GET', `${C}/sync?filter=${INITIAL_FILTER}`, { token: u.token, timeoutMs: 300_000 })).next_batch;
  }

  close(): void {
    this.agent.destroy();
  }
}

export const INITIAL_FILTER = enc(JSON.stringify({ room: { timeline: { limit: 0 }, state: { types: [] } }, presence: { types: [] } }));
/** The sync loops' filter: `limit` timeline events a room (100; matrix-js-sdk's default is 8, Element's 20). */
export const loopFilter = (limit = 100) => enc(JSON.stringify({ room: { timeline: { limit }, state: { types: [] } }, presence: { types: [] } }));
export const LOOP_FILTER = loopFilter();

// ---- sync loops and delivery tracking ---------------------------------------------------------

/** event_id → arrival times (performance.now()) at each member's sync. */
export class Deliveries {
  readonly arrivals = new Map<string, number[]>();
  /** When the last arrival was recorded (performance.now()), to tell when a backlog has drained. */
  lastAt = 0;
  /** /sync answers (200) the loops have had, with or without messages: the server's computations. */
  answers = 0;
  /** Timelines that came back `limited` (more new events than the loop filter's limit: the rest skipped, as a client that does not page back). */
  limited = 0;
  record(eventId: string, at: number): void {
    let list = this.arrivals.get(eventId);
    if (!list) this.arrivals.set(eventId, (list = []));
    list.push(at);
    this.lastAt = at;
  }
  /**
   * Waits until no message has arrived for `quietMs` (at most `maxMs`): after a phase past the
   * server's capacity, the next (lower) rate must not be measured on top of the last one's backlog.
   * Arrivals of those late messages are dropped: their phase is over.
   */
  async drain(quietMs = 2000, maxMs = 60_000): Promise<void> {
    const end = performance.now() + maxMs;
    while (performance.now() < end && performance.now() - this.lastAt < quietMs) await sleep(250);
    this.arrivals.clear();
  }
}

export interface Poller {
  stop(): Promise<void>;
  errors: () => number;
}

/** Every user long-polls /sync (timeout 30 s) in a loop with `since`, recording message arrivals. */
export function startSyncLoops(m: MatrixLoad, users: User[], sinces: string[], deliveries: Deliveries, agent: http.Agent = newAgent(users.length + 10), filter = LOOP_FILTER): Poller {
  let running = true;
  let errors = 0;
  const loops = users.map(async (u, i) => {
    let since = sinces[i]!;
    while (running) {
      try {
        const r = await m.request('GET', `${C}/sync?since=${enc(since)}&timeout=30000&filter=${filter}`, { token: u.token, agent, timeoutMs: 90_000 });
        const now = performance.now();
        if (r.status !== 200) {
          errors++;
          await sleep(100);
          continue;
        }
        since = r.body.next_batch;
        deliveries.answers++;
        const join = r.body.rooms?.join ?? {};
        for (const roomId of Object.keys(join)) {
          if (join[roomId].timeline?.limited) deliveries.limited++;
          for (const ev of join[roomId].timeline?.events ?? []) {
            if (ev.type === 'm.room.message') deliveries.record(ev.event_id, now);
          }
        }
      } catch {
        if (running) {
          errors++;
          await sleep(100);
        }
      }
    }
  });
  return {
    errors: () => errors,
    async stop() {
      running = false;
      agent.destroy(); // ends the waiting long-polls
      await Promise.all(loops);
    },
  };
}

export interface RatePhase {
  targetRate: number;
  seconds: number;
  sent: number;
  sendErrors: number;
  sendRate: number;
  sendP50ms: number;
  sendP99ms: number;
  expectedDeliveries: number;
  deliveries: number;
  deliveryRate: number;
  missing: number;
  deliveryP50ms: number;
  deliveryP99ms: number;
  deliveryMaxMs: number;
  /** The same figures for the sends started within `window` (when asked for). */
  window?: WindowFigures;
}

/** Figures of the sends started within a window of a phase (e.g. while a drain ran). */
export interface WindowFigures {
  seconds: number;
  sent: number;
  sendErrors: number;
  sendP99ms: number;
  missing: number;
  deliveryP50ms: number;
  deliveryP99ms: number;
  deliveryMaxMs: number;
}

export interface SendPick {
  user: User;
  roomId: string;
  members: number;
}

/**
 * Open loop: one send every 1000/rate ms for `seconds` (at most 2,000 in flight; a send not
 * answered within 30 s counts as an error, so a saturated server cannot stretch the phase without
 * bound), then a grace period until every member saw every event or `graceMs` passed. Latencies:
 * /send round trip, and send start → arrival in each member's /sync.
 */
export async function ratePhase(m: MatrixLoad, deliveries: Deliveries, rate: number, seconds: number, pick: () => SendPick, graceMs = 5000, opts: { window?: () => { from: number; to: number } | null } = {}): Promise<RatePhase> {
  const sent: { eventId: string; start: number; members: number; sendMs: number }[] = [];
  const sendLat: number[] = [];
  const errorStarts: number[] = [];
  let sendErrors = 0;
  let inFlight = 0;
  const pending: Promise<void>[] = [];
  const started = performance.now();
  const end = started + seconds * 1000;
  let n = 0;
  while (performance.now() < end) {
    const due = started + (n * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 0) await sleep(wait);
    n++;
    if (inFlight >= 2000) continue;
    const { user, roomId, members } = pick();
    inFlight++;
    const t0 = performance.now();
    pending.push(
      m
        .send(user, roomId, `bench ${rate}/s #${n}`, 30_000)
        .then((eventId) => {
          sendLat.push(performance.now() - t0);
          sent.push({ eventId, start: t0, members, sendMs: performance.now() - t0 });
        })
        .catch(() => {
          sendErrors++;
          errorStarts.push(t0);
        })
        .finally(() => {
          inFlight--;
        }),
    );
  }
  await Promise.all(pending);
  const sendSeconds = (performance.now() - started) / 1000;
  const expected = sent.reduce((s, e) => s + e.members, 0);
  const graceEnd = performance.now() + graceMs;
  const delivered = () => sent.reduce((s, e) => s + Math.min(e.members, deliveries.arrivals.get(e.eventId)?.length ?? 0), 0);
  while (delivered() < expected && performance.now() < graceEnd) await sleep(100);
  const lat: number[] = [];
  let lastArrival = started;
  const win = opts.window?.() ?? null;
  const inWin = (t: number) => !!win && t >= win.from && t <= win.to;
  const winLat: number[] = [];
  const winSend: number[] = [];
  let winExpected = 0;
  for (const e of sent) {
    const w = inWin(e.start);
    if (w) {
      winSend.push(e.sendMs);
      winExpected += e.members;
    }
    for (const t of deliveries.arrivals.get(e.eventId) ?? []) {
      lat.push(t - e.start);
      if (w) winLat.push(t - e.start);
      if (t > lastArrival) lastArrival = t;
    }
    deliveries.arrivals.delete(e.eventId);
  }
  winLat.sort((a, b) => a - b);
  winSend.sort((a, b) => a - b);
  const winMissing = Math.max(0, winExpected - winLat.length);
  const window: WindowFigures | undefined = win
    ? {
        seconds: round((win.to - win.from) / 1000, 2),
        sent: winSend.length,
        sendErrors: errorStarts.filter(inWin).length,
        sendP99ms: round(percentile(winSend, 99)),
        missing: winMissing,
        deliveryP50ms: round(percentile(winLat, 50)),
        deliveryP99ms: winMissing > winExpected * 0.01 ? Infinity : round(percentile(winLat, 99)),
        deliveryMaxMs: round(winLat[winLat.length - 1] ?? NaN),
      }
    : undefined;
  lat.sort((a, b) => a - b);
  sendLat.sort((a, b) => a - b);
  const missing = Math.max(0, expected - lat.length);
  const activeSeconds = Math.max(sendSeconds, (lastArrival - started) / 1000);
  return {
    targetRate: rate,
    seconds: round(sendSeconds, 2),
    sent: sent.length,
    sendErrors,
    sendRate: round(sent.length / sendSeconds),
    sendP50ms: round(percentile(sendLat, 50)),
    sendP99ms: round(percentile(sendLat, 99)),
    expectedDeliveries: expected,
    deliveries: lat.length,
    deliveryRate: round(lat.length / activeSeconds),
    missing,
    deliveryP50ms: round(percentile(lat, 50)),
    // Deliveries that never came within the grace period count as later than any that did: a
    // server that drops or badly lags deliveries must not look fast on the ones it managed.
    deliveryP99ms: missing > expected * 0.01 ? Infinity : round(percentile(lat, 99)),
    deliveryMaxMs: round(lat[lat.length - 1] ?? NaN),
    ...(window ? { window } : {}),
  };
}
