/**
 * The inbox entry: a stream entry of one of two formats (INBOX_FORMAT).
 * Format 1, field/value pairs:
 *   mid  producer-chosen message id (dedupe key)
 *   a    actor id
 *   k    actor kind
 *   b    body (msgpack)
 *   r    reply stream key (absent for fire-and-forget)
 *   t    enqueue time (ms)
 * Format 2, one field `m`: the same values packed into one (packInboxEntry).
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
  startEntry();
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const name = fields[i]!;
    const value = fields[i + 1]!;
    takeField(name, 0, name.length, value, 0, value.length);
  }
  return finishEntry(id);
}

/** takeField's code for the field name `mid` (the others are their one byte). */
const MID = 0x100;

/**
 * The entry being read (startEntry, takeField per field, finishEntry): one scratch record, since
 * both readers run to the end without yielding — no object per entry until it is known to be one.
 */
const cur = { mid: null as string | null, actorId: null as string | null, kind: null as string | null, body: null as Buffer | null, replyTo: null as string | null, enqueuedAt: 0 };

function startEntry(): void {
  cur.mid = cur.actorId = cur.kind = cur.replyTo = null;
  cur.body = null;
  cur.enqueuedAt = 0;
}

/**
 * One field: its name is `nb[ns, ns + nl)` and its value `vb[vs, ve)` — each its own Buffer (a
 * read's reply) or ranges of one message (a push). Names are told apart by their bytes (no string
 * made per name); a later field of the same name wins; others are ignored.
 */
function takeField(nb: Buffer, ns: number, nl: number, vb: Buffer, vs: number, ve: number): void {
  const c = nl === 1 ? nb[ns]! : nl === 3 && nb[ns] === 0x6d && nb[ns + 1] === 0x69 && nb[ns + 2] === 0x64 ? MID : -1;
  if (c === 0x6d) takePacked(vb, vs, ve); // m
  else if (c === MID) cur.mid = vb.toString('utf8', vs, ve);
  else if (c === 0x61) cur.actorId = vb.toString('utf8', vs, ve); // a
  else if (c === 0x6b) cur.kind = vb.toString('utf8', vs, ve); // k
  else if (c === 0x62) cur.body = vs === 0 && ve === vb.length ? vb : vb.subarray(vs, ve); // b
  else if (c === 0x72) cur.replyTo = vb.toString('utf8', vs, ve); // r
  else if (c === 0x74) cur.enqueuedAt = Number(vb.toString('utf8', vs, ve)); // t
}

/**
 * Inbox entry formats a reader of this version takes: 1, the field pairs above (what timers and
 * the delivery reports still write, and every earlier version wrote); 2, ONE field `m` holding
 * them all (packInboxEntry). A worker says in its heartbeat which formats it reads
 * (`inbox_format`), and an asker writes format 2 only once every live worker does: a worker of an
 * earlier version would take an entry of one field for a malformed one and dead-letter it.
 */
export const INBOX_FORMAT = 2;

/**
 * Whether a worker record's `inbox_format` (`<format>:<heartbeat ms>`) says it reads the packed
 * entry: only when stamped by the heartbeat the record holds now. A record a worker of an earlier
 * version rewrote under the same id (its heartbeat, not this field) has a stale stamp.
 */
export function readsPacked(format: string | null | undefined, heartbeat: string | null | undefined): boolean {
  if (!format || !heartbeat) return false;
  const at = format.indexOf(':');
  return at > 0 && Number(format.slice(0, at)) >= INBOX_FORMAT && format.slice(at + 1) === heartbeat;
}

/** The first byte of a packed entry (a later layout takes another). */
const PACKED_LAYOUT = 1;

/**
 * An inbox entry as ONE value (format 2, field `m`): the layout byte, then the mid, actor id,
 * kind, reply stream ('' for none) and enqueue time (decimal ms), each as a 2-byte big-endian
 * length and its UTF-8 bytes, then the body (msgpack) to the end. One value instead of twelve:
 * each is an argument Redis parses, a string the enqueue script's Lua makes (hashing every byte),
 * a field of the stream entry, four elements of the push and of the AOF's XCLAIM... (issue 23).
 */
export function packInboxEntry(mid: string, actorId: string, kind: string, replyTo: string | null, enqueuedAt: number, body: Buffer): Buffer {
  const t = String(enqueuedAt);
  const r = replyTo ?? '';
  const lm = Buffer.byteLength(mid);
  const la = Buffer.byteLength(actorId);
  const lk = Buffer.byteLength(kind);
  const lr = Buffer.byteLength(r);
  if (lm > 0xffff || la > 0xffff || lk > 0xffff || lr > 0xffff) throw new Error('inbox entry: a mid, actor id, kind or reply stream longer than 65535 bytes');
  const out = Buffer.allocUnsafe(11 + lm + la + lk + lr + t.length + body.length);
  out[0] = PACKED_LAYOUT;
  let p = 1;
  p = writeShort(out, p, mid, lm);
  p = writeShort(out, p, actorId, la);
  p = writeShort(out, p, kind, lk);
  p = writeShort(out, p, r, lr);
  p = writeShort(out, p, t, t.length);
  body.copy(out, p);
  return out;
}

function writeShort(out: Buffer, p: number, v: string, len: number): number {
  out.writeUInt16BE(len, p);
  return p + 2 + (len ? out.write(v, p + 2, len, 'utf8') : 0);
}

/** Where the last `readShort` ended (its string is the return value). */
let shortEnd = 0;

/** The length-prefixed string at `p` (below `e`), or null when it runs past `e`. */
function readShort(b: Buffer, p: number, e: number): string | null {
  if (p + 2 > e) return null;
  const start = p + 2;
  shortEnd = start + b.readUInt16BE(p);
  return shortEnd > e ? null : b.toString('utf8', start, shortEnd);
}

/** A format 2 entry's value `b[s, e)` into the entry being read; nothing when it does not parse (then the entry is not one). */
function takePacked(b: Buffer, s: number, e: number): void {
  if (e - s < 11 || b[s] !== PACKED_LAYOUT) return;
  const mid = readShort(b, s + 1, e);
  if (mid === null) return;
  const actorId = readShort(b, shortEnd, e);
  if (actorId === null) return;
  const kind = readShort(b, shortEnd, e);
  if (kind === null) return;
  const replyTo = readShort(b, shortEnd, e);
  if (replyTo === null) return;
  const t = readShort(b, shortEnd, e);
  if (t === null) return;
  cur.mid = mid;
  cur.actorId = actorId;
  cur.kind = kind;
  cur.replyTo = replyTo === '' ? null : replyTo;
  cur.enqueuedAt = Number(t);
  cur.body = b.subarray(shortEnd, e);
}

/** The entry read since startEntry, or null when a field it needs is missing or empty. */
function finishEntry(id: string): InboxEntry | null {
  const { mid, actorId, kind, body, replyTo, enqueuedAt } = cur;
  cur.body = null; // not kept alive by the scratch record
  if (!mid || !actorId || !kind || !body) return null;
  return { id, mid, actorId, kind, body, replyTo, enqueuedAt };
}

/**
 * An outbox entry as the commit script writes it (commit-many-7.lua): field `a` actor id, `k` actor
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

/** Entries one push carries at most per shard (enqueue-many-6.lua's limit, sent by ActorClient): a full push may leave more. */
export const PUSH_LIMIT = 200;
/**
 * Bytes one push message carries at most: a holder's message bigger than this goes as one message
 * per shard, and a shard's bigger than this as a plain wake-up (the holder reads the entries).
 * Pushes wait in Redis's output buffer of the holder's subscriber connection, which Redis
 * disconnects past its pub/sub limits (32 MB, or 8 MB for a minute, by default).
 */
export const PUSH_MAX_BYTES = 256 * 1024;

/**
 * A pushed entry: its id and, when its fields make an inbox entry, that entry — parsed straight
 * from the push message's bytes (parsePackedPush) — else its raw fields (the runner dead-letters
 * an entry that does not parse, fields and all).
 */
export type PushedEntry = [id: string, entry: InboxEntry | Buffer[]];

/**
 * A reader of the msgpack values Redis's cmsgpack packs into a push message (strings and arrays
 * only): `at` the next byte; after `str()` the string's bytes are `b[start, end)`.
 */
class PackedReader {
  at = 1;
  start = 0;
  end = 0;
  constructor(readonly b: Buffer) {}

  /** Reads a str (or bin) value; false if the next value is not one or runs past the end. */
  str(): boolean {
    const b = this.b;
    const at = this.at;
    if (at >= b.length) return false;
    const t = b[at]!;
    let n = -1;
    let head = 1;
    if (t >= 0xa0 && t <= 0xbf) n = t & 0x1f;
    else if ((t === 0xd9 || t === 0xc4) && at + 2 <= b.length) {
      n = b[at + 1]!;
      head = 2;
    } else if ((t === 0xda || t === 0xc5) && at + 3 <= b.length) {
      n = b.readUInt16BE(at + 1);
      head = 3;
    } else if ((t === 0xdb || t === 0xc6) && at + 5 <= b.length) {
      n = b.readUInt32BE(at + 1);
      head = 5;
    }
    if (n < 0 || at + head + n > b.length) return false;
    this.start = at + head;
    this.end = this.start + n;
    this.at = this.end;
    return true;
  }

  /** The last str value as text. */
  text(): string {
    return this.b.toString('utf8', this.start, this.end);
  }

  /** An array's length; -1 if the next value is not an array or its header runs past the end. */
  array(): number {
    const b = this.b;
    if (this.at >= b.length) return -1;
    const t = b[this.at]!;
    if (t >= 0x90 && t <= 0x9f) {
      this.at += 1;
      return t & 0x0f;
    }
    if (t === 0xdc && this.at + 3 <= b.length) {
      this.at += 3;
      return b.readUInt16BE(this.at - 2);
    }
    if (t === 0xdd && this.at + 5 <= b.length) {
      this.at += 5;
      return b.readUInt32BE(this.at - 4);
    }
    return -1;
  }

  /**
   * Stream entries as XREADGROUP gives them, [[id, [field, value, …]], …]: each read in place
   * into an InboxEntry, or its raw fields when it is not one. Null when they do not parse.
   */
  entries(): PushedEntry[] | null {
    const b = this.b;
    const n = this.array();
    if (n < 0) return null;
    const entries: PushedEntry[] = [];
    for (let e = 0; e < n; e++) {
      if (this.array() !== 2 || !this.str()) return null;
      const id = this.text();
      const count = this.array();
      if (count < 0) return null;
      const first = this.at;
      startEntry();
      for (let i = 0; i + 1 < count; i += 2) {
        if (!this.str()) return null;
        const ns = this.start;
        const nl = this.end - this.start;
        if (!this.str()) return null;
        takeField(b, ns, nl, b, this.start, this.end);
      }
      // An odd count leaves a name without its value, as in a stream entry it cannot be.
      if (count % 2 === 1 && !this.str()) return null;
      const entry = finishEntry(id);
      if (entry) {
        entries.push([id, entry]);
        continue;
      }
      // Not an inbox entry: its raw fields, read again from where they start.
      this.at = first;
      const fields: Buffer[] = new Array(count);
      for (let i = 0; i < count; i++) {
        this.str();
        fields[i] = b.subarray(this.start, this.end);
      }
      entries.push([id, fields]);
    }
    return entries;
  }
}

/**
 * A push message of one shard (enqueue-many-4.lua, and -5's when a holder's message would be too
 * big): 'M', then two msgpack values as Redis's cmsgpack packs them: the holder's consumer name,
 * and the entries, [[id, [field, value, …]], …]. Strings are msgpack str (cmsgpack has no bin):
 * they are taken as the raw bytes they hold, not decoded as UTF-8, since bodies are binary. Null
 * when it does not parse (then it is taken as a wake-up).
 *
 * Each entry's fields are read in place into an InboxEntry, as parseInboxEntry reads them: the
 * strings it needs decoded from their bytes and the body one view of the message, instead of a
 * Buffer per field first (twelve a message; at 12,000 messages a second they were a sixth of the
 * bytes a worker allocates, issue 23). An entry that is not an inbox entry keeps its raw fields.
 */
export function parsePackedPush(b: Buffer): { owner: string; entries: PushedEntry[] } | null {
  const r = new PackedReader(b);
  if (!r.str()) return null;
  const owner = r.text();
  const entries = r.entries();
  return entries && r.at === b.length ? { owner, entries } : null;
}

/**
 * A push message of several shards of one holder (enqueue-many-6.lua), published on the holder's
 * push channel (KeySpace.workerPush): 'N', then the holder's consumer name and XREADGROUP's answer
 * over the shards' inboxes as cmsgpack packs them: [[inbox, entries], …], entries as in
 * parsePackedPush. Null when it does not parse.
 */
export function parseHolderPush(b: Buffer): { owner: string; shards: [inbox: string, entries: PushedEntry[]][] } | null {
  const r = new PackedReader(b);
  if (!r.str()) return null;
  const owner = r.text();
  const n = r.array();
  if (n < 0) return null;
  const shards: [string, PushedEntry[]][] = [];
  for (let i = 0; i < n; i++) {
    if (r.array() !== 2 || !r.str()) return null;
    const inbox = r.text();
    const entries = r.entries();
    if (!entries) return null;
    shards.push([inbox, entries]);
  }
  return r.at === b.length ? { owner, shards } : null;
}

/**
 * A push message of enqueue-many-2.lua (askers from before enqueue-many-3.lua, while a cluster
 * is upgraded): 'P', then 4-byte big-endian length-prefixed strings — the
 * holder's consumer name, then per entry its id, its field count (a bare 4-byte number) and its
 * fields and values. Null when it does not parse (then it is taken as a wake-up).
 */
export function parsePush(b: Buffer): { owner: string; entries: [string, Buffer[]][] } | null {
  let at = 1;
  const take = (): Buffer | null => {
    if (at + 4 > b.length) return null;
    const n = b.readUInt32BE(at);
    if (at + 4 + n > b.length) return null;
    const v = b.subarray(at + 4, at + 4 + n);
    at += 4 + n;
    return v;
  };
  const owner = take();
  if (!owner) return null;
  const entries: [string, Buffer[]][] = [];
  while (at < b.length) {
    const id = take();
    if (!id || at + 4 > b.length) return null;
    const count = b.readUInt32BE(at);
    at += 4;
    const fields: Buffer[] = [];
    for (let i = 0; i < count; i++) {
      const f = take();
      if (!f) return null;
      fields.push(f);
    }
    entries.push([id.toString(), fields]);
  }
  return { owner: owner.toString(), entries };
}
