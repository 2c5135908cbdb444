/** Every Client-Server API route, registered on a front. */
import type { Front } from '../../http/server';
import type { ApiContext } from './context';
import { registerVersionRoutes } from './versions';
import { registerRoomRoutes } from './rooms';
import { registerAccountsApi } from './accounts';
import { registerDirectoryRoutes } from './directory';
import { registerUserDirectoryRoutes } from './user-directory';
import { registerTagRoutes } from './tags';
import { registerPushRuleRoutes } from './push-rules';
import { registerRelationRoutes } from './relations';
import { registerRoomUpgradeRoutes } from './room-upgrade';
import { registerSpaceHierarchyRoutes } from './space-hierarchy';
import { registerRoomSummaryRoutes } from './room-summary';
import { registerLegacyPaths } from './legacy-paths';
import { registerReportRoutes } from './report';
import { registerAdminRegistrationRoutes } from '../admin/register';
import { registerSyncRoutes } from './sync';
import { registerToDeviceRoutes } from './to-device';
import { registerEphemeralRoutes } from './ephemeral';
import { registerRoomKeysRoutes } from './room-keys';
import { registerPresenceRoutes } from './presence';
import { registerNotificationRoutes } from './notifications';
import { registerKeyRoutes } from './keys';
import { MembershipIndex } from '../../readers/membership-index';

export function registerClientApi(front: Front, ctx: ApiContext): void {
  registerVersionRoutes(front, ctx.config.publicBaseUrl);
  registerRoomRoutes(front, ctx);
  registerAccountsApi(front, ctx);
  registerDirectoryRoutes(front, ctx);
  registerUserDirectoryRoutes(front, ctx);
  registerTagRoutes(front, ctx);
  registerPushRuleRoutes(front, ctx);
  registerRelationRoutes(front, ctx);
  registerRoomUpgradeRoutes(front, ctx);
  registerSpaceHierarchyRoutes(front, ctx);
  registerRoomSummaryRoutes(front, ctx);
  registerAdminRegistrationRoutes(front, ctx);
  registerToDeviceRoutes(front, ctx);
  registerEphemeralRoutes(front, ctx);
  registerRoomKeysRoutes(front, ctx);
  registerPresenceRoutes(front, ctx);
  registerNotificationRoutes(front, ctx);
  registerKeyRoutes(front, ctx);
  registerSyncRoutes(front, ctx, new MembershipIndex(ctx.redis, ctx.keys, ctx.shardCounts.user));
  registerReportRoutes(front, ctx);
  registerLegacyPaths(front);
}
