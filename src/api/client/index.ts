/** Every Client-Server API route, registered on a front. */
import type { Front } from '../../http/server';
import type { ApiContext } from './context';
import { registerVersionRoutes } from './versions';

export function registerClientApi(front: Front, ctx: ApiContext): void {
  registerVersionRoutes(front, ctx.config.publicBaseUrl);
}
