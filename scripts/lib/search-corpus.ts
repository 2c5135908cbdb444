/**
 * The generated messages and queries of the index-level search benchmarks
 * (scripts/bench-search-index.ts for Axon's index, scripts/bench-search-postgres.ts for
 * Synapse's `event_search` on PostgreSQL): seeded, so both see the same texts in the same rooms
 * and the same query terms. Words come from a 20,000-word vocabulary with Zipf-like frequencies
 * (rank r drawn with probability ~ 1/r), 8–20 words a message.
 */
import { seededRandom } from './bench-util';

export const VOCABULARY = 20_000;

export interface SearchCorpus {
  /** Message i's text (call in order: the generator is a stream). */
  next(): string;
  /** Query terms by kind, drawn after the messages. */
  queries(count: number): { name: string; terms: string[] }[];
}

export function searchCorpus(): SearchCorpus {
  const rand = seededRandom(21);
  const words = Array.from({ length: VOCABULARY }, (_, i) => `w${i.toString(36)}x${(i * 7919).toString(36).slice(-2)}`);
  const zipf = () => words[Math.min(VOCABULARY - 1, Math.floor(Math.exp(rand() * Math.log(VOCABULARY)) - 1))]!;
  return {
    next: () => Array.from({ length: 8 + Math.floor(rand() * 13) }, zipf).join(' '),
    queries: (count) =>
      (
        [
          ['one word (common)', () => words[Math.floor(rand() * 50)]!],
          ['one word (rare)', () => words[1000 + Math.floor(rand() * 10_000)]!],
          ['two words', () => `${words[Math.floor(rand() * 200)]!} ${words[Math.floor(rand() * 200)]!}`],
          ['prefix', () => words[Math.floor(rand() * 2000)]!.slice(0, 3)],
        ] as const
      ).map(([name, term]) => ({ name, terms: Array.from({ length: count }, term) })),
  };
}

export const benchRooms = (n: number) => Array.from({ length: n }, (_, i) => `!bench${i}:bench.local`);
