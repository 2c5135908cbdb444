/**
 * `federationRoute`: a Server-Server API endpoint that needs X-Matrix request authentication
 * (every one but the key and version endpoints). The signed `uri` is the path and query exactly
 * as received; a PUT/POST body is parsed as strict JSON first (it is part of what was signed).
 * A request that fails gets 401 `M_UNAUTHORIZED` (400 for a body that cannot be canonicalised);
 * the handler gets the verified origin. An authenticated request also tells our federation
 * sender that its origin is up (src/federation/sender/wake.ts: a backoff towards it ends now).
 */
import { MatrixError } from '../../http/errors';
import type { Request, Response } from '../../http/server';
import type { Front } from '../../http/server';
import type { Method } from '../../http/router';
import type { JsonValue } from '../../protocol/json';
import { verifyRequest } from '../../protocol/server-auth';
import { DestinationWaker } from '../../federation/sender/wake';
import type { FederationContext } from './context';

export interface FederationCaller {
  /** The server that signed the request. */
  origin: string;
  /** The strict-JSON body of a PUT/POST (undefined for GET/DELETE). */
  body: JsonValue | undefined;
}

export type FederationHandler = (req: Request, caller: FederationCaller) => Response | Promise<Response>;

/** One waker per federation context (its memory of recent checks is shared by every route). */
const wakers = new WeakMap<FederationContext, DestinationWaker>();

function wakerFor(ctx: FederationContext): DestinationWaker {
  let w = wakers.get(ctx);
  if (!w) {
    w = new DestinationWaker(ctx.api.redis, ctx.api.keys, ctx.api.shardCounts, ctx.api.actors, ctx.log);
    wakers.set(ctx, w);
  }
  return w;
}

export function federationRoute(front: Front, ctx: FederationContext, method: Method, path: string, handler: FederationHandler): void {
  const waker = wakerFor(ctx);
  front.route(method, path, async (req) => {
    const body = method === 'PUT' || method === 'POST' ? req.json() : undefined;
    const uri = req.rawQuery ? `${req.path}?${req.rawQuery}` : req.path;
    const auth = await verifyRequest({ method, uri, body, headers: req.headerValues }, ctx.config.serverName, ctx.keyStore.lookupForRequest, Date.now());
    if (!auth.ok) {
      ctx.log.info({ method, path: req.path, ip: req.remoteAddress, error: auth.error }, 'federation request refused');
      throw new MatrixError(auth.status, auth.errcode, auth.error);
    }
    waker.heardFrom(auth.origin);
    return handler(req, { origin: auth.origin, body });
  });
}
