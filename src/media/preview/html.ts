/**
 * OpenGraph from an HTML page, for URL previews, following Synapse's rules (preview_html.py):
 * - `og:*` meta tags (`property`, non-empty `content`), then `twitter:*` meta tags (`name`) mapped
 *   to og keys where og has none (`twitter:site` → `og:site_name`; `twitter:card` and
 *   `twitter:creator` dropped). A page with 50 or more such tags of one kind gets none of them.
 * - `og:title` missing: the first `<title>`, `<h1>`, `<h2>` or `<h3>` holding only text; else null.
 * - `og:image` missing: a meta tag whose `itemprop` contains "image"; else the largest `<img>`
 *   with width and height over 10; else the first `<img>` with a `src`; else a `<link rel=icon>`.
 * - `og:description` missing: a meta tag whose `name` contains "description"; else a summary of
 *   the page's text outside head, header, nav, aside, footer, script, style, svg, iframe… (at
 *   least 200 characters of whole paragraphs when there are, at most 500, cut at a word with "…").
 *   Present: the same summary applied to it.
 * Image URLs are returned as written; the caller resolves them against the page URL.
 *
 * Parsing is htmlparser2's tokenizer, a single linear pass that tolerates any markup; no regular
 * expression is built from the input and those used run on bounded, whitespace-collapsed text.
 * The page's bytes are decoded as the browser would pick (`decodeHtml`): byte order mark, then the
 * Content-Type charset, then a `<meta charset>` / `http-equiv` / XML declaration in the first
 * 1024 bytes, else UTF-8 (windows-1252 when the bytes are not valid UTF-8).
 */
import { Parser } from 'htmlparser2';

export type OpenGraph = Record<string, string | number | null>;

const MAX_META_TAGS = 50;
const SUMMARY_MIN = 200;
const SUMMARY_MAX = 500;
/** Characters of one text node kept for the summary (after collapsing whitespace): more never reaches the output. */
const MAX_NODE_CHARS = 2 * SUMMARY_MAX;
const TITLE_TAGS = new Set(['title', 'h1', 'h2', 'h3']);
const TEXT_IGNORED_TAGS = new Set(['head', 'header', 'nav', 'aside', 'footer', 'script', 'noscript', 'style', 'svg', 'iframe', 'video', 'canvas', 'img', 'picture']);

function mapTwitterKey(key: string): string | null {
  if (key === 'twitter:card' || key === 'twitter:creator') return null;
  if (key === 'twitter:site') return 'og:site_name';
  return `og${key.slice('twitter'.length)}`;
}

/** Python's int() on an attribute: optional sign and surrounding whitespace, decimal digits only. */
function parseIntAttr(text: string): number | null {
  const t = text.trim();
  if (!/^[+-]?[0-9]+$/.test(t)) return null;
  return Number(t);
}

/** Collapse whitespace runs to one space (Python's `\s` and JavaScript's agree on which characters those are). */
function collapseWhitespace(text: string): string {
  return text.replace(/\s+/g, ' ');
}

/**
 * Synapse's summarize_paragraphs: whole paragraphs until at least `min` characters, then cut to
 * at most `max` at a word boundary with an ellipsis. Null when nothing is left.
 */
export function summarizeParagraphs(paragraphs: Iterable<string>, min = SUMMARY_MIN, max = SUMMARY_MAX): string | null {
  let description = '';
  for (const paragraph of paragraphs) {
    if (description.length >= min) break;
    description += `${paragraph.replace(/[\t \r\n]+/g, ' ')}\n\n`;
  }
  description = description.trim().replace(/[\t ]+/g, ' ');
  // Paragraphs hold no line breaks by now, so these runs are only the joins (a few hundred characters at most).
  description = description.replace(/[\t \r\n]*[\r\n]+/g, '\n\n');
  if (description.length > max) {
    let cut = '';
    for (const match of description.matchAll(/\s*\S+/g)) {
      const word = match[0];
      if (word.length + cut.length < max) {
        cut += word;
      } else {
        // A single huge word still gives something, cut below.
        if (cut.length < min) cut += word;
        break;
      }
    }
    if (cut.length > max) cut = cut.slice(0, max);
    description = `${cut.trim()}…`;
  }
  return description === '' ? null : description;
}

/** Extract OpenGraph data from decoded HTML. */
export function parseOpenGraph(html: string): OpenGraph {
  const og = new Map<string, string>();
  let ogTooMany = false;
  const twitter = new Map<string, string>();
  let twitterTooMany = false;

  // Assigned in the parser's callbacks, which TypeScript's narrowing does not see: hence the casts.
  let title = null as string | null;
  // A title candidate being read: its tag, its text so far, whether it still holds only text.
  let titleCandidate: { tag: string; text: string; textOnly: boolean } | null = null;
  let metaImage = null as string | null;
  let bigImage = null as { src: string; area: number } | null;
  let firstImage = null as string | null;
  let favicon = null as string | null;
  let metaDescription = null as string | null;

  // Body text for the description: nodes outside ignored tags, whitespace collapsed, capped.
  const textNodes: string[] = [];
  let textChars = 0;
  let currentNode = '';
  let ignoredDepth = 0;
  const flushText = () => {
    const node = currentNode.trim();
    currentNode = '';
    if (textChars < SUMMARY_MIN) {
      textNodes.push(node);
      textChars += node.length + 2;
    }
  };

  const parser = new Parser(
    {
      onopentag(name, attribs) {
        if (currentNode !== '') flushText();
        if (titleCandidate) titleCandidate.textOnly = false;
        if (title === null && titleCandidate === null && TITLE_TAGS.has(name)) titleCandidate = { tag: name, text: '', textOnly: true };
        if (TEXT_IGNORED_TAGS.has(name)) ignoredDepth++;
        if (name === 'meta') {
          const content = attribs.content;
          if (content === undefined || content === '') return;
          const property = attribs.property;
          if (property?.startsWith('og:')) {
            if (og.size >= MAX_META_TAGS) ogTooMany = true;
            else og.set(property, content);
          }
          const metaName = attribs.name;
          if (metaName?.startsWith('twitter:')) {
            if (twitter.size >= MAX_META_TAGS) twitterTooMany = true;
            else {
              const key = mapTwitterKey(metaName);
              if (key !== null) twitter.set(key, content);
            }
          }
          if (metaImage === null && attribs.itemprop?.toLowerCase().includes('image')) metaImage = content;
          if (metaDescription === null && metaName?.toLowerCase().includes('description')) metaDescription = content;
        } else if (name === 'img') {
          const src = attribs.src;
          if (src === undefined || src === '') return;
          firstImage ??= src;
          const w = attribs.width === undefined ? null : parseIntAttr(attribs.width);
          const h = attribs.height === undefined ? null : parseIntAttr(attribs.height);
          if (w !== null && h !== null && w > 10 && h > 10 && (bigImage === null || w * h > bigImage.area)) bigImage = { src, area: w * h };
        } else if (name === 'link') {
          const href = attribs.href;
          if (favicon === null && href !== undefined && href !== '' && (attribs.rel ?? '').toLowerCase().split(/[\t\n\f\r ]+/).includes('icon')) favicon = href;
        }
      },
      ontext(text) {
        if (titleCandidate) titleCandidate.text += text;
        if (ignoredDepth > 0 || textChars >= SUMMARY_MIN) return;
        if (currentNode.length < MAX_NODE_CHARS) {
          const piece = collapseWhitespace(text);
          currentNode += currentNode.endsWith(' ') && piece.startsWith(' ') ? piece.slice(1) : piece;
          if (currentNode.length > MAX_NODE_CHARS) currentNode = currentNode.slice(0, MAX_NODE_CHARS);
        }
      },
      onclosetag(name) {
        if (currentNode !== '') flushText();
        if (titleCandidate) {
          if (name === titleCandidate.tag) {
            const text = titleCandidate.text.trim();
            if (titleCandidate.textOnly && text !== '') title = text;
            titleCandidate = null;
          } else {
            titleCandidate.textOnly = false;
          }
        }
        if (TEXT_IGNORED_TAGS.has(name) && ignoredDepth > 0) ignoredDepth--;
      },
    },
    { decodeEntities: true, lowerCaseTags: true, lowerCaseAttributeNames: true },
  );
  parser.end(html);
  if (currentNode !== '') flushText();

  const result: OpenGraph = {};
  if (!ogTooMany) for (const [k, v] of og) result[k] = v;
  if (!twitterTooMany) for (const [k, v] of twitter) if (!(k in result)) result[k] = v;

  if (!('og:title' in result)) result['og:title'] = title;
  if (!('og:image' in result)) {
    const image = metaImage ?? bigImage?.src ?? firstImage ?? favicon;
    if (image !== null) result['og:image'] = image;
  }
  if (!('og:description' in result)) {
    result['og:description'] = metaDescription ?? summarizeParagraphs(textNodes);
  } else if (typeof result['og:description'] === 'string' && result['og:description'] !== '') {
    result['og:description'] = summarizeParagraphs([result['og:description']]);
  }
  return result;
}

/** The `charset` parameter of a Content-Type value, if any. */
export function charsetFromContentType(contentType: string | undefined): string | null {
  if (!contentType) return null;
  for (const param of contentType.split(';').slice(1)) {
    const eq = param.indexOf('=');
    if (eq < 0) continue;
    if (param.slice(0, eq).trim().toLowerCase() !== 'charset') continue;
    let value = param.slice(eq + 1).trim();
    if (value.length >= 2 && (value.startsWith('"') || value.startsWith("'")) && value.endsWith(value[0]!)) value = value.slice(1, -1);
    return value.trim() || null;
  }
  return null;
}

/** A charset label TextDecoder knows, in its canonical name; null for an unknown label. */
function knownEncoding(label: string | null): string | null {
  if (!label) return null;
  try {
    return new TextDecoder(label).encoding;
  } catch {
    return null;
  }
}

/** The HTML prescan, much simplified: a charset declared in the first 1024 bytes. */
function charsetFromMarkup(body: Buffer): string | null {
  // Latin-1 maps each byte to one character, so ASCII markup reads the same in any ASCII-compatible charset.
  const head = body.subarray(0, 1024).toString('latin1');
  let found: string | null = null;
  const parser = new Parser(
    {
      onprocessinginstruction(name, data) {
        if (found !== null || name.toLowerCase() !== '?xml') return;
        const at = data.toLowerCase().indexOf('encoding');
        if (at < 0) return;
        const rest = data.slice(at + 'encoding'.length).replace(/^\s*=\s*/, '');
        const quote = rest[0];
        if (quote !== '"' && quote !== "'") return;
        const end = rest.indexOf(quote, 1);
        if (end > 1) found = rest.slice(1, end);
      },
      onopentag(name, attribs) {
        if (found !== null || name !== 'meta') return;
        if (attribs.charset) {
          found = attribs.charset.trim();
        } else if ((attribs['http-equiv'] ?? '').toLowerCase() === 'content-type' && attribs.content) {
          found = charsetFromContentType(`x;${attribs.content}`);
        }
      },
    },
    { decodeEntities: true, lowerCaseAttributeNames: true },
  );
  parser.end(head);
  return found;
}

/** Which encoding to decode an HTML body with (see the module comment). */
export function htmlEncoding(body: Buffer, contentType?: string): string {
  if (body[0] === 0xef && body[1] === 0xbb && body[2] === 0xbf) return 'utf-8';
  if (body[0] === 0xfe && body[1] === 0xff) return 'utf-16be';
  if (body[0] === 0xff && body[1] === 0xfe) return 'utf-16le';
  const fromHeader = knownEncoding(charsetFromContentType(contentType));
  if (fromHeader) return fromHeader;
  const fromMarkup = knownEncoding(charsetFromMarkup(body));
  // A page that declares UTF-16 in its own (ASCII-readable) markup is not UTF-16: browsers read UTF-8.
  if (fromMarkup) return fromMarkup.startsWith('utf-16') ? 'utf-8' : fromMarkup;
  try {
    // `stream`: a body cut mid-character at the size limit is still UTF-8.
    new TextDecoder('utf-8', { fatal: true }).decode(body, { stream: true });
    return 'utf-8';
  } catch {
    return 'windows-1252';
  }
}

/** Decode an HTML body to text (a byte order mark is dropped). */
export function decodeHtml(body: Buffer, contentType?: string): string {
  return new TextDecoder(htmlEncoding(body, contentType)).decode(body);
}
