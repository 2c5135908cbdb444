/**
 * Fixed virtual shards (DESIGN rule 1). An actor id hashes to one of a family's N shards; shards,
 * never actors, are what workers own and move. N is fixed for a deployment: changing it would move
 * every actor, so it is set once in cluster.config.ts.
 */

/** Actor families. Each has its own shard space and hash tag prefix. */
export const FAMILIES = ['room', 'user'] as const;
export type Family = (typeof FAMILIES)[number];

const TAG_PREFIX: Record<Family, string> = { room: 'r', user: 'u' };

export function isFamily(s: string): s is Family {
  return (FAMILIES as readonly string[]).includes(s);
}

/**
 * FNV-1a (32-bit) over the id's UTF-8 bytes: stable across processes, versions and platforms,
 * and fast. Not a cryptographic hash; ids come from users, but a skewed shard only costs balance.
 */
export function stableHash(id: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < id.length; i++) {
    let c = id.charCodeAt(i);
    if (c < 0x80) {
      h = Math.imul(h ^ c, 0x01000193);
      continue;
    }
    // Hash UTF-8 bytes so the result does not depend on JavaScript's UTF-16 strings.
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < id.length) {
      const d = id.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
        i++;
      }
    }
    const bytes = c < 0x800 ? [0xc0 | (c >> 6), 0x80 | (c & 63)] : c < 0x10000 ? [0xe0 | (c >> 12), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63)] : [0xf0 | (c >> 18), 0x80 | ((c >> 12) & 63), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63)];
    for (const b of bytes) h = Math.imul(h ^ b, 0x01000193);
  }
  return h >>> 0;
}

export function shardOf(id: string, shardCount: number): number {
  return stableHash(id) % shardCount;
}

/** The Redis Cluster hash tag shared by every key of one shard, e.g. `{r:417}`. */
export function shardTag(family: Family, shard: number): string {
  return `{${TAG_PREFIX[family]}:${shard}}`;
}

export interface ShardRef {
  family: Family;
  shard: number;
}

export function shardName(ref: ShardRef): string {
  return `${ref.family}:${ref.shard}`;
}

export function parseShardName(name: string): ShardRef | null {
  const [family, n] = name.split(':');
  const shard = Number(n);
  if (!family || !isFamily(family) || !Number.isInteger(shard) || shard < 0) return null;
  return { family, shard };
}
