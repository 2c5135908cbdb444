/**
 * docs/grafana/axon.json: a Grafana dashboard (schema 39) whose every query names metrics this
 * code exports and parses as PromQL (`promtool check rules` on the queries as recording rules,
 * when promtool is installed), with a panel group for each part the README's Operations lists.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { execFile } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { enableProcessMetrics, registry } from '../../src/ops/metrics';
import { prometheusBinDir, prometheusInstalled } from '../peers/prometheus';

interface Panel {
  type: string;
  title: string;
  id: number;
  gridPos: { h: number; w: number; x: number; y: number };
  datasource?: { type: string; uid: string };
  targets?: { expr: string; refId: string; legendFormat: string }[];
}

const dashboard = JSON.parse(readFileSync(join(import.meta.dirname, '../../docs/grafana/axon.json'), 'utf8')) as {
  title: string;
  uid: string;
  schemaVersion: number;
  panels: Panel[];
  templating: { list: { name: string; type: string }[] };
};
const queries = dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => ({ panel: p.title, expr: t.expr })));

/** The query with Grafana's variables as Prometheus would receive them. */
function asPromQL(expr: string): string {
  return expr.replaceAll('$__rate_interval', '1m').replaceAll('$instance', '.*');
}

describe('the Grafana dashboard', () => {
  it('is a dashboard with a datasource variable, unique panel ids, and panels inside the 24-column grid', () => {
    expect(dashboard.title).toBe('Axon');
    expect(dashboard.uid).toMatch(/^[a-z0-9-]{1,40}$/);
    expect(dashboard.schemaVersion).toBeGreaterThanOrEqual(36);
    expect(dashboard.templating.list.map((v) => `${v.name}:${v.type}`)).toEqual(['datasource:datasource', 'instance:query']);
    const ids = dashboard.panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const p of dashboard.panels) {
      expect(p.gridPos.x + p.gridPos.w, p.title).toBeLessThanOrEqual(24);
      if (p.type === 'row') continue;
      expect(p.type).toBe('timeseries');
      expect(p.datasource).toEqual({ type: 'prometheus', uid: '${datasource}' });
      const refs = p.targets!.map((t) => t.refId);
      expect(new Set(refs).size, p.title).toBe(refs.length);
    }
    expect(dashboard.panels.filter((p) => p.type === 'row').map((p) => p.title)).toEqual(['HTTP', '/sync and events', 'Actor runtime', 'Leases and shards', 'Federation', 'Push', 'Processes']);
  });

  it('queries only metrics this code exports, and every axon_ metric is on it', async () => {
    enableProcessMetrics();
    const exported = new Set((await registry.getMetricsAsJSON()).flatMap((m) => (String(m.type) === 'histogram' ? [`${m.name}_bucket`, `${m.name}_sum`, `${m.name}_count`] : [m.name])));
    const used = new Set<string>();
    for (const q of queries) for (const name of q.expr.match(/\b(?:axon|process|nodejs)_[a-z0-9_]+/g) ?? []) used.add(name);
    for (const name of used) expect(exported.has(name), `${name} (used by the dashboard)`).toBe(true);
    const ours = (await registry.getMetricsAsJSON()).map((m) => m.name).filter((n) => n.startsWith('axon_') && n !== 'axon_process_info');
    for (const name of ours) expect([...used].some((u) => u === name || u.startsWith(`${name}_`)), `${name} (not on the dashboard)`).toBe(true);
  });

  it.skipIf(!prometheusInstalled())('has queries promtool parses', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'axon-grafana-'));
    try {
      const rules = ['groups:', '  - name: axon-dashboard', '    rules:', ...queries.flatMap((q, i) => [`      - record: axon_dashboard_query_${i}`, `        expr: ${JSON.stringify(asPromQL(q.expr))}`])].join('\n');
      writeFileSync(join(dir, 'rules.yml'), `${rules}\n`);
      const result = await new Promise<{ code: number; output: string }>((resolve) => {
        execFile(join(prometheusBinDir(), 'promtool'), ['check', 'rules', join(dir, 'rules.yml')], (err, stdout, stderr) => resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, output: `${stdout}${stderr}` }));
      });
      expect(result.output).toContain(`SUCCESS: ${queries.length} rules found`);
      expect(result.code).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
