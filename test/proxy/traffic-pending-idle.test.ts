/**
 * The circuit breaker's `maxPendingRequests` (requests waiting for a tunnel stream or lane: a bounded wait
 * per destination, overflow failed at once with its typed reason) and a TimeoutPolicy's `idle` on the
 * HTTP/1.1 lanes (the gRPC path's idle is in grpc-traffic.test.ts), end to end over real sockets and mTLS tunnels.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { connect, type IncomingHttpHeaders } from 'node:http2';
import { afterEach, describe, expect, it } from 'vitest';
import { send } from './http-client.js';
import { endpointOf, startMesh, type TestMesh } from './http-harness.js';
import { trafficResource } from './support/traffic-resources.js';

const resource = (kind: string, spec: string): string => trafficResource(kind, 'payments', spec);

/** A "tunnel" that accepts TCP and never answers the TLS handshake: a session to it stays connecting. */
async function stuckTunnel(): Promise<{ server: Server; port: number; sockets: Socket[] }> {
  const sockets: Socket[] = [];
  const server = createServer((s) => {
    sockets.push(s);
    s.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: (server.address() as { port: number }).port, sockets };
}

function h2Request(port: number, path: string): Promise<{ head: IncomingHttpHeaders; body: string; ms: number }> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const session = connect(`http://127.0.0.1:${port}`);
    session.on('error', reject);
    const req = session.request({ ':method': 'GET', ':path': path });
    let head: IncomingHttpHeaders = {};
    const parts: Buffer[] = [];
    req.on('response', (h) => (head = h));
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('close', () => {
      session.destroy();
      resolve({ head, body: Buffer.concat(parts).toString(), ms: performance.now() - started });
    });
    req.end();
  });
}

describe('maxPendingRequests and per-destination idle timeouts', () => {
  let mesh: TestMesh | undefined;
  let stuck: Awaited<ReturnType<typeof stuckTunnel>> | undefined;
  afterEach(async () => {
    // The silent peer goes first: a session still connecting to it would hold the pool's close.
    for (const s of stuck?.sockets ?? []) s.destroy();
    await mesh?.close();
    mesh = undefined;
    await new Promise((r) => (stuck === undefined ? r(undefined) : stuck.server.close(r)));
    stuck = undefined;
  });

  const pendingTraffic = `${resource('TrafficRoute', '  rules:\n    - backends: [{ labels: { version: stuck } }]\n')}${resource('CircuitBreaker', '  maxPendingRequests: 2\n')}${resource('TimeoutPolicy', '  connect: 1s\n')}${resource('RetryPolicy', '  attempts: 1\n')}`;

  it('fails requests beyond maxPendingRequests at once with the typed reason (HTTP/1.1 lanes)', async () => {
    stuck = await stuckTunnel();
    mesh = await startMesh({ apps: [(_req, res) => res.end('ok')], extraEndpoints: [{ ...endpointOf(stuck.port), labels: { version: 'stuck' } }], traffic: pendingTraffic });
    const m = mesh;
    const started = performance.now();
    const timed = await Promise.all(Array.from({ length: 6 }, () => send({ port: m.outboundPort, path: '/' }).then((r) => ({ r, ms: performance.now() - started }))));
    const overflow = timed.filter((t) => t.r.status === 503);
    const waited = timed.filter((t) => t.r.status === 504);
    expect(overflow.length).toBe(4);
    expect(waited.length).toBe(2);
    for (const o of overflow) {
      expect(o.r.headers['trellis-error']).toBe('TRELLIS_HTTP_CIRCUIT_BREAKER_OPEN');
      expect(o.r.body).toContain('max-pending-requests');
      expect(o.ms).toBeLessThan(700);
    }
    for (const w of waited) expect(w.ms).toBeGreaterThanOrEqual(900);
    // The slots are free again once the waiting requests ended: what fails now is not the breaker.
    const again = await Promise.all(Array.from({ length: 2 }, () => send({ port: m.outboundPort, path: '/' })));
    for (const r of again) expect(r.headers['trellis-error']).not.toBe('TRELLIS_HTTP_CIRCUIT_BREAKER_OPEN');
  }, 30_000);

  it('fails HTTP/2 requests beyond maxPendingRequests at once with the typed reason', async () => {
    stuck = await stuckTunnel();
    mesh = await startMesh({ apps: [(_req, res) => res.end('ok')], extraEndpoints: [{ ...endpointOf(stuck.port), labels: { version: 'stuck' } }], traffic: pendingTraffic });
    const m = mesh;
    const results = await Promise.all(Array.from({ length: 6 }, () => h2Request(m.outboundPort, '/')));
    const overflow = results.filter((r) => Number(r.head[':status']) === 503);
    expect(overflow.length).toBe(4);
    for (const o of overflow) {
      expect(o.head['trellis-error']).toBe('TRELLIS_HTTP_CIRCUIT_BREAKER_OPEN');
      expect(o.ms).toBeLessThan(700);
    }
    expect(results.filter((r) => Number(r.head[':status']) === 504).length).toBe(2);
  }, 30_000);

  it('applies a TimeoutPolicy idle to a silent response on the lanes, not the listener default', async () => {
    mesh = await startMesh({
      apps: [(req, res) => {
        res.writeHead(200);
        res.write('first');
        // Then silence: only an idle timeout ends it.
        req.on('close', () => res.destroy());
      }],
      traffic: `${resource('TimeoutPolicy', '  idle: 400ms\n  request: 1m\n')}`,
    });
    const m = mesh;
    const started = performance.now();
    const h1 = await send({ port: m.outboundPort, path: '/' }).then(
      () => 'complete',
      () => 'cut',
    );
    const h1ms = performance.now() - started;
    expect(h1).toBe('cut');
    expect(h1ms).toBeGreaterThanOrEqual(350);
    expect(h1ms).toBeLessThan(3_000);
  }, 30_000);
});
