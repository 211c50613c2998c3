/**
 * The app health check against real sockets: TCP connect, HTTP status, and the rule that two failures
 * in a row (not one) take a healthy app out.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { AppHealth, probeOnce, type HealthCheckSpec } from '../../agent/app-health.js';

let server: Server | undefined;
afterEach(async () => {
  if (server !== undefined) await new Promise((r) => server?.close(r));
  server = undefined;
});

async function app(status: () => number): Promise<number> {
  server = createServer((_req, res) => {
    res.statusCode = status();
    res.end();
  });
  await new Promise<void>((r) => server?.listen(0, '127.0.0.1', r));
  return (server.address() as AddressInfo).port;
}

const spec = (port: number, kind: 'tcp' | 'http'): HealthCheckSpec => ({ kind, host: '127.0.0.1', port, path: '/healthz', intervalMs: 20, timeoutMs: 1_000, unhealthyAfter: 2 });

describe('app health', () => {
  it('passes a TCP check on a listening port and fails on a closed one', async () => {
    const port = await app(() => 200);
    expect((await probeOnce(spec(port, 'tcp'))).healthy).toBe(true);
    await new Promise((r) => server?.close(r));
    server = undefined;
    const closed = await probeOnce(spec(port, 'tcp'));
    expect(closed).toMatchObject({ healthy: false });
    expect(closed.detail).toMatch(/ECONNREFUSED/);
  });

  it('judges an HTTP check by status', async () => {
    let status = 204;
    const port = await app(() => status);
    expect(await probeOnce(spec(port, 'http'))).toEqual({ healthy: true, detail: 'GET /healthz → 204' });
    status = 503;
    expect(await probeOnce(spec(port, 'http'))).toEqual({ healthy: false, detail: 'GET /healthz → 503' });
  });

  it('needs two failures in a row to mark a healthy app unhealthy', async () => {
    let status = 200;
    const port = await app(() => status);
    const changes: boolean[] = [];
    const health = new AppHealth(spec(port, 'http'), (r) => changes.push(r.healthy));
    await health.start();
    expect(health.healthy).toBe(true);
    status = 500;
    await new Promise((r) => setTimeout(r, 200));
    health.stop();
    expect(changes).toEqual([true, false]);
  });
});
