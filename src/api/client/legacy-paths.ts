/**
 * Unstable and legacy paths clients still call for endpoints the spec has since stabilised. Each
 * serves exactly what its stable endpoint serves (Front.alias). matrix-js-sdk falls back to these
 * when a server does not advertise the spec version that stabilised the endpoint, or when the
 * stable path answers 404 (older servers); older Element builds call some directly:
 * - threads list, MSC3856: `/_matrix/client/unstable/org.matrix.msc3856/rooms/{roomId}/threads`;
 * - space hierarchy, MSC2946: `/_matrix/client/unstable/org.matrix.msc2946/rooms/{roomId}/hierarchy`;
 * - jump to date, MSC3030: `/_matrix/client/unstable/org.matrix.msc3030/rooms/{roomId}/timestamp_to_event`;
 * - a room's local aliases, MSC2432: `/_matrix/client/unstable/org.matrix.msc2432/rooms/{roomId}/aliases`.
 * (Room summaries' MSC3266 paths are in room-summary.ts: their answers differ slightly.)
 */
import type { Front } from '../../http/server';

const ALIASES: [unstable: string, stable: string][] = [
  ['/_matrix/client/unstable/org.matrix.msc3856/rooms/:roomId/threads', '/_matrix/client/v1/rooms/:roomId/threads'],
  ['/_matrix/client/unstable/org.matrix.msc2946/rooms/:roomId/hierarchy', '/_matrix/client/v1/rooms/:roomId/hierarchy'],
  ['/_matrix/client/unstable/org.matrix.msc3030/rooms/:roomId/timestamp_to_event', '/_matrix/client/v1/rooms/:roomId/timestamp_to_event'],
  ['/_matrix/client/unstable/org.matrix.msc2432/rooms/:roomId/aliases', '/_matrix/client/v3/rooms/:roomId/aliases'],
];

/** Register after the stable routes. */
export function registerLegacyPaths(front: Front): void {
  for (const [unstable, stable] of ALIASES) front.alias('GET', unstable, stable);
}
