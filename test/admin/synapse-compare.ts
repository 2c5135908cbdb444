/**
 * What the admin API's comparison tests share (admin-users, admin-rooms): the two servers as
 * "sides", their admins (Axon's registered through the shared-secret API), logins, and `both`,
 * which runs one operation on both servers and records every difference of status or normalised
 * body that is not an intended one (listed with its reason by the test).
 */
import { callServer } from '../peers/synapse';
import { registrationMac } from '../../src/api/admin/register';

export type Json = any;

export interface Side {
  label: 'axon' | 'synapse';
  baseUrl: string;
  serverName: string;
  admin: { token: string; userId: string };
}

export async function registerAxonAdmin(baseUrl: string, secret: string, localpart: string, password: string) {
  const { nonce } = (await (await fetch(`${baseUrl}/_synapse/admin/v1/register`)).json()) as { nonce: string };
  const mac = registrationMac(secret, { nonce, username: localpart, password, admin: true });
  const r = await fetch(`${baseUrl}/_synapse/admin/v1/register`, { method: 'POST', body: JSON.stringify({ nonce, username: localpart, password, admin: true, mac }) });
  const body = (await r.json()) as Json;
  if (r.status !== 200) throw new Error(`axon admin registration: ${r.status} ${JSON.stringify(body)}`);
  return { token: body.access_token as string, userId: body.user_id as string };
}

export function login(side: Side, localpart: string, password: string, device?: string) {
  return callServer(side, null, 'POST', '/login', { type: 'm.login.password', identifier: { type: 'm.id.user', user: localpart }, password, ...(device ? { device_id: device, initial_device_display_name: 'phone' } : {}) });
}

/** Paths where two JSON values differ (keys present on one side only count too). */
export function differences(a: Json, b: Json, path = ''): string[] {
  if (a && b && typeof a === 'object' && typeof b === 'object' && Array.isArray(a) === Array.isArray(b)) {
    const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
    return [...keys].flatMap((k) => differences(a[k], b[k], path ? `${path}.${k}` : k));
  }
  return JSON.stringify(a) === JSON.stringify(b) ? [] : [`${path || '(root)'}: axon ${JSON.stringify(a)} synapse ${JSON.stringify(b)}`];
}

export interface Comparison {
  /** Run one operation on both servers (`body` the same, or per server); compare statuses and normalised bodies. */
  both(step: string, method: string, path: (s: Side) => string, body?: Json | ((s: Side) => Json), token?: (s: Side) => string | null): Promise<{ axon: { status: number; body: Json }; synapse: { status: number; body: Json } }>;
  /** The differences found that no allowance covers. */
  found: string[];
}

/**
 * `allowed`: `step path` → why; `allowedFields`: the path's last field → why (anywhere);
 * `normalise` makes server-specific values (names, ids, times) comparable.
 */
export function comparison(sides: () => Side[], opts: { allowed: Record<string, string>; allowedFields?: Record<string, string>; normalise: (v: Json, serverName: string) => Json }): Comparison {
  const found: string[] = [];
  return {
    found,
    async both(step, method, path, body, token = (s) => s.admin.token) {
      const [a, s] = await Promise.all(sides().map(async (side) => {
        const t = token(side);
        const r = await callServer(side, t === null ? null : { token: t }, method, path(side), typeof body === 'function' ? body(side) : body);
        return { status: r.status, body: opts.normalise(r.body, side.serverName) };
      }));
      const diffs = [...(a!.status !== s!.status ? [`status: axon ${a!.status} synapse ${s!.status}`] : []), ...differences(a!.body, s!.body)];
      for (const d of diffs) {
        const p = d.slice(0, d.indexOf(':'));
        if (!opts.allowed[`${step} ${p}`] && !opts.allowedFields?.[p.split('.').pop()!]) found.push(`${step} ${d}`);
      }
      return { axon: a!, synapse: s! };
    },
  };
}
