import { describe, expect, it } from 'vitest';
import { bm25, foldTerm, idf, parseQuery, termFrequencies, termMatches, tokens } from '../../src/protocol/search-text';

describe('search tokeniser', () => {
  it('splits on word boundaries, drops punctuation, folds case and diacritics', () => {
    expect(tokens('Hello, World! Café—ÉLAN naïve.').map((t) => t.term)).toEqual(['hello', 'world', 'cafe', 'elan', 'naive']);
    expect(tokens('Café').map((t) => t.surface)).toEqual(['Café']);
    expect(foldTerm('Ｆｕｌｌｗｉｄｔｈ')).toBe('fullwidth');
    expect(foldTerm('Straße')).toBe('straße');
    // Precomposed and decomposed accents fold alike.
    expect(foldTerm('e\u0301te\u0301')).toBe(foldTerm('\u00e9t\u00e9'));
  });

  it('segments CJK text into words', () => {
    const zh = tokens('我们明天开会讨论项目计划。').map((t) => t.term);
    expect(zh).toContain('开会');
    expect(zh).toContain('项目');
    const ja = tokens('東京で会議があります').map((t) => t.term);
    expect(ja).toContain('東京');
    expect(ja).toContain('会議');
  });

  it('counts term frequencies and document length', () => {
    const { terms, length } = termFrequencies('the cat and the hat');
    expect(length).toBe(5);
    expect(terms.get('the')).toBe(2);
    expect(terms.get('cat')).toBe(1);
    expect(termFrequencies('   ...  ').length).toBe(0);
  });

  it('parses a query: distinct folded terms, the last matching as a prefix', () => {
    expect(parseQuery('Meet MEET tomorrow')).toEqual({ terms: ['meet', 'tomorrow'], lastIsPrefix: true });
    expect(parseQuery('  !! ')).toEqual({ terms: [], lastIsPrefix: false });
    expect(termMatches('meeting', 'meet', true)).toBe(true);
    expect(termMatches('meeting', 'meet', false)).toBe(false);
  });
});

describe('BM25', () => {
  const corpus = { documents: 100, averageLength: 10 };
  it('ranks rarer terms higher', () => {
    expect(idf(100, 1)).toBeGreaterThan(idf(100, 50));
    expect(idf(100, 100)).toBeGreaterThan(0);
    expect(bm25([{ tf: 1, df: 2 }], 10, corpus)).toBeGreaterThan(bm25([{ tf: 1, df: 60 }], 10, corpus));
  });
  it('rewards frequency with saturation, and penalises length', () => {
    const once = bm25([{ tf: 1, df: 5 }], 10, corpus);
    const twice = bm25([{ tf: 2, df: 5 }], 10, corpus);
    const many = bm25([{ tf: 20, df: 5 }], 10, corpus);
    expect(twice).toBeGreaterThan(once);
    expect(many).toBeLessThan(once * (1.2 + 1)); // bounded by idf·(k1+1)
    expect(bm25([{ tf: 1, df: 5 }], 3, corpus)).toBeGreaterThan(bm25([{ tf: 1, df: 5 }], 40, corpus));
  });
  it('matches the formula on a worked example', () => {
    // idf = ln(1 + (100-5+0.5)/(5+0.5)); tf part = 1·2.2 / (1 + 1.2·(0.25 + 0.75·20/10))
    const expected = Math.log(1 + 95.5 / 5.5) * (2.2 / (1 + 1.2 * (0.25 + 1.5)));
    expect(bm25([{ tf: 1, df: 5 }], 20, corpus)).toBeCloseTo(expected, 10);
    expect(bm25([], 20, corpus)).toBe(0);
  });
});
