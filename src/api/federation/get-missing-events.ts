// POST /_matrix/federation/v1/get_missing_events/{roomId}
/**
 * The events a server lacks between what it has (`earliest_events`) and what it got
 * (`latest_events`): walking back from the latest events' prev_events, not past the earliest
 * ones or below `min_depth`, at most `limit` (default 10), answered oldest first as `{ events }`.
 * For servers with a user in the room; events the server may not see are sent redacted.
 */
import { errors } from '../../http/errors';
import type { Front } from '../../http/server';
import { isJsonObject, type JsonValue } from '../../protocol/json';
import { requireServerAccess } from '../../federation/inbound/room-access';
import { eventsForServer } from '../../federation/inbound/server-reads';
import { federationRoute } from './auth';
import { walkBack } from './backfill';
import type { FederationContext } from './context';

const MAX_LIMIT = 50;
const MAX_IDS = 100;

function idList(body: Record<string, JsonValue>, name: string): string[] {
  const v = body[name];
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) throw errors.badJson(`${name} must be a list of event ids`);
  if (v.length > MAX_IDS) throw errors.badJson(`At most ${MAX_IDS} event ids in ${name}`);
  return v as string[];
}

export function registerGetMissingEventsRoute(front: Front, ctx: FederationContext): void {
  federationRoute(front, ctx, 'POST', '/_matrix/federation/v1/get_missing_events/:roomId', async (req, caller) => {
    const roomId = req.params.roomId ?? '';
    const body = caller.body;
    if (!isJsonObject(body)) throw errors.badJson('The body must be an object');
    const earliest = idList(body, 'earliest_events');
    const latest = idList(body, 'latest_events');
    const limit = body.limit === undefined ? 10 : body.limit;
    const minDepth = body.min_depth === undefined ? 0 : body.min_depth;
    if (typeof limit !== 'number' || !Number.isInteger(limit) || limit < 0) throw errors.badJson('limit must be a non-negative integer');
    if (typeof minDepth !== 'number' || !Number.isInteger(minDepth)) throw errors.badJson('min_depth must be an integer');
    const room = await requireServerAccess(ctx.api.rooms, roomId, caller.origin);
    const events = await walkBack(ctx, roomId, latest, Math.min(limit, MAX_LIMIT), new Set(earliest), { includeStart: false, minDepth });
    events.reverse();
    const pdus = await eventsForServer(ctx.api, roomId, room.version, caller.origin, events, 'redact');
    return { body: { events: pdus } };
  });
}
