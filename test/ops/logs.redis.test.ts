/**
 * Logs people can read: a terminal gets pino-pretty lines, anything else JSON; a worker taking
 * its shards says so in one info line per lease round ("acquired 32 shards in 0.1 s"), with one
 * line per shard only at debug.
 */
import { PassThrough } from 'node:stream';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log';
import { rig, type Rig } from '../runtime/harness';

function capture(isTTY: boolean): { out: PassThrough & { isTTY?: boolean }; text: () => string } {
  const out = new PassThrough() as PassThrough & { isTTY?: boolean };
  out.isTTY = isTTY;
  let text = '';
  out.on('data', (d) => (text += String(d)));
  return { out, text: () => text };
}

describe('logs', () => {
  let r: Rig | null = null;
  afterEach(async () => {
    await r?.close();
    r = null;
  });

  it('renders lines for a person on a terminal and JSON elsewhere', async () => {
    const tty = capture(true);
    createLogger('info', 'axon', tty.out).info({ shard: 'room:3' }, 'axon listening');
    await new Promise((r) => setImmediate(r));
    expect(tty.text()).toMatch(/^\[\d\d:\d\d:\d\d\.\d{3}\] INFO \(axon\): axon listening\n\s+shard: "room:3"\n/);
    const pipe = capture(false);
    createLogger('info', 'axon', pipe.out).info({ shard: 'room:3' }, 'axon listening');
    await new Promise((r) => setImmediate(r));
    expect(JSON.parse(pipe.text())).toMatchObject({ level: 30, name: 'axon', shard: 'room:3', msg: 'axon listening' });
  });

  it('summarises the shards a worker acquires in one info line, the detail at debug', async () => {
    r = await rig('single', { shards: 16 });
    const lines: { level: number; msg: string; shard?: string; room?: number; user?: number }[] = [];
    const sink = new PassThrough();
    sink.on('data', (d) => {
      for (const l of String(d).split('\n')) if (l) lines.push(JSON.parse(l));
    });
    const log = pino({ level: 'debug' }, sink);
    await r.startWorker('w-logs', { log });
    await new Promise((res) => setTimeout(res, 50));
    const info = lines.filter((l) => l.level === 30 && /^acquired /.test(l.msg));
    expect(info).toHaveLength(1);
    expect(info[0]!.msg).toMatch(/^acquired 32 shards in \d+\.\d s$/);
    expect(info[0]).toMatchObject({ room: 16, user: 16 });
    const perShard = lines.filter((l) => l.msg === 'shard acquired');
    expect(perShard).toHaveLength(32);
    expect(perShard.every((l) => l.level === 20)).toBe(true);
  });
});
