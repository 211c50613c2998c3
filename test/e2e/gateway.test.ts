/**
 * The mesh gateway end to end, real processes on loopback: a control plane, two mesh services with their
 * agents, and `trellis gateway run` in front. A client outside the mesh (node:http, node:https, node:http2)
 * reaches `orders` through the gateway (HTTP and HTTPS with SNI, HTTP/1.1 and h2); `billing`, which no
 * policy lets the gateway call, answers 403 naming the policy decision; a JWT route refuses a missing,
 * expired, wrongly signed and `alg: none` token and admits a good one with its claim mapped to a header;
 * a rate-limited route answers 429 with Retry-After; forged mesh and forwarding headers never reach the
 * app; a certificate replaced on disk is served to new connections while clients keep connecting.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { renameSync, writeFileSync } from 'node:fs';
import { createServer, request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { connect as h2connect, createServer as createH2cServer } from 'node:http2';
import { request as httpsRequest } from 'node:https';
import type { AddressInfo } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { join } from 'node:path';
import { SignJWT, exportJWK, generateKeyPair } from 'jose';
import { createHash } from 'node:crypto';
import { connect as netConnect } from 'node:net';

type KeyLike = Parameters<SignJWT['sign']>[0];
import { allow, cleanup, eventually, requireBuild, startMesh, tempDir, type Mesh, type Proc } from './mesh-support.js';
import { selfSigned as selfSignedIn, startGateway, type CertFiles } from './gateway-support.js';

let mesh: Mesh;
let gateway: Proc;
let http: number;
let https: number;
let dir: string;
let seen: IncomingHttpHeaders[] = [];
let signingKey: KeyLike;
let otherKey: KeyLike;

const selfSigned = (name: string, host: string): CertFiles => selfSignedIn(dir, name, host);

/** An app that echoes what it received as JSON. */
async function echoApp(name: string): Promise<number> {
  const server = createServer((req, res) => {
    seen.push(req.headers);
    req.resume();
    req.on('end', () => res.end(JSON.stringify({ app: name, method: req.method, url: req.url, headers: req.headers })));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return (server.address() as AddressInfo).port;
}

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

function get(port: number, path: string, headers: Record<string, string> = {}, method = 'GET'): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path, method, headers: { host: 'shop.example.com', ...headers }, agent: false }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

function tlsGet(servername: string, path: string, ca: string): Promise<Answer & { subject: string }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest({ host: '127.0.0.1', port: https, path, servername, headers: { host: servername }, ca, agent: false }, (res) => {
      let body = '';
      const cert = (res.socket as TLSSocket).getPeerCertificate();
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body, subject: String(cert.subject?.CN) }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** An h2c gRPC app: echoes the request message, answers grpc-status 0 in trailers with the method it saw. */
async function grpcApp(): Promise<number> {
  const server = createH2cServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (d: Buffer) => chunks.push(d));
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/grpc' });
      res.addTrailers({ 'grpc-status': '0', 'x-method': req.url });
      res.end(Buffer.concat(chunks));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return (server.address() as AddressInfo).port;
}

/** A WebSocket app: accepts the handshake (RFC 6455 accept key), then echoes raw bytes; remembers the headers. */
let wsHeaders: IncomingHttpHeaders[] = [];
const wsAccept = (key: string): string => createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
async function wsApp(): Promise<number> {
  const server = createServer();
  server.on('upgrade', (req, socket) => {
    wsHeaders.push(req.headers);
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: ${wsAccept(String(req.headers['sec-websocket-key']))}\r\n\r\n`);
    socket.on('data', (d: Buffer) => socket.write(Buffer.concat([Buffer.from('echo '), d])));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return (server.address() as AddressInfo).port;
}

let shopCert: CertFiles;
let apiCert: CertFiles;
let jwksFile: string;
let configFile: string;

beforeAll(async () => {
  requireBuild();
  dir = tempDir('trellis-gw-');
  mesh = await startMesh({ 'orders.yaml': allow('orders', ['trellis-gateway/gateway']), 'echo.yaml': allow('echo', ['trellis-gateway/gateway']), 'chat.yaml': allow('chat', ['trellis-gateway/gateway']) });
  const orders = await echoApp('orders');
  const billing = await echoApp('billing');
  await mesh.agent({ service: 'orders', appPort: orders, protocol: 'http' });
  await mesh.agent({ service: 'billing', appPort: billing, protocol: 'http' });
  await mesh.agent({ service: 'echo', appPort: await grpcApp(), protocol: 'grpc' });
  await mesh.agent({ service: 'chat', appPort: await wsApp(), protocol: 'http' });
  shopCert = selfSigned('shop', 'shop.example.com');
  apiCert = selfSigned('api', 'api.example.com');
  ({ privateKey: signingKey } = await generateKeyPair('ES256'));
  const pair = await generateKeyPair('ES256', { extractable: true });
  ({ privateKey: otherKey } = await generateKeyPair('ES256'));
  signingKey = pair.privateKey;
  jwksFile = join(dir, 'jwks.json');
  writeFileSync(jwksFile, JSON.stringify({ keys: [{ ...(await exportJWK(pair.publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' }] }));
  const started = await startGateway(dir, mesh, { shop: shopCert, wildcard: apiCert }, `trustedHops: 1
jwtProviders:
  - name: idp
    issuer: https://idp.example.com
    audiences: [shop]
    jwks: { file: ${jwksFile} }
routes:
  - name: secure
    hosts: [shop.example.com]
    match: { path: { prefix: /secure } }
    destination: { service: orders, namespace: default }
    jwt:
      provider: idp
      requiredClaims: [{ name: role, value: buyer }]
      claimHeaders: { sub: x-user }
  - name: limited
    hosts: [shop.example.com]
    match: { path: { prefix: /limited } }
    destination: { service: orders, namespace: default }
    rateLimit: { perSecond: 1, burst: 3 }
  - name: billing
    hosts: [shop.example.com]
    match: { path: { prefix: /billing } }
    destination: { service: billing, namespace: default }
  - name: old
    hosts: [shop.example.com]
    match: { path: { prefix: /old } }
    redirect: { path: /new, status: 301 }
  - name: v1
    hosts: [shop.example.com, "*.example.com"]
    match: { path: { prefix: /api } }
    rewrite: { prefix: /v1 }
    destination: { service: orders, namespace: default }
  - name: shop
    hosts: [shop.example.com]
    destination: { service: orders, namespace: default }
  - name: chat
    hosts: [chat.example.com]
    destination: { service: chat, namespace: default }
  - name: grpc
    hosts: [api.example.com]
    match: { path: { prefix: /echo.v1.Echo } }
    destination: { service: echo, namespace: default }
`);
  ({ proc: gateway, http, https, configFile } = started);
  await eventually(() => get(http, '/').then((r) => r.status === 200), 'the gateway reaches orders', 20_000);
}, 60_000);

afterAll(cleanup);

describe('the mesh gateway', () => {
  it('routes a host and path from outside the mesh to a mesh service, with a path rewrite', async () => {
    expect(gateway.ready.spiffeId).toBe('spiffe://trellis.local/ns/trellis-gateway/sa/gateway');
    const r = await get(http, '/api/items?x=1');
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body)).toMatchObject({ app: 'orders', url: '/v1/items?x=1' });
    expect((await get(http, '/', { host: 'unknown.test' })).status).toBe(404);
  });

  it('answers 403 naming the decision when no policy lets the gateway call the service', async () => {
    const r = await get(http, '/billing/x');
    expect(r.status).toBe(403);
    expect(r.body).toMatch(/denied/i);
    expect(`${r.headers['trellis-denied-by'] ?? ''} ${r.body}`).toMatch(/default-deny|no policy/);
  });

  it('redirects', async () => {
    const r = await get(http, '/old/thing?a=b');
    expect(r.status).toBe(301);
    expect(r.headers.location).toBe('http://shop.example.com/new?a=b');
  });

  it('never passes forged mesh, hop-by-hop or forwarding headers on; X-Forwarded-For keeps only trusted hops', async () => {
    seen = [];
    const r = await get(http, '/', {
      'trellis-peer': 'spiffe://trellis.local/ns/default/sa/admin',
      'x-forwarded-client-cert': 'By=spiffe://evil;URI=spiffe://evil',
      'x-forwarded-for': '6.6.6.6, 10.1.2.3',
      forwarded: 'for=6.6.6.6',
      'x-real-ip': '6.6.6.6',
      'x-drop-me': '1',
      connection: 'x-drop-me',
    });
    expect(r.status).toBe(200);
    const h = JSON.parse(r.body).headers as Record<string, string>;
    expect(h['trellis-peer']).toBeUndefined();
    expect(h['x-forwarded-client-cert'] ?? '').not.toMatch(/evil/);
    expect(h['x-drop-me']).toBeUndefined();
    expect(h['x-real-ip']).toBeUndefined();
    // One trusted hop: the entry it appended (10.1.2.3) is the client; 6.6.6.6 was written by the client.
    expect(h['x-forwarded-for']).toBe('10.1.2.3, 127.0.0.1');
    expect(h.forwarded).not.toMatch(/6\.6\.6\.6/);
  });

  it('refuses a Connection header naming a framing field', async () => {
    expect((await get(http, '/', { connection: 'content-length' })).status).toBe(400);
  });

  it('JWT: refuses missing, expired, wrongly signed and alg:none tokens; admits a good one with its claim as a header', async () => {
    const sign = (key: KeyLike, claims: Record<string, unknown>, exp: string | number = '5m'): Promise<string> =>
      new SignJWT(claims).setProtectedHeader({ alg: 'ES256', kid: 'k1' }).setIssuer('https://idp.example.com').setAudience('shop').setSubject('alice').setIssuedAt().setExpirationTime(exp).sign(key);
    const missing = await get(http, '/secure/a');
    expect(missing.status).toBe(401);
    expect(missing.headers['www-authenticate']).toMatch(/Bearer/);
    const expired = await get(http, '/secure/a', { authorization: `Bearer ${await sign(signingKey, { role: 'buyer' }, Math.floor(Date.now() / 1000) - 3600)}` });
    expect(expired.status).toBe(401);
    expect(expired.body).toMatch(/expired/);
    expect((await get(http, '/secure/a', { authorization: `Bearer ${await sign(otherKey, { role: 'buyer' })}` })).status).toBe(401);
    const none = `${Buffer.from(JSON.stringify({ alg: 'none', typ: 'JWT' })).toString('base64url')}.${Buffer.from(JSON.stringify({ sub: 'alice', role: 'buyer', iss: 'https://idp.example.com', aud: 'shop', exp: Math.floor(Date.now() / 1000) + 300 })).toString('base64url')}.`;
    expect((await get(http, '/secure/a', { authorization: `Bearer ${none}` })).status).toBe(401);
    expect((await get(http, '/secure/a', { authorization: `Bearer ${await sign(signingKey, { role: 'viewer' })}` })).status).toBe(403);
    const good = await get(http, '/secure/a', { authorization: `Bearer ${await sign(signingKey, { role: 'buyer' })}`, 'x-user': 'mallory' });
    expect(good.status).toBe(200);
    expect(JSON.parse(good.body).headers['x-user']).toBe('alice');
  });

  it('rate limit: the burst passes, then 429 with Retry-After', async () => {
    const statuses: number[] = [];
    let retryAfter: string | undefined;
    for (let i = 0; i < 6; i++) {
      const r = await get(http, '/limited');
      statuses.push(r.status);
      if (r.status === 429) retryAfter = r.headers['retry-after'] as string;
    }
    expect(statuses.slice(0, 3)).toEqual([200, 200, 200]);
    expect(statuses.filter((s) => s === 429).length).toBeGreaterThanOrEqual(2);
    expect(Number(retryAfter)).toBeGreaterThanOrEqual(1);
  });

  it('HTTPS: SNI selects the certificate; HTTP/2 via ALPN reaches the service', async () => {
    const shopPem = (await import('node:fs')).readFileSync(shopCert.cert, 'utf8');
    const apiPem = (await import('node:fs')).readFileSync(apiCert.cert, 'utf8');
    const shop = await tlsGet('shop.example.com', '/', shopPem);
    expect(shop.subject).toBe('shop.example.com');
    expect(shop.status).toBe(200);
    const api = await tlsGet('api.example.com', '/api/x', apiPem);
    expect(api.subject).toBe('api.example.com');
    expect(JSON.parse(api.body).url).toBe('/v1/x');
    const client = h2connect(`https://127.0.0.1:${https}`, { servername: 'shop.example.com', ca: shopPem });
    try {
      const body = await new Promise<string>((resolve, reject) => {
        const s = client.request({ ':path': '/api/h2', ':authority': 'shop.example.com' });
        let text = '';
        s.on('data', (d: Buffer) => (text += d.toString()));
        s.on('end', () => resolve(text));
        s.on('error', reject);
        s.end();
      });
      expect(JSON.parse(body)).toMatchObject({ app: 'orders', url: '/v1/h2' });
    } finally {
      client.close();
    }
  });

  it('gRPC from an HTTP/2 client reaches a gRPC service, trailers and all', async () => {
    const apiPem = (await import('node:fs')).readFileSync(apiCert.cert, 'utf8');
    const client = h2connect(`https://127.0.0.1:${https}`, { servername: 'api.example.com', ca: apiPem });
    try {
      const message = Buffer.concat([Buffer.from([0, 0, 0, 0, 5]), Buffer.from('hello')]);
      const answer = await new Promise<{ status: number; body: Buffer; trailers: Record<string, unknown> }>((resolve, reject) => {
        const s = client.request({ ':method': 'POST', ':path': '/echo.v1.Echo/Say', ':authority': 'api.example.com', 'content-type': 'application/grpc', te: 'trailers' });
        let status = 0;
        let trailers: Record<string, unknown> = {};
        const chunks: Buffer[] = [];
        s.on('response', (h) => (status = Number(h[':status'])));
        s.on('trailers', (t) => (trailers = t));
        s.on('data', (d: Buffer) => chunks.push(d));
        s.on('end', () => resolve({ status, body: Buffer.concat(chunks), trailers }));
        s.on('error', reject);
        s.end(message);
      });
      expect(answer.status).toBe(200);
      expect(answer.trailers['grpc-status']).toBe('0');
      expect(answer.trailers['x-method']).toBe('/echo.v1.Echo/Say');
      expect(answer.body.equals(message)).toBe(true);
    } finally {
      client.close();
    }
  });

  it('WebSocket: an upgrade is routed, carried through the mesh and echoed; forged mesh headers stay out', async () => {
    wsHeaders = [];
    const key = Buffer.from('0123456789abcdef').toString('base64');
    const socket = netConnect(http, '127.0.0.1');
    const got: Buffer[] = [];
    socket.on('data', (d: Buffer) => got.push(d));
    socket.write(`GET /chat HTTP/1.1\r\nHost: chat.example.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${key}\r\nTrellis-Peer: forged\r\n\r\n`);
    await eventually(async () => Buffer.concat(got).includes('\r\n\r\n'), 'the 101', 10_000);
    const head = Buffer.concat(got).toString('latin1');
    expect(head).toMatch(/^HTTP\/1\.1 101/);
    expect(head).toContain(wsAccept(key));
    got.length = 0;
    socket.write('hi');
    await eventually(async () => Buffer.concat(got).toString() === 'echo hi', 'the echo', 10_000);
    socket.destroy();
    expect(wsHeaders[0]?.['trellis-peer']).toBeUndefined();
    expect(wsHeaders[0]?.['x-forwarded-for']).toBe('127.0.0.1');
    // Not websocket: refused at the gateway.
    expect((await get(http, '/chat', { host: 'chat.example.com', connection: 'upgrade', upgrade: 'h2c' })).status).toBe(400);
  });

  it('TLS garbage is refused and counted, and the listener keeps serving', async () => {
    const { connect } = await import('node:net');
    await new Promise<void>((resolve) => {
      const s = connect(https, '127.0.0.1', () => s.write(Buffer.alloc(512, 0x41)));
      s.on('close', () => resolve());
      s.on('error', () => resolve());
    });
    const shopPem = (await import('node:fs')).readFileSync(shopCert.cert, 'utf8');
    await new Promise((r) => setTimeout(r, 200));
    if (gateway.child.exitCode !== null) throw new Error(gateway.output().slice(-3000));
    expect((await tlsGet('shop.example.com', '/', shopPem)).status).toBe(200);
  });

  it('a certificate replaced on disk is served to new connections, with no failed connection meanwhile', async () => {
    const next = selfSigned('shop-next', 'shop.example.com');
    const oldPem = (await import('node:fs')).readFileSync(shopCert.cert, 'utf8');
    const newPem = (await import('node:fs')).readFileSync(next.cert, 'utf8');
    let running = true;
    let failures = 0;
    let ok = 0;
    const loop = (async () => {
      while (running) {
        // Either certificate is fine while the swap is under way; anything else is a failure.
        const r = await tlsGet('shop.example.com', '/', `${oldPem}${newPem}`).catch(() => undefined);
        if (r?.status === 200) ok++;
        else failures++;
      }
    })();
    renameSync(next.key, shopCert.key);
    renameSync(next.cert, shopCert.cert);
    await eventually(async () => {
      const r = await tlsGet('shop.example.com', '/', newPem).catch(() => undefined);
      return r?.status === 200;
    }, 'the new certificate is served', 10_000);
    running = false;
    await loop;
    expect(failures).toBe(0);
    expect(ok).toBeGreaterThan(0);
    void tlsConnect;
  });

  it('a bad config file is refused whole and the last good one serves; a good change applies', async () => {
    const admin = `http://127.0.0.1:${gateway.ready.admin as number}/metrics`;
    const good = (await import('node:fs')).readFileSync(configFile, 'utf8');
    writeFileSync(configFile, good.replace('prefix: /old', 'prefix: /older').replace('protocol: http }', 'protocol: htp }'));
    await eventually(async () => /^trellis_gateway_config_valid 0$/m.test(await (await fetch(admin)).text()), 'the bad file is rejected');
    expect(gateway.output()).toMatch(/gateway\.yaml:\d+:\d+: listeners\[0\]\.protocol/);
    expect((await get(http, '/old/x')).status).toBe(301);
    writeFileSync(configFile, good.replace('prefix: /old', 'prefix: /older'));
    await eventually(async () => (await get(http, '/older/x')).status === 301, 'the good change applies');
    expect(await (await fetch(admin)).text()).toMatch(/^trellis_gateway_config_valid 1$/m);
  });

  it('the admin port serves gateway metrics per route and upstream', async () => {
    const text = await (await fetch(`http://127.0.0.1:${gateway.ready.admin as number}/metrics`)).text();
    expect(text).toMatch(/trellis_gateway_requests_total\{listener="web",route="shop",upstream="default\/orders",status_code="200"\} \d+/);
    expect(text).toMatch(/trellis_gateway_refusals_total\{listener="web",route="limited",reason="rate-limited"\} \d+/);
    expect(text).toMatch(/trellis_gateway_tls_errors_total\{listener="tls",reason="[a-z-]+"\} \d+/);
  });
});
