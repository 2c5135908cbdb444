/**
 * Debian's `prometheus` package (Prometheus and promtool), unpacked by scripts/lib/ensure.sh's
 * ensure_prometheus into $AXON_PEERS_DIR/prometheus (default .peers/prometheus; or
 * AXON_PROMETHEUS_DIR): `promtool check metrics` on an exposition, and a real Prometheus server
 * scraping targets on loopback, queried through its HTTP API.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { freePort } from '../setup/free-port';

export function prometheusBinDir(): string {
  if (process.env.AXON_PROMETHEUS_DIR) return join(resolve(process.env.AXON_PROMETHEUS_DIR), 'usr', 'bin');
  return join(process.env.AXON_PEERS_DIR ? resolve(process.env.AXON_PEERS_DIR) : resolve('.peers'), 'prometheus', 'usr', 'bin');
}

export function prometheusInstalled(): boolean {
  return existsSync(join(prometheusBinDir(), 'prometheus')) && existsSync(join(prometheusBinDir(), 'promtool'));
}

/** `promtool check metrics` on `text`: its exit code and what it printed (problems, one a line). */
export function promtoolCheckMetrics(text: string): Promise<{ code: number; output: string }> {
  return new Promise((done, fail) => {
    const child = execFile(join(prometheusBinDir(), 'promtool'), ['check', 'metrics'], { timeout: 60_000 }, (err, stdout, stderr) => {
      if (err && typeof (err as { code?: unknown }).code !== 'number') return fail(err);
      done({ code: err ? Number((err as { code: number }).code) : 0, output: `${stdout}${stderr}`.trim() });
    });
    child.stdin!.end(text);
  });
}

export interface PrometheusPeer {
  url: string;
  /** An instant query's result vector (`/api/v1/query`). */
  query(promql: string): Promise<{ metric: Record<string, string>; value: [number, string] }[]>;
  stop(): Promise<void>;
}

/** A Prometheus scraping `targets` (host:port, path /metrics) every second, data in a temp dir. */
export async function startPrometheus(targets: string[]): Promise<PrometheusPeer> {
  const dir = mkdtempSync(join(tmpdir(), 'axon-prometheus-'));
  const port = await freePort();
  const config = [
    'global:',
    '  scrape_interval: 1s',
    '  scrape_timeout: 1s',
    'scrape_configs:',
    '  - job_name: axon',
    '    static_configs:',
    `      - targets: [${targets.map((t) => JSON.stringify(t)).join(', ')}]`,
    '',
  ].join('\n');
  writeFileSync(join(dir, 'prometheus.yml'), config);
  const child: ChildProcess = spawn(
    join(prometheusBinDir(), 'prometheus'),
    [`--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn'],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr?.on('data', (d) => {
    stderr = (stderr + String(d)).slice(-8000);
  });
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`prometheus exited (${child.exitCode}): ${stderr}`);
    try {
      if ((await fetch(`${url}/-/ready`)).status === 200) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`prometheus did not get ready within 60 s: ${stderr}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  return {
    url,
    async query(promql) {
      const res = await fetch(`${url}/api/v1/query?query=${encodeURIComponent(promql)}`);
      const body = (await res.json()) as { status: string; error?: string; data?: { resultType: string; result: { metric: Record<string, string>; value: [number, string] }[] } };
      if (body.status !== 'success') throw new Error(`query ${promql}: ${body.error}`);
      return body.data!.result;
    },
    async stop() {
      child.kill('SIGTERM');
      if (child.exitCode === null) await new Promise((r) => child.once('exit', r));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
