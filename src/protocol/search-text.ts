/**
 * Text search, the pure part: how message text becomes index terms, and how a document is scored
 * against a query (BM25). The search reader (src/search/indexer.ts) and `POST /search`
 * (src/api/client/search.ts) both tokenise with this, so a word is found the way it was indexed.
 *
 * Words are Unicode word segments (`Intl.Segmenter`, UAX #29 plus ICU's dictionaries, which split
 * Chinese, Japanese and Thai text into words), folded to lower case without diacritics (NFKD,
 * combining marks dropped): "Élan" and "elan" are one term, as are full-width and ASCII letters.
 */

const segmenter = new Intl.Segmenter(undefined, { granularity: 'word' });
/** Terms longer than this (in UTF-16 units) are cut: a 10 kB "word" is no use to search for. */
export const MAX_TERM_LENGTH = 64;
const COMBINING = /\p{M}+/gu;

/** The folded form of a word: NFKD, combining marks dropped, lower case, recomposed (NFC). */
export function foldTerm(word: string): string {
  return word.normalize('NFKD').replace(COMBINING, '').toLowerCase().normalize('NFC');
}

export interface Token {
  /** The folded term. */
  term: string;
  /** The word as written. */
  surface: string;
}

/** The words of a text, in order, each with its folded term. Punctuation and spaces are not words. */
export function tokens(text: string): Token[] {
  const out: Token[] = [];
  for (const seg of segmenter.segment(text)) {
    if (!seg.isWordLike) continue;
    const term = foldTerm(seg.segment).slice(0, MAX_TERM_LENGTH);
    if (term !== '') out.push({ term, surface: seg.segment });
  }
  return out;
}

/** A text's terms with their frequencies, and its length in words (BM25's document length). */
export function termFrequencies(text: string): { terms: Map<string, number>; length: number } {
  const terms = new Map<string, number>();
  const all = tokens(text);
  for (const { term } of all) terms.set(term, (terms.get(term) ?? 0) + 1);
  return { terms, length: all.length };
}

export interface ParsedQuery {
  /** Folded terms every result must contain, in the query's order (duplicates dropped). */
  terms: string[];
  /** Whether the last term matches as a prefix too (the user may still be typing it). */
  lastIsPrefix: boolean;
}

/**
 * A search term as the index understands it: all its words must occur (AND), the last one also
 * as the start of a longer word ("meet" finds "meeting"). Quotes and operators are not special.
 */
export function parseQuery(searchTerm: string): ParsedQuery {
  const terms: string[] = [];
  for (const { term } of tokens(searchTerm)) if (!terms.includes(term)) terms.push(term);
  return { terms, lastIsPrefix: terms.length > 0 };
}

/** Whether a folded word matches a query term (exactly, or as a prefix when it is the prefix term). */
export function termMatches(word: string, term: string, prefix: boolean): boolean {
  return prefix ? word.startsWith(term) : word === term;
}

/** BM25's parameters: term frequency saturation and length normalisation (the usual values). */
export const BM25_K1 = 1.2;
export const BM25_B = 0.75;

export interface CorpusStats {
  /** Documents in the searched corpus. */
  documents: number;
  /** Their average length in words. */
  averageLength: number;
}

/** BM25's inverse document frequency of a term found in `df` of `n` documents (never negative). */
export function idf(n: number, df: number): number {
  return Math.log(1 + (n - df + 0.5) / (df + 0.5));
}

/** The BM25 score of one document: per query term, its frequency there and how many documents have it. */
export function bm25(matches: { tf: number; df: number }[], length: number, corpus: CorpusStats): number {
  const avg = corpus.averageLength > 0 ? corpus.averageLength : 1;
  let score = 0;
  for (const { tf, df } of matches) {
    if (tf <= 0) continue;
    score += (idf(corpus.documents, df) * (tf * (BM25_K1 + 1))) / (tf + BM25_K1 * (1 - BM25_B + (BM25_B * length) / avg));
  }
  return score;
}
