/**
 * The history visibility a room has at a point, from its `m.room.history_visibility` state
 * (client-server API, "Room History Visibility"): "if no `history_visibility` is set, or if the
 * value is not understood, the visibility is assumed to be `shared`". So a missing event, a
 * missing field, a value that is not a string, and a string that is none of the four values all
 * read as `shared` (Synapse's `get_effective_room_visibility_from_state` does the same). Every
 * reader that asks what a room's history visibility is goes through here, so they agree.
 */
import { isJsonObject, type JsonValue } from './json';

export type HistoryVisibility = 'world_readable' | 'shared' | 'invited' | 'joined';

const KNOWN: ReadonlySet<string> = new Set<HistoryVisibility>(['world_readable', 'shared', 'invited', 'joined']);

/** The effective visibility given the content of the state event (undefined: there is none). */
export function effectiveHistoryVisibility(content: JsonValue | undefined): HistoryVisibility {
  const v = isJsonObject(content) ? content.history_visibility : undefined;
  return typeof v === 'string' && KNOWN.has(v) ? (v as HistoryVisibility) : 'shared';
}
