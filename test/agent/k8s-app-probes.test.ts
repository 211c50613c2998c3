/**
 * The app's original probes, run by the agent for the kubelet, against real servers on loopback: HTTP
 * (200, 500, a redirect, custom headers, HTTPS with a certificate nobody verifies, a server that never
 * answers), TCP (open and closed), and gRPC health over h2c with a real node:http2 health server
 * (SERVING, NOT_SERVING, an unknown service). Then the same through the status port, as the kubelet asks.
 */
import { createServer as createHttpServer, request, type Server as HttpServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { createServer as createH2Server, type Http2Server, type ServerHttp2Stream } from 'node:http2';
import { createServer as createTcpServer, type AddressInfo, type Server as TcpServer } from 'node:net';
import { once } from 'node:events';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAppProbes, type AppProbe } from '../../agent/app-probes.js';
import { runAppProbe } from '../../agent/app-probe-runner.js';
import { healthCheckRequestFrame, parseHealthCheckResponse } from '../../agent/grpc-health-probe.js';
import { createStatusServer } from '../../agent/status-server.js';
import { silentLogger } from '../../common/log.js';
import { createTestPki } from '../helpers/pki.js';

const servers: { close(cb?: () => void): unknown }[] = [];
let httpPort = 0;
let httpsPort = 0;
let tcpOpenPort = 0;
let tcpClosedPort = 0;
let grpcPort = 0;
const grpcRequests: string[] = [];

async function listen<T extends HttpServer | TcpServer | Http2Server>(server: T): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  servers.push(server);
  return (server.address() as AddressInfo).port;
}

/** A grpc.health.v1 server by hand: the request frame is checked byte by byte, as a real server would read it. */
function grpcHealth(stream: ServerHttp2Stream, headers: Record<string, unknown>): void {
  const chunks: Buffer[] = [];
  stream.on('data', (c: Buffer) => chunks.push(c));
  stream.on('end', () => {
    const body = Buffer.concat(chunks);
    const ok = headers[':path'] === '/grpc.health.v1.Health/Check' && headers['content-type'] === 'application/grpc' && body[0] === 0 && body.readUInt32BE(1) === body.length - 5;
    // HealthCheckRequest: field 1 (tag 0x0a), length-delimited; absent for the empty service name.
    const message = body.subarray(5);
    const service = message.length === 0 ? '' : message[0] === 0x0a ? message.subarray(2, 2 + (message[1] as number)).toString('utf8') : '?';
    grpcRequests.push(service);
    const status = !ok ? undefined : ({ '': 1, orders: 1, billing: 2 } as Record<string, number>)[service];
    if (status === undefined) {
      // Trailers-only: grpc-status in the headers, no body.
      stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '5', 'grpc-message': 'unknown%20service' }, { endStream: true });
      return;
    }
    stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
    stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
    stream.end(Buffer.from([0, 0, 0, 0, 2, 0x08, status]));
  });
}

beforeAll(async () => {
  const app = createHttpServer((req, res) => {
    if (req.url === '/ok') res.writeHead(200).end('fine');
    else if (req.url === '/fail') res.writeHead(500).end('broken');
    else if (req.url === '/moved') res.writeHead(302, { location: 'http://elsewhere.example/' }).end();
    else if (req.url === '/headers') res.writeHead(req.headers['x-probe-token'] === 'secret' && req.headers.host === 'app.example' && req.headers['user-agent']?.startsWith('kube-probe/') === true ? 200 : 401).end();
    // /hang never answers: the probe's own timeout must end it.
  });
  httpPort = await listen(app);
  const identity = await (await createTestPki()).issue('app', 'shop');
  httpsPort = await listen(createHttpsServer({ cert: identity.certChainPem, key: identity.keyPem }, (req, res) => res.writeHead(req.url === '/ok' ? 204 : 503).end()));
  tcpOpenPort = await listen(createTcpServer((socket) => socket.destroy()));
  const closed = createTcpServer();
  closed.listen(0, '127.0.0.1');
  await once(closed, 'listening');
  tcpClosedPort = (closed.address() as AddressInfo).port;
  await new Promise((r) => closed.close(r));
  const h2 = createH2Server();
  h2.on('stream', (stream, headers) => grpcHealth(stream, headers as Record<string, unknown>));
  grpcPort = await listen(h2);
});

afterAll(async () => {
  for (const server of servers) {
    (server as HttpServer).closeAllConnections?.();
    await new Promise<void>((r) => server.close(() => r()));
  }
});

const http = (path: string, extra: Partial<AppProbe> = {}): AppProbe => ({ kind: 'http', port: httpPort, host: undefined, path, scheme: 'HTTP', headers: [], timeoutMs: 1_000, ...extra }) as AppProbe;

describe('running the app\'s original probes', () => {
  it('HTTP: 2xx and 3xx pass, 5xx fails, with the status in the detail', async () => {
    expect(await runAppProbe(http('/ok'))).toEqual({ ok: true, detail: `GET http://127.0.0.1:${httpPort}/ok: HTTP 200` });
    expect(await runAppProbe(http('/fail'))).toEqual({ ok: false, detail: `GET http://127.0.0.1:${httpPort}/fail: HTTP 500` });
    expect((await runAppProbe(http('/moved'))).ok).toBe(true);
  });

  it('HTTP: sends the probe\'s headers, Host included, and the kubelet\'s user agent', async () => {
    expect((await runAppProbe(http('/headers'))).ok).toBe(false);
    expect((await runAppProbe(http('/headers', { headers: [{ name: 'X-Probe-Token', value: 'secret' }, { name: 'Host', value: 'app.example' }] } as Partial<AppProbe>))).ok).toBe(true);
  });

  it('HTTPS: does not verify the app\'s certificate, as the kubelet does not', async () => {
    expect(await runAppProbe(http('/ok', { port: httpsPort, scheme: 'HTTPS' } as Partial<AppProbe>))).toMatchObject({ ok: true, detail: expect.stringContaining('HTTP 204') });
    expect((await runAppProbe(http('/other', { port: httpsPort, scheme: 'HTTPS' } as Partial<AppProbe>))).ok).toBe(false);
  });

  it('HTTP: a server that never answers fails at the probe\'s timeout', async () => {
    const result = await runAppProbe(http('/hang', { timeoutMs: 200 }));
    expect(result).toEqual({ ok: false, detail: `GET http://127.0.0.1:${httpPort}/hang: no answer within 200 ms` });
  });

  it('TCP: an open port passes, a closed one fails', async () => {
    expect(await runAppProbe({ kind: 'tcp', port: tcpOpenPort, host: undefined, timeoutMs: 1_000 })).toEqual({ ok: true, detail: `tcp connect to 127.0.0.1:${tcpOpenPort}: open` });
    const refused = await runAppProbe({ kind: 'tcp', port: tcpClosedPort, host: undefined, timeoutMs: 1_000 });
    expect(refused.ok).toBe(false);
    expect(refused.detail).toContain('ECONNREFUSED');
  });

  it('gRPC: SERVING passes, NOT_SERVING and an unknown service fail, nothing listening fails', async () => {
    expect(await runAppProbe({ kind: 'grpc', port: grpcPort, service: '', timeoutMs: 1_000 })).toEqual({ ok: true, detail: `gRPC health check of 127.0.0.1:${grpcPort}: SERVING` });
    expect(await runAppProbe({ kind: 'grpc', port: grpcPort, service: 'orders', timeoutMs: 1_000 })).toMatchObject({ ok: true });
    expect(await runAppProbe({ kind: 'grpc', port: grpcPort, service: 'billing', timeoutMs: 1_000 })).toEqual({ ok: false, detail: `gRPC health check of 127.0.0.1:${grpcPort} (service "billing"): NOT_SERVING` });
    expect(await runAppProbe({ kind: 'grpc', port: grpcPort, service: 'nope', timeoutMs: 1_000 })).toEqual({ ok: false, detail: `gRPC health check of 127.0.0.1:${grpcPort} (service "nope"): grpc-status 5 (unknown service)` });
    expect(grpcRequests).toEqual(['', 'orders', 'billing', 'nope']);
    expect((await runAppProbe({ kind: 'grpc', port: tcpClosedPort, service: '', timeoutMs: 1_000 })).ok).toBe(false);
    // A plain TCP server that closes at once is not a gRPC server.
    expect((await runAppProbe({ kind: 'grpc', port: tcpOpenPort, service: '', timeoutMs: 1_000 })).ok).toBe(false);
  });
});

describe('gRPC health messages', () => {
  it('frames the request as proto3 does', () => {
    expect(healthCheckRequestFrame('')).toEqual(Buffer.from([0, 0, 0, 0, 0]));
    expect(healthCheckRequestFrame('ab')).toEqual(Buffer.from([0, 0, 0, 0, 4, 0x0a, 2, 0x61, 0x62]));
    expect(healthCheckRequestFrame('x'.repeat(200)).subarray(5, 8)).toEqual(Buffer.from([0x0a, 0xc8, 0x01]));
  });

  it('reads the status, skips unknown fields, and says what is wrong with garbage', () => {
    expect(parseHealthCheckResponse(Buffer.from([0, 0, 0, 0, 2, 0x08, 1]))).toBe(1);
    expect(parseHealthCheckResponse(Buffer.from([0, 0, 0, 0, 0]))).toBe(0);
    expect(parseHealthCheckResponse(Buffer.from([0, 0, 0, 0, 6, 0x12, 2, 0x68, 0x69, 0x08, 2]))).toBe(2);
    expect(parseHealthCheckResponse(Buffer.from([1, 0, 0, 0, 0]))).toMatch(/compressed/);
    expect(parseHealthCheckResponse(Buffer.from([0, 0, 0, 0, 9, 0x08]))).toMatch(/frame of 9 bytes/);
    expect(parseHealthCheckResponse(Buffer.from([0, 0, 0, 0, 1, 0x08]))).toMatch(/malformed/);
    expect(parseHealthCheckResponse(Buffer.from([0, 0]))).toMatch(/shorter/);
  });
});

function get(port: number, path: string, method = 'GET'): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('the status port, as the kubelet probes it', () => {
  it('answers /app-health/<container>/<probe> with 200 or 503 from the original probe, 404 for an unknown one', async () => {
    const table = parseAppProbes(
      JSON.stringify({
        '/app-health/web/livez': { kind: 'http', port: httpPort, path: '/ok', scheme: 'HTTP', timeoutSeconds: 1 },
        '/app-health/web/readyz': { kind: 'http', port: httpPort, path: '/fail', timeoutSeconds: 1 },
        '/app-health/web/startupz': { kind: 'tcp', port: tcpOpenPort, timeoutSeconds: 1 },
        '/app-health/db/livez': { kind: 'tcp', port: tcpClosedPort, timeoutSeconds: 1 },
        '/app-health/grpc/readyz': { kind: 'grpc', port: grpcPort, service: 'orders', timeoutSeconds: 1 },
        '/app-health/grpc/livez': { kind: 'grpc', port: grpcPort, service: 'billing', timeoutSeconds: 1 },
      }),
      'test',
    );
    const server = createStatusServer({ probes: table, ready: () => ({ ready: false, reasons: ['no config from the control plane yet'] }), onQuit: () => undefined, log: silentLogger() });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const port = (server.address() as AddressInfo).port;
    try {
      const answers = await Promise.all([...table.keys()].map(async (path) => [path, (await get(port, path)).status] as const));
      expect(Object.fromEntries(answers)).toEqual({
        '/app-health/web/livez': 200,
        '/app-health/web/readyz': 503,
        '/app-health/web/startupz': 200,
        '/app-health/db/livez': 503,
        '/app-health/grpc/readyz': 200,
        '/app-health/grpc/livez': 503,
      });
      expect((await get(port, '/app-health/web/readyz')).body).toContain('HTTP 500');
      expect((await get(port, '/app-health/nope/livez')).status).toBe(404);
      expect(await get(port, '/healthz')).toEqual({ status: 200, body: 'ok\n' });
      expect(await get(port, '/ready')).toEqual({ status: 503, body: 'not ready: no config from the control plane yet\n' });
      expect((await get(port, '/app-health/web/livez', 'POST')).status).toBe(405);
    } finally {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });
});
