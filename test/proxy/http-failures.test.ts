/**
 * What callers see when something breaks, and how requests are spread: app resets before and during a
 * response, an app that is down, no endpoint, per-request balancing across two endpoints, retry on
 * another endpoint when one cannot be reached, and the listener's limits.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Agent, request, type ServerResponse } from 'node:http';
import { connect, createServer as createNetServer, type AddressInfo } from 'node:net';
import { send } from './http-client.js';
import { endpointOf, startMesh, type TestMesh } from './http-harness.js';

/** A loopback port with nothing listening (bound, then released). */
async function deadPort(): Promise<number> {
  const server = createNetServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe('HTTP path: failures, balancing and retries', () => {
  let mesh: TestMesh | undefined;
  afterEach(async () => {
    await mesh?.close();
    mesh = undefined;
  });

  it('answers 502 TRELLIS_HTTP_APP_RESET when the app resets before responding', async () => {
    mesh = await startMesh({ apps: [(req) => req.socket.destroy()] });
    const res = await send({ port: mesh.outboundPort, path: '/boom' });
    expect(res.status).toBe(502);
    expect(res.headers['trellis-error']).toBe('TRELLIS_HTTP_APP_RESET');
    expect(res.body).toContain(String(res.headers['trellis-correlation-id']));
  });

  it('resets the caller connection when the app resets mid-response, never a truncated "complete" one', async () => {
    mesh = await startMesh({
      apps: [
        (req, res: ServerResponse) => {
          res.writeHead(200, { 'content-length': '100000' });
          res.write(Buffer.alloc(1000, 97));
          setTimeout(() => req.socket.destroy(), 20);
        },
      ],
    });
    const outcome = await new Promise<string>((resolve) => {
      const req = request({ host: '127.0.0.1', port: mesh?.outboundPort, path: '/partial', agent: false });
      req.on('error', (err) => resolve(`request error ${(err as NodeJS.ErrnoException).code}`));
      req.on('response', (res) => {
        let bytes = 0;
        res.on('data', (c: Buffer) => (bytes += c.length));
        res.on('error', () => resolve(`aborted after ${bytes}`));
        res.on('end', () => resolve(`complete ${bytes}`));
      });
      req.end();
    });
    expect(outcome).toMatch(/^aborted after \d+$/);
  });

  // An upload with Expect: 100-continue takes the HTTP/2-request path; the caller dies half-way through it.
  it('never hands the app a complete body when the caller goes away mid-upload', async () => {
    let appSaw: ((outcome: string) => void) | undefined;
    const appOutcome = new Promise<string>((r) => (appSaw = r));
    mesh = await startMesh({
      apps: [
        (req) => {
          let body = '';
          req.setEncoding('utf8');
          req.on('data', (d: string) => (body += d));
          req.once('end', () => appSaw?.(`complete body "${body}"`));
          req.once('close', () => appSaw?.(req.complete ? `complete body "${body}"` : 'aborted'));
        },
      ],
    });
    const socket = connect({ host: '127.0.0.1', port: mesh.outboundPort });
    socket.on('error', () => undefined);
    socket.write('POST /upload HTTP/1.1\r\nHost: payments\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n');
    await new Promise<void>((resolve) => socket.once('data', (d: Buffer) => (d.toString().startsWith('HTTP/1.1 100') ? resolve() : undefined)));
    socket.write('5\r\nhello\r\n');
    await new Promise((r) => setTimeout(r, 50));
    socket.resetAndDestroy();
    expect(await appOutcome).toBe('aborted');
  });

  it('breaks a chunked response on the HTTP/2-request path when the app resets mid-response', async () => {
    mesh = await startMesh({
      apps: [
        (req, res: ServerResponse) => {
          req.resume();
          res.writeHead(200, { 'content-type': 'text/plain' });
          res.write('part of it');
          setTimeout(() => res.socket?.resetAndDestroy(), 50);
        },
      ],
    });
    const port = mesh.outboundPort;
    const outcome = await new Promise<string>((resolve) => {
      // Expect: 100-continue takes the HTTP/2-request path rather than a lane.
      const req = request({ host: '127.0.0.1', port, method: 'POST', path: '/stream', headers: { expect: '100-continue', 'content-length': '2' } });
      req.on('error', (err) => resolve(`request error ${err.message}`));
      req.on('continue', () => req.end('hi'));
      req.on('response', (res) => {
        res.on('error', () => undefined);
        res.resume();
        res.once('close', () => resolve(res.complete ? 'complete' : 'broken'));
      });
    });
    expect(outcome).toBe('broken');
  });

  it('answers 503 TRELLIS_HTTP_APP_UNAVAILABLE when the app is not listening', async () => {
    mesh = await startMesh({ apps: [(_req, res) => res.end('up')] });
    const app = mesh.apps[0];
    for (const s of app?.sockets ?? []) s.destroy();
    await new Promise<void>((resolve) => app?.server.close(() => resolve()));
    const res = await send({ port: mesh.outboundPort, path: '/down' });
    expect(res.status).toBe(503);
    expect(res.headers['trellis-error']).toBe('TRELLIS_HTTP_APP_UNAVAILABLE');
  });

  it('answers 503 TRELLIS_HTTP_NO_ENDPOINT when the service has no endpoint', async () => {
    mesh = await startMesh({ apps: [(_req, res) => res.end('up')] });
    mesh.setEndpoints([]);
    const res = await send({ port: mesh.outboundPort, path: '/' });
    expect(res.status).toBe(503);
    expect(res.headers['trellis-error']).toBe('TRELLIS_HTTP_NO_ENDPOINT');
  });

  it('balances per request, not per connection: one kept-alive client connection reaches both endpoints', async () => {
    mesh = await startMesh({ apps: [(_req, res) => res.end('A'), (_req, res) => res.end('B')] });
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const answers = new Map<string, number>();
      const ports = new Set<number | undefined>();
      for (let i = 0; i < 40; i += 1) {
        const res = await send({ port: mesh.outboundPort, path: `/r${i}`, agent });
        answers.set(res.body, (answers.get(res.body) ?? 0) + 1);
        ports.add(res.localPort);
      }
      expect(ports.size).toBe(1);
      expect(answers.get('A')).toBeGreaterThan(0);
      expect(answers.get('B')).toBeGreaterThan(0);
    } finally {
      agent.destroy();
    }
  });

  it('retries on another endpoint when one cannot be reached, so no request fails', async () => {
    const dead = await deadPort();
    mesh = await startMesh({ apps: [(_req, res) => res.end('live')], extraEndpoints: [endpointOf(dead)] });
    for (let i = 0; i < 10; i += 1) {
      const res = await send({ port: mesh.outboundPort, method: 'POST', path: `/r${i}`, body: 'x' });
      expect(res.status).toBe(200);
      expect(res.body).toBe('live');
    }
  });

  it('answers 503 TRELLIS_HTTP_UPSTREAM_CONNECT_FAILED when no endpoint can be reached', async () => {
    mesh = await startMesh({ apps: [(_req, res) => res.end('up')] });
    mesh.setEndpoints([endpointOf(await deadPort()), endpointOf(await deadPort())]);
    const res = await send({ port: mesh.outboundPort, path: '/' });
    expect(res.status).toBe(503);
    expect(res.headers['trellis-error']).toBe('TRELLIS_HTTP_UPSTREAM_CONNECT_FAILED');
    const line = mesh.log.find((l) => l.msg === 'HTTP request not delivered');
    expect(line).toMatchObject({ code: 'TRELLIS_HTTP_UPSTREAM_CONNECT_FAILED', attempts: 2 });
  });

  it('refuses requests beyond the app pool bound with 503 TRELLIS_HTTP_APP_OVERLOADED', async () => {
    const held: ServerResponse[] = [];
    mesh = await startMesh({ apps: [(_req, res) => held.push(res)], appPool: { maxSocketsPerPort: 1, maxPendingPerPort: 0 } });
    const first = send({ port: mesh.outboundPort, path: '/hold' });
    while (held.length === 0) await new Promise((r) => setImmediate(r));
    const second = await send({ port: mesh.outboundPort, path: '/more' });
    expect(second.status).toBe(503);
    expect(second.headers['trellis-error']).toBe('TRELLIS_HTTP_APP_OVERLOADED');
    held[0]?.end('released');
    expect((await first).body).toBe('released');
  });

  it('enforces the listener limits: header bytes (431) and the connection cap', async () => {
    mesh = await startMesh({ apps: [(_req, res) => res.end('ok')], outboundLimits: { maxHeaderBytes: 1024, maxConnections: 1 } });
    const big = await send({ port: mesh.outboundPort, path: '/', headers: { 'x-big': 'a'.repeat(2048) } });
    expect(big.status).toBe(431);
    while (mesh.outbound.connectionCount() > 0) await new Promise((r) => setImmediate(r));
    const first = connect(mesh.outboundPort, '127.0.0.1');
    await new Promise<void>((resolve) => first.once('connect', () => resolve()));
    while (mesh.outbound.connectionCount() < 1) await new Promise((r) => setImmediate(r));
    const second = connect(mesh.outboundPort, '127.0.0.1');
    const closed = await new Promise<boolean>((resolve) => {
      second.on('error', () => resolve(true));
      second.on('close', () => resolve(true));
    });
    expect(closed).toBe(true);
    first.destroy();
  });

  it('answers 504 TRELLIS_HTTP_APP_TIMEOUT when the app accepts but stays silent past the idle timeout', async () => {
    mesh = await startMesh({ apps: [() => undefined], appPool: { requestIdleTimeoutMs: 200 } });
    const res = await send({ port: mesh.outboundPort, path: '/silent' });
    expect(res.status).toBe(504);
    expect(res.headers['trellis-error']).toBe('TRELLIS_HTTP_APP_TIMEOUT');
  });

  it('answers 504 TRELLIS_HTTP_UPSTREAM_TIMEOUT when the tunnel stream stays silent past the outbound idle timeout', async () => {
    mesh = await startMesh({ apps: [() => undefined], outboundLimits: { upstreamIdleTimeoutMs: 200 } });
    const res = await send({ port: mesh.outboundPort, path: '/silent' });
    expect(res.status).toBe(504);
    expect(res.headers['trellis-error']).toBe('TRELLIS_HTTP_UPSTREAM_TIMEOUT');
  });

  it('retries a body-less request once on a fresh app connection when a kept-alive one turns out closed', async () => {
    // The app closes every connection at its second request without answering: what a keep-alive
    // timeout racing our reuse looks like from the inbound side.
    const perSocket = new WeakMap<object, number>();
    let arrivals = 0;
    mesh = await startMesh({
      apps: [
        (req, res) => {
          arrivals += 1;
          const n = (perSocket.get(req.socket) ?? 0) + 1;
          perSocket.set(req.socket, n);
          if (n >= 2) req.socket.destroy();
          else res.end(`ok ${req.method}`);
        },
      ],
    });
    expect((await send({ port: mesh.outboundPort, path: '/first' })).body).toBe('ok GET');
    const second = await send({ port: mesh.outboundPort, path: '/second' });
    expect(second.status).toBe(200);
    expect(second.body).toBe('ok GET');
    expect(arrivals).toBe(3);
    // With a body nothing is retried: the app may have read it.
    const upload = await send({ port: mesh.outboundPort, method: 'POST', path: '/upload', body: 'data' });
    expect(upload.status).toBe(502);
    expect(upload.headers['trellis-error']).toBe('TRELLIS_HTTP_APP_RESET');
  });
});
