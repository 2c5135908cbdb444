/**
 * A preload that records when each process sends its Redis commands and gets their answers, and
 * when pub/sub messages arrive, for `scripts/redis-call-timeline.ts` (where a benchmark's round
 * trip waits: see README "Performance"). Off unless loaded:
 *
 *   AXON_REDIS_TRACE_DIR=/tmp/trace NODE_OPTIONS="--import ./scripts/lib/redis-call-trace.mjs" npm run bench:runtime
 *
 * Every node process started with it (the benchmark and the workers it spawns inherit the
 * environment) writes DIR/trace-<pid>.json when it exits: its command line, its time origin, and
 * one row per event — [ms since the origin, 'S' sent | 'R' answered | 'M' pub/sub message, command,
 * argument count (S) or reply length (R), connection tag, send time (R)]. Only the commands named
 * in AXON_REDIS_TRACE_COMMANDS are kept (default: the scripts, stream reads and deletes), at most
 * 400,000 rows a process. It patches ioredis's prototype: never load it in production.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Redis from 'ioredis';

const dir = process.env.AXON_REDIS_TRACE_DIR;
if (dir) {
  const keep = new Set((process.env.AXON_REDIS_TRACE_COMMANDS ?? 'evalsha,eval,xreadgroup,xread,xdel').split(','));
  const MAX = 400_000;
  const rows = [];
  const tags = new WeakMap();
  const tag = (client) => {
    let t = tags.get(client);
    if (!t) tags.set(client, (t = `c${tags.size ?? 0}${Math.random().toString(36).slice(2, 5)}`));
    return t;
  };
  const send = Redis.prototype.sendCommand;
  Redis.prototype.sendCommand = function (cmd, stream) {
    if (rows.length < MAX && keep.has(cmd.name)) {
      const sent = performance.now();
      const conn = tag(this);
      rows.push([sent, 'S', cmd.name, cmd.args.length, conn]);
      cmd.promise?.then?.(
        (r) => {
          if (rows.length < MAX) rows.push([performance.now(), 'R', cmd.name, Array.isArray(r) ? r.length : 0, conn, sent]);
        },
        () => undefined,
      );
    }
    return send.call(this, cmd, stream);
  };
  const emit = Redis.prototype.emit;
  Redis.prototype.emit = function (event, ...args) {
    if (event === 'message' && rows.length < MAX) rows.push([performance.now(), 'M', 'message', 0, tag(this)]);
    return emit.call(this, event, ...args);
  };
  const write = () => {
    try {
      writeFileSync(join(dir, `trace-${process.pid}.json`), JSON.stringify({ argv: process.argv.slice(1).join(' '), origin: performance.timeOrigin, rows }));
    } catch {
      // The directory is gone: nothing to keep.
    }
  };
  process.on('exit', write);
}
