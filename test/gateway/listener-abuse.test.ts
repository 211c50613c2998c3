/**
 * The gateway's listeners under attack, on real loopback sockets and TLS: request smuggling, oversized
 * and slow heads, oversized bodies, HTTP/2 rapid reset and oversized header lists, TLS garbage. The
 * listener forwards to a plain app through the real forwarder (the mesh hop is replaced by the app's
 * port, which is all the forwarder sees); each attack must end in a refusal that stays in its connection
 * while an honest client keeps being served.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { connect as h2connect, constants as h2 } from 'node:http2';
import { connect, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { silentLogger } from '../../common/log.js';
import { parseGatewayConfig } from '../../gateway/config-reader.js';
import { createEdgeChecks } from '../../gateway/edge.js';
import { MeshForwarder } from '../../gateway/forwarder.js';
import { startListener, type RunningListener } from '../../gateway/listeners.js';
import { GatewayMetrics } from '../../gateway/metrics.js';
import { createRequestHandler } from '../../gateway/request-handler.js';
import { RouteTable } from '../../gateway/route-table.js';

let dir: string;
let app: Server;
let appRequests: { url: string | undefined; headers: IncomingHttpHeaders }[] = [];
let plain: RunningListener;
let tls: RunningListener;
let pem: string;
let metrics: GatewayMetrics;
let registry: Registry;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'trellis-gw-abuse-'));
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1', '-subj', '/CN=shop.test', '-addext', 'subjectAltName=DNS:shop.test', '-keyout', join(dir, 'k.pem'), '-out', join(dir, 'c.pem')], { stdio: 'ignore' });
  pem = readFileSync(join(dir, 'c.pem'), 'utf8');
  app = createServer((req, res) => {
    appRequests.push({ url: req.url, headers: req.headers });
    req.resume();
    req.on('end', () => res.end('ok'));
  });
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
  const appPort = (app.address() as AddressInfo).port;
  const config = parseGatewayConfig(`
mesh: { control: "https://127.0.0.1:1" }
limits: { maxHeaderBytes: 4096, maxBodyBytes: 1024, headersTimeout: 1s, requestTimeout: 3s }
listeners:
  - { name: web, port: 0, address: 127.0.0.1, protocol: http }
  - { name: tls, port: 0, address: 127.0.0.1, protocol: https, tls: { certificates: [{ certificate: c.pem, key: k.pem }], minVersion: TLSv1.3 } }
routes:
  - { name: all, destination: { service: app, namespace: test } }
`, join(dir, 'gw.yaml'));
  registry = new Registry();
  metrics = new GatewayMetrics(registry);
  const log = silentLogger();
  const state = { config, routes: new RouteTable(config), edge: createEdgeChecks(config, metrics, log) };
  const forward = new MeshForwarder({ ports: () => appPort, maxBodyBytes: () => config.limits.maxBodyBytes, log });
  const handler = (name: 'web' | 'tls') => createRequestHandler({ state: () => state, forward, metrics, log }, config.listeners.find((l) => l.name === name) as (typeof config.listeners)[number]);
  plain = await startListener(config.listeners[0] as (typeof config.listeners)[number], config.limits, handler('web'), metrics, log);
  tls = await startListener(config.listeners[1] as (typeof config.listeners)[number], config.limits, handler('tls'), metrics, log);
});

afterAll(async () => {
  await plain?.close(0);
  await tls?.close(0);
  app?.closeAllConnections();
  app?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Raw bytes on one connection; resolves with everything the gateway sent before it closed (or 3 s). */
function raw(bytes: string, port = plain.address().port, waitMs = 3_000): Promise<string> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1', () => s.write(bytes));
    let got = '';
    s.on('data', (d: Buffer) => (got += d.toString('latin1')));
    const done = (): void => resolve(got);
    s.on('close', done);
    s.on('error', done);
    setTimeout(() => {
      s.destroy();
    }, waitMs).unref();
  });
}

const statusOf = (text: string): number => Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0);

describe('gateway listener under attack', () => {
  it('refuses request smuggling: Content-Length with Transfer-Encoding, two lengths, bare LF; the app never sees a second request', async () => {
    appRequests = [];
    const smuggle = 'POST / HTTP/1.1\r\nHost: shop.test\r\nContent-Length: 44\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: shop.test\r\n\r\n';
    expect(statusOf(await raw(smuggle))).toBe(400);
    expect(statusOf(await raw('POST / HTTP/1.1\r\nHost: shop.test\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab'))).toBe(400);
    expect(statusOf(await raw('GET / HTTP/1.1\nHost: shop.test\n\n'))).toBe(400);
    expect(statusOf(await raw('GET / HTTP/1.1\r\nHost: shop.test\r\nX: a\r\n b\r\n\r\n'))).toBe(400);
    expect(appRequests.map((r) => r.url)).not.toContain('/admin');
  });

  it('refuses a request without Host, and a path that cannot be judged', async () => {
    expect(statusOf(await raw('GET / HTTP/1.1\r\n\r\n'))).toBe(400);
    const bad = await raw('GET /a/..;/admin HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n');
    expect(statusOf(bad)).toBe(400);
    expect(bad).toMatch(/TRELLIS_GATEWAY_BAD_REQUEST/);
  });

  it('answers 431 to an oversized head and 413 to an oversized body (declared or streamed)', async () => {
    expect(statusOf(await raw(`GET / HTTP/1.1\r\nHost: shop.test\r\nX-Big: ${'a'.repeat(8000)}\r\n\r\n`))).toBe(431);
    const declared = await raw(`POST / HTTP/1.1\r\nHost: shop.test\r\nContent-Length: 5000\r\nConnection: close\r\n\r\n`);
    expect(statusOf(declared)).toBe(413);
    expect(declared).toMatch(/TRELLIS_GATEWAY_BODY_TOO_LARGE/);
    const chunk = 'a'.repeat(600);
    const streamed = await raw(`POST / HTTP/1.1\r\nHost: shop.test\r\nTransfer-Encoding: chunked\r\n\r\n258\r\n${chunk}\r\n258\r\n${chunk}\r\n0\r\n\r\n`);
    expect(statusOf(streamed)).toBe(413);
  });

  it('cuts a slow client that does not finish its head within headersTimeout', async () => {
    const started = Date.now();
    const answer = await raw('GET / HTTP/1.1\r\nHost: shop.test\r\nX-Slow: ', plain.address().port, 8_000);
    expect(Date.now() - started).toBeLessThan(6_000);
    expect(answer === '' || statusOf(answer) === 408).toBe(true);
  });

  it('cuts a slow HTTPS HTTP/1.1 client too (the head timeout is checked on connections handed over by TLS)', async () => {
    const { connect: tlsConnect } = await import('node:tls');
    const started = Date.now();
    const answer = await new Promise<string>((resolve) => {
      const s = tlsConnect({ port: tls.address().port, host: '127.0.0.1', servername: 'shop.test', ca: pem, ALPNProtocols: ['http/1.1'] }, () => s.write('GET / HTTP/1.1\r\nHost: shop.test\r\nX-Slow: '));
      let got = '';
      s.on('data', (d: Buffer) => (got += d.toString('latin1')));
      s.on('error', () => resolve(got));
      s.on('close', () => resolve(got));
      setTimeout(() => {
        s.destroy();
        resolve('still open');
      }, 8_000);
    });
    expect(answer).not.toBe('still open');
    expect(Date.now() - started).toBeLessThan(6_000);
    expect(answer === '' || statusOf(answer) === 408).toBe(true);
  });

  it('TLS garbage and a TLS 1.2 client on a TLS 1.3 listener are refused and counted', async () => {
    await raw('\x16\x03\x01\x00\x05hello garbage'.repeat(10), tls.address().port, 1_000);
    const { connect: tlsConnect } = await import('node:tls');
    const refused = await new Promise<boolean>((resolve) => {
      const s = tlsConnect({ port: tls.address().port, host: '127.0.0.1', servername: 'shop.test', ca: pem, maxVersion: 'TLSv1.2' }, () => resolve(false));
      s.on('error', () => resolve(true));
    });
    expect(refused).toBe(true);
    await new Promise((r) => setTimeout(r, 100));
    const text = await registry.metrics();
    expect(text).toMatch(/trellis_gateway_tls_errors_total\{listener="tls",reason="[a-z-]+"\} [1-9]/);
  });

  it('ends an HTTP/2 connection that resets streams rapidly (GOAWAY ENHANCE_YOUR_CALM), and serves another', async () => {
    const client = h2connect(`https://127.0.0.1:${tls.address().port}`, { servername: 'shop.test', ca: pem });
    client.on('error', () => undefined);
    const goaway = new Promise<number>((resolve) => client.once('goaway', (code: number) => resolve(code)));
    // Streams made before the session is up are dropped by the client without a frame sent.
    await new Promise((r) => client.once('remoteSettings', r));
    // Batches below the listener's 128 concurrent streams, each sent before it is reset: a client's
    // nghttp2 never sends a stream it cancels while the server's stream limit holds it back.
    for (let batch = 0; batch < 6 && !client.destroyed && !client.closed; batch++) {
      const streams = Array.from({ length: 100 }, () => {
        const s = client.request({ ':path': '/', ':authority': 'shop.test' });
        s.on('error', () => undefined);
        return s;
      });
      await new Promise((r) => setTimeout(r, 5));
      for (const s of streams) s.close(h2.NGHTTP2_CANCEL);
      await new Promise((r) => setTimeout(r, 5));
    }
    expect(await Promise.race([goaway, new Promise<number>((r) => setTimeout(() => r(-1), 5_000))])).toBe(h2.NGHTTP2_ENHANCE_YOUR_CALM);
    client.destroy();
    const honest = h2connect(`https://127.0.0.1:${tls.address().port}`, { servername: 'shop.test', ca: pem });
    try {
      const status = await new Promise<number>((resolve, reject) => {
        const s = honest.request({ ':path': '/', ':authority': 'shop.test', 'trellis-peer': 'forged' });
        s.on('response', (h) => resolve(Number(h[':status'])));
        s.on('error', reject);
        s.resume();
        s.end();
      });
      expect(status).toBe(200);
      expect(appRequests.at(-1)?.headers['trellis-peer']).toBeUndefined();
    } finally {
      honest.close();
    }
  });

  it('refuses an HTTP/2 header list over the limit without touching other connections', async () => {
    const client = h2connect(`https://127.0.0.1:${tls.address().port}`, { servername: 'shop.test', ca: pem });
    client.on('error', () => undefined);
    await new Promise((r) => client.once('remoteSettings', r));
    const outcome = await new Promise<string>((resolve) => {
      const s = client.request({ ':path': '/', ':authority': 'shop.test', 'x-big': 'a'.repeat(8000) });
      s.on('response', (h) => resolve(String(h[':status'])));
      s.on('error', () => resolve('reset'));
      s.on('close', () => resolve('closed'));
      s.end();
    });
    expect(outcome === '431' || outcome === 'reset' || outcome === 'closed').toBe(true);
    client.destroy();
    expect(statusOf(await raw('GET / HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n'))).toBe(200);
  });
});
