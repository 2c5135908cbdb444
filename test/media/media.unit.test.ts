/** The pure parts of the media repository: Range parsing, Content-Disposition, and the two actors' decisions. */
import { describe, expect, it } from 'vitest';
import { parseRange } from '../../src/http/range';
import { contentDisposition, isInlineType } from '../../src/media/headers';
import { decideMedia, emptyMedia, MAX_THUMBNAILS, type MediaMessage, type MediaState, type StoredThumbnail } from '../../actors/media';
import { decideMediaContent, emptyContent, DELETING_TIMEOUT_MS, type MediaContentMessage } from '../../actors/media-content';
import { ActorRejection } from '../../src/runtime/actor';

const H = 'a'.repeat(64);

describe('Range', () => {
  it.each([
    ['bytes=0-9', 100, { start: 0, end: 9 }],
    ['bytes=90-', 100, { start: 90, end: 99 }],
    ['bytes=-10', 100, { start: 90, end: 99 }],
    ['bytes=-1000', 100, { start: 0, end: 99 }],
    ['bytes=50-1000', 100, { start: 50, end: 99 }],
    ['bytes=100-', 100, 'unsatisfiable'],
    ['bytes=-0', 100, 'unsatisfiable'],
    ['bytes=9-3', 100, null],
    ['bytes=0-1,5-6', 100, null],
    ['items=0-1', 100, null],
    ['bytes=-', 100, null],
  ] as const)('%s of %i bytes', (header, size, expected) => {
    expect(parseRange(header, size)).toEqual(expected);
  });
});

describe('Content-Disposition', () => {
  it('is inline only for safe types', () => {
    for (const t of ['image/png', 'image/jpeg', 'video/mp4', 'audio/ogg', 'text/plain; charset=utf-8', 'IMAGE/GIF']) expect(isInlineType(t)).toBe(true);
    for (const t of ['image/svg+xml', 'text/html', 'application/pdf', 'application/javascript', 'text/xml', 'application/octet-stream', '']) expect(isInlineType(t)).toBe(false);
  });
  it('encodes file names per RFC 6266', () => {
    expect(contentDisposition('image/png', 'a b.png')).toBe('inline; filename="a b.png"');
    expect(contentDisposition('text/html')).toBe('attachment');
    expect(contentDisposition('text/html', 'x"y.html')).toBe(`attachment; filename*=utf-8''x%22y.html`);
    expect(contentDisposition('application/pdf', 'naïve 文件.pdf')).toBe(`attachment; filename*=utf-8''na%C3%AFve%20%E6%96%87%E4%BB%B6.pdf`);
  });
});

const msg = <M>(body: M, enqueuedAt = 1_000_000) => ({ mid: 'm', actorId: 'x', body, enqueuedAt });

describe('media actor', () => {
  const record: MediaMessage = { op: 'record', owner: '@a:hs', contentType: 'image/png', size: 3, sha256: H, ref: 'id:1' };
  it('records once; a second upload to the id is refused', () => {
    const d = decideMedia(emptyMedia('id1'), msg(record));
    expect(d.state.record).toMatchObject({ o: '@a:hs', t: 'image/png', s: 3, h: H, u: 1_000_000 });
    expect(d.writes?.[0]).toMatchObject({ cmd: 'SET', key: 'media:id1' });
    expect(() => decideMedia(d.state, msg(record))).toThrow(expect.objectContaining({ errcode: 'M_CANNOT_OVERWRITE_MEDIA', status: 409 }));
  });
  it('a reservation: only its owner, only before it expires; a plain record cannot take it', () => {
    const reserved = decideMedia(emptyMedia('id2'), msg({ op: 'reserve', owner: '@a:hs', expiresAt: 2_000_000 } as MediaMessage)).state;
    expect(() => decideMedia(reserved, msg({ ...record, owner: '@b:hs', reserved: true } as MediaMessage))).toThrow(expect.objectContaining({ status: 403 }));
    expect(() => decideMedia(reserved, msg({ ...record, reserved: true } as MediaMessage, 2_000_001))).toThrow(expect.objectContaining({ status: 404 }));
    expect(() => decideMedia(reserved, msg(record))).toThrow(expect.objectContaining({ errcode: 'M_CANNOT_OVERWRITE_MEDIA' }));
    const done = decideMedia(reserved, msg({ ...record, reserved: true } as MediaMessage));
    expect(done.state.reservation).toBeNull();
    expect(done.writes?.map((w) => w.cmd)).toEqual(['SET', 'DEL']);
  });
  it('quarantine, release, delete', () => {
    const s: MediaState = decideMedia(emptyMedia('id3'), msg(record)).state;
    const q = decideMedia(s, msg({ op: 'quarantine', on: true } as MediaMessage)).state;
    expect(q.record?.q).toBe(1);
    expect(decideMedia(q, msg({ op: 'quarantine', on: false } as MediaMessage)).state.record?.q).toBeUndefined();
    const del = decideMedia(q, msg({ op: 'delete' } as MediaMessage));
    expect(del.reply).toEqual({ sha256: H, size: 3, owner: '@a:hs', ref: 'id:1', thumbs: [] });
    expect(del.state.record).toBeNull();
    expect(() => decideMedia(del.state, msg({ op: 'delete' } as MediaMessage))).toThrow(ActorRejection);
  });
  it('thumbnails: recorded once per box, method and animation, bounded, and named by delete so their references go too', () => {
    const T2 = 'b'.repeat(64);
    const thumb = (bw: number, extra: Partial<StoredThumbnail> = {}): MediaMessage => ({ op: 'thumbnail', thumb: { bw, bh: bw, m: 'crop', w: bw, h: bw, t: 'image/png', s: 10, c: T2, r: `id4:t:${bw}:${extra.an ?? 0}`, ...extra } });
    expect(() => decideMedia(emptyMedia('id4'), msg(thumb(32)))).toThrow(expect.objectContaining({ status: 404 }));
    let s: MediaState = decideMedia(emptyMedia('id4'), msg(record)).state;
    const first = decideMedia(s, msg(thumb(32)));
    expect(first.reply).toEqual({ added: true });
    s = first.state;
    // The same box again (another front's race): not added, and the recorded one is named.
    const again = decideMedia(s, msg(thumb(32, { r: 'other' })));
    expect(again.reply).toMatchObject({ added: false, existing: { r: 'id4:t:32:0' } });
    expect(again.writes ?? []).toEqual([]);
    // Animated is another entry.
    s = decideMedia(s, msg(thumb(32, { an: 1 }))).state;
    expect(s.record!.th).toHaveLength(2);
    expect(() => decideMedia(s, msg({ op: 'thumbnail', thumb: { ...(thumb(40) as { thumb: StoredThumbnail }).thumb, c: 'nothex' } } as MediaMessage))).toThrow(expect.objectContaining({ status: 400 }));
    for (let i = 0; i < MAX_THUMBNAILS + 5; i++) s = decideMedia(s, msg(thumb(100 + i))).state;
    expect(s.record!.th).toHaveLength(MAX_THUMBNAILS);
    // touch keeps them.
    s = decideMedia(s, msg({ op: 'touch', at: 1_000_500 } as MediaMessage)).state;
    expect(s.record!.th).toHaveLength(MAX_THUMBNAILS);
    const del = decideMedia(s, msg({ op: 'delete' } as MediaMessage)).reply as { thumbs: { sha256: string; ref: string }[] };
    expect(del.thumbs).toHaveLength(MAX_THUMBNAILS);
    expect(del.thumbs[0]).toEqual({ sha256: T2, ref: 'id4:t:32:0' });
  });
});

describe('media-content actor', () => {
  const ref = (r: string): MediaContentMessage => ({ op: 'ref', ref: r });
  it('counts each media id once and hands the blob over for deletion with the last reference', () => {
    let s = emptyContent(H);
    s = decideMediaContent(s, msg(ref('a')), { member: false }).state;
    expect(decideMediaContent(s, msg(ref('a')), { member: true }).state.refs).toBe(1); // a retried ref
    s = decideMediaContent(s, msg(ref('b')), { member: false }).state;
    expect(s.refs).toBe(2);
    let d = decideMediaContent(s, msg({ op: 'unref', ref: 'a' }), { member: true });
    expect(d.reply).toEqual({ refs: 1 });
    d = decideMediaContent(d.state, msg({ op: 'unref', ref: 'b' }), { member: true });
    expect(d.reply).toEqual({ refs: 0, purge: true });
    // While the deleter deletes, a new reference waits (503); after `purged` it is taken.
    expect(() => decideMediaContent(d.state, msg(ref('c'), 1_000_100), { member: false })).toThrow(expect.objectContaining({ status: 503 }));
    const purged = decideMediaContent(d.state, msg({ op: 'purged' }), { member: false }).state;
    expect(decideMediaContent(purged, msg(ref('c')), { member: false }).state.refs).toBe(1);
    // A deleter that died does not block the content for ever.
    expect(decideMediaContent(d.state, msg(ref('c'), 1_000_000 + DELETING_TIMEOUT_MS + 1), { member: false }).state.refs).toBe(1);
  });
});
