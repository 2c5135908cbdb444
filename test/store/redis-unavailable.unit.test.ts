/**
 * Errors that mean "Redis cannot answer this now" become 503 with Retry-After rather than 500:
 * among them a Cluster redirect that reached a handler (an auto-pipelined batch during a
 * failover, seen on the multi-host bed, issue 24); and every 503/504 tells when to retry.
 */
import { describe, expect, it } from 'vitest';
import { ReplyError } from 'ioredis';
import { MatrixError } from '../../src/http/errors';
import { isRedisUnavailableError } from '../../src/store/redis';

describe('Redis unavailability and retry hints', () => {
  it('counts MOVED and ASK redirects as unavailable, not as bugs', () => {
    expect(isRedisUnavailableError(new ReplyError('MOVED 12857 10.77.0.1:7002'))).toBe(true);
    expect(isRedisUnavailableError(new ReplyError('ASK 850 10.77.0.2:7002'))).toBe(true);
    expect(isRedisUnavailableError(new ReplyError('ERR wrong number of arguments'))).toBe(false);
  });

  it('counts a master refusing writes for want of replicas (min-replicas-to-write) as unavailable', () => {
    expect(isRedisUnavailableError(new ReplyError('NOREPLICAS Not enough good replicas to write.'))).toBe(true);
  });

  it('gives every 503 and 504 a Retry-After, keeping one a handler set', () => {
    expect(new MatrixError(504, 'M_UNKNOWN', 'The room did not answer in time').headers['Retry-After']).toMatch(/^\d+$/);
    expect(new MatrixError(503, 'M_UNKNOWN', 'x', {}, { 'Retry-After': '7' }).headers).toEqual({ 'Retry-After': '7' });
    expect(new MatrixError(400, 'M_BAD_JSON', 'x').headers).toEqual({});
  });
});
