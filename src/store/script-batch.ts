/**
 * Calls of one script asked in the same turn of the event loop, sent as one call with a segment
 * each (single Redis). For scripts written to take segments (`ARGV[1]` = their number, each
 * segment's own arguments after it, its keys after the previous segment's, and one reply per
 * segment), e.g. unread-counts-2.lua: the /sync answers one message wakes each ask the same kind
 * of read, and one call for all of them costs the front one command to build, write and parse,
 * and Redis one script run, instead of one per answer. Each segment's reads are the ones its
 * caller would have made alone; the call is atomic, as each of them was.
 */
import { runScript, type RedisClient, type ScriptName } from './redis';

interface Pending {
  keys: string[];
  args: (string | number)[];
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
}

export class ScriptBatcher {
  private queue: Pending[] = [];
  private scheduled = false;

  constructor(
    private readonly redis: RedisClient,
    private readonly script: ScriptName,
    /** Segments per call at most (a call runs alone in Redis). */
    private readonly maxSegments = 64,
    /** Keys per call at most, unless one segment alone has more (its caller already bounds it). */
    private readonly maxKeys = 512,
  ) {}

  /** One segment's reply, from the next call (made once this turn of the event loop is over). */
  call(keys: string[], args: (string | number)[]): Promise<unknown> {
    return new Promise((resolve, reject) => {
      this.queue.push({ keys, args, resolve, reject });
      if (this.scheduled) return;
      this.scheduled = true;
      setImmediate(() => this.flush());
    });
  }

  private flush(): void {
    this.scheduled = false;
    const all = this.queue;
    this.queue = [];
    let batch: Pending[] = [];
    let keys = 0;
    for (const p of all) {
      if (batch.length && (batch.length >= this.maxSegments || keys + p.keys.length > this.maxKeys)) {
        void this.send(batch);
        batch = [];
        keys = 0;
      }
      batch.push(p);
      keys += p.keys.length;
    }
    if (batch.length) void this.send(batch);
  }

  private async send(batch: Pending[]): Promise<void> {
    const keys: string[] = [];
    const args: (string | number)[] = [batch.length];
    for (const p of batch) {
      for (const k of p.keys) keys.push(k);
      for (const a of p.args) args.push(a);
    }
    let replies: unknown[];
    try {
      replies = (await runScript(this.redis, this.script, keys, args)) as unknown[];
    } catch (e) {
      for (const p of batch) p.reject(e);
      return;
    }
    batch.forEach((p, i) => p.resolve(replies[i]));
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
