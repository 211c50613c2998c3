/**
 * `POST /v1/summary` over real mutual TLS on loopback, and the UI's JSON that shows what it took: a
 * summary is accepted only from the workload that registered the instance it names, only for its own
 * identity, under its byte limit and not faster than the minimum spacing; a refusal changes nothing.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { request } from 'node:http';
import { join } from 'node:path';
import { controlRequest, ControlError, type ClientCertificate } from '../../../api/control-client.js';
import { SUMMARY_LIMITS, SUMMARY_PATH, type GoldenSummary } from '../../../api/golden-summary.js';
import { CODE } from '../../../common/error-codes.js';
import { FileStore } from '../../../control/file-store.js';
import { TokenService } from '../../../control/token-service.js';
import { issueWithToken, registration, startTestControlPlane, TestWatch, type IssuedTestIdentity, type TestControlPlane } from '../support.js';
import { adminJson, closeRunning, running, summary } from './fixtures.js';

afterEach(closeRunning);

async function identity(cp: TestControlPlane, service: string): Promise<IssuedTestIdentity> {
  const tokens = new TokenService(await FileStore.open(join(cp.dir, 'data')), 'trellis.local');
  const { token } = await tokens.create(service, 'shop', 60_000);
  return issueWithToken(cp.endpoint, token, `spiffe://trellis.local/ns/shop/sa/${service}`);
}

function post(cp: TestControlPlane, cert: ClientCertificate, body: unknown): Promise<string> {
  return controlRequest(cp.endpoint, { method: 'POST', path: SUMMARY_PATH, body, clientCert: cert }).then(
    () => 'accepted',
    (err: unknown) => (err instanceof ControlError ? err.code : String(err)),
  );
}

describe('POST /v1/summary', () => {
  it('takes a registered agent\'s summary and shows it in the UI\'s edges, denials and agents', async () => {
    const t = (running.t = await startTestControlPlane());
    const orders = await identity(t, 'orders');
    running.watches.push(await TestWatch.open(t.endpoint, orders, registration('orders-1', 20001)));
    expect(await post(t, orders, summary({ instanceId: 'orders-1' }))).toBe('accepted');
    const admin = t.cp.adminAddress.port;
    const edges = await adminJson<{ edges: { source: string; destination: string; requests: number; denied: number }[] }>(admin, '/ui/api/edges?minutes=1');
    expect(edges.body.edges).toEqual(expect.arrayContaining([expect.objectContaining({ source: 'shop/frontend', destination: 'shop/orders', requests: 100 }), expect.objectContaining({ source: 'shop/payments', denied: 3 })]));
    const denials = await adminJson<{ denials: { policy: string; rule: string }[] }>(admin, '/ui/api/denials');
    expect(denials.body.denials[0]).toMatchObject({ policy: 'shop/orders-callers', rule: '1' });
    const agents = await adminJson<{ agents: { instanceId: string; staleConfig: boolean; certNearExpiry: boolean }[] }>(admin, '/ui/api/agents');
    // The summary's made-up policy revision is not the one in force: the agent shows as on stale config.
    expect(agents.body.agents).toEqual([expect.objectContaining({ instanceId: 'orders-1', staleConfig: true, certNearExpiry: false })]);
  });

  it('refuses a summary for another workload\'s instance, for another identity, too large, or too soon, and keeps none of them', async () => {
    const t = (running.t = await startTestControlPlane());
    const orders = await identity(t, 'orders');
    const payments = await identity(t, 'payments');
    running.watches.push(await TestWatch.open(t.endpoint, orders, registration('orders-1', 20001)));
    running.watches.push(await TestWatch.open(t.endpoint, payments, registration('payments-1', 20002)));
    // payments' certificate naming orders' instance, and then speaking for orders from its own.
    expect(await post(t, payments, summary({ instanceId: 'orders-1', edges: [], denials: [] }))).toBe(CODE.CONTROL_SUMMARY_FOREIGN);
    expect(await post(t, payments, summary({ instanceId: 'payments-1' }))).toBe(CODE.CONTROL_SUMMARY_FOREIGN);
    expect(await post(t, orders, summary({ instanceId: 'nobody' }))).toBe(CODE.CONTROL_SUMMARY_FOREIGN);
    expect(await post(t, orders, { ...summary({ instanceId: 'orders-1' }), padding: 'x'.repeat(SUMMARY_LIMITS.maxBytes) })).toBe(CODE.CONTROL_SUMMARY_TOO_LARGE);
    expect(await post(t, orders, { ...summary({ instanceId: 'orders-1' }), edges: 'many' })).toBe(CODE.CONTROL_SUMMARY_INVALID);
    const admin = t.cp.adminAddress.port;
    expect((await adminJson<{ edges: unknown[] }>(admin, '/ui/api/edges')).body.edges).toEqual([]);
    const ok: GoldenSummary = summary({ instanceId: 'orders-1' });
    expect(await post(t, orders, ok)).toBe('accepted');
    expect(await post(t, orders, ok)).toBe(CODE.CONTROL_SUMMARY_TOO_FREQUENT);
    const edges = await adminJson<{ edges: { requests: number }[] }>(admin, '/ui/api/edges');
    expect(edges.body.edges.find((e) => e.requests > 0)?.requests).toBe(100);
    const metrics = await new Promise<string>((resolve) => request({ host: '127.0.0.1', port: admin, path: '/metrics' }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => resolve(text));
    }).end());
    expect(metrics).toContain(`trellis_control_golden_summaries_total{result="${CODE.CONTROL_SUMMARY_FOREIGN}"} 3`);
    expect(metrics).toContain('trellis_control_golden_summaries_total{result="accepted"} 1');
  });

  it('needs the workload certificate', async () => {
    const t = (running.t = await startTestControlPlane());
    const code = await controlRequest(t.endpoint, { method: 'POST', path: SUMMARY_PATH, body: summary() }).then(() => 'accepted', (err: unknown) => (err as ControlError).code);
    expect(code).toBe(CODE.CONTROL_CLIENT_CERT_REQUIRED);
  });
});
