/**
 * The one place loggers are made: pino with fixed field names (room_id, event_id, user_id, shard).
 * JSON lines, except when the output is a terminal (`npm start` by hand): then pino-pretty renders
 * each line for a person ("[12:00:01.234] INFO (axon): axon listening", fields below), in this
 * thread and synchronously so nothing is lost at exit. Pipes, files and the cluster scripts' logs
 * stay JSON for machines.
 */
import { createRequire } from 'node:module';
import pino, { type Logger } from 'pino';
import type PinoPretty from 'pino-pretty';
import type { LogLevel } from '../cluster.config';

export function createLogger(level: LogLevel, name: string, out: NodeJS.WritableStream & { isTTY?: boolean } = process.stdout): Logger {
  const options = { level, name, base: { pid: process.pid, name } };
  if (!out.isTTY) return out === process.stdout ? pino(options) : pino(options, out);
  // Loaded only for a terminal (~3 MB a process that logs JSON does without); require, as the
  // logger is made synchronously.
  const pretty = createRequire(import.meta.url)('pino-pretty') as typeof PinoPretty;
  return pino(options, pretty({ colorize: out === process.stdout, sync: true, destination: out, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' }));
}
