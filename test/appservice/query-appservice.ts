/**
 * A small real appservice for tests: one node:http server standing for the registrations
 * `writeRegistrations` writes (`bridge` and `second` are served here; `nourl` has no URL; `down`
 * points at a closed port). It answers the homeserver's queries as bridges do — registering a
 * puppet when asked about a `@irc_known…` user, creating a portal room when asked about a
 * `#irc_portal…` alias, describing its IRC network — and records every request it gets.
 */
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

type Json = Record<string, any>;

export const AS_TOKEN = `as-${randomBytes(8).toString('hex')}`;
export const HS_TOKEN = `hs-${randomBytes(8).toString('hex')}`;
export const SECOND_AS_TOKEN = `as2-${randomBytes(8).toString('hex')}`;
export const SECOND_HS_TOKEN = `hs2-${randomBytes(8).toString('hex')}`;
export const NOURL_TOKEN = `as3-${randomBytes(8).toString('hex')}`;
export const DOWN_TOKEN = `as4-${randomBytes(8).toString('hex')}`;

export interface Seen {
  method: string;
  path: string;
  auth: string | undefined;
  body: string;
}

/** One HTTP server standing for several appservices: `/bridge/...`, `/second/...`. */
export class AppserviceServer {
  readonly seen: Seen[] = [];
  server!: Server;
  port = 0;
  /** What `/bridge`'s ping answers. */
  pingMode: 'ok' | 'error' | 'slow' = 'ok';
  /** `/second` answers third-party questions this late (ms): longer than the server's deadline tests it. */
  secondDelayMs = 0;
  homeserver = '';
  /** The homeserver's server name (user ids in third-party answers). */
  serverName = 'localhost';

  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        this.seen.push({ method: req.method!, path: req.url!, auth: req.headers.authorization, body });
        this.handle(req, res, body).catch((e) => {
          res.writeHead(500, { 'Content-Type': 'application/json' });
          res.end(JSON.stringify({ errcode: 'M_UNKNOWN', error: String(e) }));
        });
      });
    });
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.port = (this.server.address() as { port: number }).port;
  }

  stop(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((r) => this.server.close(() => r()));
  }

  /** Calls the homeserver as the bridge (with its as_token). */
  async hs(method: string, path: string, body?: unknown): Promise<{ status: number; body: Json }> {
    const r = await fetch(`${this.homeserver}${path}`, { method, headers: { Authorization: `Bearer ${AS_TOKEN}`, 'Content-Type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });
    return { status: r.status, body: (await r.json()) as Json };
  }

  private async handle(req: IncomingMessage, res: ServerResponse, body: string): Promise<void> {
    const url = new URL(req.url!, 'http://x');
    const send = (status: number, json: unknown) => {
      res.writeHead(status, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify(json));
    };
    const [, service, ...rest] = url.pathname.split('/');
    const path = `/${rest.join('/')}`;
    const expected = service === 'bridge' ? HS_TOKEN : SECOND_HS_TOKEN;
    // As bridges do: anything without the homeserver's token is refused.
    if (req.headers.authorization !== `Bearer ${expected}`) return send(403, { errcode: 'M_FORBIDDEN', error: 'Bad token supplied' });
    if (path === '/_matrix/app/v1/ping' && req.method === 'POST') {
      if (this.pingMode === 'error') return send(500, { errcode: 'M_UNKNOWN', error: 'the bridge is broken' });
      if (this.pingMode === 'slow') await new Promise((r) => setTimeout(r, 4000));
      return send(200, {});
    }
    const user = /^\/_matrix\/app\/v1\/users\/(.+)$/.exec(path);
    if (user && service === 'bridge') {
      const userId = decodeURIComponent(user[1]!);
      // Knows nicks starting with "known": registers the puppet, then says yes.
      const m = /^@(irc_known[a-z0-9]*):/.exec(userId);
      if (!m) return send(404, { errcode: 'M_NOT_FOUND', error: 'no such nick' });
      const r = await this.hs('POST', '/_matrix/client/v3/register', { type: 'm.login.application_service', username: m[1], inhibit_login: true });
      if (r.status !== 200 && r.body.errcode !== 'M_USER_IN_USE') throw new Error(`register failed: ${JSON.stringify(r.body)}`);
      await this.hs('PUT', `/_matrix/client/v3/profile/${encodeURIComponent(userId)}/displayname?user_id=${encodeURIComponent(userId)}`, { displayname: `${m[1]} (IRC)` });
      return send(200, {});
    }
    const room = /^\/_matrix\/app\/v1\/rooms\/(.+)$/.exec(path);
    if (room && service === 'bridge') {
      const alias = decodeURIComponent(room[1]!);
      const m = /^#(irc_portal[a-z0-9]*):/.exec(alias);
      if (!m) return send(404, { errcode: 'M_NOT_FOUND', error: 'no such channel' });
      const r = await this.hs('POST', '/_matrix/client/v3/createRoom', { room_alias_name: m[1], name: `Portal ${m[1]}`, preset: 'public_chat' });
      if (r.status !== 200) throw new Error(`createRoom failed: ${JSON.stringify(r.body)}`);
      return send(200, {});
    }
    if (service === 'second' && path.startsWith('/_matrix/app/v1/thirdparty/') && this.secondDelayMs) await new Promise((r) => setTimeout(r, this.secondDelayMs));
    const protocol = /^\/_matrix\/app\/v1\/thirdparty\/protocol\/(.+)$/.exec(path);
    if (protocol) {
      if (decodeURIComponent(protocol[1]!) !== 'irc') return send(404, { errcode: 'M_NOT_FOUND', error: 'unknown protocol' });
      const network = service === 'bridge' ? 'libera' : 'oftc';
      return send(200, {
        user_fields: ['network', 'nickname'],
        location_fields: ['network', 'channel'],
        icon: 'mxc://example.org/irc',
        field_types: { network: { regexp: '[a-z]+', placeholder: 'libera' }, nickname: { regexp: '[^\\s]+', placeholder: 'nick' }, channel: { regexp: '#[^\\s]+', placeholder: '#chan' } },
        instances: [{ network_id: network, desc: `${network} IRC`, icon: 'mxc://example.org/net', fields: { network } }, { desc: 'an instance without a network id', fields: {} }],
      });
    }
    if (path === '/_matrix/app/v1/thirdparty/user/irc') {
      const nick = url.searchParams.get('nickname');
      if (!nick) return send(404, { errcode: 'M_NOT_FOUND', error: 'none' });
      const network = service === 'bridge' ? 'libera' : 'oftc';
      // One valid entry and one that lacks `fields` (the server drops it).
      return send(200, [{ userid: `@irc_${nick}_${network}:${this.serverName}`, protocol: 'irc', fields: { network, nickname: nick } }, { userid: `@broken:${this.serverName}`, protocol: 'irc' }]);
    }
    if (path === '/_matrix/app/v1/thirdparty/location/irc' && service === 'bridge') {
      const channel = url.searchParams.get('channel');
      return send(200, [{ alias: `#irc_portal${(channel ?? '').replace('#', '')}:${this.serverName}`, protocol: 'irc', fields: { network: 'libera', channel } }]);
    }
    if (path === '/_matrix/app/v1/thirdparty/user' && service === 'bridge') {
      const userId = url.searchParams.get('userid');
      return send(200, [{ userid: userId, protocol: 'irc', fields: { network: 'libera', nickname: 'someone' } }]);
    }
    if (path === '/_matrix/app/v1/thirdparty/location' && service === 'bridge') {
      const alias = url.searchParams.get('alias');
      return send(200, [{ alias, protocol: 'irc', fields: { network: 'libera', channel: '#somewhere' } }]);
    }
    send(404, { errcode: 'M_UNRECOGNIZED', error: `not here: ${path}` });
  }
}

export function writeRegistrations(dir: string, appservicePort: number, closedPort: number, rateLimited: boolean): string[] {
  const files = {
    'bridge.yaml': `id: bridge
url: http://127.0.0.1:${appservicePort}/bridge
as_token: ${AS_TOKEN}
hs_token: ${HS_TOKEN}
sender_localpart: ircbot
rate_limited: ${rateLimited}
namespaces:
  users:
  - regex: '@irc_.*'
    exclusive: true
  - regex: '@shared_.*'
    exclusive: false
  aliases:
  - regex: '#irc_.*'
    exclusive: true
  rooms: []
protocols: [irc]
receive_ephemeral: true
`,
    'second.yaml': `id: second
url: http://127.0.0.1:${appservicePort}/second
as_token: ${SECOND_AS_TOKEN}
hs_token: ${SECOND_HS_TOKEN}
sender_localpart: secondbot
namespaces:
  users:
  - regex: '@second_.*'
    exclusive: true
protocols: [irc]
`,
    'nourl.yaml': `id: nourl
url: null
as_token: ${NOURL_TOKEN}
hs_token: hs-nourl-${randomBytes(4).toString('hex')}
sender_localpart: nourlbot
namespaces:
  users:
  - regex: '@nourl_.*'
    exclusive: true
`,
    'down.yaml': `id: down
url: http://127.0.0.1:${closedPort}
as_token: ${DOWN_TOKEN}
hs_token: hs-down-${randomBytes(4).toString('hex')}
sender_localpart: downbot
namespaces:
  users: []
`,
  };
  return Object.entries(files).map(([name, text]) => {
    const path = join(dir, name);
    writeFileSync(path, text);
    return path;
  });
}
