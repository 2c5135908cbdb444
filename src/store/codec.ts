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
 * A script's arguments as one msgpack array for Redis's `cmsgpack.unpack` (commit-many-7.lua):
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
  let p = writeHeader(out, 0, n, 0x90, 16, 0xdc); // fixarray, array16, array32
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
      p = writeHeader(out, p, len, 0xa0, 32, 0xda); // fixstr, str16, str32
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

/**
 * A msgpack length header at `p`: the fix form (`fix | n`) below `fixLimit`, else the 16-bit form
 * (`b16`) or the 32-bit one (`b16 + 1`). Returns the position after it.
 */
function writeHeader(out: Buffer, p: number, n: number, fix: number, fixLimit: number, b16: number): number {
  if (n < fixLimit) {
    out[p] = fix | n;
    return p + 1;
  }
  if (n < 0x10000) {
    out[p] = b16;
    return out.writeUInt16BE(n, p + 1);
  }
  out[p] = b16 + 1;
  return out.writeUInt32BE(n, p + 1);
}
