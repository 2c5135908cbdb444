/** Device management: list, show, rename, delete (with user-interactive auth). */
import { MatrixError, errors } from '../../http/errors';
import type { Front, Request } from '../../http/server';
import { userData } from '../../store/keys';
import type { DeviceJson } from '../../../actors/user';
import { requireUser } from './auth';
import { askUser, clientRoute, jsonBody, optional } from './accounts-common';
import { userKey } from '../../store/shard-keys';
import type { ApiContext } from '../context';
import { checkPasswordStage, requireUia } from './uia';
import { pruneDeviceInboxes } from './to-device';
import { forgetDeviceKeys } from './keys';

const MAX_DISPLAY_NAME = 256;

export function registerDeviceRoutes(front: Front, ctx: ApiContext): void {
  clientRoute(front, 'GET', '/devices', async (req) => {
    const me = await requireUser(ctx, req);
    const all = await ctx.redis.hgetall(userKey(ctx, me.userId, userData.devices(me.userId)));
    const devices = Object.values(all).map((j) => JSON.parse(j) as DeviceJson);
    devices.sort((a, b) => a.device_id.localeCompare(b.device_id));
    return { body: { devices } };
  });
  clientRoute(front, 'GET', '/devices/:deviceId', async (req) => {
    const me = await requireUser(ctx, req);
    const device = await readDevice(ctx, me.userId, req.params.deviceId!);
    if (!device) throw errors.notFound('Unknown device');
    return { body: device };
  });
  clientRoute(front, 'PUT', '/devices/:deviceId', async (req) => {
    const me = await requireUser(ctx, req);
    const body = jsonBody(req);
    const name = optional(body, 'display_name', 'string');
    if (name !== undefined && name.length > MAX_DISPLAY_NAME) throw errors.invalidParam(`display_name must be at most ${MAX_DISPLAY_NAME} characters`);
    const deviceId = req.params.deviceId!;
    if (name === undefined) {
      // Nothing to change; the device must still exist.
      if (!(await readDevice(ctx, me.userId, deviceId))) throw errors.notFound('Unknown device');
      return { body: {} };
    }
    await askUser(ctx, me.userId, { op: 'update_device', deviceId, displayName: name });
    return { body: {} };
  });
  clientRoute(front, 'DELETE', '/devices/:deviceId', (req) => deleteDevices(ctx, req, [req.params.deviceId!], jsonBody(req, true)));
  clientRoute(front, 'POST', '/delete_devices', async (req) => {
    // The token first: a request without one is 401 whatever its body (as every other endpoint).
    await requireUser(ctx, req);
    const body = jsonBody(req);
    const ids = body.devices;
    if (!Array.isArray(ids) || !ids.every((d) => typeof d === 'string')) throw errors.badJson('devices must be a list of device ids');
    return deleteDevices(ctx, req, ids as string[], body);
  });
}

async function readDevice(ctx: ApiContext, userId: string, deviceId: string): Promise<DeviceJson | null> {
  const json = await ctx.redis.hget(userKey(ctx, userId, userData.devices(userId)), deviceId);
  return json ? (JSON.parse(json) as DeviceJson) : null;
}

async function deleteDevices(ctx: ApiContext, req: Request, deviceIds: string[], body: ReturnType<typeof jsonBody>) {
  const me = await requireUser(ctx, req);
  if (deviceIds.length > 1000) throw new MatrixError(400, 'M_INVALID_PARAM', 'At most 1000 devices at once');
  await requireUia(ctx, body, { purpose: 'delete_devices', userId: me.userId, flows: [['m.login.password']], checkStage: (_s, auth) => checkPasswordStage(ctx, me.userId, auth) });
  // Devices that do not exist (any more) are not an error: "removed, or had been removed previously".
  await askUser(ctx, me.userId, { op: 'delete_devices', deviceIds });
  pruneDeviceInboxes(ctx, me.userId);
  // Then their keys: /keys/query never lists a deleted device, and its one-time keys go too.
  await forgetDeviceKeys(ctx, me.userId, deviceIds);
  return { body: {} };
}
