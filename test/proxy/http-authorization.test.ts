/**
 * The HTTP path end to end over real sockets and real mTLS: requests allowed and denied by method and
 * path rules, with the refusal, its log line and its metric; what the destination app sees.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { IncomingMessage } from 'node:http';
import { connect, createServer, type AddressInfo } from 'node:net';
import { send } from './http-client.js';
import { ROUTE, startMesh, type TestMesh } from './http-harness.js';

describe('HTTP path: authorization by method and path', () => {
  let mesh: TestMesh;
  const seen: { method: string; url: string; headers: IncomingMessage['headers'] }[] = [];

  beforeAll(async () => {
    mesh = await startMesh({
      apps: [
        (req, res) => {
          seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
          res.setHeader('trellis-error', 'forged-by-app');
          res.end(`hello ${req.method} ${req.url}`);
        },
      ],
    });
  });
  afterAll(async () => {
    await mesh?.close();
  });

  it('delivers an allowed request with the caller identity and without mesh headers', async () => {
    const res = await send({ port: mesh.outboundPort, path: '/orders/42?x=1', headers: { host: 'payments.shop', 'x-custom': 'v', 'trellis-target': 'evil.other:1' } });
    expect(res.status).toBe(200);
    expect(res.body).toBe('hello GET /orders/42?x=1');
    // The app cannot forge a mesh error header.
    expect(res.headers['trellis-error']).toBeUndefined();
    const last = seen.at(-1);
    expect(last?.headers.host).toBe('payments.shop');
    expect(last?.headers['x-custom']).toBe('v');
    expect(last?.headers['trellis-target']).toBeUndefined();
    expect(last?.headers['x-forwarded-client-cert']).toBe(`URI=spiffe://${mesh.pki.trustDomain}/ns/shop/sa/orders`);
    expect(last?.headers['x-request-id']).toMatch(/.+/);
  });

  it('keeps a caller-supplied x-request-id end to end', async () => {
    const res = await send({ port: mesh.outboundPort, path: '/a', headers: { 'x-request-id': 'trace-123' } });
    expect(res.status).toBe(200);
    expect(seen.at(-1)?.headers['x-request-id']).toBe('trace-123');
  });

  it('refuses a denied path with 403, the deciding rule, a correlation id, a log line and a metric', async () => {
    const before = seen.length;
    const res = await send({ port: mesh.outboundPort, path: '/admin/users' });
    expect(res.status).toBe(403);
    expect(res.headers['trellis-error']).toBe('TRELLIS_HTTP_DENIED');
    expect(res.headers['trellis-denied-by']).toBe('shop/payments-callers#0');
    const id = res.headers['trellis-correlation-id'];
    expect(typeof id).toBe('string');
    expect(res.body).toContain(String(id));
    expect(seen.length).toBe(before); // the app never saw it
    const line = mesh.inboundLog.find((l) => l.msg === 'HTTP request denied by policy' && l.correlationId === id);
    expect(line).toMatchObject({ policy: 'shop/payments-callers', rule: 0, method: 'GET', path: '/admin/users' });
    const metric = await mesh.tunnels[0]?.registry.getSingleMetric('trellis_policy_denials_total')?.get();
    const value = metric?.values.find((v) => v.labels.policy === 'shop/payments-callers' && v.labels.rule === '0');
    expect(value?.value).toBeGreaterThanOrEqual(1);
  });

  it('applies method rules: DELETE denied where GET is allowed', async () => {
    expect((await send({ port: mesh.outboundPort, method: 'DELETE', path: '/items/7' })).status).toBe(403);
    const ok = await send({ port: mesh.outboundPort, method: 'GET', path: '/items/7' });
    expect(ok.status).toBe(200);
    expect(ok.body).toBe('hello GET /items/7');
  });

  it('judges and forwards the normalised path, so dot segments cannot slip past a rule', async () => {
    const before = seen.length;
    const denied = await send({ port: mesh.outboundPort, path: '/public/../admin/x' });
    expect(denied.status).toBe(403);
    expect(seen.length).toBe(before);
    const ok = await send({ port: mesh.outboundPort, path: '/a/./b//c?q=%2e' });
    expect(ok.status).toBe(200);
    expect(seen.at(-1)?.url).toBe('/a/b/c?q=%2e');
  });

  it('denies a caller the policy does not name (default deny)', async () => {
    const other = await startMesh({ apps: [(_req, res) => res.end('x')], policyYaml: POLICY_FOR_BILLING_ONLY, pki: mesh.pki });
    try {
      const res = await send({ port: other.outboundPort, path: '/' });
      expect(res.status).toBe(403);
      expect(res.headers['trellis-denied-by']).toBe('default-deny');
    } finally {
      await other.close();
    }
  });

  it('counts requests by source, destination and status class on both sides', async () => {
    const outbound = await mesh.registry.getSingleMetric('trellis_http_requests_total')?.get();
    const ok = outbound?.values.find((v) => v.labels.direction === 'outbound' && v.labels.source === 'shop/orders' && v.labels.destination === 'shop/payments' && v.labels.status_class === '2xx');
    const denied = outbound?.values.find((v) => v.labels.direction === 'outbound' && v.labels.status_class === '4xx');
    expect(ok?.value).toBeGreaterThanOrEqual(3);
    expect(denied?.value).toBeGreaterThanOrEqual(2);
    const inbound = await mesh.tunnels[0]?.registry.getSingleMetric('trellis_http_requests_total')?.get();
    expect(inbound?.values.find((v) => v.labels.direction === 'inbound' && v.labels.source === 'shop/orders' && v.labels.status_class === '2xx')?.value).toBeGreaterThanOrEqual(3);
    const latency = await mesh.registry.getSingleMetric('trellis_http_request_duration_seconds')?.get();
    expect(latency?.values.some((v) => (v as { metricName?: string }).metricName === 'trellis_http_request_duration_seconds_count' && v.value >= 3)).toBe(true);
    expect(mesh.log.some((l) => l.msg === 'http access' && l.direction === 'outbound' && l.status === 200)).toBe(true);
  });
});

describe('HTTP path: dry-run policies and handed-over connections', () => {
  it('lets a request a dry-run policy would deny through, and counts and logs it as not enforced', async () => {
    const mesh = await startMesh({ apps: [(_req, res) => res.end('served')], policyYaml: DRY_RUN_DENY_ADMIN });
    try {
      const res = await send({ port: mesh.outboundPort, path: '/admin/report' });
      expect(res.status).toBe(200);
      expect(res.body).toBe('served');
      expect(mesh.inboundLog.some((l) => l.msg === 'dry-run policy would deny HTTP request' && l.path === '/admin/report' && l.enforced === false)).toBe(true);
      const metric = await mesh.tunnels[0]?.registry.getSingleMetric('trellis_policy_denials_total')?.get();
      expect(metric?.values.find((v) => v.labels.enforced === 'false' && v.labels.policy === 'shop/audit-admin')?.value).toBe(1);
    } finally {
      await mesh.close();
    }
  });

  it('serves connections handed over already accepted (transparent capture) with their own destination', async () => {
    const mesh = await startMesh({ apps: [(req, res) => res.end(`captured ${req.url}`)] });
    const capture = createServer((socket) => mesh.outbound.handleConnection(socket, ROUTE));
    try {
      await new Promise<void>((resolve) => capture.listen(0, '127.0.0.1', resolve));
      const res = await send({ port: (capture.address() as AddressInfo).port, path: '/via-capture' });
      expect(res.status).toBe(200);
      expect(res.body).toBe('captured /via-capture');
    } finally {
      await new Promise<void>((resolve) => capture.close(() => resolve()));
      await mesh.close();
    }
  });

  it('cuts a handed-over connection whose request head never completes (408 after headersTimeout)', async () => {
    const mesh = await startMesh({ apps: [(_req, res) => res.end('x')], outboundLimits: { headersTimeoutMs: 300, requestTimeoutMs: 400 } });
    const capture = createServer((socket) => mesh.outbound.handleConnection(socket, ROUTE));
    try {
      await new Promise<void>((resolve) => capture.listen(0, '127.0.0.1', resolve));
      const answer = await new Promise<string>((resolve) => {
        let data = '';
        const client = connect((capture.address() as AddressInfo).port, '127.0.0.1');
        client.on('data', (c: Buffer) => (data += c.toString()));
        client.on('error', () => undefined);
        client.on('close', () => resolve(data));
        client.write('GET /slow-head HTTP/1.1\r\nHost: x\r\n');
      });
      expect(answer).toMatch(/^HTTP\/1\.1 408 /);
    } finally {
      await new Promise<void>((resolve) => capture.close(() => resolve()));
      await mesh.close();
    }
  });
});

const DRY_RUN_DENY_ADMIN = `
apiVersion: trellis.dev/v1alpha1
kind: TrafficPermission
metadata: { name: audit-admin, namespace: shop }
spec:
  destination: payments
  mode: dry-run
  rules:
    - action: deny
      from: [orders]
      http: { paths: ["/admin/*"] }
---
apiVersion: trellis.dev/v1alpha1
kind: TrafficPermission
metadata: { name: orders-in, namespace: shop }
spec:
  destination: payments
  mode: enforce
  rules:
    - action: allow
      from: [orders]
`;

const POLICY_FOR_BILLING_ONLY = `
apiVersion: trellis.dev/v1alpha1
kind: TrafficPermission
metadata: { name: billing-only, namespace: shop }
spec:
  destination: payments
  mode: enforce
  rules:
    - action: allow
      from: [billing]
`;
