/** The admin API's smaller parts (one file each), registered together to keep index.ts small. */
import type { Front } from '../../http/server';
import type { ApiContext } from '../context';
import { registerEventReportRoutes } from './event-reports';
import { registerMediaAdminRoutes } from './media';
import { registerRegistrationTokenRoutes } from './registration-tokens';
import { registerServerNoticeRoutes } from './server-notices';

export function registerAdminMiscRoutes(front: Front, ctx: ApiContext): void {
  registerRegistrationTokenRoutes(front, ctx);
  registerEventReportRoutes(front, ctx);
  registerServerNoticeRoutes(front, ctx);
  registerMediaAdminRoutes(front, ctx);
}
