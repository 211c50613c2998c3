/**
 * Traffic management on the outbound HTTP/1.1 lane path, end to end over real sockets and mTLS tunnels
 * (http-harness.ts): weighted canaries, header matches, blue-green flips and weight changes under load,
 * retries within a budget, outlier ejection, per-try timeouts and circuit-breaker overflow.
 */
import { Agent } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { send, type TestResponse } from './http-client.js';
import { closeApp, endpointOf, startMesh, type AppHandler, type TestMesh } from './http-harness.js';
import { metricSum, trafficResource } from './support/traffic-resources.js';

const V1 = { version: 'v1' };
const V2 = { version: 'v2' };

const route = (rules: string): string => `apiVersion: trellis.dev/v1alpha1
kind: TrafficRoute
metadata: { name: payments, namespace: shop }
spec:
  destination: payments
  rules:
${rules}`;

const weights = (v1: number, v2: number): string => route(`    - backends: [{ labels: { version: v1 }, weight: ${v1} }, { labels: { version: v2 }, weight: ${v2} }]\n`);

const resource = (kind: string, spec: string): string => trafficResource(kind, 'payments', spec);

const answer = (text: string): AppHandler => (_req, res) => res.end(text);

/** `count` requests, `concurrency` at a time, on kept-alive connections; every response, in completion order. */
async function load(port: number, count: number, concurrency: number, path = '/', headers: Record<string, string> = {}): Promise<TestResponse[]> {
  const agent = new Agent({ keepAlive: true, maxSockets: concurrency });
  const out: TestResponse[] = [];
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < count) {
      next += 1;
      out.push(await send({ port, path, headers, agent }));
    }
  };
  try {
    await Promise.all(Array.from({ length: concurrency }, worker));
  } finally {
    agent.destroy();
  }
  return out;
}

function metric(mesh: TestMesh, name: string, labels: Record<string, string> = {}): Promise<number> {
  return metricSum(mesh.registry, name, labels);
}

const count = (responses: readonly TestResponse[], body: string): number => responses.filter((r) => r.body === body).length;

describe('traffic management on the HTTP/1.1 lane path', () => {
  let mesh: TestMesh | undefined;
  afterEach(async () => {
    await mesh?.close();
    mesh = undefined;
  });

  it('splits a 90/10 canary within ±3% over 2,000 requests and counts both versions', async () => {
    mesh = await startMesh({ apps: [answer('v1'), answer('v2')], labels: [V1, V2], traffic: weights(90, 10) });
    const responses = await load(mesh.outboundPort, 2_000, 16);
    expect(responses.every((r) => r.status === 200)).toBe(true);
    const share = count(responses, 'v2') / responses.length;
    expect(Math.abs(share - 0.1)).toBeLessThanOrEqual(0.03);
    expect(await metric(mesh, 'trellis_route_requests_total', { version: 'v2', status_code: '200', route: 'payments/0' })).toBe(count(responses, 'v2'));
    expect(await metric(mesh, 'trellis_route_requests_total', { version: 'v1' })).toBe(count(responses, 'v1'));
  });

  it('sends only requests with the header to v2 (A/B) and applies the rule\'s header edits', async () => {
    const seen: string[] = [];
    mesh = await startMesh({
      apps: [answer('v1'), (req, res) => { seen.push(String(req.headers['x-cohort'])); res.end('v2'); }],
      labels: [V1, V2],
      traffic: route(`    - name: beta\n      match: { headers: [{ name: x-beta, exact: "1" }] }\n      backends: [{ labels: { version: v2 } }]\n      requestHeaders: { set: { x-cohort: beta } }\n    - backends: [{ labels: { version: v1 } }]\n`),
    });
    const marked = await load(mesh.outboundPort, 100, 8, '/', { 'x-beta': '1' });
    const plain = await load(mesh.outboundPort, 100, 8, '/', { 'x-beta': '2' });
    expect(count(marked, 'v2')).toBe(100);
    expect(count(plain, 'v1')).toBe(100);
    expect(new Set(seen)).toEqual(new Set(['beta']));
  });

  it('flips blue-green and changes weights under steady load without a failed request', async () => {
    mesh = await startMesh({ apps: [answer('v1'), answer('v2')], labels: [V1, V2], traffic: weights(100, 0) });
    const m = mesh;
    const running = load(m.outboundPort, 3_000, 16);
    const steps: [number, number][] = [[100, 0], [90, 10], [50, 50], [0, 100], [100, 0], [0, 100]];
    for (const [a, b] of steps) {
      await new Promise((r) => setTimeout(r, 60));
      m.setTraffic(weights(a, b));
    }
    const during = await running;
    expect(during.filter((r) => r.status !== 200)).toEqual([]);
    const after = await load(m.outboundPort, 200, 8);
    expect(count(after, 'v2')).toBe(200);
  });

  it('ejects an instance answering 503 half the time; retries within budget hide every 503', async () => {
    let flakyCalls = 0;
    mesh = await startMesh({
      // Half the time, in runs of two: 503, 503, 200, 200, ...
      apps: [(_req, res) => { res.statusCode = flakyCalls++ % 4 < 2 ? 503 : 200; res.end('flaky'); }, answer('good'), answer('good')],
      traffic: `${resource('RetryPolicy', '  attempts: 3\n  retryOn: [gateway-error]\n  backoff: { base: 1ms, max: 5ms }\n  budget: { ratio: 0.5, minPerSecond: 20 }\n')}${resource('OutlierDetection', '  consecutive5xx: 2\n  baseEjectionTime: 1m\n')}`,
    });
    const responses = await load(mesh.outboundPort, 400, 8);
    expect(responses.filter((r) => r.status !== 200)).toEqual([]);
    expect(await metric(mesh, 'trellis_outlier_ejections_total', { reason: 'consecutive-5xx' })).toBeGreaterThanOrEqual(1);
    const retries = await metric(mesh, 'trellis_route_retries_total');
    expect(retries).toBeGreaterThan(0);
    expect(retries).toBeLessThanOrEqual(0.5 * 400 + 20 * 10);
    // Once ejected it gets nothing: the last 100 requests never reach it.
    const before = flakyCalls;
    await load(mesh.outboundPort, 100, 4);
    expect(flakyCalls).toBe(before);
  });

  it('gives up on a slow instance after the per-try timeout and retries elsewhere', async () => {
    mesh = await startMesh({
      apps: [(_req, res) => setTimeout(() => res.end('slow'), 3_000).unref(), answer('fast')],
      traffic: resource('RetryPolicy', '  attempts: 2\n  perTryTimeout: 150ms\n  retryOn: [gateway-error]\n  backoff: { base: 1ms, max: 2ms }\n'),
    });
    const started = performance.now();
    const responses = await load(mesh.outboundPort, 20, 4);
    expect(responses.map((r) => r.body)).toEqual(Array(20).fill('fast'));
    expect(performance.now() - started).toBeLessThan(2_500);
    expect(await metric(mesh, 'trellis_route_retries_total', { reason: 'per-try-timeout' })).toBeGreaterThan(0);
  });

  it('caps a retry storm at the budget (the extra load is measured)', async () => {
    let calls = 0;
    const down: AppHandler = (_req, res) => { calls += 1; res.statusCode = 503; res.end('down'); };
    mesh = await startMesh({
      apps: [down, down],
      traffic: `${resource('RetryPolicy', '  attempts: 5\n  retryOn: [5xx]\n  backoff: { base: 1ms, max: 2ms }\n  budget: { ratio: 0.2, minPerSecond: 1, window: 10s }\n')}${resource('OutlierDetection', '  maxEjectedPercent: 0\n')}`,
    });
    const responses = await load(mesh.outboundPort, 300, 8);
    expect(responses.every((r) => r.status === 503 && r.body === 'down')).toBe(true);
    const extra = (calls - 300) / 300;
    // Without the budget: 5 tries each, +400%. With it: at most 20% + 10 retries in the window.
    expect(calls).toBeGreaterThan(300);
    expect(calls).toBeLessThanOrEqual(300 + 0.2 * 300 + 10);
    expect(await metric(mesh, 'trellis_route_retry_budget_exhausted_total')).toBeGreaterThan(0);
    console.log(`retry storm: 300 requests, ${calls} tries at the apps, extra load ${(extra * 100).toFixed(1)}%`);
  });

  it('fails requests over the circuit breaker\'s limit fast, with the typed reason', async () => {
    mesh = await startMesh({ apps: [(_req, res) => setTimeout(() => res.end('ok'), 400)], traffic: resource('CircuitBreaker', '  maxRequests: 2\n') });
    const started = performance.now();
    const quick: number[] = [];
    const all = await Promise.all(
      Array.from({ length: 5 }, async () => {
        const r = await send({ port: mesh!.outboundPort });
        quick.push(performance.now() - started);
        return r;
      }),
    );
    const refused = all.filter((r) => r.status === 503);
    expect(all.filter((r) => r.status === 200).length).toBe(2);
    expect(refused.length).toBe(3);
    for (const r of refused) {
      expect(r.headers['trellis-error']).toBe('TRELLIS_HTTP_CIRCUIT_BREAKER_OPEN');
      expect(r.body).toContain('max-requests');
    }
    expect(quick.sort((a, b) => a - b)[2]).toBeLessThan(300);
    expect(await metric(mesh, 'trellis_circuit_breaker_overflows_total', { limit: 'max-requests' })).toBe(3);
    // Slots are given back: the next requests go through.
    expect((await send({ port: mesh.outboundPort })).status).toBe(200);
  });

  it('ejects a dead zone-local instance but never the single endpoint standing for a remote zone', async () => {
    mesh = await startMesh({
      apps: [answer('dead'), answer('local'), (_req, res) => { res.statusCode = 503; res.end('remote busy'); }],
      traffic: resource('OutlierDetection', '  consecutiveGatewayErrors: 1\n  maxEjectedPercent: 100\n  baseEjectionTime: 1m\n'),
    });
    const [a, b, c] = mesh.tunnels;
    const keys = [a, b, c].map((t) => `127.0.0.1:${t!.port}`);
    mesh.setEndpoints([endpointOf(a!.port), endpointOf(b!.port), { ...endpointOf(c!.port), zone: 'remote' }]);
    await closeApp(mesh.apps[0]!);
    const responses = await load(mesh.outboundPort, 60, 4);
    // Requests to the dead app are retried (nothing reached it); the remote one answers 503 itself. Even at
    // maxEjectedPercent 100 the remote zone's only endpoint stays: ejection is counted per zone.
    expect(responses.filter((r) => r.status !== 200 && r.body !== 'remote busy')).toEqual([]);
    const outlier = mesh.traffic!.destination('shop', 'payments').outlier;
    expect(outlier.isEjected(keys[0]!)).toBe(true);
    expect(outlier.isEjected(keys[2]!)).toBe(false);
    expect(responses.some((r) => r.body === 'remote busy')).toBe(true);
  });
});
