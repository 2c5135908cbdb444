/**
 * The reverse proxy in front of Synapse-with-workers for the benchmarks (issue 23, item 7): Synapse
 * workers do not route requests themselves, a deployment puts a router in front that sends each
 * client request to a process able to serve it. This one routes by path the way Synapse's worker
 * documentation lists the endpoints a `synapse.app.generic_worker` can serve; everything else
 * (and the endpoints of the streams the main process writes: typing, to-device, receipts, account
 * data, presence and push-rule writes, media) goes to the main process.
 *
 * Among the generic workers: /sync, /events and /initialSync stick to one worker per user (by the
 * localpart in a `syt_<localpart>_…` access token, else the whole token), so the user's sync
 * caches stay in one process; requests naming a room (/send, /state, membership, /messages) stick
 * to one worker per room; the rest go round-robin.
 *
 *   node --import tsx scripts/synapse-worker-router.ts --listen PORT --main HOST:PORT \
 *     --workers HOST:PORT[,HOST:PORT…]
 *
 * Started and stopped by scripts/bench-synapse-setup (`start --workers N`). Plain node:http: a
 * stream in, a stream out, no buffering, no timeout on long-polls.
 */
import { Agent, createServer, request, type IncomingMessage, type ServerResponse } from 'node:http';

interface Upstream {
  host: string;
  port: number;
}

const C = '^/_matrix/client/(api/v1|r0|v3|unstable)';
const C3 = '^/_matrix/client/(r0|v3|unstable)';

/** Requests for one user's sync stream: pinned to a worker by user. */
const SYNC = [/^\/_matrix\/client\/(r0|v3)\/sync$/, /^\/_matrix\/client\/(api\/v1|r0|v3)\/events$/, /^\/_matrix\/client\/(api\/v1|r0|v3)\/initialSync$/, /^\/_matrix\/client\/(api\/v1|r0|v3)\/rooms\/[^/]+\/initialSync$/];

/** Any method, any generic worker (Synapse's worker docs: client, encryption, registration/login and event-sending requests). */
const ANY_METHOD = [
  `${C}/createRoom$`,
  `${C}/publicRooms$`,
  `${C}/rooms/.*/joined_members$`,
  `${C}/rooms/.*/context/.*$`,
  `${C}/rooms/.*/members$`,
  `${C}/rooms/.*/state$`,
  '^/_matrix/client/v1/rooms/.*/hierarchy$',
  '^/_matrix/client/(v1|unstable)/rooms/.*/relations/',
  '^/_matrix/client/v1/rooms/.*/threads$',
  `${C3}/account/3pid$`,
  `${C3}/account/whoami$`,
  `${C3}/account/deactivate$`,
  '^/_matrix/client/versions$',
  `${C}/voip/turnServer$`,
  `${C}/rooms/.*/event/`,
  `${C}/joined_rooms$`,
  '^/_matrix/client/v1/rooms/.*/timestamp_to_event$',
  `${C}/search$`,
  `${C3}/user/.*/filter(/|$)`,
  `${C}/directory/room/.*$`,
  `${C3}/capabilities$`,
  `${C3}/notifications$`,
  `${C3}/keys/query$`,
  `${C3}/keys/changes$`,
  `${C3}/keys/claim$`,
  `${C3}/room_keys/`,
  `${C}/login$`,
  `${C3}/register$`,
  `${C3}/register/available$`,
  `${C3}/password_policy$`,
  `${C}/rooms/.*/redact`,
  `${C}/rooms/.*/send`,
  `${C}/rooms/.*/state/`,
  `${C}/rooms/.*/(join|invite|leave|ban|unban|kick)$`,
  `${C}/join/`,
  `${C}/knock/`,
  `${C}/profile/`,
  `${C3}/user_directory/search$`,
  // Pagination: every request for a room on one instance (the docs' condition), which the
  // per-room pinning below gives.
  `${C}/rooms/.*/messages$`,
].map((s) => new RegExp(s));

/** GET only: the writes of these streams belong to their writer (here the main process). */
const GET_ONLY = [`${C}/pushrules/`, `${C3}/.*/tags`, `${C3}/.*/account_data`, `${C}/presence/`].map((s) => new RegExp(s));

function parseArgs(argv: string[]): { listen: number; main: Upstream; workers: Upstream[] } {
  const get = (name: string) => {
    const i = argv.indexOf(name);
    const v = i >= 0 ? argv[i + 1] : undefined;
    if (!v) throw new Error(`synapse-worker-router: ${name} is required`);
    return v;
  };
  const hostPort = (s: string): Upstream => {
    const i = s.lastIndexOf(':');
    const port = Number(s.slice(i + 1));
    if (i <= 0 || !Number.isInteger(port) || port <= 0) throw new Error(`synapse-worker-router: not HOST:PORT: ${s}`);
    return { host: s.slice(0, i), port };
  };
  const listen = Number(get('--listen'));
  if (!Number.isInteger(listen) || listen <= 0) throw new Error('synapse-worker-router: --listen takes a port');
  return { listen, main: hostPort(get('--main')), workers: get('--workers').split(',').filter(Boolean).map(hostPort) };
}

/** FNV-1a: a stable, cheap hash for pinning a user or a room to a worker. */
function hash(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** The user a sync request is for: Synapse's tokens are `syt_<base64 localpart>_<random>_<crc>`. */
function userKey(req: IncomingMessage, url: URL): string {
  const auth = req.headers.authorization ?? '';
  const token = auth.startsWith('Bearer ') ? auth.slice(7) : (url.searchParams.get('access_token') ?? '');
  return /^syt_([^_]+)_/.exec(token)?.[1] ?? token;
}

function chooseUpstream(method: string, path: string, req: IncomingMessage, url: URL, main: Upstream, workers: Upstream[], rr: { next: number }): Upstream {
  if (workers.length === 0) return main;
  if (SYNC.some((r) => r.test(path))) return workers[hash(userKey(req, url)) % workers.length]!;
  const onWorker = ANY_METHOD.some((r) => r.test(path)) || (method === 'GET' && GET_ONLY.some((r) => r.test(path)));
  if (!onWorker) return main;
  const room = /\/rooms\/([^/]+)\//.exec(path)?.[1];
  if (room) return workers[hash(decodeURIComponent(room)) % workers.length]!;
  rr.next = (rr.next + 1) % workers.length;
  return workers[rr.next]!;
}

function main(): void {
  const { listen, main: mainUp, workers } = parseArgs(process.argv.slice(2));
  const agent = new Agent({ keepAlive: true, maxSockets: Infinity, maxFreeSockets: 256 });
  const rr = { next: 0 };
  const fail = (res: ServerResponse, status: number, error: string) => {
    if (res.headersSent) {
      res.destroy();
      return;
    }
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ errcode: 'M_UNKNOWN', error }));
  };
  const server = createServer((req, res) => {
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://router');
    } catch {
      fail(res, 400, 'bad request target');
      return;
    }
    const up = chooseUpstream(req.method ?? 'GET', url.pathname, req, url, mainUp, workers, rr);
    const headers = { ...req.headers, 'x-forwarded-for': req.socket.remoteAddress ?? '127.0.0.1', 'x-forwarded-proto': 'http' };
    const upstream = request({ host: up.host, port: up.port, method: req.method, path: req.url, headers, agent }, (ures) => {
      res.writeHead(ures.statusCode ?? 502, ures.headers);
      // An upstream that dies mid-answer: the client sees its connection cut, the router lives on.
      ures.on('error', () => res.destroy());
      ures.pipe(res);
    });
    upstream.on('error', (err) => fail(res, 502, `upstream ${up.host}:${up.port}: ${err.message}`));
    // A client that goes away (a long-poll it gave up on) cancels the upstream request too.
    res.on('close', () => {
      if (!res.writableFinished) upstream.destroy();
    });
    req.on('error', () => upstream.destroy());
    req.pipe(upstream);
  });
  // Long-polls (/sync with timeout) hold a request open for as long as the client asks.
  server.requestTimeout = 0;
  server.keepAliveTimeout = 75_000;
  server.listen(listen, '127.0.0.1', () => {
    process.stderr.write(`synapse-worker-router: 127.0.0.1:${listen} → main ${mainUp.host}:${mainUp.port}, workers ${workers.map((w) => `${w.host}:${w.port}`).join(', ')}\n`);
  });
  const stop = () => {
    server.close(() => process.exit(0));
    server.closeAllConnections();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main();
