/**
 * `GET /voip/turnServer` (voip.yaml): the TURN servers a client may relay calls through, with
 * credentials. With `voip.turnSharedSecret` (Synapse's `turn_shared_secret`) each request gets
 * credentials of its own that expire: the username is `<expiry, Unix seconds>:<user id>` and the
 * password the base64 HMAC-SHA1 of the username under the secret — the TURN REST API scheme that
 * coturn's `use-auth-secret` verifies, as Synapse issues them. Otherwise the configured fixed
 * username and password. Without `voip.turnUris` there is no TURN here: 404 `M_UNRECOGNIZED` (a
 * `{}` answer, Synapse's, would lack the fields the spec requires).
 */
import { createHmac } from 'node:crypto';
import { errors } from '../../http/errors';
import type { Front } from '../../http/server';
import type { AxonConfig } from '../../../cluster.config';
import { requireUser } from './auth';
import { clientRoute } from './room-common';
import type { ApiContext } from '../context';

export interface TurnServerAnswer {
  username: string;
  password: string;
  uris: string[];
  /** Seconds the credentials stay valid. */
  ttl: number;
}

/** The answer for `userId` at `nowMs` (null: no TURN configured). */
export function turnServerAnswer(voip: AxonConfig['voip'], userId: string, nowMs: number): TurnServerAnswer | null {
  if (!voip.turnUris.length) return null;
  const ttl = Math.floor(voip.turnUserLifetimeMs / 1000);
  if (voip.turnSharedSecret) {
    const username = `${Math.floor(nowMs / 1000) + ttl}:${userId}`;
    const password = createHmac('sha1', voip.turnSharedSecret).update(username).digest('base64');
    return { username, password, uris: [...voip.turnUris], ttl };
  }
  return { username: voip.turnUsername, password: voip.turnPassword, uris: [...voip.turnUris], ttl };
}

export function registerVoipRoutes(front: Front, ctx: ApiContext): void {
  clientRoute(front, 'GET', '/voip/turnServer', async (req) => {
    const user = await requireUser(ctx, req);
    const answer = turnServerAnswer(ctx.config.voip, user.userId, Date.now());
    if (!answer) throw errors.unrecognized('No TURN server is configured on this server');
    return { body: { ...answer } };
  });
}
