/** Every Client-Server API route, registered on a front. */
import type { Front } from '../../http/server';
import type { ApiContext } from './context';
import { registerVersionRoutes } from './versions';
import { registerRoomRoutes } from './rooms';
import { registerAccountsApi } from './accounts';

export function registerClientApi(front: Front, ctx: ApiContext): void {
  registerVersionRoutes(front, ctx.config.publicBaseUrl);
  registerRoomRoutes(front, ctx);
  registerAccountsApi(front, ctx);
}
