/**
 * A small application service for tests and benches: a node:http server that takes
 * `PUT /_matrix/app/v1/transactions/{txnId}` as an appservice must (the hs_token checked, a txn id
 * seen before answered 200 without being processed again) and records what it got. It can go
 * down (the listener closed and every connection cut: the homeserver sees "connection refused")
 * and come back on the same port, and it can hold transactions unanswered (a worker killed
 * mid-send is the test of that).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

export type Json = Record<string, any>;

export interface ReceivedTxn {
  txnId: string;
  body: Json;
  at: number;
}

export class AppserviceReceiver {
  /** Transactions processed, in arrival order (each txn id once). */
  readonly txns: ReceivedTxn[] = [];
  /** Every PUT that arrived, repeats included (those failed or held too). */
  readonly attempts: ReceivedTxn[] = [];
  /** Requests refused for a wrong or missing hs_token. */
  badAuth = 0;
  /** While set, transactions are answered with this status (and not processed). */
  failWith: number | null = null;
  /** While set, transactions are left unanswered (recorded in `attempts` only). */
  hold = false;
  /** Called on each processed transaction. */
  onTxn?: (t: ReceivedTxn) => void;
  private server: Server | null = null;
  private readonly sockets = new Set<Socket>();
  private readonly seen = new Set<string>();
  port = 0;

  constructor(private readonly hsToken: string) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Every event received, in order. */
  events(): Json[] {
    return this.txns.flatMap((t) => (t.body.events as Json[]) ?? []);
  }
  ephemeral(): Json[] {
    return this.txns.flatMap((t) => (t.body.ephemeral as Json[]) ?? []);
  }
  toDevice(): Json[] {
    return this.txns.flatMap((t) => (t.body['de.sorunome.msc2409.to_device'] as Json[]) ?? []);
  }

  async start(port = 0): Promise<void> {
    const server = createServer((req, res) => void this.handle(req, res));
    server.on('connection', (s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve());
    });
    this.port = (server.address() as { port: number }).port;
    this.server = server;
  }

  /** Stop listening and cut every connection (held requests included). */
  async down(): Promise<void> {
    const s = this.server;
    this.server = null;
    if (!s) return;
    for (const sock of this.sockets) sock.destroy();
    await new Promise<void>((r) => s.close(() => r()));
  }

  /** Listen again on the same port. */
  async up(): Promise<void> {
    await this.start(this.port);
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const reply = (status: number, body: Json) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    const url = new URL(req.url ?? '/', 'http://x');
    const m = /^\/_matrix\/app\/v1\/transactions\/([^/]+)$/.exec(url.pathname);
    if (req.headers.authorization !== `Bearer ${this.hsToken}`) {
      this.badAuth++;
      return reply(403, { errcode: 'M_FORBIDDEN', error: 'bad hs_token' });
    }
    if (!m || req.method !== 'PUT') {
      // Queries (users, rooms, thirdparty) and pings: this appservice knows nothing.
      if (req.method === 'POST' && url.pathname === '/_matrix/app/v1/ping') return reply(200, {});
      return reply(404, { errcode: 'M_NOT_FOUND', error: 'nothing here' });
    }
    const txnId = decodeURIComponent(m[1]!);
    let body: Json;
    try {
      body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Json;
    } catch {
      return reply(400, { errcode: 'M_NOT_JSON', error: 'not JSON' });
    }
    this.attempts.push({ txnId, body, at: Date.now() });
    if (this.hold) return; // left unanswered
    if (this.failWith !== null) return reply(this.failWith, { errcode: 'M_UNKNOWN', error: 'failing on purpose' });
    if (!this.seen.has(txnId)) {
      this.seen.add(txnId);
      const t = { txnId, body, at: Date.now() };
      this.txns.push(t);
      this.onTxn?.(t);
    }
    reply(200, {});
  }
}

/** A registration file's text (Synapse's YAML format; JSON is YAML). */
export function registrationYaml(r: { id: string; url: string | null; asToken: string; hsToken: string; senderLocalpart: string; users?: string[]; aliases?: string[]; rooms?: string[]; exclusive?: boolean; ephemeral?: boolean; toDevice?: boolean }): string {
  const ns = (list: string[] = []) => list.map((regex) => ({ exclusive: r.exclusive ?? false, regex }));
  return JSON.stringify({
    id: r.id,
    url: r.url,
    as_token: r.asToken,
    hs_token: r.hsToken,
    sender_localpart: r.senderLocalpart,
    rate_limited: false,
    namespaces: { users: ns(r.users), aliases: ns(r.aliases), rooms: ns(r.rooms) },
    ...(r.ephemeral ? { receive_ephemeral: true, 'de.sorunome.msc2409.push_ephemeral': true } : {}),
    ...(r.toDevice ? { push_to_device: true } : {}),
  });
}
