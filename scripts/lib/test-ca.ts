/**
 * A private certificate authority for federation on loopback (tests and bench-federation): one CA, and a leaf certificate
 * per server whose subjectAltName is the server's IP (server names like `127.0.0.11:41448` are IP
 * literals, so peers check the certificate against the IP and send no SNI). Leaves carry both
 * serverAuth and clientAuth, so one certificate serves a federation listener and its outbound calls.
 * Synapse trusts the CA through `federation_custom_ca_list`; Axon through `federation.caPaths`; a
 * test's own HTTPS calls through `httpsGet`/`httpsJson(url, { caPath })`.
 *
 * Certificates are made by the system `openssl` binary (node:crypto makes keys but not X.509
 * certificates). Only the classic `req`/`x509 -req` commands are used, with our own config file,
 * so any OpenSSL from 1.1.1 on gives the same result whatever the system's openssl.cnf says.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { isIP } from 'node:net';
import { tmpdir } from 'node:os';
import type { PeerCertificate, TLSSocket } from 'node:tls';
import { join } from 'node:path';

export interface LeafCertificate {
  /** The names in subjectAltName (IPs or DNS names). */
  names: string[];
  certPath: string;
  keyPath: string;
}

export interface TestCa {
  dir: string;
  /** PEM of the CA certificate: what peers trust. */
  caPath: string;
  /** A certificate for `names` (an IP like `127.0.0.11`, or several names), signed by this CA. Cached per name list. */
  leaf(names: string | string[]): LeafCertificate;
  /** Removes the directory with every key and certificate. */
  cleanup(): void;
}

const DAYS = '7';

function openssl(args: string[], cwd: string): void {
  try {
    execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (err) {
    const e = err as { stderr?: Buffer; message: string };
    throw new Error(`openssl ${args[0]} failed: ${e.stderr?.toString().trim() || e.message}`);
  }
}

/** A file name for a leaf from its names (IPv6 colons and the like are not welcome in paths). */
const fileStem = (names: string[]) => names.join('_').replace(/[^A-Za-z0-9._-]/g, '-');

const subjectAltName = (names: string[]) => names.map((n) => (isIP(n) ? `IP:${n}` : `DNS:${n}`)).join(',');

export function createTestCa(opts: { dir?: string; commonName?: string } = {}): TestCa {
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'axon-test-ca-'));
  const caPath = join(dir, 'ca.crt');
  const caKeyPath = join(dir, 'ca.key');
  // A config of our own: `req` needs a [req] section, and the system file may add extensions we do not want.
  writeFileSync(
    join(dir, 'openssl.cnf'),
    [
      '[req]',
      'distinguished_name = dn',
      'prompt = no',
      '[dn]',
      `CN = ${opts.commonName ?? 'axon-test-federation-ca'}`,
      '[ca_ext]',
      'basicConstraints = critical, CA:TRUE',
      'keyUsage = critical, keyCertSign, cRLSign',
      'subjectKeyIdentifier = hash',
      '',
    ].join('\n'),
  );
  const ecKey = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  openssl(['req', '-config', 'openssl.cnf', '-x509', ...ecKey, '-keyout', caKeyPath, '-out', caPath, '-days', DAYS, '-extensions', 'ca_ext'], dir);

  const leaves = new Map<string, LeafCertificate>();
  let serial = 1;
  return {
    dir,
    caPath,
    leaf(input) {
      const names = typeof input === 'string' ? [input] : [...input];
      if (names.length === 0) throw new Error('a leaf certificate needs at least one name');
      const stem = fileStem(names);
      const known = leaves.get(stem);
      if (known) return known;
      const keyPath = join(dir, `${stem}.key`);
      const certPath = join(dir, `${stem}.crt`);
      const csrPath = join(dir, `${stem}.csr`);
      const extPath = join(dir, `${stem}.ext`);
      writeFileSync(
        extPath,
        [
          `subjectAltName = ${subjectAltName(names)}`,
          'basicConstraints = critical, CA:FALSE',
          'keyUsage = critical, digitalSignature, keyEncipherment',
          'extendedKeyUsage = serverAuth, clientAuth',
          'authorityKeyIdentifier = keyid',
          '',
        ].join('\n'),
      );
      openssl(['req', '-config', 'openssl.cnf', '-new', ...ecKey, '-keyout', keyPath, '-out', csrPath, '-subj', `/CN=${names[0]}`], dir);
      openssl(['x509', '-req', '-in', csrPath, '-CA', caPath, '-CAkey', caKeyPath, '-set_serial', String(++serial), '-out', certPath, '-days', DAYS, '-extfile', extPath], dir);
      const leaf = { names, certPath, keyPath };
      leaves.set(stem, leaf);
      return leaf;
    },
    cleanup() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface HttpsAnswer {
  status: number;
  text: string;
  /** The certificate the server presented (its `subjectaltname`, e.g. `IP Address:127.0.0.11`). */
  peerCertificate: PeerCertificate;
}

/**
 * GET over HTTPS trusting only the CA at `caPath` (not the system's roots), the certificate checked
 * against the URL's host (for an IP, the IP subjectAltName; no SNI is sent for an IP).
 */
export function httpsGet(url: string, opts: { caPath: string; timeoutMs?: number }): Promise<HttpsAnswer> {
  const ca = readFileSync(opts.caPath);
  const timeoutMs = opts.timeoutMs ?? 10_000;
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'GET', ca, timeout: timeoutMs, agent: false }, (res) => {
      const peerCertificate = (res.socket as TLSSocket).getPeerCertificate();
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8'), peerCertificate }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`${url}: no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

/** `httpsGet` of a JSON document. */
export async function httpsJson(url: string, opts: { caPath: string; timeoutMs?: number }): Promise<HttpsAnswer & { body: any }> {
  const answer = await httpsGet(url, opts);
  try {
    return { ...answer, body: JSON.parse(answer.text) };
  } catch {
    throw new Error(`${url}: ${answer.status} with a body that is not JSON: ${answer.text.slice(0, 200)}`);
  }
}
