/** The accounts side of the Client-Server API: accounts, devices, account data and filters, profiles. */
import type { Front } from '../../http/server';
import { registerAccountRoutes } from './account';
import { registerAccountDataRoutes } from './account-data';
import type { ApiContext } from '../context';
import { registerDeviceRoutes } from './devices';
import { registerProfileRoutes } from './profile';

export function registerAccountsApi(front: Front, ctx: ApiContext): void {
  registerAccountRoutes(front, ctx);
  registerDeviceRoutes(front, ctx);
  registerAccountDataRoutes(front, ctx);
  registerProfileRoutes(front, ctx);
}
