/**
 * The admin API's user media list and deletion (issue 20) over real HTTP against Axon (with a real
 * redis-server): what is listed is what was uploaded, paging and ordering, and a deletion really
 * removes the bytes (downloads answer 404) and only the chosen user's items.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { callServer } from '../peers/synapse';
import { startTestServer, type TestServer } from '../e2e/server-harness';
import { registerAxonAdmin, SECRET } from './compare';

interface Item { media_id: string; media_type: string; media_length: number; upload_name: string | null; created_ts: number; last_access_ts: number; quarantined_by: string | null; safe_from_quarantine: boolean }

describe('admin API: user media', () => {
  let axon: TestServer;
  let admin: { token: string; userId: string };
  const call = (token: string | null, method: string, path: string, body?: unknown) => callServer(axon, token === null ? null : { token }, method, path, body);
  const upload = async (token: string, name: string, type: string, body: string) => {
    const r = await fetch(`${axon.baseUrl}/_matrix/media/v3/upload?filename=${name}`, { method: 'POST', headers: { Authorization: `Bearer ${token}`, 'Content-Type': type }, body });
    expect(r.status).toBe(200);
    return ((await r.json()) as { content_uri: string }).content_uri.split('/').pop()!;
  };
  const download = async (token: string, id: string) => (await fetch(`${axon.baseUrl}/_matrix/client/v1/media/download/${axon.serverName}/${id}`, { headers: { Authorization: `Bearer ${token}` } })).status;

  beforeAll(async () => {
    axon = await startTestServer({ configure: (c) => { c.registration = { ...c.registration, sharedSecret: SECRET, enabled: true }; } });
    admin = await registerAxonAdmin(axon.baseUrl, 'root', 'root-password-1');
  }, 120_000);
  afterAll(async () => {
    await axon?.stop();
  });

  it('lists, pages, orders and deletes one user\'s uploads', async () => {
    const mia = await registerAxonAdmin(axon.baseUrl, 'mia', 'mia-password-1');
    const bob = await registerAxonAdmin(axon.baseUrl, 'bob', 'bob-password-1');
    const ids = [await upload(mia.token, 'c.txt', 'text/plain', 'one'), await upload(mia.token, 'a.png', 'image/png', 'three'), await upload(mia.token, 'b.txt', 'text/plain', 'twotwo')];
    const bobs = await upload(bob.token, 'bob.txt', 'text/plain', 'bob');
    const U = `/_synapse/admin/v1/users/${encodeURIComponent(mia.userId)}/media`;

    const all = await call(admin.token, 'GET', U);
    expect(all.status).toBe(200);
    expect(all.body.total).toBe(3);
    expect(all.body.next_token).toBeUndefined();
    const media = all.body.media as Item[];
    expect(media.map((m) => m.media_id)).toEqual(ids); // created_ts, forward
    expect(media[1]).toMatchObject({ media_id: ids[1], media_type: 'image/png', media_length: 5, upload_name: 'a.png', quarantined_by: null, safe_from_quarantine: false });
    expect(typeof media[1]!.created_ts).toBe('number');

    const byName = await call(admin.token, 'GET', `${U}?order_by=upload_name&dir=b`);
    expect((byName.body.media as Item[]).map((m) => m.upload_name)).toEqual(['c.txt', 'b.txt', 'a.png']);
    const bySize = await call(admin.token, 'GET', `${U}?order_by=media_length`);
    expect((bySize.body.media as Item[]).map((m) => m.media_length)).toEqual([3, 5, 6]);
    const first = await call(admin.token, 'GET', `${U}?limit=2`);
    expect(first.body).toMatchObject({ total: 3, next_token: 2 });
    const rest = await call(admin.token, 'GET', `${U}?from=2&limit=2`);
    expect((rest.body.media as Item[]).map((m) => m.media_id)).toEqual([ids[2]]);
    expect(rest.body.next_token).toBeUndefined();

    // Quarantine shows in the list; bad input is a Matrix error.
    expect((await call(admin.token, 'POST', `/_synapse/admin/v1/media/quarantine/${axon.serverName}/${ids[0]}`, {})).status).toBe(200);
    expect(((await call(admin.token, 'GET', U)).body.media as Item[])[0]!.quarantined_by).not.toBeNull();
    expect(await download(mia.token, ids[0]!)).toBe(404);
    expect((await call(admin.token, 'GET', `${U}?order_by=size`)).body.errcode).toBe('M_INVALID_PARAM');
    expect((await call(admin.token, 'GET', `${U}?dir=x`)).body.errcode).toBe('M_INVALID_PARAM');
    expect((await call(admin.token, 'GET', `${U}?limit=-1`)).body.errcode).toBe('M_INVALID_PARAM');
    expect((await call(admin.token, 'GET', '/_synapse/admin/v1/users/@x:elsewhere.example/media')).status).toBe(400);
    expect((await call((await registerPlain()).token, 'GET', U)).status).toBe(403);

    // Delete the two largest: they really go, the rest (and bob's) stay.
    const del = await call(admin.token, 'DELETE', `${U}?order_by=media_length&dir=b&limit=2`);
    expect(del.status).toBe(200);
    expect(del.body.total).toBe(2);
    expect(new Set(del.body.deleted_media as string[])).toEqual(new Set([ids[1], ids[2]]));
    expect(await download(mia.token, ids[1]!)).toBe(404);
    expect(await download(mia.token, ids[2]!)).toBe(404);
    expect(await download(bob.token, bobs)).toBe(200);
    const left = await call(admin.token, 'GET', U);
    expect(left.body).toMatchObject({ total: 1 });
    expect((left.body.media as Item[])[0]!.media_id).toBe(ids[0]);
    expect((await call(admin.token, 'DELETE', U)).body).toEqual({ deleted_media: [ids[0]], total: 1 });
    expect((await call(admin.token, 'GET', U)).body).toEqual({ media: [], total: 0 });
  }, 180_000);

  it('protection: a protected item is skipped by quarantine of the user\'s media', async () => {
    const zoe = await registerAxonAdmin(axon.baseUrl, 'zoe', 'zoe-password-1');
    const kept = await upload(zoe.token, 'kept.txt', 'text/plain', 'kept');
    const gone = await upload(zoe.token, 'gone.txt', 'text/plain', 'gone');
    const M = '/_synapse/admin/v1/media';
    const U = `/_synapse/admin/v1/users/${encodeURIComponent(zoe.userId)}/media`;
    expect((await call(admin.token, 'POST', `${M}/protect/${kept}`, {})).body).toEqual({});
    expect((await call(admin.token, 'POST', `${M}/protect/nosuchmedia`, {})).status).toBe(404);
    const listedSafe = ((await call(admin.token, 'GET', U)).body.media as Item[]).find((m) => m.media_id === kept);
    expect(listedSafe?.safe_from_quarantine).toBe(true);

    const q = await call(admin.token, 'POST', `/_synapse/admin/v1/user/${encodeURIComponent(zoe.userId)}/media/quarantine`, {});
    expect(q.status).toBe(200);
    expect(q.body).toEqual({ num_quarantined: 1 });
    expect(await download(zoe.token, kept)).toBe(200);
    expect(await download(zoe.token, gone)).toBe(404);

    // Unprotected, the next quarantine of the user takes it too.
    expect((await call(admin.token, 'POST', `${M}/unprotect/${kept}`, {})).status).toBe(200);
    expect(((await call(admin.token, 'GET', U)).body.media as Item[]).every((m) => !m.safe_from_quarantine)).toBe(true);
    expect((await call(admin.token, 'POST', `/_synapse/admin/v1/user/${encodeURIComponent(zoe.userId)}/media/quarantine`, {})).body).toEqual({ num_quarantined: 2 });
    expect(await download(zoe.token, kept)).toBe(404);
    expect((await call(admin.token, 'POST', '/_synapse/admin/v1/user/@x:elsewhere.example/media/quarantine', {})).status).toBe(400);
  }, 180_000);

  it("a room's media: listed from content.url, info.thumbnail_url and file.url; quarantined but for protected items", async () => {
    const ann = await registerAxonAdmin(axon.baseUrl, 'ann', 'ann-password-1');
    const image = await upload(ann.token, 'i.png', 'image/png', 'image');
    const thumb = await upload(ann.token, 't.png', 'image/png', 'thumb');
    const file = await upload(ann.token, 'f.bin', 'application/octet-stream', 'file');
    const safe = await upload(ann.token, 's.png', 'image/png', 'safe');
    const elsewhere = await upload(ann.token, 'e.txt', 'text/plain', 'not in the room');
    const mxc = (id: string) => `mxc://${axon.serverName}/${id}`;
    const room = await call(ann.token, 'POST', '/createRoom', {});
    expect(room.status).toBe(200);
    const roomId = room.body.room_id as string;
    const send = async (txn: string, content: unknown) => expect((await call(ann.token, 'PUT', `/rooms/${encodeURIComponent(roomId)}/send/m.room.message/${txn}`, content)).status).toBe(200);
    await send('1', { msgtype: 'm.image', body: 'i', url: mxc(image), info: { thumbnail_url: mxc(thumb) } });
    await send('2', { msgtype: 'm.file', body: 'f', file: { url: mxc(file), v: 'v2' } });
    await send('3', { msgtype: 'm.image', body: 's', url: mxc(safe) });
    await send('4', { msgtype: 'm.image', body: 'r', url: 'mxc://remote.example/abcdef' });
    await send('5', { msgtype: 'm.text', body: 'not media', url: 'https://example.org/x' });
    const R = `/_synapse/admin/v1/room/${encodeURIComponent(roomId)}`;

    const listed = await call(admin.token, 'GET', `${R}/media`);
    expect(listed.status).toBe(200);
    expect(new Set(listed.body.local as string[])).toEqual(new Set([mxc(image), mxc(thumb), mxc(file), mxc(safe)]));
    expect(listed.body.remote).toEqual(['mxc://remote.example/abcdef']);
    expect((await call(admin.token, 'GET', '/_synapse/admin/v1/room/!nosuch:localhost/media')).status).toBe(404);

    expect((await call(admin.token, 'POST', `/_synapse/admin/v1/media/protect/${safe}`, {})).status).toBe(200);
    const q = await call(admin.token, 'POST', `${R}/media/quarantine`, {});
    expect(q.body).toEqual({ num_quarantined: 3 }); // the remote item is not cached here: nothing to quarantine
    for (const id of [image, thumb, file]) expect(await download(ann.token, id)).toBe(404);
    expect(await download(ann.token, safe)).toBe(200);
    expect(await download(ann.token, elsewhere)).toBe(200);
  }, 180_000);

  it('bulk deletion by last use and size: protected, quarantined and profile avatars kept', async () => {
    const M = '/_synapse/admin/v1/media';
    // Earlier tests' items stay out of the way: quarantined or deleted already, or not older than this.
    const before0 = Date.now();
    const ivy = await registerAxonAdmin(axon.baseUrl, 'ivy', 'ivy-password-1');
    const small = await upload(ivy.token, 's.txt', 'text/plain', 'x'.repeat(60));
    const big = await upload(ivy.token, 'b.txt', 'text/plain', 'x'.repeat(100));
    const avatar = await upload(ivy.token, 'a.png', 'image/png', 'y'.repeat(100));
    const guarded = await upload(ivy.token, 'p.txt', 'text/plain', 'z'.repeat(100));
    expect((await call(ivy.token, 'PUT', `/profile/${encodeURIComponent(ivy.userId)}/avatar_url`, { avatar_url: `mxc://${axon.serverName}/${avatar}` })).status).toBe(200);
    expect((await call(admin.token, 'POST', `${M}/protect/${guarded}`, {})).status).toBe(200);
    await new Promise((r) => setTimeout(r, 20));
    const cutoff = Date.now();
    const later = await upload(ivy.token, 'l.txt', 'text/plain', 'w'.repeat(100));

    expect((await call(admin.token, 'POST', `${M}/delete`, {})).body.errcode).toBe('M_MISSING_PARAM');
    expect((await call(admin.token, 'POST', `${M}/delete?before_ts=1000`, {})).body.errcode).toBe('M_INVALID_PARAM');
    expect((await call(admin.token, 'POST', `${M}/elsewhere.example/delete?before_ts=${cutoff}`, {})).status).toBe(400);
    // Nothing older than the start of this test but what earlier tests left unquarantined (none).
    expect((await call(admin.token, 'POST', `${M}/delete?before_ts=${before0}&size_gt=1000000`, {})).body).toEqual({ deleted_media: [], total: 0 });

    const del = await call(admin.token, 'POST', `${M}/${axon.serverName}/delete?before_ts=${cutoff}&size_gt=80`, {});
    expect(del.status).toBe(200);
    expect(del.body).toEqual({ deleted_media: [big], total: 1 });
    expect(await download(ivy.token, big)).toBe(404);
    // (No downloads of the others yet: a download is a use, after the cutoff.)

    // Without keep_profiles the avatar goes too, and the smaller one under a lower size_gt (earlier
    // tests' items, used before the cutoff too, are all smaller than 50 bytes).
    const all = await call(admin.token, 'POST', `${M}/delete?before_ts=${cutoff}&keep_profiles=false&size_gt=50`, {});
    expect(new Set(all.body.deleted_media as string[])).toEqual(new Set([small, avatar]));
    expect(all.body.total).toBe(2);
    expect(await download(ivy.token, avatar)).toBe(404);
    expect(await download(ivy.token, small)).toBe(404);
    expect(await download(ivy.token, guarded)).toBe(200);

    expect(await download(ivy.token, later)).toBe(200);
  }, 180_000);

  async function registerPlain() {
    const r = await call(null, 'POST', '/register', { username: 'plain', password: 'plain-password-1', auth: { type: 'm.login.dummy' } });
    return { token: r.body.access_token as string };
  }
});
