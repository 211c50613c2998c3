/**
 * `trellis explain --from-zone` and `--admin`: the caller's zone decides zone-qualified rules, and the zone
 * control plane's admin port (here a loopback HTTP server answering with the shapes the control plane
 * serves) says which zone would serve the call, following the ZoneFailover of the policy files.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../../cli/main.js';
import { captureCli } from '../helpers/cli.js';

let dir: string;
let admin: Server;
let adminUrl: string;

async function run(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const cli = captureCli();
  const code = await main(argv, cli.ctx);
  return { code, out: cli.out(), err: cli.err() };
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'trellis-explain-zones-'));
  await writeFile(
    join(dir, 'payments.yaml'),
    `apiVersion: trellis.dev/v1alpha1
kind: TrafficPermission
metadata: { name: payments-callers, namespace: shop }
spec:
  destination: payments
  rules:
    - action: allow
      from: [east/shop/orders]
---
# Callers in east go to south before any other zone; callers elsewhere keep the default.
apiVersion: trellis.dev/v1alpha1
kind: ZoneFailover
metadata: { name: payments-failover, namespace: shop }
spec:
  destination: payments
  order: [east, south, "*"]
  threshold: "50%"
  from: [east]
`,
  );
  const replies: Record<string, unknown> = {
    '/status': { zone: 'east' },
    '/registry': { endpoints: [{ service: 'payments', namespace: 'shop', zone: 'east', healthy: false }, { service: 'other', namespace: 'shop', zone: 'east', healthy: true }] },
    '/global/catalogue': {
      service: [
        ['west/shop/payments', { localities: [{ locality: 'west', healthy: 2, total: 2 }] }],
        ['south/shop/payments', { localities: [{ locality: 'south', healthy: 1, total: 1 }] }],
        ['north/bank/payments', { localities: [{ locality: 'north', healthy: 5, total: 5 }] }],
      ],
      ingress: [],
      trust: [],
      policy: [],
    },
  };
  admin = createServer((req, res) => {
    const body = replies[req.url ?? ''];
    res.writeHead(body === undefined ? 404 : 200, { 'content-type': 'application/json' }).end(JSON.stringify(body ?? { error: 'not found' }));
  });
  await new Promise<void>((r) => admin.listen(0, '127.0.0.1', r));
  adminUrl = `http://127.0.0.1:${(admin.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise((r) => admin.close(r));
  await rm(dir, { recursive: true, force: true });
});

describe('trellis explain with zones', () => {
  it('applies a zone-qualified rule only to a caller of that zone', async () => {
    const east = await run(['explain', '--policy', dir, '--from', 'shop/orders', '--from-zone', 'east', '--to', 'shop/payments']);
    expect(east.out).toMatch(/^ALLOW: shop\/orders \(zone east\) -> shop\/payments/);
    const west = await run(['explain', '--policy', dir, '--from', 'shop/orders', '--from-zone', 'west', '--to', 'shop/payments']);
    expect(west.out).toMatch(/^DENY/);
    // No zone given: unknown, which only rules without a zone match.
    expect((await run(['explain', '--policy', dir, '--from', 'shop/orders', '--to', 'shop/payments'])).out).toMatch(/^DENY/);
    const bad = await run(['explain', '--policy', dir, '--from', 'shop/orders', '--from-zone', 'e*st', '--to', 'shop/payments']);
    expect(bad.code).toBe(2);
    expect(bad.err).toContain('--from-zone');
  });

  it('says which zone would serve the call, from the zone control plane\'s registry and catalogue', async () => {
    const r = await run(['explain', '--policy', dir, '--from', 'shop/orders', '--from-zone', 'east', '--to', 'shop/payments', '--admin', adminUrl]);
    expect(r.code).toBe(0);
    // east's only payments endpoint is unhealthy; the ZoneFailover for callers in east names south next
    // (west has more healthy endpoints, and would serve under the default order); north's payments is
    // another namespace's.
    expect(r.out).toContain('served by: zone south (a caller in zone east; catalogue of zone east)');
    expect(r.out).toContain('failover order [east, south, *], threshold 50% (from ZoneFailover shop/payments-failover)');
    expect(r.out).toMatch(/1\. east: the caller's own zone, tier 1, no healthy endpoint\n\s+2\. south: tier 2, 1 of 1 endpoints healthy\n\s+3\. west: any zone not named \(tier 3\), 2 of 2/);
    const json = await run(['explain', '--policy', dir, '--from', 'shop/orders', '--to', 'shop/payments', '--admin', adminUrl, '--json']);
    expect(JSON.parse(json.out).zones).toMatchObject({ servedBy: 'south', fromZone: 'east', catalogueZone: 'east', failover: { source: 'shop/payments-failover' } });
    // A caller in west is not one the rule is for: its own zone first, by the default.
    const west = await run(['explain', '--policy', dir, '--from', 'shop/orders', '--from-zone', 'west', '--to', 'shop/payments', '--admin', adminUrl, '--json']);
    expect(JSON.parse(west.out).zones).toMatchObject({ servedBy: 'west', fromZone: 'west', failover: { order: ['west', '*'], source: 'default' } });
  });

  it('names the ZoneFailover a caller of a zone follows, without asking a control plane', async () => {
    const r = await run(['explain', '--policy', dir, '--from', 'shop/orders', '--from-zone', 'east', '--to', 'shop/payments']);
    expect(r.out).toContain('zone failover (from shop/payments-failover): order [east, south, *], threshold 50%');
    const other = await run(['explain', '--policy', dir, '--from', 'shop/orders', '--from-zone', 'north', '--to', 'shop/payments']);
    expect(other.out).not.toContain('zone failover');
  });
});
