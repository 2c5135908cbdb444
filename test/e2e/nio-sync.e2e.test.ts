/**
 * `/sync` through a second, independent client library: matrix-nio (Python), driven by
 * test/e2e/nio/sync_client.py. Bob's side is nio's own sync loop (first sync, then long polls);
 * Alice speaks raw HTTP. Bob must see the invite, join through nio, receive every message exactly
 * once and in order, the room's name change and the final message, then leave and see the leave.
 *
 * nio comes from Debian (`apt-get install python3-matrix-nio`, done by scripts/lib/ensure.sh's
 * ensure_nio). Outside CI the test skips itself when no python3 on hand imports nio; in CI it runs.
 */
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from './server-harness';
import { callJson } from './clients';

type Json = Record<string, any>;

interface Session {
  userId: string;
  deviceId: string;
  token: string;
}

const scriptPath = fileURLToPath(new URL('./nio/sync_client.py', import.meta.url));

/** Debian's package installs into /usr/bin/python3's dist-packages, which a pyenv or venv `python3` does not see. */
function pythonWithNio(): string | undefined {
  for (const candidate of ['python3', '/usr/bin/python3']) {
    const r = spawnSync(candidate, ['-c', 'import nio'], { stdio: 'ignore' });
    if (r.status === 0) return candidate;
  }
  return undefined;
}

const python = pythonWithNio();
const skip = python === undefined && !process.env.CI;
if (skip) console.warn('nio-sync.e2e: skipped, no python3 imports matrix-nio (install: sudo apt-get install -y python3-matrix-nio)');

let server: TestServer;

beforeAll(async () => {
  if (skip) return;
  server = await startTestServer();
});
afterAll(async () => {
  await server?.stop();
});

const call = (s: Session | null, method: string, path: string, body?: unknown) => callJson(server, s, method, path, body);

/** Registration over HTTP, the user-interactive way: a first call for the session, then m.login.dummy. */
async function register(username: string): Promise<Session> {
  const password = 'a long passphrase';
  const first = await call(null, 'POST', '/register', { username, password });
  expect(first.status, JSON.stringify(first.body)).toBe(401);
  const done = await call(null, 'POST', '/register', { username, password, auth: { type: 'm.login.dummy', session: first.body.session } });
  expect(done.status, JSON.stringify(done.body)).toBe(200);
  return { userId: done.body.user_id, deviceId: done.body.device_id, token: done.body.access_token };
}

const enc = encodeURIComponent;
const txn = () => `t${randomBytes(6).toString('hex')}`;

async function ok(p: Promise<{ status: number; body: Json }>): Promise<Json> {
  const r = await p;
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  return r.body;
}

/** The nio script as a child: its JSON lines as they come, a way to wait for one, and its exit. */
function startNioClient(bob: Session, finalBody: string, deadlineSeconds: number) {
  const child = spawn(python!, [scriptPath, server.baseUrl, bob.userId, bob.deviceId, bob.token, finalBody, String(deadlineSeconds)], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: Json[] = [];
  const waiters: Array<{ match: (l: Json) => boolean; resolve: (l: Json) => void }> = [];
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  createInterface({ input: child.stdout }).on('line', (text) => {
    const line = JSON.parse(text) as Json;
    lines.push(line);
    for (const w of [...waiters]) if (w.match(line)) { waiters.splice(waiters.indexOf(w), 1); w.resolve(line); }
  });
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  return {
    lines,
    stderr: () => stderr,
    exited,
    kill: () => child.kill(),
    waitFor(match: (l: Json) => boolean, what: string): Promise<Json> {
      const seen = lines.find(match);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        waiters.push({ match, resolve });
        void exited.then((code) => reject(new Error(`nio client exited (${code}) before ${what}; lines: ${JSON.stringify(lines)}; stderr: ${stderr}`)));
      });
    },
  };
}

describe('matrix-nio syncing against Axon', () => {
  it.skipIf(skip)('sees an invite, joins, gets every message once and in order, a name change, the final message, and its leave', async () => {
    if (python === undefined) throw new Error('CI: no python3 imports matrix-nio; ensure_nio (scripts/lib/ensure.sh) should have installed python3-matrix-nio');
    const alice = await register(`nio_alice_${randomBytes(3).toString('hex')}`);
    const bob = await register(`nio_bob_${randomBytes(3).toString('hex')}`);
    const roomId = (await ok(call(alice, 'POST', '/createRoom', { name: 'Before', preset: 'private_chat' }))).room_id as string;
    await ok(call(alice, 'POST', `/rooms/${enc(roomId)}/invite`, { user_id: bob.userId }));

    const finalBody = 'the final message';
    const nio = startNioClient(bob, finalBody, 40);
    try {
      // The invite arrives in nio's first sync; nio joins and its next sync shows the room joined.
      await nio.waitFor((l) => l.kind === 'joined' && l.room_id === roomId, 'joining the room');

      const sent: Array<{ body: string; eventId: string }> = [];
      const say = async (body: string) => {
        const r = await ok(call(alice, 'PUT', `/rooms/${enc(roomId)}/send/m.room.message/${txn()}`, { msgtype: 'm.text', body }));
        sent.push({ body, eventId: r.event_id as string });
      };
      for (let i = 0; i < 10; i++) await say(`message ${i}`);
      const renamed = await ok(call(alice, 'PUT', `/rooms/${enc(roomId)}/state/m.room.name/`, { name: 'After' }));
      await say(finalBody);

      const code = await nio.exited;
      const lines = nio.lines;
      expect(code, `nio client exit; lines: ${JSON.stringify(lines)}; stderr: ${nio.stderr()}`).toBe(0);
      expect(lines.filter((l) => l.kind === 'error' || l.kind === 'deadline')).toEqual([]);

      const kinds = lines.map((l) => l.kind);
      expect(lines).toContainEqual({ kind: 'invite', room_id: roomId, sender: alice.userId });
      expect(kinds.indexOf('invite')).toBeLessThan(kinds.indexOf('joined'));
      expect(lines).toContainEqual(expect.objectContaining({ kind: 'member', room_id: roomId, state_key: bob.userId, membership: 'join' }));

      // Every message exactly once, in the order sent, with the ids the server gave Alice.
      const messages = lines.filter((l) => l.kind === 'message' && l.room_id === roomId).map((l) => ({ body: l.body, eventId: l.event_id }));
      expect(messages).toEqual(sent);

      // The room's creation name arrives with the join's timeline (shared history); the change to
      // 'After' came through once, between the 10th and the final message.
      const nameLines = lines.filter((l) => l.kind === 'name' && l.room_id === roomId);
      expect(nameLines.map((l) => l.name)).toEqual(['Before', 'After']);
      expect(nameLines[1]!.event_id).toBe(renamed.event_id);
      const nameAt = lines.indexOf(nameLines[1]!);
      expect(nameAt).toBeGreaterThan(lines.findIndex((l) => l.body === 'message 9'));
      expect(nameAt).toBeLessThan(lines.findIndex((l) => l.body === finalBody));

      // nio left after the final message and saw its own leave come back through /sync.
      expect(lines.at(-1)).toEqual({ kind: 'left', room_id: roomId, membership: 'leave' });
      const members = await ok(call(alice, 'GET', `/rooms/${enc(roomId)}/joined_members`));
      expect(Object.keys(members.joined)).toEqual([alice.userId]);
    } finally {
      nio.kill();
    }
  });
});
