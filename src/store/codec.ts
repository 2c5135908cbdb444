/** msgpack encoding for stream entries, state blobs and replies (compact, fast, binary-safe). */
import { Packr } from 'msgpackr';

// Plain maps as objects, no record extension: blobs stay readable by any msgpack decoder.
const packr = new Packr({ useRecords: false, mapsAsObjects: true, moreTypes: false });

export function encode(value: unknown): Buffer {
  return packr.pack(value);
}

export function decode<T = unknown>(buf: Buffer | Uint8Array): T {
  return packr.unpack(buf) as T;
}

/**
 * A script's arguments as one msgpack array for Redis's `cmsgpack.unpack` (commit-many-5.lua):
 * strings and Buffers as msgpack raw strings (Lua strings are bytes; Redis's cmsgpack reads the
 * classic raw types, not `bin`, which msgpackr writes for Buffers), non-negative integers below
 * 2^32 as integers, any other number as its decimal string (as Redis would get it as an argument).
 */
export function encodeScriptArgs(args: readonly ScriptArg[]): Buffer {
  return encodeScriptArgParts([args]);
}

type ScriptArg = string | number | Buffer;

/**
 * encodeScriptArgs of the parts' values one after the other, as ONE array (the caller need not
 * copy its parts into one list first: the commit's was thousands of values a call).
 */
export function encodeScriptArgParts(parts: readonly (readonly ScriptArg[])[]): Buffer {
  let n = 0;
  for (const part of parts) n += part.length;
  let size = n < 16 ? 1 : n < 0x10000 ? 3 : 5;
  const lengths = new Array<number>(n);
  let i = 0;
  for (const part of parts) {
    for (const a of part) {
      let len: number;
      if (typeof a === 'number') {
        if (Number.isInteger(a) && a >= 0 && a <= 0xffffffff) {
          size += a < 128 ? 1 : 5;
          lengths[i++] = -1;
          continue;
        }
        len = String(a).length;
      } else len = typeof a === 'string' ? Buffer.byteLength(a) : a.length;
      lengths[i++] = len;
      size += (len < 32 ? 1 : len < 0x10000 ? 3 : 5) + len;
    }
  }
  const out = Buffer.allocUnsafe(size);
  let p = 0;
  if (n < 16) out[p++] = 0x90 | n;
  else if (n < 0x10000) {
    out[p++] = 0xdc;
    p = out.writeUInt16BE(n, p);
  } else {
    out[p++] = 0xdd;
    p = out.writeUInt32BE(n, p);
  }
  i = 0;
  for (const part of parts) {
    for (const a of part) {
      const len = lengths[i++]!;
      if (len === -1) {
        const v = a as number;
        if (v < 128) out[p++] = v;
        else {
          out[p++] = 0xce;
          p = out.writeUInt32BE(v, p);
        }
        continue;
      }
      if (len < 32) out[p++] = 0xa0 | len;
      else if (len < 0x10000) {
        out[p++] = 0xda;
        p = out.writeUInt16BE(len, p);
      } else {
        out[p++] = 0xdb;
        p = out.writeUInt32BE(len, p);
      }
      if (typeof a === 'string') p += out.write(a, p, 'utf8');
      else if (typeof a === 'number') p += out.write(String(a), p, 'latin1');
      else {
        a.copy(out, p);
        p += len;
      }
    }
  }
  return out;
}
