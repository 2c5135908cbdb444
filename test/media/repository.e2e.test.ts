/**
 * The media repository's operations through the real actors (media, media-content) on a running
 * Axon: identical content shared by two items and deleted only with the last of them (the
 * reference set and the delete handshake), quarantine and release seen by downloads over HTTP,
 * the per-user quota, and the media actor's refusals (overwrite, expired reservation).
 */
import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalMediaStore } from '../../src/media/local-store';
import { MediaRepository } from '../../src/media/repository';
import { ActorClient } from '../../src/runtime/actor-client';
import { shardCountsFor } from '../../src/runtime/cluster-settings';
import { KeySpace } from '../../src/store/keys';
import { MatrixError } from '../../src/http/errors';
import { startTestServer, type TestServer } from '../e2e/server-harness';

let server: TestServer;
let actors: ActorClient;
let repo: MediaRepository;
let store: LocalMediaStore;
let token: string;

async function* once(buf: Uint8Array): AsyncIterable<Uint8Array> {
  yield buf;
}

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

beforeAll(async () => {
  server = await startTestServer();
  const keys = new KeySpace(server.config.redis.keyPrefix);
  actors = new ActorClient(server.redis, keys, shardCountsFor(server.config), 'media-test');
  await actors.start();
  store = new LocalMediaStore(join(server.config.dataDir, 'media'));
  repo = new MediaRepository({ store, actors, redis: server.redis, keys, shardCounts: shardCountsFor(server.config), serverName: server.serverName, config: server.config.media, log: pino({ level: 'silent' }) });
  const first = await fetch(`${server.baseUrl}/_matrix/client/v3/register`, { method: 'POST', body: JSON.stringify({ username: 'viewer', password: 'a long passphrase' }) });
  const { session } = (await first.json()) as { session: string };
  const done = await fetch(`${server.baseUrl}/_matrix/client/v3/register`, { method: 'POST', body: JSON.stringify({ username: 'viewer', password: 'a long passphrase', auth: { type: 'm.login.dummy', session } }) });
  token = ((await done.json()) as { access_token: string }).access_token;
});
afterAll(async () => {
  await actors?.close();
  await server?.stop();
});

const get = (mediaId: string) => fetch(`${server.baseUrl}/_matrix/client/v1/media/download/${server.serverName}/${mediaId}`, { headers: { Authorization: `Bearer ${token}` } });

describe('media repository through the actors', () => {
  it('shares identical content between items and deletes the blob with its last reference', async () => {
    const body = randomBytes(10_000);
    const a = await repo.upload({ owner: '@a:localhost', contentType: 'application/octet-stream', body: once(body) });
    const b = await repo.upload({ owner: '@b:localhost', contentType: 'text/plain', filename: 'b.txt', body: once(body) });
    expect(a.sha256).toBe(sha(body));
    expect(b.sha256).toBe(a.sha256);
    expect(await repo.readRecord(a.mediaId)).toMatchObject({ o: '@a:localhost', s: body.length, h: a.sha256 });
    await repo.delete(a.mediaId);
    expect(await repo.readRecord(a.mediaId)).toBeNull();
    expect((await get(a.mediaId)).status).toBe(404);
    // b still refers to the blob: it stays and is served.
    expect(await store.exists(a.sha256)).toBe(true);
    const served = await get(b.mediaId);
    expect(served.status).toBe(200);
    expect(sha(new Uint8Array(await served.arrayBuffer()))).toBe(a.sha256);
    await repo.delete(b.mediaId);
    expect(await store.exists(a.sha256)).toBe(false);
    // Deleting again is a 404, and the same bytes uploaded anew are stored again.
    await expect(repo.delete(b.mediaId)).rejects.toMatchObject({ status: 404, errcode: 'M_NOT_FOUND' });
    const c = await repo.upload({ owner: '@a:localhost', contentType: 'application/octet-stream', body: once(body) });
    expect(await store.exists(c.sha256)).toBe(true);
    expect((await get(c.mediaId)).status).toBe(200);
  });

  it('a download records the last access (through the media actor)', async () => {
    const up = await repo.upload({ owner: '@a:localhost', contentType: 'text/plain', body: once(randomBytes(100)) });
    expect((await repo.readRecord(up.mediaId))?.a).toBeUndefined();
    const before = Date.now();
    await (await get(up.mediaId)).arrayBuffer();
    const deadline = Date.now() + 15_000;
    let accessed: number | undefined;
    while (accessed === undefined && Date.now() < deadline) {
      accessed = (await repo.readRecord(up.mediaId))?.a;
      if (accessed === undefined) await new Promise((r) => setTimeout(r, 100));
    }
    expect(accessed).toBeGreaterThanOrEqual(before);
  });

  it('quarantined media is not served until released', async () => {
    const up = await repo.upload({ owner: '@a:localhost', contentType: 'image/png', body: once(randomBytes(500)) });
    await repo.quarantine(up.mediaId, true);
    expect((await repo.readRecord(up.mediaId))?.q).toBe(1);
    const hidden = await get(up.mediaId);
    expect(hidden.status).toBe(404);
    expect(((await hidden.json()) as { errcode: string }).errcode).toBe('M_NOT_FOUND');
    await repo.quarantine(up.mediaId, false);
    expect((await get(up.mediaId)).status).toBe(200);
  });

  it('refuses an upload over the per-user quota and counts usage', async () => {
    const owner = '@quota:localhost';
    await repo.upload({ owner, contentType: 'text/plain', body: once(randomBytes(3000)) });
    expect(await repo.usage(owner)).toBe(3000);
    server.config.media.userQuotaBytes = 5000;
    try {
      await expect(repo.upload({ owner, contentType: 'text/plain', body: once(randomBytes(2500)) })).rejects.toMatchObject({ errcode: 'M_RESOURCE_LIMIT_EXCEEDED' });
      await expect(repo.upload({ owner, contentType: 'text/plain', body: once(randomBytes(10)), declaredBytes: 9000 })).rejects.toBeInstanceOf(MatrixError);
      const fits = await repo.upload({ owner, contentType: 'text/plain', body: once(randomBytes(2000)) });
      expect(await repo.usage(owner)).toBe(5000);
      await repo.delete(fits.mediaId);
      expect(await repo.usage(owner)).toBe(3000);
    } finally {
      server.config.media.userQuotaBytes = 0;
    }
  });

  it('a reserved id takes one upload, from its owner, and a plain upload cannot take it', async () => {
    const { mediaId } = await repo.reserve('@r:localhost');
    await expect(repo.upload({ owner: '@other:localhost', contentType: 'text/plain', body: once(randomBytes(10)), reservedId: mediaId })).rejects.toMatchObject({ status: 403, errcode: 'M_FORBIDDEN' });
    await repo.upload({ owner: '@r:localhost', contentType: 'text/plain', body: once(randomBytes(10)), reservedId: mediaId });
    await expect(repo.upload({ owner: '@r:localhost', contentType: 'text/plain', body: once(randomBytes(10)), reservedId: mediaId })).rejects.toMatchObject({ status: 409, errcode: 'M_CANNOT_OVERWRITE_MEDIA' });
    await expect(repo.upload({ owner: '@r:localhost', contentType: 'text/plain', body: once(randomBytes(10)), reservedId: 'neverReserved' })).rejects.toMatchObject({ status: 404 });
  });

  it('two uploads of the same bytes racing for one reserved id: one wins, and the loser does not take the blob away', async () => {
    const { mediaId } = await repo.reserve('@race:localhost');
    const body = randomBytes(50_000);
    const results = await Promise.allSettled([0, 1].map(() => repo.upload({ owner: '@race:localhost', contentType: 'application/octet-stream', body: once(body), reservedId: mediaId })));
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    const lost = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
    expect(lost.reason).toMatchObject({ status: 409, errcode: 'M_CANNOT_OVERWRITE_MEDIA' });
    expect(await store.exists(sha(body))).toBe(true);
    const served = await get(mediaId);
    expect(served.status).toBe(200);
    expect(sha(new Uint8Array(await served.arrayBuffer()))).toBe(sha(body));
  });
});
