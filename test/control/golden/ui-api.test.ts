/**
 * The UI's JSON on a real zone control plane's admin port, each route on its own: overview, services,
 * the policy matrix and explain (decisions and deciding rules from the policy directory in force, and a
 * 400 naming every problem of a bad question).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FileStore } from '../../../control/file-store.js';
import { TokenService } from '../../../control/token-service.js';
import { issueWithToken, registration, startTestControlPlane, TestWatch, type TestControlPlane } from '../support.js';
import { adminJson, closeRunning, running } from './fixtures.js';

afterEach(closeRunning);

const POLICY = `apiVersion: trellis.dev/v1alpha1
kind: TrafficPermission
metadata: { name: orders-callers, namespace: shop }
spec:
  destination: orders
  mode: enforce
  rules:
    - action: allow
      from: [frontend]
      http: { methods: [GET] }
`;

async function meshWithPolicy(): Promise<TestControlPlane> {
  const dir = mkdtempSync(join(tmpdir(), 'trellis-ui-api-'));
  mkdirSync(join(dir, 'policy'));
  writeFileSync(join(dir, 'policy', 'orders.yaml'), POLICY);
  const t = (running.t = await startTestControlPlane({ policyDir: join(dir, 'policy') }, dir));
  const tokens = new TokenService(await FileStore.open(join(dir, 'data')), 'trellis.local');
  for (const [i, service] of ['frontend', 'orders'].entries()) {
    const { token } = await tokens.create(service, 'shop', 60_000);
    const cert = await issueWithToken(t.endpoint, token, `spiffe://trellis.local/ns/shop/sa/${service}`);
    running.watches.push(await TestWatch.open(t.endpoint, cert, registration(`${service}-1`, 21000 + i, { labels: { version: 'v2' } })));
  }
  return t;
}

describe('the UI\'s JSON', () => {
  it('overview and services show the zone and its registered instances', async () => {
    const cp = await meshWithPolicy();
    const admin = cp.cp.adminAddress.port;
    const overview = await adminJson<{ zone: string; agentsConnected: number; global: unknown; windowMinutes: number }>(admin, '/ui/api/overview');
    expect(overview.body).toMatchObject({ zone: 'default', agentsConnected: 2, global: null, windowMinutes: 15 });
    const services = await adminJson<{ services: { namespace: string; service: string; healthy: number; instances: { instanceId: string; version: string | null }[] }[] }>(admin, '/ui/api/services');
    expect(services.body.services.map((s) => `${s.namespace}/${s.service}`)).toEqual(['shop/frontend', 'shop/orders']);
    expect(services.body.services[1]?.instances[0]).toMatchObject({ instanceId: 'orders-1', version: 'v2' });
  });

  it('the matrix and explain give the policy\'s decisions and deciding rules', async () => {
    const cp = await meshWithPolicy();
    const admin = cp.cp.adminAddress.port;
    const matrix = await adminJson<{ services: string[]; cells: { allowed: boolean; policy: string | null; rule: number | null }[][] }>(admin, '/ui/api/policy');
    expect(matrix.body.services).toEqual(['shop/frontend', 'shop/orders']);
    // A TCP stream frontend → orders: the only allow rule has HTTP conditions, so nothing allows it.
    expect(matrix.body.cells[0]?.[1]).toEqual({ allowed: false, policy: null, rule: null });
    const get = await adminJson<{ decision: { allowed: boolean; policy: string; rule: number }; rule: { action: string } }>(admin, '/ui/api/explain?from=shop/frontend&to=shop/orders&method=GET&path=/items');
    expect(get.body.decision).toMatchObject({ allowed: true, policy: 'shop/orders-callers', rule: 0 });
    expect(get.body.rule.action).toBe('allow');
    const post = await adminJson<{ decision: { allowed: boolean; policy: string | null } }>(admin, '/ui/api/explain?from=shop/frontend&to=shop/orders&method=POST&path=/items');
    expect(post.body.decision).toMatchObject({ allowed: false, policy: null });
    const bad = await adminJson<{ error: string }>(admin, '/ui/api/explain?from=frontend&to=shop/Orders&method=get');
    expect(bad.status).toBe(400);
    expect(bad.body.error).toContain('from must be NAMESPACE/SERVICE');
    expect(bad.body.error).toContain('to must be NAMESPACE/SERVICE');
    expect(bad.body.error).toContain('method and path go together');
  });

  it('edges take a window of 1 to 15 minutes and fall back to 5 for anything else', async () => {
    const cp = await meshWithPolicy();
    const admin = cp.cp.adminAddress.port;
    expect((await adminJson<{ windowMs: number }>(admin, '/ui/api/edges?minutes=15')).body.windowMs).toBe(15 * 60_000);
    for (const q of ['0', '16', 'abc', '1e9', '-1']) expect((await adminJson<{ windowMs: number }>(admin, `/ui/api/edges?minutes=${q}`)).body.windowMs).toBe(5 * 60_000);
  });
});
