/**
 * Golden-metrics summaries as untrusted input, and the window they feed: the validator's refusals (shape,
 * bounds, speaking for another identity), the window's sums, quantiles and bounds, and the agent's reading
 * of its own counters (deltas, counter resets, latency slots).
 */
import { describe, expect, it } from 'vitest';
import { Registry } from 'prom-client';
import { LATENCY_SLOTS, SUMMARY_LIMITS, quantileMs } from '../../../api/golden-summary.js';
import { CODE } from '../../../common/error-codes.js';
import { GoldenWindow, WINDOW_LIMITS, WINDOW_SLOT_MS, mergeEdgeViews } from '../../../control/golden/golden-window.js';
import { validateSummary } from '../../../control/golden/validate-summary.js';
import { SELF, latency, summary } from './fixtures.js';
import { diff, readCounters } from '../../../proxy/golden-counters.js';
import { createHttpMetrics } from '../../../proxy/http/metrics.js';
import { createProxyMetrics } from '../../../proxy/core/metrics.js';

function refusal(body: unknown, self = SELF): string {
  try {
    validateSummary(body, self);
  } catch (err) {
    return (err as { code: string }).code;
  }
  return 'accepted';
}

describe('validateSummary', () => {
  it('accepts a well-formed summary and freezes it', () => {
    const s = validateSummary(JSON.parse(JSON.stringify(summary())), SELF);
    expect(s.edges[0]?.requests).toBe(100);
    expect(Object.isFrozen(s)).toBe(true);
  });

  it('refuses an agent speaking for another identity, either way round', () => {
    expect(refusal(summary({ edges: [{ direction: 'inbound', source: 'shop/frontend', destination: 'shop/payments', protocol: 'tcp', requests: 1, failures: 0 }] }))).toBe(CODE.CONTROL_SUMMARY_FOREIGN);
    expect(refusal(summary({ edges: [{ direction: 'outbound', source: 'shop/payments', destination: SELF, protocol: 'tcp', requests: 1, failures: 0 }] }))).toBe(CODE.CONTROL_SUMMARY_FOREIGN);
    expect(refusal(summary({ denials: [{ source: 'shop/a', destination: 'shop/payments', policy: 'default-deny', rule: '', enforced: true, count: 1 }] }))).toBe(CODE.CONTROL_SUMMARY_FOREIGN);
    // The caller's own outbound edge to anyone is its to report.
    expect(refusal(summary({ edges: [{ direction: 'outbound', source: SELF, destination: 'shop/payments', protocol: 'tcp', requests: 1, failures: 1 }] }))).toBe('accepted');
  });

  it.each([
    ['not an object', []],
    ['an unknown field', { ...summary(), extra: 1 }],
    ['a negative count', summary({ edges: [{ direction: 'inbound', source: 'shop/a', destination: SELF, protocol: 'tcp', requests: -1, failures: 0 }] })],
    ['a fractional count', summary({ edges: [{ direction: 'inbound', source: 'shop/a', destination: SELF, protocol: 'tcp', requests: 1.5, failures: 0 }] })],
    ['a count past the bound', summary({ edges: [{ direction: 'inbound', source: 'shop/a', destination: SELF, protocol: 'tcp', requests: SUMMARY_LIMITS.maxCount + 1, failures: 0 }] })],
    ['more failures than requests', summary({ edges: [{ direction: 'inbound', source: 'shop/a', destination: SELF, protocol: 'tcp', requests: 1, failures: 2 }] })],
    ['a latency histogram of the wrong length', summary({ edges: [{ direction: 'inbound', source: 'shop/a', destination: SELF, protocol: 'http', requests: 1, failures: 0, latency: [1] }] })],
    ['latency counting more than the requests', summary({ edges: [{ direction: 'inbound', source: 'shop/a', destination: SELF, protocol: 'http', requests: 1, failures: 0, latency: latency(0, 2) }] })],
    ['latency on a TCP edge', summary({ edges: [{ direction: 'inbound', source: 'shop/a', destination: SELF, protocol: 'tcp', requests: 1, failures: 0, latency: latency(0, 1) }] })],
    ['a label with a space (a key separator)', summary({ edges: [{ direction: 'inbound', source: 'shop/a b', destination: SELF, protocol: 'tcp', requests: 1, failures: 0 }] })],
    ['a label without a namespace', summary({ edges: [{ direction: 'inbound', source: 'local', destination: SELF, protocol: 'tcp', requests: 1, failures: 0 }] })],
    ['too many edges', summary({ edges: Array.from({ length: SUMMARY_LIMITS.maxEdges + 1 }, (_, i) => ({ direction: 'inbound' as const, source: `shop/a${i}`, destination: SELF, protocol: 'tcp' as const, requests: 1, failures: 0 })) })],
    ['too many denials', summary({ denials: Array.from({ length: SUMMARY_LIMITS.maxDenials + 1 }, () => ({ source: 'shop/a', destination: SELF, policy: 'default-deny', rule: '', enforced: true, count: 1 })) })],
    ['a bad policy revision', summary({ policyRevision: 'sha1:abc' })],
    ['a bad certificate expiry', summary({ certNotAfter: 'tomorrow' })],
    ['a rule that is no index', summary({ denials: [{ source: 'shop/a', destination: SELF, policy: 'default-deny', rule: 'x', enforced: true, count: 1 }] })],
    ['a prototype key', JSON.parse(`{"__proto__": {"x": 1}, ${JSON.stringify(summary()).slice(1)}`) as unknown],
  ])('refuses %s with TRELLIS_CONTROL_SUMMARY_INVALID', (_what, body) => {
    expect(refusal(body)).toBe(CODE.CONTROL_SUMMARY_INVALID);
  });
});

describe('GoldenWindow', () => {
  it('sums summaries into per-pair rates, success rate, quantiles and denials, and forgets minutes past the window', () => {
    let now = 10 * WINDOW_SLOT_MS;
    const w = new GoldenWindow('east', () => now);
    w.add(summary(), { namespace: 'shop', service: 'orders' });
    w.add(summary({ instanceId: 'i-2', edges: [{ direction: 'inbound', source: 'shop/frontend', destination: SELF, protocol: 'http', requests: 100, failures: 0, latency: latency(8, 100) }] }), { namespace: 'shop', service: 'orders' });
    const [edge] = w.edges(WINDOW_SLOT_MS);
    expect(edge).toMatchObject({ source: 'shop/frontend', destination: SELF, requests: 200, failures: 2, successRate: 0.99 });
    // Half the requests at ≤10 ms, half at 100–250 ms: p50 at the first half's top, p99 in the slow bucket.
    expect(edge?.p50Ms).toBeCloseTo(10, 5);
    expect(edge?.p99Ms).toBeGreaterThan(100);
    expect(edge?.p99Ms).toBeLessThanOrEqual(250);
    const denied = w.edges().find((e) => e.source === 'shop/payments');
    expect(denied?.denied).toBe(6);
    expect(w.recentDenials()[0]).toMatchObject({ zone: 'east', source: 'shop/payments', policy: 'shop/orders-callers', rule: '1' });
    expect(w.agentReports().map((a) => a.instanceId).sort()).toEqual(['i-1', 'i-2']);
    now += 16 * WINDOW_SLOT_MS;
    expect(w.edges(15 * WINDOW_SLOT_MS)).toEqual([]);
    expect(w.agentReports()).toEqual([]);
  });

  it('prefers the callee\'s counts and falls back to the caller\'s when the callee reported none', () => {
    const w = new GoldenWindow('east');
    w.add(summary({ edges: [{ direction: 'outbound', source: SELF, destination: 'shop/payments', protocol: 'tcp', requests: 5, failures: 5 }], denials: [] }), { namespace: 'shop', service: 'orders' });
    expect(w.edges()[0]).toMatchObject({ seenBy: 'outbound', requests: 5, successRate: 0 });
  });

  it('stops taking new pairs at its bound and counts what it dropped', () => {
    const w = new GoldenWindow('east');
    const many = Array.from({ length: SUMMARY_LIMITS.maxEdges }, () => ({ direction: 'inbound' as const, source: 'shop/frontend', destination: SELF, protocol: 'tcp' as const, requests: 1, failures: 0 }));
    const batches = Math.ceil(WINDOW_LIMITS.maxEdgesPerSlot / SUMMARY_LIMITS.maxEdges) + 1;
    for (let b = 0; b < batches; b++) w.add(summary({ edges: many.map((e, i) => ({ ...e, source: `s${b}/x${i}` })), denials: [] }), { namespace: 'shop', service: 'orders' });
    expect(w.edges().length).toBe(WINDOW_LIMITS.maxEdgesPerSlot);
    expect(w.dropped).toBe(batches * SUMMARY_LIMITS.maxEdges - WINDOW_LIMITS.maxEdgesPerSlot);
  });

  it('merges zones by adding counts and recomputing quantiles', () => {
    const a = new GoldenWindow('east');
    const b = new GoldenWindow('west');
    a.add(summary({ denials: [] }), { namespace: 'shop', service: 'orders' });
    b.add(summary({ denials: [], edges: [{ direction: 'inbound', source: 'shop/frontend', destination: SELF, protocol: 'http', requests: 300, failures: 0, latency: latency(12, 300) }] }), { namespace: 'shop', service: 'orders' });
    const [merged] = mergeEdgeViews([...a.edges(), ...b.edges()], 300);
    expect(merged?.requests).toBe(400);
    expect(merged?.p50Ms).toBeGreaterThan(1000);
  });
});

describe('quantileMs', () => {
  it('is null for no data and stays within the bucket it falls in', () => {
    expect(quantileMs(new Array<number>(LATENCY_SLOTS).fill(0), 0.5)).toBeNull();
    expect(quantileMs(latency(LATENCY_SLOTS - 1, 3), 0.99)).toBe(30_000);
    expect(quantileMs(latency(0, 10), 0.5)).toBeCloseTo(0.25, 5);
  });
});

describe('the agent\'s reading of its counters', () => {
  it('gives the change since the baseline, with latency slots, TCP failures and denials', async () => {
    const registry = new Registry();
    const http = createHttpMetrics(registry);
    const proxy = createProxyMetrics(registry);
    http.record('inbound', 'shop/frontend', SELF, 200, 0.004);
    const before = await readCounters(registry);
    http.record('inbound', 'shop/frontend', SELF, 200, 0.004);
    http.record('inbound', 'shop/frontend', SELF, 503, 0.2);
    proxy.tcpConnections.inc({ direction: 'outbound', source: SELF, destination: 'shop/db', result: 'error' });
    proxy.policyDenials.inc({ source: 'shop/payments', destination: SELF, policy: 'default-deny', rule: '', enforced: 'true' });
    const { edges, denials } = diff(before, await readCounters(registry));
    const inbound = edges.find((e) => e.direction === 'inbound');
    expect(inbound).toMatchObject({ protocol: 'http', requests: 2, failures: 1 });
    expect(inbound?.latency?.reduce((a, b) => a + b, 0)).toBe(2);
    expect(inbound?.latency?.[3]).toBe(1); // 4 ms: the 2.5–5 ms slot
    expect(edges.find((e) => e.direction === 'outbound')).toMatchObject({ protocol: 'tcp', requests: 1, failures: 1 });
    expect(denials).toEqual([{ source: 'shop/payments', destination: SELF, policy: 'default-deny', rule: '', enforced: true, count: 1 }]);
    for (const e of edges) expect(() => validateSummary(summary({ edges: [e], denials }), SELF)).not.toThrow();
  });

  it('counts from zero after a counter went down (a restarted sidecar)', () => {
    const before = new Map([['r inbound tcp shop/a shop/orders', 50]]);
    const after = new Map([['r inbound tcp shop/a shop/orders', 7]]);
    expect(diff(before, after).edges[0]?.requests).toBe(7);
  });
});
