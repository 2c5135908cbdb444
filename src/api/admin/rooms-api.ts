/** The admin API's room part (issue 20): the room list, one room's reads and moderation, deletion, federation destinations. */
import type { Front } from '../../http/server';
import type { ApiContext } from '../context';
import { registerAdminDestinationRoutes } from './destinations';
import { registerAdminRoomDeleteRoutes } from './room-delete';
import { registerAdminRoomListRoutes } from './room-list';
import { registerAdminRoomRoutes } from './rooms';

export function registerAdminRoomsApi(front: Front, ctx: ApiContext): void {
  registerAdminRoomListRoutes(front, ctx);
  registerAdminRoomRoutes(front, ctx);
  registerAdminRoomDeleteRoutes(front, ctx);
  registerAdminDestinationRoutes(front, ctx);
}
