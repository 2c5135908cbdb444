/**
 * Push rule evaluation cost (prints figures; not a test).
 *
 * (0) What the members' compiled rulesets hold in the heap, compiled alone and through one
 *     PushRuleInterner (the rules users have in common compiled once), as the reader compiles them.
 * (a) The pure evaluator: one event evaluated for every member of a 1,000-member room, each with
 *     the server-default rules (compiled once, as the reader caches them): µs per event and per
 *     member, for the kinds of event a big room sees; (a') the same through DefaultRulesTemplate
 *     (one plan per event, then the user-dependent rules per member), as the reader does it.
 * (b) The push evaluator reader on a real redis-server (managed, AOF `appendfsync always`, as in
 *     production): a room of 1,000 local joined members is laid out in Redis as the room actor
 *     stores it, N events are appended to its shard's outbox as the room actor appends them, and
 *     the reader consumes them: events/s and ms per event, for messages that notify everyone
 *     (`.m.rule.message`: every member's count goes up) and for edits (that notify no one).
 * Wall times suffer when the machine is busy; CPU times (this process, and redis-server's own
 * counters) much less, so both are printed.
 *
 *   node --import tsx scripts/bench-push.ts [--members 1000] [--events 200]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';
import pino from 'pino';
import { DefaultRulesTemplate, PushRuleInterner, compilePushRules, evaluatePushRules, type CompiledPushRules, type PushEvaluationContext } from '../src/protocol/push-evaluator';
import { mergePushRules } from '../src/protocol/push-rules';
import type { JsonObject } from '../src/protocol/json';
import { stateKeyOf } from '../src/protocol/pdu';
import { PushEvaluatorReader } from '../src/readers/push-evaluator';
import { startManagedRedis } from '../src/runtime/managed-redis';
import { shardOf } from '../src/store/shards';
import { encode } from '../src/store/codec';
import { KeySpace, PUSH_EVALUATOR_GROUP, membershipIndexData, roomData } from '../src/store/keys';
import { unreadCounts } from '../src/sync/unread-counts';
import { connectRedis } from '../src/store/redis';

const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
};
const MEMBERS = arg('members', 1000);
const EVENTS = arg('events', 200);
const SERVER = 'bench.local';
const ROOM = `!bigroom:${SERVER}`;
const users = Array.from({ length: MEMBERS }, (_, i) => `@u${i}:${SERVER}`);
const sender = users[0]!;

const round = (n: number, d = 1) => Math.round(n * 10 ** d) / 10 ** d;

function events(): Record<string, JsonObject> {
  const base = { room_id: ROOM, sender, origin_server_ts: Date.now() };
  const msg = (content: JsonObject): JsonObject => ({ ...base, type: 'm.room.message', content: { msgtype: 'm.text', ...content } });
  return {
    'plain message': msg({ body: 'hello everyone, lunch at noon?' }),
    'message mentioning 1 user': msg({ body: 'u7: see this', 'm.mentions': { user_ids: [users[7]!] } }),
    'edit': msg({ body: '* fixed', 'm.new_content': { msgtype: 'm.text', body: 'fixed' }, 'm.relates_to': { rel_type: 'm.replace', event_id: '$x' } }),
    'reaction': { ...base, type: 'm.reaction', content: { 'm.relates_to': { rel_type: 'm.annotation', event_id: '$x', key: '👍' } } },
    'encrypted': { ...base, type: 'm.room.encrypted', content: { algorithm: 'm.megolm.v1.aes-sha2', ciphertext: 'AwgAEn…' } },
  };
}

/**
 * What the members' compiled rulesets hold (V8 heap, after full collections) and cost to compile:
 * each compiled alone, and through one PushRuleInterner as the reader compiles them (the rules
 * users have in common compiled once).
 */
function benchRulesetMemory(): void {
  v8.setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  const held = (interner: PushRuleInterner | undefined) => {
    gc();
    gc();
    const before = process.memoryUsage().heapUsed;
    const t0 = performance.now();
    const kept = users.map((u) => compilePushRules(mergePushRules(u, null), interner));
    const ms = performance.now() - t0;
    gc();
    gc();
    const bytes = process.memoryUsage().heapUsed - before;
    if (kept.length !== users.length) throw new Error('lost rulesets');
    return { bytes, ms };
  };
  held(undefined); // warm up the compiler's code
  const alone = held(undefined);
  const shared = held(new PushRuleInterner());
  console.log(`(0) ${MEMBERS} members' rulesets (the default rules) held: compiled alone ${round(alone.bytes / MEMBERS / 1024)} KB each (${round(alone.bytes / 1048576)} MB, ${round((alone.ms * 1000) / MEMBERS, 0)} µs each to compile); through one PushRuleInterner ${round(shared.bytes / MEMBERS / 1024)} KB each (${round(shared.bytes / 1048576)} MB, ${round((shared.ms * 1000) / MEMBERS, 0)} µs each)`);
}

function benchPure(): void {
  const t0 = performance.now();
  // As the reader compiles them: through one interner (the template's rules too).
  const interner = new PushRuleInterner();
  const rules = new Map<string, CompiledPushRules>(users.map((u) => [u, compilePushRules(mergePushRules(u, null), interner)]));
  const compileMs = performance.now() - t0;
  console.log(`(a) pure evaluator, ${MEMBERS} members with the default rules (compiling all rulesets: ${round(compileMs)} ms, once)`);
  for (const [name, event] of Object.entries(events())) {
    const run = () => {
      let n = 0;
      for (const u of users) {
        const r = evaluatePushRules(rules.get(u)!, event, { userId: u, roomMemberCount: MEMBERS, displayName: () => null, senderHasNotificationPermission: () => false });
        if (r?.notify) n++;
      }
      return n;
    };
    for (let i = 0; i < 20; i++) run(); // warm up
    const reps = 200;
    const s = performance.now();
    const cpu = process.cpuUsage();
    let notified = 0;
    for (let i = 0; i < reps; i++) notified = run();
    const perEvent = (performance.now() - s) / reps;
    const c = process.cpuUsage(cpu);
    const cpuPerEvent = (c.user + c.system) / 1000 / reps;
    console.log(`    ${name.padEnd(28)} ${round(perEvent * 1000, 0)} µs per event wall, ${round(cpuPerEvent * 1000, 0)} µs CPU (${round((cpuPerEvent * 1000) / MEMBERS, 2)} µs per member), notifies ${notified}`);
  }
  // What the reader does for members with the default rules unchanged: one plan per event, then
  // only the user-dependent rules per member (DefaultRulesTemplate).
  const template = new DefaultRulesTemplate((u) => compilePushRules(mergePushRules(u, null), interner));
  console.log(`(a') the same, evaluated once per event for the default rules (DefaultRulesTemplate)`);
  for (const [name, event] of Object.entries(events())) {
    const run = () => {
      let n = 0;
      const ctx: PushEvaluationContext = { userId: '', roomMemberCount: MEMBERS, displayName: () => null, senderHasNotificationPermission: () => false };
      const plan = template.plan(event, ctx);
      for (const u of users) {
        ctx.userId = u;
        const r = template.evaluate(plan, rules.get(u)!, event, ctx);
        if (r?.notify) n++;
      }
      return n;
    };
    for (let i = 0; i < 20; i++) run(); // warm up
    const reps = 200;
    const s = performance.now();
    const cpu = process.cpuUsage();
    let notified = 0;
    for (let i = 0; i < reps; i++) notified = run();
    const perEvent = (performance.now() - s) / reps;
    const c = process.cpuUsage(cpu);
    const cpuPerEvent = (c.user + c.system) / 1000 / reps;
    console.log(`    ${name.padEnd(28)} ${round(perEvent * 1000, 0)} µs per event wall, ${round(cpuPerEvent * 1000, 0)} µs CPU (${round((cpuPerEvent * 1000) / MEMBERS, 2)} µs per member), notifies ${notified}`);
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

async function benchReader(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'axon-bench-push-'));
  const managed = await startManagedRedis({ dir: join(dir, 'redis'), port: await freePort() });
  const redis = connectRedis({ url: managed.url });
  const keys = new KeySpace('bp:');
  const shardCounts = { room: 64, user: 64 };
  const shard = shardOf(ROOM, shardCounts.room);
  const k = keys.shard('room', shard);
  try {
    // The room as the room actor stores it: create and power levels events, members, state, timeline.
    const create: JsonObject = { type: 'm.room.create', state_key: '', sender, room_id: ROOM, content: { room_version: '10', creator: sender } };
    const pl: JsonObject = { type: 'm.room.power_levels', state_key: '', sender, room_id: ROOM, content: { users: { [sender]: 100 } } };
    const stored = (raw: JsonObject, p: number) => encode({ j: JSON.stringify(raw), p, d: p, sb: 0, sa: 0 });
    await redis.set(k.data(roomData.event('$create')), stored(create, 1));
    await redis.set(k.data(roomData.event('$pl')), stored(pl, 2));
    await redis.hset(k.data(roomData.state(ROOM)), stateKeyOf('m.room.create', ''), '$create', stateKeyOf('m.room.power_levels', ''), '$pl');
    for (let i = 0; i < users.length; i += 500) await redis.hset(k.data(roomData.members(ROOM)), ...users.slice(i, i + 500).flatMap((u) => [u, 'join']));
    await redis.zadd(k.data(roomData.timeline(ROOM)), 2, '$pl');
    // The membership index's rows (the counts are a member's), for the one member whose count is printed.
    await redis.hset(keys.shard('user', shardOf(users[1]!, shardCounts.user)).data(membershipIndexData.rooms(users[1]!)), ROOM, '1:join');

    const redisCpu = async () => {
      const info = await redis.info('cpu');
      const v = (name: string) => Number(new RegExp(`${name}:([0-9.]+)`).exec(info)?.[1] ?? 0);
      return (v('used_cpu_sys') + v('used_cpu_user')) * 1000;
    };
    const reader = new PushEvaluatorReader(redis, keys, { ...shardCounts }, SERVER, 'bench', pino({ level: 'silent' }));
    let pos = 2;
    /** Consume `count` events (default EVENTS) appended to the outbox; `line` false: print nothing, return the CPU ms. */
    const run = async (name: string, event: JsonObject, count = EVENTS, line = true): Promise<number> => {
      for (let i = 0; i < count; i++) {
        pos++;
        const eventId = `$ev${pos}`;
        await redis.xadd(k.outbox, '*', 'a', ROOM, 'k', 'room', 'b', encode({ roomId: ROOM, eventId, pos, event: { ...event, event_id: eventId } }));
      }
      const last = (await redis.xrevrange(k.outbox, '+', '-', 'COUNT', 1))[0]![0];
      const s = performance.now();
      const cpu = process.cpuUsage();
      const redisCpu0 = await redisCpu();
      reader.attach(shard);
      reader.wake(shard);
      for (;;) {
        const groups = (await redis.xinfo('GROUPS', k.outbox)) as unknown[][];
        const g = groups.map((a) => ({ name: String(a[1]), pending: Number(a[5]), last: String(a[7]) })).find((x) => x.name === PUSH_EVALUATOR_GROUP);
        if (g && g.pending === 0 && g.last === last) break;
        await new Promise((r) => setTimeout(r, 5));
        reader.wake(shard);
      }
      const ms = performance.now() - s;
      // Let go of the shard until the next run: the wake-ups above leave the pump looping once more,
      // and it would otherwise consume the next run's entries as they are appended, before its clock starts.
      reader.detach(shard);
      const c = process.cpuUsage(cpu);
      const nodeMs = (c.user + c.system) / 1000 / count;
      if (!line) return nodeMs;
      const redisMs = ((await redisCpu()) - redisCpu0) / EVENTS;
      const counted = (await unreadCounts({ redis, keys, shardCounts }, users[1]!, [ROOM])).get(ROOM)!.notification_count;
      console.log(`    ${name.padEnd(28)} ${EVENTS} events in ${round(ms, 0)} ms: ${round((EVENTS * 1000) / ms, 0)} events/s, ${round(ms / EVENTS, 2)} ms per event wall; CPU per event: reader ${round(nodeMs, 2)} ms, redis ${round(redisMs, 2)} ms (u1's unread count now ${counted})`);
      return nodeMs;
    };
    console.log(`(b) push evaluator reader, one room of ${MEMBERS} local members, redis-server with appendfsync always`);
    const ev = events();
    await run('warm-up (plain messages)', ev['plain message']!);
    await run('edit (notifies no one)', ev['edit']!);
    await run('plain message (notifies all)', ev['plain message']!);
    await run('mention of 1 user', ev['message mentioning 1 user']!);
    // Every member's user actor committed before each event (a wake-up names them all): their
    // rulesets are read again (compiled again only if the stored rules changed); then the same
    // with every cache dropped (rulesets compiled again, as before the stored JSON was compared).
    const each = async (before: () => void) => {
      let total = 0;
      for (let i = 0; i < 10; i++) {
        before();
        total += await run('', ev['plain message']!, 1, false);
      }
      return total / 10;
    };
    const reread = await each(() => reader.rulesChanged(users));
    const dropped = await each(() => reader.clearCaches());
    console.log(`    after every member's wake-up     reader CPU per event: ${round(reread, 2)} ms (rulesets read again), ${round(dropped, 2)} ms (caches dropped: compiled again)`);
    await reader.stop();

    // (c) What /sync pays for these records: every member's counts in the room, as the front asks
    // for them when one message wakes every long-poll (the answers of a turn share one script call).
    for (let i = 0; i < users.length; i += 500) {
      const part = users.slice(i, i + 500);
      await Promise.all(part.map((u) => redis.hset(keys.shard('user', shardOf(u, shardCounts.user)).data(membershipIndexData.rooms(u)), ROOM, '1:join')));
    }
    const ctx = { redis, keys, shardCounts };
    const rounds = 5;
    const countAll = () => Promise.all(users.map((u) => unreadCounts(ctx, u, [ROOM])));
    await countAll();
    const s = performance.now();
    const cpu = process.cpuUsage();
    const redisCpu0 = await redisCpu();
    let sample = 0;
    for (let r = 0; r < rounds; r++) sample = (await countAll())[2]!.get(ROOM)!.notification_count;
    const ms = performance.now() - s;
    const c = process.cpuUsage(cpu);
    const n = rounds * MEMBERS;
    console.log(`(c) unread counts of every member in the room, ${rounds} rounds: ${round(ms, 0)} ms; per member count: wall ${round((ms * 1000) / n, 1)} µs, this process ${round((c.user + c.system) / n, 1)} µs CPU, redis ${round((((await redisCpu()) - redisCpu0) * 1000) / n, 1)} µs CPU (u2's count ${sample})`);
  } finally {
    redis.disconnect();
    await managed.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

benchRulesetMemory();
benchPure();
await benchReader();
