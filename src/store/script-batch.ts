/**
 * Calls of one script asked in the same turn of the event loop, sent as one call with a segment
 * each (single Redis). For scripts written to take segments (`ARGV[1]` = their number, each
 * segment's own arguments after it, its keys after the previous segment's, and one reply per
 * segment), e.g. unread-counts-3.lua: the /sync answers one message wakes each ask the same kind
 * of read, and one call for all of them costs the front one command to build, write and parse,
 * and Redis one script run, instead of one per answer. Each segment's reads are the ones its
 * caller would have made alone; the call is atomic, as each of them was.
 */
import { runScript, type RedisClient, type ScriptName } from './redis';
import { chunks, TurnBatcher } from './turn-batcher';

interface Segment {
  keys: string[];
  args: (string | number)[];
}

export class ScriptBatcher {
  private readonly batcher: TurnBatcher<Segment, unknown>;

  constructor(
    private readonly redis: RedisClient,
    private readonly script: ScriptName,
    /** Segments per call at most (a call runs alone in Redis). */
    maxSegments = 64,
    /** Keys per call at most, unless one segment alone has more (its caller already bounds it). */
    maxKeys = 512,
  ) {
    this.batcher = new TurnBatcher<Segment, unknown>({
      send: (segments) => this.send(segments),
      split: (queued) => chunks(queued, (q) => q.item.keys.length, maxKeys, maxSegments),
    });
  }

  /** One segment's reply, from the next call (made once this turn of the event loop is over). */
  call(keys: string[], args: (string | number)[]): Promise<unknown> {
    return this.batcher.add({ keys, args });
  }

  private async send(segments: Segment[]): Promise<unknown[]> {
    const keys: string[] = [];
    const args: (string | number)[] = [segments.length];
    for (const p of segments) {
      for (const k of p.keys) keys.push(k);
      for (const a of p.args) args.push(a);
    }
    return (await runScript(this.redis, this.script, keys, args)) as unknown[];
  }
}

const batchers = new WeakMap<RedisClient, Map<ScriptName, ScriptBatcher>>();

/** The batcher of a script on a Redis client (one per client and script). */
export function scriptBatcher(redis: RedisClient, script: ScriptName): ScriptBatcher {
  let byScript = batchers.get(redis);
  if (!byScript) batchers.set(redis, (byScript = new Map()));
  let b = byScript.get(script);
  if (!b) byScript.set(script, (b = new ScriptBatcher(redis, script)));
  return b;
}
