/**
 * Create an account (optionally a server admin) on a running Axon through shared-secret admin
 * registration (`/_synapse/admin/v1/register`), as Synapse's `register_new_matrix_user` does:
 *
 *   npm run register-user -- @alice:example.org --password 's3cret' [--admin]
 *   npm run register-user -- alice --password-file ./pw.txt --url http://127.0.0.1:8008
 *
 * The shared secret and the server's address come from the same configuration the server uses
 * (`axon.config.json` / `AXON_CONFIG`, `AXON_*` variables: `registration.sharedSecret`,
 * `publicBaseUrl`); `--url` and `--shared-secret` (or `AXON_REGISTRATION_SHARED_SECRET`) override
 * them. The password may also come from `AXON_REGISTER_PASSWORD`, to keep it out of `ps`.
 */
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { registrationMac } from '../src/api/admin/register';

export interface RegisterOptions {
  baseUrl: string;
  sharedSecret: string;
  /** A localpart or a full user id (whose server part is not checked here: the server decides). */
  user: string;
  password: string;
  admin: boolean;
  displayname?: string;
}

export interface Registered {
  user_id: string;
  access_token: string;
  device_id: string;
  home_server: string;
}

/** Fetch a nonce, sign the request with the shared secret, register. Throws with the server's error. */
export async function registerWithSharedSecret(o: RegisterOptions): Promise<Registered> {
  const url = `${o.baseUrl.replace(/\/+$/, '')}/_synapse/admin/v1/register`;
  const username = o.user.startsWith('@') ? o.user.slice(1, o.user.includes(':') ? o.user.indexOf(':') : undefined) : o.user;
  const nonceRes = await fetch(url).catch((e: Error) => {
    throw new Error(`cannot reach ${url}: ${(e.cause as Error | undefined)?.message ?? e.message}`);
  });
  const nonceBody = (await nonceRes.json()) as { nonce?: string; errcode?: string; error?: string };
  if (!nonceRes.ok || typeof nonceBody.nonce !== 'string') throw new Error(`getting a nonce failed: ${nonceRes.status} ${nonceBody.errcode ?? ''} ${nonceBody.error ?? ''}`.trim());
  const mac = registrationMac(o.sharedSecret, { nonce: nonceBody.nonce, username, password: o.password, admin: o.admin });
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ nonce: nonceBody.nonce, username, password: o.password, admin: o.admin, mac, ...(o.displayname !== undefined ? { displayname: o.displayname } : {}) }),
  });
  const body = (await res.json()) as Registered & { errcode?: string; error?: string };
  if (!res.ok) throw new Error(`registration failed: ${res.status} ${body.errcode ?? ''} ${body.error ?? ''}`.trim());
  return body;
}

const USAGE = 'usage: npm run register-user -- <@user:server | localpart> (--password <pw> | --password-file <file>) [--admin] [--displayname <name>] [--url <base url>] [--shared-secret <secret>]';

/** Parse the command line (exported for tests). */
export function parseArgs(argv: string[], env: Record<string, string | undefined>): { user: string; password: string; admin: boolean; displayname?: string; url?: string; sharedSecret?: string } {
  let user: string | undefined;
  let password = env.AXON_REGISTER_PASSWORD;
  let admin = false;
  let displayname: string | undefined;
  let url: string | undefined;
  let sharedSecret = env.AXON_REGISTRATION_SHARED_SECRET || undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const value = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value\n${USAGE}`);
      return v;
    };
    if (a === '--admin') admin = true;
    else if (a === '--password') password = value();
    else if (a === '--password-file') password = readFileSync(value(), 'utf8').replace(/\r?\n$/, '');
    else if (a === '--displayname') displayname = value();
    else if (a === '--url') url = value();
    else if (a === '--shared-secret') sharedSecret = value();
    else if (a.startsWith('--')) throw new Error(`unknown option ${a}\n${USAGE}`);
    else if (user === undefined) user = a;
    else throw new Error(`unexpected argument ${a}\n${USAGE}`);
  }
  if (!user) throw new Error(`which user?\n${USAGE}`);
  if (!password) throw new Error(`a password is required\n${USAGE}`);
  return { user, password, admin, ...(displayname !== undefined ? { displayname } : {}), ...(url !== undefined ? { url } : {}), ...(sharedSecret !== undefined ? { sharedSecret } : {}) };
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2), process.env);
  const { loadConfig } = await import('../cluster.config');
  const config = loadConfig();
  const sharedSecret = args.sharedSecret ?? config.registration.sharedSecret;
  if (!sharedSecret) throw new Error('no shared secret: set registration.sharedSecret (AXON_REGISTRATION_SHARED_SECRET) for the server and this script, or pass --shared-secret');
  // The front on this machine: a wildcard bind is reached on loopback; IPv6 literals need brackets.
  const host = config.bindHost === '0.0.0.0' ? '127.0.0.1' : config.bindHost === '::' ? '::1' : config.bindHost;
  const baseUrl = args.url ?? `http://${host.includes(':') && !host.startsWith('[') ? `[${host}]` : host}:${config.clientPort}`;
  const r = await registerWithSharedSecret({ baseUrl, sharedSecret, user: args.user, password: args.password, admin: args.admin, ...(args.displayname !== undefined ? { displayname: args.displayname } : {}) });
  process.stdout.write(`registered ${r.user_id}${args.admin ? ' (admin)' : ''} on ${baseUrl}\n`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((e: Error) => {
    process.stderr.write(`${e.message}\n`);
    process.exit(1);
  });
}
