/** A well-formed golden-metrics summary of `shop/orders`, for the suites of this folder to vary. */
import { request } from 'node:http';
import { removeDir, type TestControlPlane, type TestWatch } from '../support.js';
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

/** GET a JSON path of an admin port on loopback. */
export function adminJson<T>(port: number, path: string): Promise<{ status: number; body: T }> {
  return new Promise((resolve, reject) => {
    request({ host: '127.0.0.1', port, path }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as T }));
    }).on('error', reject).end();
  });
}

/** The control plane and watches a test of this folder opened; `closeRunning` (its afterEach) ends them. */
export const running: { t: TestControlPlane | undefined; readonly watches: TestWatch[] } = { t: undefined, watches: [] };

export async function closeRunning(): Promise<void> {
  for (const w of running.watches.splice(0)) w.close();
  await running.t?.close();
  if (running.t !== undefined) removeDir(running.t.dir);
  running.t = undefined;
}
