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
 */
export function stringifyWithRaw(value: unknown): string {
  const out: string[] = [];
  write(value, out);
  return out.join('');
}

function write(v: unknown, out: string[]): void {
  if (v instanceof RawJson) {
    out.push(v.json);
    return;
  }
  if (v === null || typeof v !== 'object') {
    out.push(JSON.stringify(v) ?? 'null');
    return;
  }
  if (Array.isArray(v)) {
    out.push('[');
    for (let i = 0; i < v.length; i++) {
      if (i) out.push(',');
      const item = v[i] as unknown;
      if (item === undefined || typeof item === 'function' || typeof item === 'symbol') out.push('null');
      else write(item, out);
    }
    out.push(']');
    return;
  }
  out.push('{');
  let first = true;
  for (const key of Object.keys(v)) {
    const item = (v as Record<string, unknown>)[key];
    if (item === undefined || typeof item === 'function' || typeof item === 'symbol') continue;
    out.push(first ? '' : ',', JSON.stringify(key), ':');
    first = false;
    write(item, out);
  }
  out.push('}');
}
