/**
 * A throwaway PostgreSQL cluster for benchmarks that compare with Synapse on PostgreSQL
 * (scripts/bench-search.ts, scripts/bench-search-index.ts): the installed binaries (Debian:
 * apt-get install postgresql), a fresh data directory, a free loopback port, trust auth, a
 * `synapse` database in C locale as Synapse requires.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './bench-util';

export function pgBin(): string {
  const dirs = existsSync('/usr/lib/postgresql') ? readdirSync('/usr/lib/postgresql').sort((a, b) => Number(b) - Number(a)) : [];
  for (const d of dirs) if (existsSync(`/usr/lib/postgresql/${d}/bin/pg_ctl`)) return `/usr/lib/postgresql/${d}/bin`;
  throw new Error('PostgreSQL binaries not found (Debian: apt-get install postgresql)');
}

/**
 * A throwaway PostgreSQL cluster on a free loopback port (run as the postgres user when we are root).
 * `dir`: keep the cluster there instead of a temp dir, left in place on stop(); when it already
 * holds one (an earlier run's), that cluster is started again, its data as it was.
 */
export async function startPostgres(opts: { dir?: string } = {}): Promise<{ port: number; bin: string; dir: string; psql: (sql: string) => string; stop: () => void }> {
  const bin = pgBin();
  if (opts.dir) mkdirSync(opts.dir, { recursive: true });
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'axon-bench-pg-'));
  const asRoot = process.getuid?.() === 0;
  const run = (cmd: string, args: string[]) => {
    const r = asRoot ? spawnSync('runuser', ['-u', 'postgres', '--', join(bin, cmd), ...args], { encoding: 'utf8' }) : spawnSync(join(bin, cmd), args, { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`${cmd} failed: ${r.stderr}`);
    return r.stdout;
  };
  if (asRoot) chownSync(dir, Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim()), Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim()));
  const data = join(dir, 'data');
  const existing = existsSync(join(data, 'PG_VERSION'));
  if (!existing) run('initdb', ['-D', data, '-U', 'synapse', '--auth=trust', '-E', 'UTF8', '--locale=C']);
  const port = await freePort();
  run('pg_ctl', ['-D', data, '-l', join(dir, 'postgres.log'), '-w', '-o', `-p ${port} -c listen_addresses=127.0.0.1 -k ${dir}`, 'start']);
  const psql = (sql: string) => execFileSync(join(bin, 'psql'), ['-h', '127.0.0.1', '-p', String(port), '-U', 'synapse', '-d', 'synapse', '-tAc', sql], { encoding: 'utf8' }).trim();
  if (!existing) execFileSync(join(bin, 'createdb'), ['-h', '127.0.0.1', '-p', String(port), '-U', 'synapse', '-E', 'UTF8', '--locale=C', '-T', 'template0', 'synapse']);
  return {
    port,
    bin,
    dir,
    psql,
    stop: () => {
      try {
        run('pg_ctl', ['-D', data, '-m', 'fast', '-w', 'stop']);
      } finally {
        if (!opts.dir) rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}

