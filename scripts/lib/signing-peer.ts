/**
 * A federation peer for tests and bench-federation, built from src/protocol: its own server name (an IP literal with a
 * port on loopback), an ed25519 key, a small HTTPS server with a leaf of the test CA serving its
 * key document (so Axon fetches and checks its keys as it would any server's), and the read
 * endpoints Axon calls back when it fills gaps (`/get_missing_events`, `/state_ids`, `/event`),
 * answered from the events the test gave it. It signs PDUs and X-Matrix requests.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, request, type Server } from 'node:https';
import { signingKeyFromSeed, type SigningKey } from '../../src/protocol/crypto';
import { computeEventId, hashAndSignEvent } from '../../src/protocol/event-hashing';
import type { JsonObject } from '../../src/protocol/json';
import type { RoomVersion } from '../../src/protocol/room-versions';
import { signRequest } from '../../src/protocol/server-auth';
import { buildServerKeyDocument } from '../../src/protocol/server-keys';
import { freePort } from './bench-util';
import type { TestCa } from './test-ca';

export type Json = Record<string, any>;

export interface RawAnswer {
  status: number;
  body: Json;
  text: string;
}

/** A raw HTTPS request to a federation listener (trusting the CA at `caPath`). */
export function fedRequest(caPath: string, url: string, method: string, headers: Record<string, string>, body?: unknown): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const req = request(url, { method, ca: readFileSync(caPath), agent: false, headers: { ...headers, ...(payload ? { 'Content-Type': 'application/json' } : {}) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json: Json = {};
        try {
          json = JSON.parse(text);
        } catch {
          // not JSON
        }
        resolve({ status: res.statusCode ?? 0, body: json, text });
      });
    });
    req.on('error', reject);
    req.end(payload);
  });
}

export interface PeerRequest {
  method: string;
  path: string;
  body: unknown;
}

export class SigningPeer {
  /** Events this peer "has": served by /event, /get_missing_events and /state_ids. */
  readonly events = new Map<string, JsonObject>();
  /** State before an event, as this peer would answer /state_ids (event id → state ids). */
  readonly stateBefore = new Map<string, string[]>();
  /** Every request Axon made to this peer (unless `recordRequests` is off). */
  readonly requests: PeerRequest[] = [];
  recordRequests = true;
  /**
   * When set, this peer accepts inbound transactions (`PUT /_matrix/federation/v1/send/{txnId}`),
   * hands each body here and answers every PDU with success; without it they are 404, as before.
   */
  onTransaction?: (txn: { origin: string; pdus: JsonObject[]; edus: JsonObject[] }) => void;
  /** While set, every transaction is answered with this status (the peer "is down"), and not passed to onTransaction. */
  downStatus?: number;
  /** Answers for other requests (e.g. `/user/devices`), consulted first; undefined falls through. */
  onRequest?: (method: string, path: string, body: unknown) => { status: number; body: unknown } | undefined;

  private constructor(
    readonly serverName: string,
    readonly key: SigningKey,
    private readonly server: Server,
    private readonly caPath: string,
  ) {}

  static async start(ip: string, ca: TestCa): Promise<SigningPeer> {
    const port = await freePort(ip);
    const serverName = `${ip}:${port}`;
    const key = signingKeyFromSeed(`ed25519:p${randomBytes(2).toString('hex')}`, randomBytes(32));
    const leaf = ca.leaf(ip);
    let peer: SigningPeer | undefined;
    const server = createServer({ cert: readFileSync(leaf.certPath), key: readFileSync(leaf.keyPath) }, (req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let body: unknown;
        try {
          body = text ? JSON.parse(text) : undefined;
        } catch {
          body = undefined;
        }
        const answer = peer!.handle(req.method ?? 'GET', req.url ?? '/', body);
        res.statusCode = answer.status;
        res.setHeader('Content-Type', 'application/json');
        res.end(JSON.stringify(answer.body));
      });
    });
    await new Promise<void>((r) => server.listen(port, ip, r));
    peer = new SigningPeer(serverName, key, server, ca.caPath);
    return peer;
  }

  private handle(method: string, url: string, body: unknown): { status: number; body: unknown } {
    const u = new URL(url, 'https://peer');
    if (this.recordRequests) this.requests.push({ method, path: u.pathname + u.search, body });
    if (u.pathname.startsWith('/_matrix/key/v2/server')) {
      return { status: 200, body: buildServerKeyDocument(this.serverName, [this.key], Date.now() + 24 * 3600_000) };
    }
    const custom = this.onRequest?.(method, u.pathname, body);
    if (custom) return custom;
    const seg = u.pathname.split('/').map(decodeURIComponent);
    if (method === 'PUT' && this.downStatus && u.pathname.startsWith('/_matrix/federation/v1/send/')) {
      return { status: this.downStatus, body: { errcode: 'M_UNKNOWN', error: 'down for the test' } };
    }
    if (method === 'PUT' && this.onTransaction && u.pathname.startsWith('/_matrix/federation/v1/send/')) {
      const txn = (body ?? {}) as { origin: string; pdus?: JsonObject[]; edus?: JsonObject[] };
      const pdus = txn.pdus ?? [];
      this.onTransaction({ origin: txn.origin, pdus, edus: txn.edus ?? [] });
      return { status: 200, body: { pdus: {} } };
    }
    if (method === 'POST' && u.pathname.startsWith('/_matrix/federation/v1/get_missing_events/')) {
      const b = body as { earliest_events: string[]; latest_events: string[]; limit?: number };
      const earliest = new Set(b.earliest_events);
      const found: JsonObject[] = [];
      const seen = new Set<string>(b.latest_events);
      let frontier = b.latest_events.flatMap((id) => refs(this.events.get(id)?.prev_events));
      while (frontier.length && found.length < (b.limit ?? 10)) {
        const next: string[] = [];
        for (const id of frontier) {
          if (seen.has(id) || earliest.has(id)) continue;
          seen.add(id);
          const e = this.events.get(id);
          if (!e) continue;
          found.push(e);
          next.push(...refs(e.prev_events));
        }
        frontier = next;
      }
      found.sort((x, y) => (x.depth as number) - (y.depth as number));
      return { status: 200, body: { events: found.slice(0, b.limit ?? 10) } };
    }
    if (method === 'GET' && u.pathname.startsWith('/_matrix/federation/v1/event/')) {
      const e = this.events.get(seg[5]!);
      return e ? { status: 200, body: { origin: this.serverName, origin_server_ts: Date.now(), pdus: [e] } } : { status: 404, body: { errcode: 'M_NOT_FOUND', error: 'no such event' } };
    }
    if (method === 'GET' && u.pathname.startsWith('/_matrix/federation/v1/state_ids/')) {
      const at = u.searchParams.get('event_id') ?? '';
      const ids = this.stateBefore.get(at);
      return ids ? { status: 200, body: { pdu_ids: ids, auth_chain_ids: [] } } : { status: 404, body: { errcode: 'M_NOT_FOUND', error: 'no state known' } };
    }
    return { status: 404, body: { errcode: 'M_UNRECOGNIZED', error: 'not here' } };
  }

  /** Hash and sign an event as this server (and remember it). */
  sign(raw: JsonObject, version: RoomVersion): { pdu: JsonObject; id: string } {
    const pdu = hashAndSignEvent(raw, version, this.serverName, this.key);
    const id = computeEventId(pdu, version);
    this.events.set(id, pdu);
    return { pdu, id };
  }

  /** An X-Matrix-signed request to `destination` (an Axon's server name) at its federation URL. */
  request(destination: { serverName: string; federationUrl?: string }, method: string, path: string, body?: unknown, key: SigningKey = this.key): Promise<RawAnswer> {
    const [auth] = signRequest({ method, uri: path, origin: this.serverName, destination: destination.serverName, ...(body !== undefined ? { content: body as JsonObject } : {}) }, key);
    return fedRequest(this.caPath, `${destination.federationUrl}${path}`, method, { Authorization: auth! }, body);
  }

  sendTransaction(destination: { serverName: string; federationUrl?: string }, txnId: string, pdus: JsonObject[], edus: JsonObject[] = []): Promise<RawAnswer> {
    return this.request(destination, 'PUT', `/_matrix/federation/v1/send/${encodeURIComponent(txnId)}`, { origin: this.serverName, origin_server_ts: Date.now(), pdus, edus });
  }

  close(): Promise<void> {
    return new Promise((r) => this.server.close(() => r()));
  }
}

function refs(v: unknown): string[] {
  if (!Array.isArray(v)) return [];
  return v.map((r) => (Array.isArray(r) ? r[0] : r)).filter((r): r is string => typeof r === 'string');
}
