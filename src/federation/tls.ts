/**
 * The federation listener's certificate when none is configured: a self-signed pair under
 * `dataDir/federation-tls`, made once by the system `openssl` (node:crypto makes keys but not
 * X.509 certificates), so `npm start` serves federation with one command. Peers that check
 * certificates (all real ones) refuse it: a public server configures a real certificate.
 *
 * Several fronts may start at once: the pair is made in a temporary directory and renamed into
 * place, so every process ends up with the same matching pair.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { parseServerName } from '../protocol/server-names';

export interface TlsFiles {
  certPath: string;
  keyPath: string;
}

export function ensureSelfSignedCertificate(dataDir: string, serverName: string): TlsFiles {
  const dir = join(dataDir, 'federation-tls');
  const files = { certPath: join(dir, 'cert.pem'), keyPath: join(dir, 'key.pem') };
  if (existsSync(files.certPath) && existsSync(files.keyPath)) return files;
  mkdirSync(dataDir, { recursive: true });
  const tmp = mkdtempSync(join(dataDir, '.federation-tls-'));
  try {
    const host = parseServerName(serverName)?.host ?? 'localhost';
    const san = isIP(host) ? `IP:${host}` : `DNS:${host}`;
    writeFileSync(join(tmp, 'openssl.cnf'), ['[req]', 'distinguished_name = dn', 'prompt = no', '[dn]', `CN = ${host}`, '[ext]', `subjectAltName = ${san}`, 'basicConstraints = critical, CA:FALSE', 'extendedKeyUsage = serverAuth, clientAuth', ''].join('\n'));
    try {
      execFileSync('openssl', ['req', '-config', 'openssl.cnf', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'key.pem', '-out', 'cert.pem', '-days', '3650', '-extensions', 'ext'], { cwd: tmp, stdio: ['ignore', 'ignore', 'pipe'] });
    } catch (err) {
      const e = err as { stderr?: Buffer; message: string; code?: string };
      if (e.code === 'ENOENT') throw new Error('federation: no TLS certificate configured and no `openssl` binary to make a self-signed one; set federation.tlsCertPath and tlsKeyPath (or install openssl)');
      throw new Error(`federation: making a self-signed certificate failed: ${e.stderr?.toString().trim() || e.message}`);
    }
    rmSync(join(tmp, 'openssl.cnf'));
    try {
      renameSync(tmp, dir);
    } catch {
      // Another process put its pair in place first: use that one.
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  return files;
}
