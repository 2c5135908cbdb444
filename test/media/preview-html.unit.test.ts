/**
 * The OpenGraph parser and charset detection, on HTML written here (the fetch is tested in
 * url-preview.unit.test.ts against real servers).
 */
import { describe, expect, it } from 'vitest';
import { charsetFromContentType, decodeHtml, htmlEncoding, parseOpenGraph, summarizeParagraphs } from '../../src/media/preview/html';
import { cacheTtlMs, decodeDataUrl } from '../../src/media/preview/index';

describe('parseOpenGraph', () => {
  it('reads og: tags, with twitter: tags only where og has nothing', () => {
    const og = parseOpenGraph(`<html><head>
      <meta property="og:title" content="The Title">
      <meta property="og:site_name" content="Example">
      <meta property="og:image" content="/pic.png"><meta property="og:image:width" content="640">
      <meta property="og:description" content="  A   description
        over two lines ">
      <meta name="twitter:title" content="Twitter title">
      <meta name="twitter:card" content="summary">
      <meta name="twitter:site" content="@example">
      <meta name="twitter:creator" content="@someone">
      <meta name="twitter:image:alt" content="alt text">
      <meta property="og:empty" content="">
      <title>Not this</title></head><body><p>Nor this</p></body></html>`);
    expect(og).toEqual({
      'og:title': 'The Title',
      'og:site_name': 'Example',
      'og:image': '/pic.png',
      'og:image:width': '640',
      'og:description': 'A description over two lines',
      'og:image:alt': 'alt text',
    });
  });

  it('falls back to <title>, a meta description and the largest image', () => {
    const og = parseOpenGraph(`<!doctype html><html><head><title> Page &amp; title </title>
      <meta name="Description" content="Meta description"></head>
      <body><img src="/tiny.gif" width="1" height="1"><img src="/small.png" width="50" height="50">
      <img src="/large.png" width="300" height="200"><img src="/bad.png" width="x" height="900"></body></html>`);
    expect(og).toEqual({ 'og:title': 'Page & title', 'og:description': 'Meta description', 'og:image': '/large.png' });
  });

  it('title from the first text-only heading; image from microdata, then any img, then the favicon', () => {
    expect(parseOpenGraph('<body><h1><b>rich</b></h1><h2>Heading two</h2></body>')['og:title']).toBe('Heading two');
    expect(parseOpenGraph('<body><p>x</p></body>')['og:title']).toBeNull();
    expect(parseOpenGraph('<meta itemprop="primaryImageOfPage" content="/micro.jpg"><img src="/img.jpg" width="500" height="500">')['og:image']).toBe('/micro.jpg');
    expect(parseOpenGraph('<body><img src="/a.png"><img src="/b.png"></body>')['og:image']).toBe('/a.png');
    expect(parseOpenGraph('<head><link rel="shortcut icon" href="/favicon.ico"></head><body></body>')['og:image']).toBe('/favicon.ico');
    expect('og:image' in parseOpenGraph('<p>no images</p>')).toBe(false);
  });

  it('describes the page from its text, skipping scripts, navigation and the head', () => {
    const para = 'Lorem ipsum dolor sit amet, consectetur adipiscing elit. '.repeat(3).trim();
    const og = parseOpenGraph(`<html><head><title>T</title><style>p{}</style></head><body>
      <nav>Menu Home About</nav><header>Site header</header>
      <script>var secret = 1;</script>
      <p>${para}</p><p>Second    paragraph
      here.</p><footer>Footer text</footer></body></html>`);
    expect(og['og:description']).toBe(`${para}\n\nSecond paragraph here.`);
    expect(String(og['og:description'])).not.toMatch(/Menu|secret|Footer|Site header/);
  });

  it('cuts long descriptions at a word, at most 500 characters plus an ellipsis', () => {
    const words = Array.from({ length: 400 }, (_, i) => `word${i}`).join(' ');
    const og = parseOpenGraph(`<body><p>${words}</p></body>`);
    const d = String(og['og:description']);
    expect(d.endsWith('…')).toBe(true);
    expect(d.length).toBeLessThanOrEqual(501);
    expect(d.slice(0, -1).split(' ').every((w) => /^word\d+$/.test(w))).toBe(true);
    expect(summarizeParagraphs(['x'.repeat(2000)])).toBe(`${'x'.repeat(500)}…`);
    expect(summarizeParagraphs([])).toBeNull();
  });

  it('ignores all og: tags of a page that has 50 or more', () => {
    const tags = Array.from({ length: 60 }, (_, i) => `<meta property="og:k${i}" content="v">`).join('');
    const og = parseOpenGraph(`<head>${tags}<title>Fallback</title></head>`);
    expect(og['og:k0']).toBeUndefined();
    expect(og['og:title']).toBe('Fallback');
  });

  it('tolerates broken markup, and stays linear on pathological input', { timeout: 30_000 }, () => {
    expect(parseOpenGraph('<head><title>Never closed')['og:title']).toBe('Never closed');
    // An attribute still open at the end of the input drops its tag, as a browser does.
    expect(parseOpenGraph('<meta property="og:title" content="Unterminated')['og:title']).toBeNull();
    expect(parseOpenGraph('<<<>>><meta property=og:title content=bare><p')['og:title']).toBe('bare');
    const started = performance.now();
    parseOpenGraph(`<body>${'<div '.repeat(200_000)}${' \n\t'.repeat(300_000)}<a href="${'"'.repeat(100_000)}</body>`);
    // Not a timing assertion: it terminates; the figure is printed for the record.
    console.log(`pathological 2 MB of markup parsed in ${(performance.now() - started).toFixed(0)} ms`);
  });
});

describe('charset', () => {
  const latin1Cafe = Buffer.concat([Buffer.from('<html><head><meta charset="windows-1252"><title>caf'), Buffer.from([0xe9]), Buffer.from('</title></head></html>')]);

  it('takes the Content-Type charset first', () => {
    expect(charsetFromContentType('text/html; charset="ISO-8859-1"')).toBe('ISO-8859-1');
    expect(charsetFromContentType('text/html')).toBeNull();
    const sjis = Buffer.concat([Buffer.from('<title>'), Buffer.from([0x82, 0xa0]), Buffer.from('</title>')]);
    expect(htmlEncoding(sjis, 'text/html; charset=Shift_JIS')).toBe('shift_jis');
    expect(parseOpenGraph(decodeHtml(sjis, 'text/html; charset=Shift_JIS'))['og:title']).toBe('あ');
  });

  it('then a meta charset, http-equiv or XML declaration', () => {
    expect(parseOpenGraph(decodeHtml(latin1Cafe, 'text/html'))['og:title']).toBe('café');
    const equiv = Buffer.concat([Buffer.from('<meta http-equiv="Content-Type" content="text/html; charset=iso-8859-15"><title>'), Buffer.from([0xa4]), Buffer.from('</title>')]);
    expect(parseOpenGraph(decodeHtml(equiv, 'text/html'))['og:title']).toBe('€');
    const xml = Buffer.concat([Buffer.from('<?xml version="1.0" encoding="ISO-8859-1"?><html><title>na'), Buffer.from([0xef]), Buffer.from('ve</title></html>')]);
    expect(htmlEncoding(xml)).toBe('windows-1252');
    expect(parseOpenGraph(decodeHtml(xml))['og:title']).toBe('naïve');
  });

  it('then UTF-8, or windows-1252 for bytes that are not UTF-8; a BOM wins', () => {
    expect(parseOpenGraph(decodeHtml(Buffer.from('<title>€ ü</title>')))['og:title']).toBe('€ ü');
    expect(parseOpenGraph(decodeHtml(Buffer.from([...Buffer.from('<title>'), 0xfc, ...Buffer.from('</title>')])))['og:title']).toBe('ü');
    const bom = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('<meta charset="latin1"><title>ü</title>')]);
    expect(parseOpenGraph(decodeHtml(bom, 'text/html; charset=latin1'))['og:title']).toBe('ü');
    // An unknown label is skipped, not fatal.
    expect(htmlEncoding(Buffer.from('<title>x</title>'), 'text/html; charset=no-such-charset')).toBe('utf-8');
  });
});

describe('cache lifetime and data URLs', () => {
  const now = 1_000_000_000_000;
  it('max-age, s-maxage, Expires, no-store, bounded; one hour by default', () => {
    expect(cacheTtlMs({}, {}, now)).toBe(3_600_000);
    expect(cacheTtlMs({ 'cache-control': 'public, max-age=7200' }, {}, now)).toBe(7_200_000);
    expect(cacheTtlMs({ 'cache-control': 'max-age=7200, s-maxage=600' }, {}, now)).toBe(600_000);
    expect(cacheTtlMs({ 'cache-control': 'no-store' }, {}, now)).toBe(60_000);
    expect(cacheTtlMs({ 'cache-control': 'max-age=99999999' }, {}, now)).toBe(86_400_000);
    expect(cacheTtlMs({ expires: new Date(now + 300_000).toUTCString() }, {}, now)).toBe(300_000);
  });
  it('decodes base64 and percent data URLs under the limit', () => {
    expect(decodeDataUrl('data:image/png;base64,aGVsbG8=', 100)?.toString()).toBe('hello');
    expect(decodeDataUrl('data:,a%20b', 100)?.toString()).toBe('a b');
    expect(decodeDataUrl('data:image/png;base64,aGVsbG8=', 3)).toBeNull();
    expect(decodeDataUrl('data:nocomma', 100)).toBeNull();
  });
});
