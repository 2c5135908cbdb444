/**
 * Sync tokens (`next_batch`, `since`, and the `from`/`to` of /keys/changes).
 *
 * A token is a time cut, `s<µs>`: Redis `TIME` taken when the response was computed (see the
 * design note in src/api/client/sync.ts). Everything written to a stream read by /sync gets an
 * entry id from the same Redis clock, so "ids below the cut's millisecond" is exactly what a
 * response covered, whatever the number of shards (DESIGN rule 9: short with 1024 shards).
 *
 * A stream that a response could not give in full (to-device messages are capped per response)
 * adds its own position after the cut: `s<µs>~<name><position>` parts, e.g.
 * `s1732150000000000~t1732150000000-3`. Names are one lowercase letter; positions are stream
 * entry ids. A token without parts means "every stream up to the cut".
 */
import { errors } from '../http/errors';

export interface SyncToken {
  /** The cut: Redis TIME in microseconds. */
  cut: number;
  /** Per-stream positions that differ from the cut, by one-letter name. */
  parts: Record<string, string>;
}

const PART = /^([a-z])(\d{1,16}-\d{1,20})$/;

export function encodeSyncToken(cut: number, parts: Record<string, string> = {}): string {
  let s = `s${cut}`;
  for (const name of Object.keys(parts).sort()) s += `~${name}${parts[name]}`;
  return s;
}

/** Parse a token; malformed → 400 M_INVALID_PARAM (the spec's answer for a bad `since`). */
export function parseSyncToken(token: string): SyncToken {
  const [head, ...rest] = token.split('~');
  const m = /^s(\d{1,16})$/.exec(head ?? '');
  if (!m || rest.length > 8) throw errors.invalidParam('Malformed sync token');
  const parts: Record<string, string> = {};
  for (const p of rest) {
    const pm = PART.exec(p);
    if (!pm || parts[pm[1]!] !== undefined) throw errors.invalidParam('Malformed sync token');
    parts[pm[1]!] = pm[2]!;
  }
  return { cut: Number(m[1]), parts };
}
