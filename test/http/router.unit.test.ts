/**
 * The front's router (src/http/router.ts): a path tries only the routes whose literal first parts
 * agree with it, and still gets what trying every route in order gives — the first match, 405 with
 * the methods allowed, or 404 — whatever the parameters and wildcards in those first parts.
 */
import { describe, expect, it } from 'vitest';
import { Router, type Method } from '../../src/http/router';

const ROUTES: [Method, string][] = [
  ['GET', '/_matrix/client/versions'],
  ['GET', '/_matrix/client/v3/sync'],
  ['PUT', '/_matrix/client/v3/rooms/:roomId/send/:eventType/:txnId'],
  ['GET', '/_matrix/client/v3/rooms/:roomId/messages'],
  ['PUT', '/_matrix/client/v3/rooms/:roomId/state/:eventType/:stateKey'],
  ['PUT', '/_matrix/client/v3/rooms/:roomId/state/:eventType'],
  ['GET', '/_matrix/client/v3/rooms/:roomId/state/:eventType/:stateKey'],
  ['POST', '/_matrix/client/v3/join/:roomIdOrAlias'],
  ['GET', '/_matrix/media/v3/download/:serverName/:mediaId'],
  ['GET', '/_matrix/media/v3/download/:serverName/:mediaId/:fileName'],
  ['GET', '/_matrix/:any/v9/odd'],
  ['GET', '/:first/anything'],
  ['GET', '/static/*rest'],
  ['POST', '/*everything'],
  ['GET', '/health'],
];

/** What the router answered before it picked candidates: every route in registration order. */
function bruteForce(method: string, path: string): string {
  const allowed: string[] = [];
  for (const [m, pattern] of ROUTES) {
    const names: string[] = [];
    const source = pattern
      .split('/')
      .map((seg) => (seg.startsWith(':') ? (names.push(seg), '([^/]+)') : seg.startsWith('*') ? (names.push(seg), '(.*)') : seg.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')))
      .join('/');
    if (!new RegExp(`^${source}$`).test(path)) continue;
    if (m !== method && !(method === 'HEAD' && m === 'GET')) {
      allowed.push(m);
      continue;
    }
    return `match ${m} ${pattern}`;
  }
  return allowed.length ? `405 ${allowed.join(',')}` : '404';
}

describe('Router', () => {
  it('answers every path as trying every route in order would', () => {
    const router = new Router<string>();
    for (const [m, p] of ROUTES) router.add(m, p, `${m} ${p}`);
    const paths = [
      '/_matrix/client/versions',
      '/_matrix/client/v3/sync',
      '/_matrix/client/v3/sync/',
      '/_matrix/client/v3/rooms/!a:x/send/m.room.message/t1',
      '/_matrix/client/v3/rooms/!a:x/messages',
      '/_matrix/client/v3/rooms/!a:x/state/m.room.name/',
      '/_matrix/client/v3/rooms/!a:x/state/m.room.name',
      '/_matrix/client/v3/rooms/!a:x/state/m.room.member/@u:x',
      '/_matrix/client/v3/rooms',
      '/_matrix/client/v3/join/%23room%3Ax',
      '/_matrix/media/v3/download/x/abc',
      '/_matrix/media/v3/download/x/abc/file.png',
      '/_matrix/foo/v9/odd',
      '/_matrix/anything',
      '/static/a/b/c',
      '/static',
      '/health',
      '/',
      '',
      '/nope/nope/nope/nope/nope/nope',
    ];
    for (const path of paths) {
      for (const method of ['GET', 'PUT', 'POST', 'HEAD', 'DELETE']) {
        const r = router.match(method, path);
        const got = r.kind === 'match' ? `match ${r.match.handler}` : r.kind === 'wrong-method' ? `405 ${r.allowed.join(',')}` : '404';
        expect(`${method} ${path}: ${got}`).toBe(`${method} ${path}: ${bruteForce(method, path)}`);
      }
    }
    const send = router.match('PUT', '/_matrix/client/v3/rooms/!a%3Ax/send/m.room.message/t%201');
    expect(send.kind === 'match' && send.match.params).toEqual({ roomId: '!a:x', eventType: 'm.room.message', txnId: 't 1' });
  });

  it('takes routes added after a match into account', () => {
    const router = new Router<string>();
    router.add('GET', '/_matrix/client/v3/sync', 'sync');
    expect(router.match('GET', '/_matrix/client/v3/account/whoami').kind).toBe('none');
    router.add('GET', '/_matrix/client/v3/account/whoami', 'whoami');
    const r = router.match('GET', '/_matrix/client/v3/account/whoami');
    expect(r.kind === 'match' && r.match.handler).toBe('whoami');
  });
});
