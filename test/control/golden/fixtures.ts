/** A well-formed golden-metrics summary of `shop/orders`, for the suites of this folder to vary. */
import { LATENCY_SLOTS, type GoldenSummary } from '../../../api/golden-summary.js';

export const SELF = 'shop/orders';

export function latency(slot: number, n: number): number[] {
  const counts = new Array<number>(LATENCY_SLOTS).fill(0);
  counts[slot] = n;
  return counts;
}

export function summary(extra: Partial<GoldenSummary> = {}): GoldenSummary {
  return {
    instanceId: 'i-1',
    intervalMs: 10_000,
    configVersion: 3,
    policyRevision: `sha256:${'a'.repeat(64)}`,
    configStale: false,
    certNotAfter: new Date(Date.now() + 86_400_000).toISOString(),
    edges: [{ direction: 'inbound', source: 'shop/frontend', destination: SELF, protocol: 'http', requests: 100, failures: 2, latency: latency(4, 100) }],
    denials: [{ source: 'shop/payments', destination: SELF, policy: 'shop/orders-callers', rule: '1', enforced: true, count: 3 }],
    truncated: 0,
    ...extra,
  };
}

