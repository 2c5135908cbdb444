/**
 * Messages put straight into a stopped Synapse's PostgreSQL database, as Synapse itself would
 * have persisted them, so that its real `POST /search` (and anything else reading events) serves
 * them: for benchmarks at sizes Synapse's /send cannot reach here (28–50 messages/s on this
 * machine: 1,000,000 messages would take 6–10 hours, and Synapse has no batch send since MSC2716
 * was withdrawn).
 *
 * Each room must already hold a message sent through Synapse by the sender of the messages to
 * load into it (the template: `events`, `event_json` and `event_to_state_groups` rows written
 * by Synapse). Every loaded message is a real event of the template's room version: the
 * template's fields (auth events, sender, origin, type), its own body, depth and timestamp,
 * `prev_events` chaining the room's messages in order from the room's forward extremities; its
 * content hash and signature made with Synapse's own signing key, its event id the reference
 * hash (Synapse recomputes it when it reads an event and refuses a mismatch). Rows go where
 * Synapse's persistence puts a message's: `events` (the template's other columns, a new
 * `stream_ordering` above the stream's current maximum), `event_json`, `event_search`
 * (`to_tsvector('english', body)`, as Synapse stores it on PostgreSQL), `event_to_state_groups`
 * (the template's state group: a message changes no state), `event_edges`, and the rooms'
 * `event_forward_extremities`; then the `events_stream_seq` sequence and `stream_positions` move
 * to the new maximum and the tables are analysed. Synapse must be stopped meanwhile (its caches
 * and stream positions are read at start).
 *
 * Left out: push actions and notification counts, room statistics, `event_auth` (none of which
 * a search reads).
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseSigningKeyFile } from '../../src/protocol/crypto';
import { computeEventId, hashAndSignEvent } from '../../src/protocol/event-hashing';
import { canonicalJson, type JsonObject } from '../../src/protocol/json';
import { requireRoomVersion } from '../../src/protocol/room-versions';

export interface PgAccess {
  bin: string;
  port: number;
}

export interface BulkMessage {
  roomId: string;
  body: string;
}

export interface BulkLoadFigures {
  messages: number;
  /** Building, hashing, signing and COPYing the rows into a staging table (s). */
  buildSeconds: number;
  /** The INSERTs into Synapse's tables, with their indexes (s). */
  insertSeconds: number;
  analyzeSeconds: number;
  /** The last message loaded, to check that Synapse serves it. */
  last: { roomId: string; eventId: string; body: string } | null;
}

const CHUNK = 50_000;
const tsvEscape = (s: string) => s.replace(/\\/g, '\\\\').replace(/\t/g, '\\t').replace(/\n/g, '\\n').replace(/\r/g, '\\r');
const sqlText = (s: string) => `'${s.replace(/'/g, "''")}'`;

export function bulkLoadSynapse(
  pg: PgAccess,
  synapse: { serverName: string; dir: string },
  messages: Iterable<BulkMessage>,
  opts: { firstTs: number; log?: (s: string) => void },
): BulkLoadFigures {
  // Fields separated by US (0x1f): the event JSON may hold any printable character.
  const args = ['-h', '127.0.0.1', '-p', String(pg.port), '-U', 'synapse', '-d', 'synapse', '-v', 'ON_ERROR_STOP=1', '-tA', '-F', '\x1f'];
  const psql = (sql: string, input?: string) => execFileSync(join(pg.bin, 'psql'), [...args, '-c', sql], { encoding: 'utf8', input, maxBuffer: 1 << 28 }).trim();
  const log = opts.log ?? (() => undefined);
  const key = parseSigningKeyFile(readFileSync(join(synapse.dir, 'signing.key'), 'utf8'))[0]!;

  // The rooms' templates (their latest message) and forward extremities.
  interface Room {
    template: string;
    json: JsonObject;
    version: ReturnType<typeof requireRoomVersion>;
    prev: string[];
    depth: number;
  }
  const rooms = new Map<string, Room>();
  const templateRows = psql(
    `SELECT DISTINCT ON (e.room_id) e.room_id, e.event_id, ej.json, r.room_version FROM events e JOIN event_json ej USING (event_id) JOIN rooms r ON r.room_id = e.room_id
     WHERE e.type = 'm.room.message' AND NOT e.outlier ORDER BY e.room_id, e.stream_ordering DESC`,
  );
  for (const line of templateRows.split('\n').filter(Boolean)) {
    const [roomId, eventId, json, version] = line.split('\x1f');
    rooms.set(roomId!, { template: eventId!, json: JSON.parse(json!) as JsonObject, version: requireRoomVersion(version!), prev: [], depth: 0 });
  }
  const extremities = psql(`SELECT f.room_id, f.event_id, e.depth FROM event_forward_extremities f JOIN events e USING (event_id)`);
  for (const line of extremities.split('\n').filter(Boolean)) {
    const [roomId, eventId, depth] = line.split('\x1f');
    const r = rooms.get(roomId!);
    if (!r) continue;
    r.prev.push(eventId!);
    r.depth = Math.max(r.depth, Number(depth));
  }
  let stream = Number(psql('SELECT max(stream_ordering) FROM events'));

  psql(`CREATE UNLOGGED TABLE IF NOT EXISTS bench_bulk (event_id text, room_id text, template text, sender text, depth bigint, ts bigint, stream bigint, json text, body text, prev text); TRUNCATE bench_bulk`);
  const started = Date.now();
  let n = 0;
  let last: BulkLoadFigures['last'] = null;
  let lines: string[] = [];
  const flush = () => {
    if (lines.length === 0) return;
    psql('COPY bench_bulk FROM STDIN', `${lines.join('\n')}\n`);
    lines = [];
    log(`  Synapse bulk load: ${n} rows built and copied`);
  };
  for (const m of messages) {
    const room = rooms.get(m.roomId);
    if (!room) throw new Error(`bulk load: no message sent through Synapse in ${m.roomId} to start from`);
    const ts = opts.firstTs + n;
    const depth = room.depth + 1;
    const { hashes: _h, signatures: _s, unsigned: _u, event_id: _e, ...base } = room.json;
    const event = hashAndSignEvent({ ...base, content: { msgtype: 'm.text', body: m.body }, depth, origin_server_ts: ts, prev_events: room.prev }, room.version, synapse.serverName, key);
    const eventId = computeEventId(event, room.version);
    stream++;
    lines.push([eventId, m.roomId, room.template, event.sender as string, depth, ts, stream, canonicalJson(event), m.body, room.prev.join(' ')].map((v) => tsvEscape(String(v))).join('\t'));
    room.prev = [eventId];
    last = { roomId: m.roomId, eventId, body: m.body };
    room.depth = depth;
    n++;
    if (lines.length >= CHUNK) flush();
  }
  flush();
  const built = Date.now();

  // `events`: the template's row with this event's own id, orderings, timestamps.
  const columns = psql(`SELECT column_name FROM information_schema.columns WHERE table_name = 'events' AND table_schema = 'public' ORDER BY ordinal_position`).split('\n').filter(Boolean);
  const own: Record<string, string> = { event_id: 's.event_id', topological_ordering: 's.depth', depth: 's.depth', origin_server_ts: 's.ts', received_ts: 's.ts', stream_ordering: 's.stream', sender: 's.sender', room_id: 's.room_id', content: 'NULL' };
  const roomList = [...rooms.keys()].map(sqlText).join(', ');
  const steps: [string, string][] = [
    ['events', `INSERT INTO events (${columns.join(', ')}) SELECT ${columns.map((c) => own[c] ?? `t.${c}`).join(', ')} FROM bench_bulk s JOIN events t ON t.event_id = s.template`],
    ['event_json', `INSERT INTO event_json (event_id, room_id, internal_metadata, json, format_version) SELECT s.event_id, s.room_id, '{}', s.json, t.format_version FROM bench_bulk s JOIN event_json t ON t.event_id = s.template`],
    ['event_search', `INSERT INTO event_search (event_id, room_id, sender, key, vector, origin_server_ts, stream_ordering) SELECT s.event_id, s.room_id, s.sender, 'content.body', to_tsvector('english', s.body), s.ts, s.stream FROM bench_bulk s`],
    ['event_to_state_groups', `INSERT INTO event_to_state_groups (event_id, state_group) SELECT s.event_id, g.state_group FROM bench_bulk s JOIN event_to_state_groups g ON g.event_id = s.template`],
    ['event_edges', `INSERT INTO event_edges (event_id, prev_event_id) SELECT s.event_id, unnest(string_to_array(s.prev, ' ')) FROM bench_bulk s`],
    [
      'event_forward_extremities',
      `DELETE FROM event_forward_extremities WHERE room_id IN (${roomList});
       INSERT INTO event_forward_extremities (event_id, room_id) SELECT DISTINCT ON (room_id) event_id, room_id FROM bench_bulk ORDER BY room_id, stream DESC`,
    ],
    [
      'stream position',
      `SELECT setval('events_stream_seq', (SELECT max(stream_ordering) FROM events));
       UPDATE stream_positions SET stream_id = (SELECT max(stream_ordering) FROM events) WHERE stream_name = 'events'`,
    ],
  ];
  for (const [name, sql] of steps) {
    const t0 = Date.now();
    psql(`BEGIN; ${sql}; COMMIT`);
    log(`  Synapse bulk load: ${name} in ${Math.round((Date.now() - t0) / 1000)} s`);
  }
  psql('DROP TABLE bench_bulk');
  const inserted = Date.now();
  psql('VACUUM ANALYZE events');
  psql('VACUUM ANALYZE event_json');
  psql('VACUUM ANALYZE event_search');
  psql('VACUUM ANALYZE event_to_state_groups');
  psql('VACUUM ANALYZE event_edges');
  return { messages: n, buildSeconds: (built - started) / 1000, insertSeconds: (inserted - built) / 1000, analyzeSeconds: (Date.now() - inserted) / 1000, last };
}
