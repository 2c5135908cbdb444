/** The one place loggers are made: pino JSON with fixed field names (room_id, event_id, user_id, shard). */
import pino, { type Logger } from 'pino';
import type { LogLevel } from '../cluster.config';

export function createLogger(level: LogLevel, name: string): Logger {
  return pino({ level, name, base: { pid: process.pid, name } });
}
