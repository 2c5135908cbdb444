/**
 * Publishing rooms in the room directory or taking them out (the routes and listing:
 * src/api/client/directory.ts): through the rooms' actors, then waiting for the published-rooms
 * set. Used by the directory route and by the createRoom and upgrade workflows.
 */
import type { ApiContext } from '../api/context';
import { askRoomFamily } from './ask';
import type { DirectoryVisibility, RoomMessage } from './model';

/** How long a change waits for the published-rooms set to show it (read-your-writes). */
const INDEX_WAIT_MS = 2000;
const INDEX_POLL_MS = 5;

/**
 * Publish rooms in the room directory or take them out, through their room actors, then wait
 * (boundedly) until the derived set of published rooms shows the change, so the client's next
 * read sees it. The set is written by the membership index reader only; if it is slow, the
 * change is still made and the set follows.
 */
export async function setDirectoryVisibility(ctx: ApiContext, changes: [roomId: string, visibility: DirectoryVisibility][]): Promise<void> {
  for (const [roomId, visibility] of changes) await askRoomFamily(ctx, 'room', roomId, { op: 'set_directory_visibility', visibility } satisfies RoomMessage);
  const deadline = Date.now() + INDEX_WAIT_MS;
  for (const [roomId, visibility] of changes) {
    for (;;) {
      const listed = (await ctx.redis.sismember(ctx.keys.publicRooms(), roomId)) === 1;
      if (listed === (visibility === 'public')) break;
      if (Date.now() >= deadline) {
        ctx.log.warn({ room_id: roomId, visibility }, 'room directory: the published-rooms set has not caught up yet');
        return;
      }
      await new Promise((r) => setTimeout(r, INDEX_POLL_MS));
    }
  }
}

/** The rooms appservices published in their networks' directories: [appservice id, network id, room id]. */
export async function appserviceRoomList(ctx: ApiContext): Promise<[string, string, string][]> {
  const out: [string, string, string][] = [];
  for (const m of await ctx.redis.smembers(ctx.keys.appserviceRoomList())) {
    try {
      const v = JSON.parse(m) as unknown;
      if (Array.isArray(v) && v.length === 3 && v.every((x) => typeof x === 'string')) out.push(v as [string, string, string]);
    } catch {
      /* not ours: skipped */
    }
  }
  return out;
}
