/** The key backup actor's decide, as a pure state machine: no Redis. */
import { describe, expect, it } from 'vitest';
import { currentVersion, decideKeyBackup, keyBackupActor, noBackups, shouldReplaceKey, type KeyBackupMessage, type KeyBackupPrepared, type KeyBackupState } from '../../actors/key-backup';
import { ActorRejection, type ShellContext } from '../../src/runtime/actor';
import RedisMock from 'ioredis-mock';
import { userData } from '../../src/store/keys';

const U = '@alice:test.local';
const ROOM = '!room:test.local';
const msg = (body: KeyBackupMessage) => ({ mid: 'm', actorId: U, body, enqueuedAt: 1000 });
const decide = (s: KeyBackupState, body: KeyBackupMessage, p?: KeyBackupPrepared) => decideKeyBackup(s, msg(body), p);
const key = (is_verified: boolean, first_message_index: number, forwarded_count: number) => JSON.stringify({ first_message_index, forwarded_count, is_verified, session_data: { ciphertext: `${is_verified}${first_message_index}${forwarded_count}` } });

function rejection(f: () => unknown): ActorRejection {
  try {
    f();
  } catch (e) {
    if (e instanceof ActorRejection) return e;
    throw e;
  }
  throw new Error('expected a rejection');
}

function withVersions(n: number): KeyBackupState {
  let s = noBackups(U);
  for (let i = 0; i < n; i++) s = decide(s, { op: 'create_version', algorithm: 'm.megolm_backup.v1.curve25519-aes-sha2', authData: '{"public_key":"pk"}' }).state;
  return s;
}

describe('KeyBackupActor', () => {
  it('is a user-family kind named keybackup', () => {
    expect(keyBackupActor().kind).toBe('keybackup');
    expect(keyBackupActor().family).toBe('user');
  });

  it('replacement rule: verified first, then lower first_message_index, then lower forwarded_count', () => {
    const m = (v: boolean, i: number, f: number) => ({ is_verified: v, first_message_index: i, forwarded_count: f });
    expect(shouldReplaceKey(m(false, 0, 0), m(true, 5, 5))).toBe(true);
    // Unlike Synapse: an unverified key never replaces a verified one, whatever its index.
    expect(shouldReplaceKey(m(true, 5, 5), m(false, 0, 0))).toBe(false);
    expect(shouldReplaceKey(m(true, 5, 0), m(true, 4, 9))).toBe(true);
    expect(shouldReplaceKey(m(true, 4, 0), m(true, 5, 0))).toBe(false);
    expect(shouldReplaceKey(m(false, 4, 2), m(false, 4, 1))).toBe(true);
    expect(shouldReplaceKey(m(false, 4, 1), m(false, 4, 2))).toBe(false);
    expect(shouldReplaceKey(m(false, 4, 1), m(false, 4, 1))).toBe(false);
  });

  it('numbers versions 1, 2, … and never reuses one; the highest live one is current', () => {
    const s = withVersions(2);
    expect(currentVersion(s.versions)).toBe('2');
    const d = decide(s, { op: 'delete_version', version: '2' }, { rooms: [ROOM] });
    expect(d.writes).toEqual([
      { cmd: 'HDEL', key: userData.keyBackupVersions(U), args: ['2'] },
      { cmd: 'DEL', key: userData.keyBackupRooms(U, '2'), args: [] },
      { cmd: 'DEL', key: userData.keyBackupRoom(U, '2', ROOM), args: [] },
    ]);
    expect(currentVersion(d.state.versions)).toBe('1');
    // Deleting it again succeeds and changes nothing; a version never made is unknown.
    expect(decide(d.state, { op: 'delete_version', version: '2' }).state).toBe(d.state);
    expect(rejection(() => decide(d.state, { op: 'delete_version', version: '3' })).errcode).toBe('M_NOT_FOUND');
    expect(decide(d.state, { op: 'create_version', algorithm: 'a', authData: '{}' }).reply).toEqual({ version: '3' });
  });

  it('keys go only to the current version', () => {
    const s = withVersions(2);
    expect(decide(s, { op: 'put_keys', version: '1', rooms: { [ROOM]: { s1: key(false, 0, 0) } } }, { existing: {} })).toEqual({ state: s, reply: { wrong_version: '2' } });
    expect(rejection(() => decide(s, { op: 'put_keys', version: '7', rooms: {} }, { existing: {} })).status).toBe(404);
    expect(rejection(() => decide(noBackups(U), { op: 'put_keys', version: '1', rooms: {} }, { existing: {} })).errcode).toBe('M_NOT_FOUND');
  });

  it('etag moves and count grows only when keys change', () => {
    let s = withVersions(1);
    const put = (rooms: Record<string, Record<string, string>>, existing: Record<string, Record<string, string | null>>) => {
      const d = decide(s, { op: 'put_keys', version: '1', rooms }, { existing });
      s = d.state;
      return d;
    };
    const first = put({ [ROOM]: { s1: key(false, 3, 1), s2: key(false, 0, 0) } }, { [ROOM]: { s1: null, s2: null } });
    expect(first.reply).toEqual({ etag: '1', count: 2 });
    expect(first.writes).toContainEqual({ cmd: 'SADD', key: userData.keyBackupRooms(U, '1'), args: [ROOM] });
    // A worse key for s1 changes nothing: same etag, no writes.
    const worse = put({ [ROOM]: { s1: key(false, 5, 1) } }, { [ROOM]: { s1: key(false, 3, 1) } });
    expect(worse.reply).toEqual({ etag: '1', count: 2 });
    expect(worse.writes).toBeUndefined();
    // A better one replaces it: new etag, same count.
    const better = put({ [ROOM]: { s1: key(true, 9, 9) } }, { [ROOM]: { s1: key(false, 3, 1) } });
    expect(better.reply).toEqual({ etag: '2', count: 2 });
    expect(better.writes).toContainEqual({ cmd: 'HSET', key: userData.keyBackupRoom(U, '1', ROOM), args: ['s1', key(true, 9, 9)] });
    // Deleting one session of the room, then the rest.
    const del = decide(s, { op: 'delete_keys', version: '1', roomId: ROOM, sessionId: 's2' }, { sessions: { [ROOM]: ['s2'] }, roomSizes: { [ROOM]: 2 } });
    expect(del.reply).toEqual({ etag: '3', count: 1 });
    expect(del.writes).toContainEqual({ cmd: 'HDEL', key: userData.keyBackupRoom(U, '1', ROOM), args: ['s2'] });
    const rest = decide(del.state, { op: 'delete_keys', version: '1' }, { sessions: { [ROOM]: ['s1'] }, roomSizes: { [ROOM]: 1 } });
    expect(rest.reply).toEqual({ etag: '4', count: 0 });
    expect(rest.writes).toContainEqual({ cmd: 'SREM', key: userData.keyBackupRooms(U, '1'), args: [ROOM] });
    // Deleting nothing keeps the etag.
    expect(decide(rest.state, { op: 'delete_keys', version: '1' }, { sessions: {}, roomSizes: {} }).reply).toEqual({ etag: '4', count: 0 });
  });

  it('delete_all removes every version and its keys, and keeps the numbering', () => {
    const s = withVersions(2);
    const d = decide(s, { op: 'delete_all' }, { roomsByVersion: { '1': [ROOM], '2': [] } });
    expect(d.state.versions).toEqual({});
    expect(d.writes).toEqual([
      { cmd: 'DEL', key: userData.keyBackupVersions(U), args: [] },
      { cmd: 'DEL', key: userData.keyBackupRooms(U, '1'), args: [] },
      { cmd: 'DEL', key: userData.keyBackupRoom(U, '1', ROOM), args: [] },
      { cmd: 'DEL', key: userData.keyBackupRooms(U, '2'), args: [] },
    ]);
    expect(decide(d.state, { op: 'create_version', algorithm: 'a', authData: '{}' }).reply).toEqual({ version: '3' });
    expect(decide(d.state, { op: 'delete_all' }, { roomsByVersion: {} }).state).toBe(d.state);
  });

  it('update_version keeps the algorithm and refuses unknown versions', () => {
    const s = withVersions(1);
    expect(rejection(() => decide(s, { op: 'update_version', version: '1', algorithm: 'other', authData: '{}' })).errcode).toBe('M_INVALID_PARAM');
    expect(rejection(() => decide(s, { op: 'update_version', version: '2', algorithm: 'm.megolm_backup.v1.curve25519-aes-sha2', authData: '{}' })).errcode).toBe('M_NOT_FOUND');
    const d = decide(s, { op: 'update_version', version: '1', algorithm: 'm.megolm_backup.v1.curve25519-aes-sha2', authData: '{"public_key":"new"}' });
    expect(d.state.versions['1']!.authData).toBe('{"public_key":"new"}');
    expect(d.state.versions['1']!.etag).toBe(0);
  });

  it("purge_room takes a purged room's keys out of every version (new etag, smaller count); other rooms' stay; run again it changes nothing", async () => {
    const redis = new RedisMock();
    const ctx = { redis, keys: { data: (name: string) => name } } as unknown as ShellContext;
    const actor = keyBackupActor();
    const OTHER = '!room:test.local:8448'; // its id begins with ROOM's
    let s = noBackups(U);
    /** prepare, decide and the writes applied, as the actor's shell does. */
    const run = async (body: KeyBackupMessage) => {
      const m = msg(body);
      const d = actor.decide(s, m, await actor.prepare!(ctx, s, m));
      for (const w of d.writes ?? []) await (redis as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>)[w.cmd.toLowerCase()]!(w.key, ...w.args);
      s = d.state;
      return d;
    };
    await run({ op: 'create_version', algorithm: 'a', authData: '{}' });
    await run({ op: 'put_keys', version: '1', rooms: { [ROOM]: { s1: key(true, 0, 0), s2: key(true, 0, 0) }, [OTHER]: { s3: key(true, 0, 0) } } });
    await run({ op: 'create_version', algorithm: 'a', authData: '{}' });
    await run({ op: 'put_keys', version: '2', rooms: { [ROOM]: { s1: key(true, 0, 0) }, [OTHER]: { s3: key(true, 0, 0) } } });
    expect([s.versions['1'], s.versions['2']].map((v) => [v!.count, v!.etag])).toEqual([[3, 1], [2, 1]]);

    await run({ op: 'purge_room', roomId: ROOM });
    expect([s.versions['1'], s.versions['2']].map((v) => [v!.count, v!.etag])).toEqual([[1, 2], [1, 2]]);
    for (const version of ['1', '2']) {
      expect(await redis.smembers(userData.keyBackupRooms(U, version))).toEqual([OTHER]);
      expect(await redis.exists(userData.keyBackupRoom(U, version, ROOM))).toBe(0);
      expect(await redis.hkeys(userData.keyBackupRoom(U, version, OTHER))).toEqual(['s3']);
      expect(JSON.parse((await redis.hget(userData.keyBackupVersions(U), version))!)).toMatchObject({ count: 1, etag: '2' });
    }
    const before = s;
    expect((await run({ op: 'purge_room', roomId: ROOM })).writes).toBeUndefined();
    expect(s).toBe(before);
  });
});
