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
