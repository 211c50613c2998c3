/**
 * Transparent capture through whole sidecars, with real mTLS between them: a client sidecar with capture
 * on hands captured connections to the same TCP and HTTP paths as its explicit listeners. The original
 * destination is injected (`capture.originalDst`); test/e2e/capture-mesh.test.ts has the kernel supply it.
 */
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { connect, createServer, type AddressInfo } from 'node:net';
import { createServer as createHttpServer } from 'node:http';
import { Registry } from 'prom-client';
import { silentLogger } from '../../common/log.js';
import type { OriginalDestination } from '../../proxy/core/original-dst.js';
import { createSidecar, type Sidecar } from '../../proxy/sidecar.js';
import { createTestPki, type TestPki } from '../helpers/pki.js';
import { allow, closeServer, echoServer, metricValue, policyOf, startServerSidecar, TRUST_DOMAIN } from './support/mesh.js';

let pki: TestPki;
const cleanup: (() => Promise<void> | void)[] = [];

beforeAll(async () => {
  pki = await createTestPki();
});

afterEach(async () => {
  pending.length = 0;
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

const VIP = '10.96.0.10';

/** Original destinations of the next captured connections, in order (the tests connect one at a time). */
const pending: OriginalDestination[] = [];
const originalDst = (): OriginalDestination => {
  const dst = pending.shift();
  if (dst === undefined) throw new Error('test: no destination queued for this connection');
  return dst;
};

/**
 * Connects to a capture port as if the app had dialled `dst`, sends `payload`, reads to the end. Half-closes
 * after sending unless `halfClose` is false (an HTTP/1.1 client waits for its answer instead).
 */
function exchange(port: number, dst: OriginalDestination, payload: string, halfClose = true): Promise<{ data: string; error?: string }> {
  pending.push(dst);
  return new Promise((resolve) => {
    let data = '';
    let error: string | undefined;
    const socket = connect({ port, host: '127.0.0.1', allowHalfOpen: halfClose });
    socket.on('connect', () => (halfClose ? socket.end(payload) : socket.write(payload)));
    socket.on('data', (c: Buffer) => (data += c.toString()));
    socket.on('error', (err: NodeJS.ErrnoException) => (error = err.code ?? err.message));
    socket.on('close', () => resolve(error === undefined ? { data } : { data, error }));
  });
}

async function clientWithCapture(serverTunnel: number, tcpPort: number, httpPort: number, outsideMesh: 'passthrough' | 'refuse' = 'passthrough'): Promise<Sidecar> {
  const sidecar = createSidecar({
    service: 'web',
    namespace: 'shop',
    trustDomain: TRUST_DOMAIN,
    zone: 'zone-a',
    identity: await pki.issue('web', 'shop'),
    appPorts: [],
    tunnel: { address: '127.0.0.1', port: 0 },
    admin: null,
    logger: process.env.PROXY_DEBUG ? (await import('pino')).pino({ level: 'debug' }) : silentLogger(),
    registry: new Registry(),
    capture: { outbound: { address: '127.0.0.1', port: 0 }, inbound: { address: '127.0.0.1', port: 0 }, outsideMesh, originalDst },
    config: {
      upstreams: [
        {
          name: 'api',
          namespace: 'shop',
          virtualIps: [VIP],
          ports: [
            { port: 80, targetPort: httpPort, protocol: 'http' },
            { port: 5000, targetPort: tcpPort, protocol: 'tcp' },
          ],
          endpoints: [{ address: '127.0.0.1', tunnelPort: serverTunnel, zone: 'zone-a', healthy: true }],
        },
      ],
      listeners: [],
      policy: policyOf(),
    },
  });
  await sidecar.start();
  cleanup.push(() => sidecar.stop(0));
  return sidecar;
}

describe('a sidecar with transparent capture', () => {
  it('carries captured TCP and HTTP connections over mTLS to the destination sidecar, by virtual IP and by endpoint address', async () => {
    const echo = await echoServer();
    cleanup.push(() => closeServer(echo.server, echo.sockets));
    const httpApp = createHttpServer((req, res) => res.end(`api ${req.method} ${req.url} from ${req.socket.remoteAddress}`));
    await new Promise<void>((r) => httpApp.listen(0, '127.0.0.1', r));
    cleanup.push(() => new Promise<void>((r) => { httpApp.closeAllConnections(); httpApp.close(() => r()); }));
    const httpPort = (httpApp.address() as AddressInfo).port;

    const server = await startServerSidecar({
      identity: await pki.issue('api', 'shop'),
      appPorts: [
        { port: echo.port, protocol: 'tcp', host: '127.0.0.1' },
        { port: httpPort, protocol: 'http', host: '127.0.0.1' },
      ],
      policy: policyOf(allow('api', ['web'])),
    });
    cleanup.push(() => server.stop(0));
    const client = await clientWithCapture(server.addresses().tunnel!.port, echo.port, httpPort);
    const capturePort = client.addresses().capture!.outbound!.port;

    expect(await exchange(capturePort, { address: VIP, port: 5000, family: 4 }, 'tcp by virtual ip')).toEqual({ data: 'tcp by virtual ip' });
    expect(await exchange(capturePort, { address: '127.0.0.1', port: echo.port, family: 4 }, 'tcp by endpoint')).toEqual({ data: 'tcp by endpoint' });
    const http = await exchange(capturePort, { address: VIP, port: 80, family: 4 }, 'GET /orders HTTP/1.1\r\nhost: api\r\nconnection: close\r\n\r\n', false);
    expect(http.data).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(http.data).toContain('api GET /orders from 127.0.0.1');
    await expect.poll(() => metricValue(server, 'trellis_tcp_connections_total', { direction: 'inbound', source: 'shop/web', destination: 'shop/api', result: 'ok' })).toBe(2);
    expect(await metricValue(server, 'trellis_http_requests_total', { direction: 'inbound', source: 'shop/web' })).toBe(1);
    expect(await metricValue(client, 'trellis_capture_outbound_connections_total', { result: 'mesh', destination: 'shop/api' })).toBe(3);
  });

  it('passes a destination outside the mesh through, or refuses it', async () => {
    const outside = await echoServer();
    cleanup.push(() => closeServer(outside.server, outside.sockets));
    const passing = await clientWithCapture(1, 1, 1);
    const outsideDst = { address: '127.0.0.1', port: outside.port, family: 4 } as const;
    expect(await exchange(passing.addresses().capture!.outbound!.port, outsideDst, 'plain')).toEqual({ data: 'plain' });
    expect(await metricValue(passing, 'trellis_capture_outbound_connections_total', { result: 'passthrough' })).toBe(1);
    const refusing = await clientWithCapture(1, 1, 1, 'refuse');
    expect(await exchange(refusing.addresses().capture!.outbound!.port, outsideDst, 'plain')).toEqual({ data: '', error: 'ECONNRESET' });
    expect(await metricValue(refusing, 'trellis_capture_outbound_connections_total', { result: 'refused-outside-mesh' })).toBe(1);
  });

  it('refuses plaintext on its inbound capture port in strict mode (the default)', async () => {
    const app = createServer((s) => s.end('should not be reached'));
    await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
    cleanup.push(() => new Promise<void>((r) => app.close(() => r())));
    const port = (app.address() as AddressInfo).port;
    const client = await clientWithCapture(1, 1, 1);
    expect(await exchange(client.addresses().capture!.inbound!.port, { address: '127.0.0.1', port, family: 4 }, 'hi')).toEqual({ data: '', error: 'ECONNRESET' });
    expect(await metricValue(client, 'trellis_capture_inbound_connections_total', { mode: 'strict', result: 'refused' })).toBe(1);
  });

  it('stops its capture listeners with the rest', async () => {
    const client = await clientWithCapture(1, 1, 1);
    const port = client.addresses().capture!.outbound!.port;
    expect(client.readiness().ready).toBe(true);
    await client.stop(0);
    await expect(new Promise((resolve, reject) => connect({ port, host: '127.0.0.1' }).on('connect', resolve).on('error', reject))).rejects.toMatchObject({ code: 'ECONNREFUSED' });
  });
});
