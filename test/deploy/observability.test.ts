/**
 * deploy/observability/: the Grafana dashboard and the Prometheus alerting rules name only metrics (and
 * labels) the code registers. The registries are the real ones, built as the sidecar, agent, zone control
 * plane and global build them; a renamed metric or label fails here, not silently in someone's Grafana.
 */
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { parse } from 'yaml';
import { AgentMetrics } from '../../agent/agent-metrics.js';
import { GlobalState } from '../../control/global/global-state.js';
import { GlobalMetrics } from '../../control/global/global-metrics.js';
import { GoldenWindow } from '../../control/golden/golden-window.js';
import { SummaryIntake } from '../../control/golden/summary-intake.js';
import { ControlMetrics } from '../../control/metrics.js';
import { createProxyMetrics } from '../../proxy/core/metrics.js';
import { createHttpMetrics } from '../../proxy/http/metrics.js';

const DIR = join(import.meta.dirname, '../../deploy/observability');
const SUFFIXES = ['_bucket', '_sum', '_count'];

/** Every metric the parts register, with its label names (`le` for histograms). */
async function registered(): Promise<Map<string, Set<string>>> {
  const registry = new Registry();
  createProxyMetrics(registry, () => []);
  // One request, so the HTTP histogram (our own series type, without labelNames) shows its labels.
  createHttpMetrics(registry).record('inbound', 'a/b', 'c/d', 200, 0.01);
  new AgentMetrics(registry);
  new ControlMetrics(registry, () => ({ healthy: 0, instances: 0, connected: 0 }));
  const global = new GlobalState({ leaseMs: 30_000, exportDefault: 'all' });
  new GlobalMetrics(registry, () => global);
  new SummaryIntake({ window: new GoldenWindow('test'), metrics: registry });
  const names = new Map<string, Set<string>>();
  for (const metric of registry.getMetricsAsArray()) {
    const m = metric as unknown as { name: string; labelNames?: readonly string[]; get(): Promise<{ type: string; values: { labels: Record<string, unknown> }[] }> };
    const json = await m.get();
    const labels = new Set(m.labelNames ?? json.values.flatMap((v) => Object.keys(v.labels)));
    if (json.type === 'histogram') labels.add('le');
    names.set(m.name, labels);
  }
  return names;
}

/** The expressions of both files. */
function expressions(): string[] {
  const dashboard = JSON.parse(readFileSync(join(DIR, 'grafana-dashboard.json'), 'utf8')) as { panels: { targets: { expr: string }[] }[]; templating: { list: { query?: unknown }[] } };
  const rules = parse(readFileSync(join(DIR, 'prometheus-alerts.yaml'), 'utf8')) as { groups: { rules: { expr: string }[] }[] };
  return [
    ...dashboard.panels.flatMap((p) => p.targets.map((t) => t.expr)),
    ...dashboard.templating.list.map((v) => v.query).filter((q): q is string => typeof q === 'string' && q.includes('trellis_')),
    ...rules.groups.flatMap((g) => g.rules.map((r) => r.expr)),
  ];
}

/** Problems with the metrics and selector labels one expression names. */
export function problems(expr: string, known: ReadonlyMap<string, ReadonlySet<string>>): string[] {
  const found: string[] = [];
  for (const match of expr.matchAll(/\b(trellis_[a-z0-9_]+)(\{([^}]*)\})?/g)) {
    const series = match[1] as string;
    const base = known.has(series) ? series : SUFFIXES.map((s) => (series.endsWith(s) ? series.slice(0, -s.length) : '')).find((b) => known.has(b));
    if (base === undefined) {
      found.push(`${series} is registered nowhere`);
      continue;
    }
    const labels = known.get(base) as ReadonlySet<string>;
    for (const m of (match[3] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)/g)) {
      if (!labels.has(m[1] as string)) found.push(`${base} has no label ${m[1]}`);
    }
  }
  return found;
}

describe('deploy/observability', () => {
  it('names only metrics and labels the code registers', async () => {
    const known = await registered();
    const exprs = expressions();
    expect(exprs.length).toBeGreaterThan(20);
    expect(exprs.flatMap((e) => problems(e, known))).toEqual([]);
  });

  it('would notice a metric or a label that does not exist', async () => {
    const known = await registered();
    expect(problems('rate(trellis_http_requests_totl[5m])', known)).toEqual(['trellis_http_requests_totl is registered nowhere']);
    expect(problems('rate(trellis_http_requests_total{status="500"}[5m])', known)).toEqual(['trellis_http_requests_total has no label status']);
    expect(problems('histogram_quantile(0.9, rate(trellis_control_push_duration_seconds_bucket{le="1"}[5m]))', known)).toEqual([]);
  });

  it('gives every alert a severity and a summary', () => {
    const rules = parse(readFileSync(join(DIR, 'prometheus-alerts.yaml'), 'utf8')) as { groups: { rules: { alert: string; labels?: { severity?: string }; annotations?: { summary?: string } }[] }[] };
    for (const rule of rules.groups.flatMap((g) => g.rules)) {
      expect(rule.labels?.severity, rule.alert).toMatch(/^(critical|warning|info)$/);
      expect(rule.annotations?.summary, rule.alert).toBeTruthy();
    }
  });
});
