/**
 * The gateway's config changed while it serves, on loopback with real processes: a control plane and the
 * agents of `orders` and `catalog`, and the gateway in this process (gateway/gateway.ts) so that a reload
 * and `apply` can be awaited. A destination added by a reload answers the next request; one removed lets
 * the request in flight to it finish, then answers the gateway's typed failure; listeners are added,
 * removed and changed (limits, certificates, client-certificate auth) and the ones that go drain; a listener
 * that cannot bind, or a new mesh section, refuses the reload whole and the last good config keeps serving;
 * `apply` takes a config object validated as the file is.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync, writeFileSync } from 'node:fs';
import { Agent, createServer, request, type IncomingHttpHeaders } from 'node:http';
import { connect as h2connect } from 'node:http2';
import { request as httpsRequest } from 'node:https';
import { createServer as createNetServer, type AddressInfo, type Server as NetServer } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { join } from 'node:path';
import { silentLogger } from '../../common/log.js';
import { parseGatewayConfig } from '../../gateway/config-reader.js';
import { startGateway, type RunningGateway } from '../../gateway/gateway.js';
import { allow, cleanup, eventually, freePort, requireBuild, startMesh, tempDir, type Mesh } from './mesh-support.js';
import { selfSigned, type CertFiles } from './gateway-support.js';

let mesh: Mesh;
let dir: string;
let file: string;
let head: string;
let gw: RunningGateway;
let webPort: number;
let shop: CertFiles;
let other: CertFiles;

/** An app answering `<name> <path>`; `/slow` answers after 1.5 s. */
async function app(name: string): Promise<number> {
  const server = createServer((req, res) => {
    req.resume();
    const answer = (): void => void res.end(`${name} ${req.url}`);
    if (req.url?.includes('/slow') === true) setTimeout(answer, 1_500);
    else answer();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return (server.address() as AddressInfo).port;
}

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

function get(port: number, path: string, options: { agent?: Agent; headers?: Record<string, string> } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, headers: { host: 'shop.example.com', ...options.headers }, agent: options.agent ?? false }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

function tlsGet(port: number, options: { ca: string; cert?: CertFiles }): Promise<{ status: number; subject: string }> {
  return new Promise((resolve, reject) => {
    const tls = options.cert === undefined ? {} : { cert: readFileSync(options.cert.cert), key: readFileSync(options.cert.key) };
    const req = httpsRequest({ host: '127.0.0.1', port, path: '/orders/x', servername: 'shop.example.com', headers: { host: 'shop.example.com' }, ca: options.ca, agent: false, ...tls }, (res) => {
      const subject = String((res.socket as TLSSocket).getPeerCertificate().subject?.CN);
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, subject }));
    });
    req.on('error', reject);
    req.end();
  });
}

const ORDERS = `  - { name: orders, hosts: [shop.example.com], match: { path: { prefix: /orders } }, destination: { service: orders, namespace: default } }\n`;
const CATALOG = `  - { name: catalog, hosts: [shop.example.com], match: { path: { prefix: /catalog } }, destination: { service: catalog, namespace: default } }\n`;

/** The file: the fixed head (mesh, identity, admin), then `listeners` and `routes` as given. */
function config(listeners: string, routes: string, extra = ''): string {
  return `${head}${extra}listeners:\n${listeners}routes:\n${routes}`;
}
const web = (extra = ''): string => `  - { name: web, port: ${webPort}, address: 127.0.0.1, protocol: http }\n${extra}`;

async function reloadWith(text: string): Promise<void> {
  writeFileSync(file, text);
  await gw.reload();
}

const port = (name: string): number => (gw.listeners().find((l) => l.name === name)?.address.port ?? 0);

beforeAll(async () => {
  requireBuild();
  dir = tempDir('trellis-gw-live-');
  mesh = await startMesh({ 'orders.yaml': allow('orders', ['trellis-gateway/gateway']), 'catalog.yaml': allow('catalog', ['trellis-gateway/gateway']) });
  await mesh.agent({ service: 'orders', appPort: await app('orders'), protocol: 'http' });
  await mesh.agent({ service: 'catalog', appPort: await app('catalog'), protocol: 'http' });
  shop = selfSigned(dir, 'shop', 'shop.example.com');
  other = selfSigned(dir, 'other', 'shop.example.com');
  const token = await mesh.token('gateway', '10m', 'trellis-gateway');
  head = `name: gateway
namespace: trellis-gateway
mesh: { control: "${mesh.api()}", caFile: ${join(mesh.dataDir, 'trust-bundle.pem')}, tokenFile: ${token} }
admin: { enabled: false }
accessLog: false
`;
  webPort = await freePort();
  file = join(dir, 'gateway.yaml');
  writeFileSync(file, config(web(), ORDERS));
  gw = await startGateway(parseGatewayConfig(readFileSync(file, 'utf8'), file), silentLogger(), { pollIntervalMs: 60_000, reloadGraceMs: 5_000 });
  await eventually(() => get(webPort, '/orders/x').then((r) => r.status === 200), 'the gateway reaches orders', 20_000);
}, 90_000);

afterAll(async () => {
  await gw?.stop(0);
  await cleanup();
});

describe('gateway destinations change without restart', () => {
  it('a destination added by a reload answers the very next request', async () => {
    expect((await get(webPort, '/catalog/x')).status).toBe(404);
    await reloadWith(config(web(), ORDERS + CATALOG));
    const r = await get(webPort, '/catalog/x');
    expect(r).toMatchObject({ status: 200, body: 'catalog /catalog/x' });
    expect(gw.agent.addresses().listeners.some((l) => l.service === 'catalog' && l.address !== undefined)).toBe(true);
  }, 30_000);

  it('a destination removed lets the request in flight finish, then answers the typed failure', async () => {
    const inFlight = get(webPort, '/catalog/slow');
    await new Promise((r) => setTimeout(r, 300));
    await reloadWith(config(web(), ORDERS));
    const after = await get(webPort, '/catalog/x');
    expect(after.status).toBe(404);
    expect(after.headers['trellis-error']).toBe('TRELLIS_GATEWAY_NO_ROUTE');
    expect(await inFlight).toMatchObject({ status: 200, body: 'catalog /catalog/slow' });
    await eventually(async () => !gw.agent.addresses().listeners.some((l) => l.service === 'catalog'), 'the sidecar listener for catalog is gone', 10_000);
    expect((await get(webPort, '/orders/x')).status).toBe(200);
  }, 30_000);
});

describe('gateway listeners change without restart', () => {
  it('adds a listener, and a removed one drains: its request in flight finishes, new connections are refused', async () => {
    await reloadWith(config(web('  - { name: extra, port: 0, address: 127.0.0.1, protocol: http }\n'), ORDERS));
    const extra = port('extra');
    expect((await get(extra, '/orders/x')).status).toBe(200);
    const inFlight = get(extra, '/orders/slow');
    await new Promise((r) => setTimeout(r, 300));
    await reloadWith(config(web(), ORDERS));
    expect(gw.listeners().map((l) => l.name)).toEqual(['web']);
    await expect(get(extra, '/orders/x')).rejects.toThrow(/ECONNREFUSED/);
    const done = await inFlight;
    expect(done).toMatchObject({ status: 200, body: 'orders /orders/slow' });
    expect(done.headers.connection).toBe('close');
  }, 30_000);

  it('a changed listener on the same port is replaced: a kept-alive connection is closed after its request, new ones get the new limits', async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const big = { 'x-big': 'a'.repeat(6_000) };
    expect((await get(webPort, '/orders/x', { agent, headers: big })).status).toBe(200);
    const inFlight = get(webPort, '/orders/slow', { agent });
    await new Promise((r) => setTimeout(r, 300));
    await reloadWith(config(web(), ORDERS, 'limits: { maxHeaderBytes: 4096 }\n'));
    const done = await inFlight;
    expect(done.status).toBe(200);
    expect(done.headers.connection).toBe('close');
    expect((await get(webPort, '/orders/x', { headers: big })).status).toBe(431);
    expect((await get(webPort, '/orders/x')).status).toBe(200);
    agent.destroy();
  }, 30_000);

  it('changes an HTTPS listener\'s certificates and client-certificate auth', async () => {
    const tls = (cert: CertFiles, clientCa?: string): string => `  - name: tls
    port: 0
    address: 127.0.0.1
    protocol: https
    tls:
      certificates: [{ hosts: [shop.example.com], certificate: ${cert.cert}, key: ${cert.key} }]
${clientCa === undefined ? '' : `      clientCertificate: { caFile: ${clientCa}, required: true }\n`}`;
    await reloadWith(config(web(tls(shop)), ORDERS));
    const shopCa = readFileSync(shop.cert, 'utf8');
    const otherCa = readFileSync(other.cert, 'utf8');
    expect(await tlsGet(port('tls'), { ca: shopCa })).toMatchObject({ status: 200 });
    await reloadWith(config(web(tls(other)), ORDERS));
    await expect(tlsGet(port('tls'), { ca: shopCa })).rejects.toThrow();
    expect((await tlsGet(port('tls'), { ca: otherCa })).status).toBe(200);
    await reloadWith(config(web(tls(other, shop.cert)), ORDERS));
    await expect(tlsGet(port('tls'), { ca: otherCa })).rejects.toThrow();
    expect((await tlsGet(port('tls'), { ca: otherCa, cert: shop })).status).toBe(200);
  }, 30_000);
});

describe('an HTTPS listener removed', () => {
  it('sends GOAWAY to its HTTP/2 clients and lets their streams in flight finish', async () => {
    await reloadWith(config(web(`  - name: tls
    port: 0
    address: 127.0.0.1
    protocol: https
    tls: { certificates: [{ hosts: [shop.example.com], certificate: ${shop.cert}, key: ${shop.key} }] }
`), ORDERS));
    const session = h2connect(`https://127.0.0.1:${port('tls')}`, { ca: readFileSync(shop.cert, 'utf8'), servername: 'shop.example.com' });
    session.on('error', () => undefined);
    const goaway = new Promise<boolean>((r) => session.once('goaway', () => r(true)));
    const answer = new Promise<{ status: number; body: string }>((resolve, reject) => {
      const stream = session.request({ ':path': '/orders/slow', ':authority': 'shop.example.com' });
      let status = 0;
      let body = '';
      stream.on('response', (h) => (status = Number(h[':status'])));
      stream.on('data', (d: Buffer) => (body += d.toString()));
      stream.on('end', () => resolve({ status, body }));
      stream.on('error', reject);
    });
    await new Promise((r) => setTimeout(r, 300));
    await reloadWith(config(web(), ORDERS));
    expect(await goaway).toBe(true);
    expect(await answer).toEqual({ status: 200, body: 'orders /orders/slow' });
    session.close();
  }, 30_000);
});

describe('a reload refused whole', () => {
  let squatter: NetServer;

  beforeAll(async () => {
    squatter = createNetServer();
    await new Promise<void>((r) => squatter.listen(0, '127.0.0.1', r));
  });
  afterAll(() => new Promise<void>((r) => squatter.close(() => r())));

  it('a listener that cannot bind refuses the reload; routes, destinations and listeners in force stay', async () => {
    await reloadWith(config(web(), ORDERS));
    const before = gw.config();
    const taken = (squatter.address() as AddressInfo).port;
    const err = await reloadWith(config(web(`  - { name: taken, port: ${taken}, address: 127.0.0.1, protocol: http }\n`), ORDERS + CATALOG)).catch((e: unknown) => e as Error & { code?: string });
    expect(err).toBeInstanceOf(Error);
    expect((err as { code?: string }).code).toBe('TRELLIS_GATEWAY_RELOAD_REFUSED');
    expect((err as Error).message).toMatch(new RegExp(`listener taken cannot bind 127\\.0\\.0\\.1:${taken}.*EADDRINUSE`));
    expect(gw.config()).toBe(before);
    expect(gw.listeners().map((l) => l.name)).toEqual(['web']);
    expect((await get(webPort, '/catalog/x')).status).toBe(404);
    expect((await get(webPort, '/orders/x')).status).toBe(200);
    expect(await gw.metrics.configValid.get()).toMatchObject({ values: [{ value: 0 }] });
    await eventually(async () => !gw.agent.addresses().listeners.some((l) => l.service === 'catalog'), 'the destination taken back', 10_000);
  }, 30_000);

  it('a new mesh section needs a restart and says so', async () => {
    const err = await reloadWith(config(web(), ORDERS + CATALOG).replace('tokenFile:', 'zone: elsewhere, tokenFile:')).catch((e: unknown) => e as Error);
    expect((err as Error).message).toMatch(/mesh section changed.*restart the gateway/);
    expect((await get(webPort, '/catalog/x')).status).toBe(404);
  });
});

describe('RunningGateway.apply', () => {
  it('puts a config object in force, validated as the file is, and refuses a bad one whole naming its source', async () => {
    const value = {
      name: 'gateway',
      namespace: 'trellis-gateway',
      mesh: { control: mesh.api(), caFile: gw.config().mesh.caFile, tokenFile: gw.config().mesh.tokenFile },
      admin: { enabled: false },
      accessLog: false,
      listeners: [{ name: 'web', port: webPort, address: '127.0.0.1', protocol: 'http' }],
      routes: [
        { name: 'catalog', hosts: ['shop.example.com'], destination: { service: 'catalog', namespace: 'default' } },
      ],
    };
    const applied = await gw.apply(value, 'httproute default/shop');
    expect(applied.routes.map((r) => r.name)).toEqual(['catalog']);
    expect((await get(webPort, '/anything')).body).toBe('catalog /anything');
    const bad = { ...value, routes: [{ name: 'Bad Name', destination: { service: 'catalog' } }] };
    const err = await gw.apply(bad, 'httproute default/broken').catch((e: unknown) => e as Error & { code?: string });
    expect((err as { code?: string }).code).toBe('TRELLIS_CONFIG_INVALID');
    expect(String((err as { issues?: unknown }).issues ?? (err as Error).message)).toMatch(/httproute default\/broken/);
    expect(gw.config()).toBe(applied);
    expect((await get(webPort, '/anything')).status).toBe(200);
  }, 30_000);
});
