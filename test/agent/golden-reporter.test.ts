/**
 * The agent's golden-metrics reporter: it sends the change since the last accepted summary, keeps the
 * baseline when a summary is not accepted (the next one carries both intervals), sends nothing while the
 * watch is down, stops for good on a 404 (a control plane older than summaries), and stays under the
 * summary's limits by keeping the largest pairs and leaving out labels the control plane would refuse.
 */
import { describe, expect, it } from 'vitest';
import { Registry } from 'prom-client';
import { ControlError } from '../../api/control-client.js';
import { SUMMARY_LIMITS, type GoldenSummary } from '../../api/golden-summary.js';
import { silentLogger } from '../../common/log.js';
import { GoldenReporter } from '../../agent/golden-reporter.js';
import { createProxyMetrics } from '../../proxy/core/metrics.js';
import { createHttpMetrics } from '../../proxy/http/metrics.js';
import { validateSummary } from '../../control/golden/validate-summary.js';

function setup(send: (s: GoldenSummary) => Promise<void>, connected = () => true): { reporter: GoldenReporter; http: ReturnType<typeof createHttpMetrics>; proxy: ReturnType<typeof createProxyMetrics> } {
  const registry = new Registry();
  const http = createHttpMetrics(registry);
  const proxy = createProxyMetrics(registry);
  const reporter = new GoldenReporter({
    registry,
    instanceId: 'orders-1',
    intervalMs: 10_000,
    connected,
    config: () => ({ version: 7, policyRevision: 'empty', stale: false }),
    certNotAfter: () => new Date(Date.now() + 3_600_000),
    send,
    log: silentLogger(),
  });
  return { reporter, http, proxy };
}

describe('GoldenReporter', () => {
  it('sends deltas, and carries a refused interval into the next summary', async () => {
    const sent: GoldenSummary[] = [];
    let refuse = false;
    const { reporter, http } = setup(async (s) => {
      if (refuse) throw new ControlError(429, 'x', 'too soon');
      sent.push(s);
    });
    http.record('inbound', 'shop/frontend', 'shop/orders', 200, 0.01);
    await reporter.tick();
    refuse = true;
    http.record('inbound', 'shop/frontend', 'shop/orders', 200, 0.01);
    await reporter.tick();
    refuse = false;
    http.record('inbound', 'shop/frontend', 'shop/orders', 500, 0.01);
    await reporter.tick();
    expect(sent.map((s) => s.edges[0]?.requests)).toEqual([1, 2]);
    expect(sent[1]?.edges[0]?.failures).toBe(1);
    for (const s of sent) expect(() => validateSummary(JSON.parse(JSON.stringify(s)), 'shop/orders')).not.toThrow();
  });

  it('sends nothing while disconnected, and stops for good after a 404', async () => {
    let calls = 0;
    let connected = false;
    const { reporter } = setup(async () => {
      calls++;
      throw new ControlError(404, 'x', 'no such path');
    }, () => connected);
    await reporter.tick();
    expect(calls).toBe(0);
    connected = true;
    await reporter.tick();
    await reporter.tick();
    expect(calls).toBe(1);
  });

  it('keeps the largest pairs within the limit and leaves out labels the control plane refuses', async () => {
    const sent: GoldenSummary[] = [];
    const { reporter, proxy } = setup(async (s) => void sent.push(s));
    for (let i = 0; i < SUMMARY_LIMITS.maxEdges + 10; i++) proxy.tcpConnections.inc({ direction: 'inbound', source: `shop/c${i}`, destination: 'shop/orders', result: 'ok' }, i + 1);
    proxy.tcpConnections.inc({ direction: 'outbound', source: 'local', destination: 'shop/db', result: 'no-route' }, 1_000_000);
    await reporter.tick();
    const [s] = sent;
    expect(s?.edges.length).toBe(SUMMARY_LIMITS.maxEdges);
    expect(s?.edges.some((e) => e.source === 'local')).toBe(false);
    expect(Math.min(...(s?.edges.map((e) => e.requests) ?? []))).toBe(11);
    expect(s?.truncated).toBe(11);
    expect(() => validateSummary(JSON.parse(JSON.stringify(s)), 'shop/orders')).not.toThrow();
  });
});
