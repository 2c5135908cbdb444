/**
 * Small helpers for e2e tests that speak raw HTTP to a test server: accounts minted through the
 * user actor (registration over HTTP is tested in accounts.e2e.test.ts), calls with a session's
 * token, and polling for effects that readers apply after the answer.
 */
import { randomBytes } from 'node:crypto';
import type { UserMessage } from '../../actors/user';
import { newToken, tokenHash } from '../../src/api/client/auth';
import { ActorClient } from '../../src/runtime/actor-client';
import { KeySpace } from '../../src/store/keys';
import type { TestServer } from './server-harness';
import { callServer } from '../../scripts/lib/synapse-peer';

export { callServer };

export interface Session {
  userId: string;
  deviceId: string;
  token: string;
}

export type Json = Record<string, any>;

export interface Clients {
  keys: KeySpace;
  actors: ActorClient;
  /** A device and access token for a local user (the first call registers the account). */
  mint(localpart: string, deviceId?: string, opts?: { admin?: boolean }): Promise<Session>;
  /** `/_matrix/client/v3<path>` (or `<path>` whole when it starts with `/_`). */
  call(s: Session | null, method: string, path: string, body?: unknown, baseUrl?: string): Promise<{ status: number; body: Json; headers: Headers }>;
  close(): Promise<void>;
}

/**
 * `displayname: false`: accounts are registered with no display name (tests that compare member
 * events or profiles whole); by default the localpart is the display name.
 */
export async function clientsFor(server: TestServer, opts: { displayname?: boolean } = {}): Promise<Clients> {
  const keys = new KeySpace(server.config.redis.keyPrefix);
  const actors = new ActorClient(server.redis, keys, { room: server.config.shards.rooms, user: server.config.shards.users });
  await actors.start();
  const minted = new Set<string>();
  return {
    keys,
    actors,
    async mint(localpart, deviceId = 'DEV1', admin = {}) {
      const userId = `@${localpart}:${server.serverName}`;
      const token = newToken(userId, server.config.shards.users);
      const session = { deviceId, accessHash: tokenHash(token) };
      const body: UserMessage = minted.has(userId) ? { op: 'login', verifiedHash: 'minted', session } : { op: 'register', passwordHash: 'minted', ...(opts.displayname === false ? {} : { displayname: localpart }), session, ...(admin.admin ? { admin: true } : {}) };
      await actors.ask('user', 'user', userId, body);
      minted.add(userId);
      return { userId, deviceId, token };
    },
    call: (s, method, path, body, baseUrl = server.baseUrl) => callServer({ baseUrl }, s, method, path, body),
    close: () => actors.close(),
  };
}

export const enc = encodeURIComponent;

let txnCounter = 0;
export const txn = () => `t${++txnCounter}-${randomBytes(3).toString('hex')}`;

/** Poll `fn` until `ok` holds (or the time is up; the last value is returned either way). */
export async function eventually<T>(fn: () => Promise<T>, ok: (v: T) => boolean, ms = 10_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (ok(v) || Date.now() > deadline) return v;
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** `callServer` answering only status and body (for tests that compare whole answers). */
export async function callJson(server: { baseUrl: string }, s: { token: string } | null, method: string, path: string, body?: unknown): Promise<{ status: number; body: Json }> {
  const { status, body: json } = await callServer(server, s, method, path, body);
  return { status, body: json };
}
