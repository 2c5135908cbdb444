/**
 * What the admin API's differential tests share (admin-users, admin-rooms, admin-misc,
 * admin-media): an Axon and a real Synapse 1.163.2 started side by side with an admin on each
 * (`startComparison`), or two servers a test started itself (`comparison`); one operation run on
 * both, and the answers compared field by field after normalising what is server-specific
 * (server names, ids, timestamps, addresses). Each test file lists the differences it means to
 * have (`allowed`: `step path` → why, a key ending in `*` covering every path it starts;
 * `allowedFields`: a path's last field → why, anywhere).
 */
import type { AxonConfig } from '../../cluster.config';
import { registrationMac } from '../../src/api/admin/register';
import { callServer, loopbackServerName, startSynapse, type SynapsePeer } from '../peers/synapse';
import { createTestCa, type TestCa } from '../peers/test-ca';
import { startTestServer, type TestServer } from '../e2e/server-harness';

export const SECRET = 'admin-users-e2e-shared-secret';

export type Json = any;
export interface Side {
  label: 'axon' | 'synapse';
  baseUrl: string;
  serverName: string;
  admin: { token: string; userId: string };
}

const TIMESTAMP_FIELDS = ['creation_ts', 'last_seen_ts', 'consent_ts', 'received_ts', 'created_ts', 'last_access_ts', 'origin_server_ts'];

export function normalise(v: Json, serverName: string, key = ''): Json {
  if (Array.isArray(v)) return v.map((x) => normalise(x, serverName, key));
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k.split(serverName).join('<hs>'), normalise(x, serverName, k)]));
  if (TIMESTAMP_FIELDS.includes(key) && typeof v === 'number') return v > 1e12 ? '<ms>' : v > 1e9 ? '<s>' : v;
  if (key === 'device_id' && typeof v === 'string') return '<device>';
  if (key === 'last_seen_ip' && typeof v === 'string') return '<ip>';
  if (key === 'event_id' && typeof v === 'string') return '<event>';
  if (typeof v === 'string') return v.split(serverName).join('<hs>').replace(/^![A-Za-z0-9_\-]+(:<hs>)?$/, '<room>');
  return v;
}

/** Paths where two JSON values differ (keys present on one side only count too). */
export function differences(a: Json, b: Json, path = ''): string[] {
  if (a && b && typeof a === 'object' && typeof b === 'object' && Array.isArray(a) === Array.isArray(b)) {
    const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
    return [...keys].flatMap((k) => differences(a[k], b[k], path ? `${path}.${k}` : k));
  }
  return JSON.stringify(a) === JSON.stringify(b) ? [] : [`${path || '(root)'}: axon ${JSON.stringify(a)} synapse ${JSON.stringify(b)}`];
}

/** An admin on Axon through the shared-secret registration API (`secret`: the server's `registration.sharedSecret`). */
export async function registerAxonAdmin(baseUrl: string, localpart: string, password: string, secret = SECRET) {
  const { nonce } = (await (await fetch(`${baseUrl}/_synapse/admin/v1/register`)).json()) as { nonce: string };
  const mac = registrationMac(secret, { nonce, username: localpart, password, admin: true });
  const r = await fetch(`${baseUrl}/_synapse/admin/v1/register`, { method: 'POST', body: JSON.stringify({ nonce, username: localpart, password, admin: true, mac }) });
  const body = (await r.json()) as Json;
  if (r.status !== 200) throw new Error(`axon admin registration: ${r.status} ${JSON.stringify(body)}`);
  return { token: body.access_token as string, userId: body.user_id as string };
}

export async function login(side: Pick<Side, 'baseUrl'> & Partial<Side>, localpart: string, password: string, device?: string) {
  return callServer(side, null, 'POST', '/login', { type: 'm.login.password', identifier: { type: 'm.id.user', user: localpart }, password, ...(device ? { device_id: device, initial_device_display_name: 'phone' } : {}) });
}

export interface Differ {
  /** Differences found that are not allowed (`step path: axon … synapse …`). */
  found: string[];
  /** Run one operation on both servers (`body` the same, or per server); compare statuses and normalised bodies. */
  both(step: string, method: string, path: (s: Side) => string, body?: Json | ((s: Side) => Json), token?: (s: Side) => string | null): Promise<{ axon: { status: number; body: Json }; synapse: { status: number; body: Json } }>;
}

export interface Allowances {
  allowed?: Record<string, string>;
  allowedFields?: Record<string, string>;
  /** Makes server-specific values comparable (default: `normalise` above). */
  normalise?: (v: Json, serverName: string) => Json;
}

/** `both` over two sides (Axon's first), read when a step runs: the test may make them later. */
export function comparison(sides: () => Side[], o: Allowances = {}): Differ {
  const found: string[] = [];
  const allowed = o.allowed ?? {};
  const allowedFields = o.allowedFields ?? {};
  const norm = o.normalise ?? ((v: Json, serverName: string) => normalise(v, serverName));
  return {
    found,
    async both(step, method, path, body, token = (s) => s.admin.token) {
      const [a, s] = await Promise.all(sides().map(async (side) => {
        const t = token(side);
        const r = await callServer(side, t === null ? null : { token: t }, method, path(side), typeof body === 'function' ? body(side) : body);
        return { status: r.status, body: norm(r.body, side.serverName) };
      }));
      const diffs = [...(a!.status !== s!.status ? [`status: axon ${a!.status} synapse ${s!.status}`] : []), ...differences(a!.body, s!.body)];
      for (const d of diffs) {
        const p = d.slice(0, d.indexOf(':'));
        const at = `${step} ${p}`;
        const byPrefix = Object.keys(allowed).some((k) => k.endsWith('*') && at.startsWith(k.slice(0, -1)));
        if (!allowed[at] && !byPrefix && !allowedFields[p.split('.').pop()!]) found.push(`${step} ${d}`);
      }
      return { axon: a!, synapse: s! };
    },
  };
}

export interface Comparison extends Differ {
  sides: Side[];
  axon: TestServer;
  synapse: SynapsePeer;
  /** `@localpart:server` of a side, path-encoded. */
  u(s: Side, localpart: string): string;
  stop(): Promise<void>;
}

export interface ComparisonOptions extends Allowances {
  synapseIp: string;
  configureAxon?: (c: AxonConfig) => void;
  configureSynapse?: (c: Json) => void;
}

export async function startComparison(o: ComparisonOptions): Promise<Comparison> {
  const ca: TestCa = createTestCa();
  const serverName = await loopbackServerName(o.synapseIp);
  const [synapse, axon] = await Promise.all([
    startSynapse({ serverName, ca, logLevel: 'WARNING', configure: (c) => { c.rc_login = { address: { per_second: 100, burst_count: 100 }, account: { per_second: 100, burst_count: 100 } }; o.configureSynapse?.(c); } }),
    startTestServer({ configure: (c) => { c.registration.sharedSecret = SECRET; o.configureAxon?.(c); } }),
  ]);
  const sAdmin = await synapse.registerUser('boss', 'boss-password-1', true);
  const aAdmin = await registerAxonAdmin(axon.baseUrl, 'boss', 'boss-password-1');
  const sides: Side[] = [
    { label: 'axon', baseUrl: axon.baseUrl, serverName: axon.serverName, admin: aAdmin },
    { label: 'synapse', baseUrl: synapse.baseUrl, serverName: synapse.serverName, admin: { token: sAdmin.token, userId: sAdmin.userId } },
  ];
  return {
    ...comparison(() => sides, o),
    sides,
    axon,
    synapse,
    u: (s, localpart) => encodeURIComponent(`@${localpart}:${s.serverName}`),
    async stop() {
      await Promise.all([synapse.stop(), axon.stop()]);
      ca.cleanup();
    },
  };
}
