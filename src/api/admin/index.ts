/** Synapse's admin API (`/_synapse/admin/...`) and the spec's admin endpoints, for admins only: what admin tools call. */
import type { Front } from '../../http/server';
import { AXON_VERSION } from '../../version';
import type { ApiContext } from '../context';
import { registerAccountModerationRoutes } from './account-moderation';
import { registerAdminRegistrationRoutes } from './register';
import { registerAdminRoomsApi } from './rooms-api';
import { registerAdminUserListRoutes } from './user-list';
import { registerAdminUserRoutes } from './users';
import { registerAdminMiscRoutes } from './misc';

export function registerAdminApi(front: Front, ctx: ApiContext): void {
  registerAdminRegistrationRoutes(front, ctx);
  // Unauthenticated in Synapse too (tools probe it to learn what they talk to).
  front.route('GET', '/_synapse/admin/v1/server_version', () => ({ body: { server_version: `axon ${AXON_VERSION}` } }), { needsStore: false });
  registerAdminUserRoutes(front, ctx);
  registerAdminUserListRoutes(front, ctx);
  registerAccountModerationRoutes(front, ctx);
  registerAdminRoomsApi(front, ctx);
  registerAdminMiscRoutes(front, ctx);
}
