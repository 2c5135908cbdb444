/**
 * The inbox entry format: field/value pairs of a stream entry.
 *   mid  producer-chosen message id (dedupe key)
 *   a    actor id
 *   k    actor kind
 *   b    body (msgpack)
 *   r    reply stream key (absent for fire-and-forget)
 *   t    enqueue time (ms)
 */
export interface InboxEntry {
  /** Stream entry id. */
  id: string;
  mid: string;
  actorId: string;
  kind: string;
  body: Buffer;
  replyTo: string | null;
  enqueuedAt: number;
}

/** Parse a raw entry as ioredis returns it with Buffer replies; null for a malformed entry. */
export function parseInboxEntry(id: string, fields: Buffer[] | null): InboxEntry | null {
  if (!fields) return null;
  let mid: string | null = null;
  let actorId: string | null = null;
  let kind: string | null = null;
  let body: Buffer | null = null;
  let replyTo: string | null = null;
  let enqueuedAt = 0;
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const name = fields[i]!.toString();
    const value = fields[i + 1]!;
    if (name === 'mid') mid = value.toString();
    else if (name === 'a') actorId = value.toString();
    else if (name === 'k') kind = value.toString();
    else if (name === 'b') body = value;
    else if (name === 'r') replyTo = value.toString();
    else if (name === 't') enqueuedAt = Number(value.toString());
  }
  if (!mid || !actorId || !kind || !body) return null;
  return { id, mid, actorId, kind, body, replyTo, enqueuedAt };
}

/**
 * An outbox entry as the commit script writes it (commit-many-3.lua): field `a` actor id, `k` actor
 * kind, `b` the output (msgpack). Null when the fields are missing.
 */
export interface OutboxEntry {
  actorId: string;
  kind: string;
  body: Buffer;
}

export function parseOutboxEntry(fields: Buffer[] | null): OutboxEntry | null {
  if (!fields) return null;
  let actorId = '';
  let kind = '';
  let body: Buffer | null = null;
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const name = fields[i]!.toString();
    if (name === 'a') actorId = fields[i + 1]!.toString();
    else if (name === 'k') kind = fields[i + 1]!.toString();
    else if (name === 'b') body = fields[i + 1]!;
  }
  return body ? { actorId, kind, body } : null;
}
