/** clusterSlot agrees with the slot ioredis routes by (cluster-key-slot, its dependency) and with the spec's example. */
import { createRequire } from 'node:module';
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { clusterSlot } from '../../src/store/cluster-slot';

const reference = createRequire(import.meta.url)('cluster-key-slot') as (key: string) => number;

describe('clusterSlot', () => {
  it("matches the cluster spec's CRC16 example and hash tags", () => {
    // The cluster spec: CRC16 of "123456789" is 0x31C3 (12739), below 16384.
    expect(clusterSlot('123456789')).toBe(0x31c3);
    expect(clusterSlot('axon:{r:417}:lease')).toBe(clusterSlot('r:417'));
    expect(clusterSlot('a{}b')).toBe(reference('a{}b'));
  });

  it('matches the slot ioredis routes by, for random keys and tags', () => {
    for (let i = 0; i < 2000; i++) {
      const k = `${randomBytes(4).toString('hex')}${i % 3 === 0 ? `{${randomBytes(2).toString('hex')}}` : ''}é${i}`;
      expect(clusterSlot(k)).toBe(reference(k));
    }
  });
});
