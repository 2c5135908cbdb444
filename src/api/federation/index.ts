/**
 * The Server-Server API on the federation listener (TLS, its own port): the key endpoints (ours
 * and as a notary), the version, `/.well-known/matrix/server` when configured, and the
 * X-Matrix-authenticated `/_matrix/federation/*` endpoints.
 */
import type { Front } from '../../http/server';
import { errors } from '../../http/errors';
import type { FederationContext } from './context';
import { registerKeyRoutes } from './keys';
import { registerKeyQueryRoutes } from './key-query';
import { registerQueryProfileRoute } from './query-profile';
import { registerSendRoute } from './send';
import { registerEventRoute } from './event';
import { registerStateRoutes } from './state';
import { registerEventAuthRoute } from './event-auth';
import { registerBackfillRoute } from './backfill';
import { registerGetMissingEventsRoute } from './get-missing-events';
import { registerTimestampToEventRoute } from './timestamp-to-event';
import { registerVersionRoute } from './version';
import { registerMakeJoinRoute } from './make-join';
import { registerSendJoinRoutes } from './send-join';
import { registerLeaveRoutes } from './leave';
import { registerKnockRoutes } from './knock';
import { registerQueryDirectoryRoute } from './query-directory';
import { registerInviteRoutes } from './invite';
import { registerFederationMediaRoutes } from './media';

export function registerFederationApi(front: Front, ctx: FederationContext): void {
  registerKeyRoutes(front, ctx.own);
  registerKeyQueryRoutes(front, ctx);
  registerVersionRoute(front);
  registerWellKnownServer(front, ctx.config.federation.wellKnownServer);
  registerQueryProfileRoute(front, ctx);
  registerSendRoute(front, ctx);
  registerEventRoute(front, ctx);
  registerStateRoutes(front, ctx);
  registerEventAuthRoute(front, ctx);
  registerBackfillRoute(front, ctx);
  registerGetMissingEventsRoute(front, ctx);
  registerTimestampToEventRoute(front, ctx);
  registerMakeJoinRoute(front, ctx);
  registerSendJoinRoutes(front, ctx);
  registerLeaveRoutes(front, ctx);
  registerKnockRoutes(front, ctx);
  registerQueryDirectoryRoute(front, ctx);
  registerInviteRoutes(front, ctx);
  registerFederationMediaRoutes(front, ctx);
}

// GET /.well-known/matrix/server
/** Delegation (`federation.wellKnownServer`); 404 when none is configured. */
export function registerWellKnownServer(front: Front, delegated: string): void {
  front.route('GET', '/.well-known/matrix/server', () => {
    if (!delegated) throw errors.notFound('No delegation configured');
    return { body: { 'm.server': delegated } };
  }, { needsStore: false });
}
