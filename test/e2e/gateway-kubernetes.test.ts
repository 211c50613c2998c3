/**
 * `trellis gateway run --kubernetes` end to end: a real gateway process, a real mesh (control plane and a
 * meshed `orders` on loopback), and a fake Kubernetes API server in this process that speaks the API's
 * JSON (list, watch, status subresource with 409 on a stale resourceVersion). The Gateway API objects
 * drive the gateway: a route is served, changed without a restart, a bad route is refused by its status
 * while the rest serves, a rotated Secret is the certificate served next, the API server going away and
 * coming back resumes the watches, a Gateway of another class is left alone, and statuses carry
 * observedGeneration and are not written again when nothing changed.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer, request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { join } from 'node:path';
import { PATHS, startFakeGatewayApi, type FakeKubeApi } from '../control/fixtures/k8s-fake-api.js';
import { allow, cleanup, eventually, freePort, requireBuild, spawnTrellis, startMesh, tempDir, type Mesh, type Proc } from './mesh-support.js';

const G = 'gateway.networking.k8s.io/v1';
const CONTROLLER = 'trellis.dev/gateway-controller';
let api: FakeKubeApi;
let mesh: Mesh;
let gateway: Proc;
let dir: string;
let httpPort: number;
let httpsPort: number;
let ordersPort: number;

async function echoApp(name: string): Promise<number> {
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => res.end(JSON.stringify({ app: name, url: req.url })));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return (server.address() as AddressInfo).port;
}

function get(path: string, host = 'shop.example.com'): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: httpPort, path, headers: { host }, agent: false }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** The fingerprint of the certificate the HTTPS listener presents for `servername`. */
function peerFingerprint(servername: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: '127.0.0.1', port: httpsPort, servername, rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] }, () => {
      resolve(socket.getPeerX509Certificate()?.fingerprint256 ?? '');
      socket.end();
    });
    socket.on('error', reject);
  });
}

function tlsSecret(name: string, cn: string): { secret: Record<string, unknown>; fingerprint: string } {
  const cert = join(dir, `${name}-${Date.now()}.crt`);
  const key = join(dir, `${name}-${Date.now()}.key`);
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj', `/CN=${cn}`, '-addext', `subjectAltName=DNS:${cn}`, '-keyout', key, '-out', cert], { stdio: 'ignore' });
  const fingerprint = execFileSync('openssl', ['x509', '-in', cert, '-noout', '-fingerprint', '-sha256']).toString().split('=')[1]?.trim() ?? '';
  return {
    secret: { apiVersion: 'v1', kind: 'Secret', type: 'kubernetes.io/tls', metadata: { name, namespace: 'default' }, data: { 'tls.crt': readFileSync(cert).toString('base64'), 'tls.key': readFileSync(key).toString('base64') } },
    fingerprint,
  };
}

function route(name: string, spec: Record<string, unknown>, namespace = 'default'): Record<string, unknown> {
  return { apiVersion: G, kind: 'HTTPRoute', metadata: { name, namespace, creationTimestamp: '2026-01-01T00:00:00Z' }, spec: { parentRefs: [{ name: 'edge', namespace: 'default' }], hostnames: ['shop.example.com'], ...spec } };
}

const backend = (): Record<string, unknown> => ({ name: 'orders', port: ordersPort });
type Cond = { type: string; status: string; reason: string; message: string; observedGeneration: number; lastTransitionTime: string };
const cond = (conds: unknown, type: string): Cond | undefined => (conds as Cond[] | undefined)?.find((c) => c.type === type);
const status = (path: string, key: string): Record<string, unknown> => (api.get(path, key)?.status ?? {}) as Record<string, unknown>;
const parents = (key: string): { controllerName: string; parentRef: { name: string }; conditions: Cond[] }[] => (status(PATHS.httpRoutes, key).parents ?? []) as never;

let firstCert: { fingerprint: string };

beforeAll(async () => {
  requireBuild();
  dir = tempDir('trellis-gwk8s-');
  mesh = await startMesh({ 'orders.yaml': allow('orders', ['trellis-gateway/gateway']) });
  ordersPort = await echoApp('orders');
  await mesh.agent({ service: 'orders', appPort: ordersPort, protocol: 'http' });
  api = await startFakeGatewayApi();
  [httpPort, httpsPort] = [await freePort(), await freePort()];
  api.apply(PATHS.namespaces, { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'default' } });
  api.apply(PATHS.services, { apiVersion: 'v1', kind: 'Service', metadata: { name: 'orders', namespace: 'default' }, spec: { ports: [{ name: 'http', port: ordersPort, protocol: 'TCP' }] } });
  api.apply(PATHS.gatewayClasses, { apiVersion: G, kind: 'GatewayClass', metadata: { name: 'trellis' }, spec: { controllerName: CONTROLLER } });
  api.apply(PATHS.gatewayClasses, { apiVersion: G, kind: 'GatewayClass', metadata: { name: 'other' }, spec: { controllerName: 'example.com/other-controller' } });
  const cert = tlsSecret('shop-tls', 'shop.example.com');
  firstCert = cert;
  api.apply(PATHS.secrets, cert.secret);
  api.apply(PATHS.secrets, { apiVersion: 'v1', kind: 'Secret', type: 'Opaque', metadata: { name: 'not-tls', namespace: 'default' }, data: { password: 'c2VjcmV0' } });
  api.apply(PATHS.gateways, {
    apiVersion: G, kind: 'Gateway', metadata: { name: 'edge', namespace: 'default' },
    spec: {
      gatewayClassName: 'trellis',
      listeners: [
        { name: 'web', port: httpPort, protocol: 'HTTP' },
        { name: 'tls', port: httpsPort, protocol: 'HTTPS', hostname: 'shop.example.com', tls: { mode: 'Terminate', certificateRefs: [{ name: 'shop-tls' }] } },
      ],
    },
  });
  api.apply(PATHS.httpRoutes, route('shop', { rules: [{ matches: [{ path: { type: 'PathPrefix', value: '/api' } }], backendRefs: [backend()] }] }));
  const token = await mesh.token('gateway', '10m', 'trellis-gateway');
  const base = join(dir, 'base.yaml');
  writeFileSync(base, `name: gateway\nnamespace: trellis-gateway\nmesh:\n  control: ${mesh.api()}\n  caFile: ${join(mesh.dataDir, 'trust-bundle.pem')}\n  tokenFile: ${token}\nadmin: { address: 127.0.0.1, port: 0 }\n`);
  const kubeconfig = join(dir, 'kubeconfig');
  writeFileSync(kubeconfig, `apiVersion: v1\nkind: Config\nclusters: [{ name: fake, cluster: { server: "${api.url}", insecure-skip-tls-verify: true } }]\nusers: [{ name: gw, user: { token: gateway-sa-token } }]\ncontexts: [{ name: fake, context: { cluster: fake, user: gw } }]\ncurrent-context: fake\n`);
  gateway = await spawnTrellis(['gateway', 'run', '--kubernetes', '--gateway', 'default/edge', '--config', base, '--kubeconfig', kubeconfig, '--listen-address', '127.0.0.1', '--log-level', 'warn'], 60_000);
  await eventually(() => get('/api/x').then((r) => r.status === 200), 'the gateway reaches orders', 20_000);
}, 120_000);

afterAll(async () => {
  await cleanup();
  await api?.close();
});

describe('the gateway driven by the Gateway API', () => {
  it('serves an HTTPRoute into the mesh and writes the statuses, with observedGeneration', async () => {
    const r = await get('/api/items');
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body)).toMatchObject({ app: 'orders', url: '/api/items' });
    expect((await get('/elsewhere')).status).toBe(404);
    expect(gateway.ready.listeners).toEqual({ web: httpPort, tls: httpsPort });
    await eventually(async () => cond(status(PATHS.gateways, 'default/edge').conditions, 'Programmed')?.status === 'True', 'Gateway Programmed');
    const gw = status(PATHS.gateways, 'default/edge');
    expect(cond(gw.conditions, 'Accepted')).toMatchObject({ status: 'True', reason: 'Accepted', observedGeneration: 1 });
    expect(cond(gw.conditions, 'Programmed')).toMatchObject({ status: 'True', reason: 'Programmed', observedGeneration: 1 });
    const listeners = gw.listeners as { name: string; attachedRoutes: number; conditions: Cond[]; supportedKinds: unknown[] }[];
    expect(listeners.map((l) => [l.name, l.attachedRoutes])).toEqual([['web', 1], ['tls', 1]]);
    for (const l of listeners) for (const t of ['Accepted', 'ResolvedRefs', 'Programmed']) expect(cond(l.conditions, t)?.status).toBe('True');
    expect(listeners[0]?.supportedKinds).toEqual([{ group: 'gateway.networking.k8s.io', kind: 'HTTPRoute' }, { group: 'gateway.networking.k8s.io', kind: 'GRPCRoute' }]);
    await eventually(async () => parents('default/shop').length === 1, 'route status');
    const [p] = parents('default/shop');
    expect(p?.controllerName).toBe(CONTROLLER);
    expect(cond(p?.conditions, 'Accepted')).toMatchObject({ status: 'True', observedGeneration: 1 });
    expect(cond(p?.conditions, 'ResolvedRefs')).toMatchObject({ status: 'True' });
    expect(cond(status(PATHS.gatewayClasses, 'trellis').conditions, 'Accepted')?.status).toBe('True');
    // Secrets are read in the Gateway's namespace only, TLS ones only; never cluster-wide.
    const secretReads = api.requests.filter((q) => q.path.endsWith('/secrets'));
    expect(new Set(secretReads.map((q) => q.path))).toEqual(new Set(['/api/v1/namespaces/default/secrets']));
    expect(secretReads.every((q) => q.query.get('fieldSelector') === 'type=kubernetes.io/tls')).toBe(true);
  });

  it('applies a changed route without a restart', async () => {
    api.apply(PATHS.httpRoutes, route('shop', { rules: [{ matches: [{ path: { type: 'PathPrefix', value: '/v2' } }], filters: [{ type: 'URLRewrite', urlRewrite: { path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/api' } } }], backendRefs: [backend()] }] }));
    await eventually(async () => (await get('/v2/items')).status === 200, 'the new path is served');
    expect(JSON.parse((await get('/v2/items')).body)).toMatchObject({ url: '/api/items' });
    expect((await get('/api/items')).status).toBe(404);
    expect(gateway.child.exitCode).toBeNull();
    await eventually(async () => cond(parents('default/shop')[0]?.conditions, 'Accepted')?.observedGeneration === 2, 'observedGeneration follows the spec');
  });

  it("refuses a bad route in its status and keeps serving the rest; says why a backend or a namespace is refused", async () => {
    api.apply(PATHS.httpRoutes, route('bad-regex', { hostnames: ['bad.example.com'], rules: [{ matches: [{ headers: [{ type: 'RegularExpression', name: 'x-id', value: '(a+)+$' }] }], backendRefs: [backend()] }] }));
    api.apply(PATHS.httpRoutes, route('bad-filter', { hostnames: ['mirror.example.com'], rules: [{ filters: [{ type: 'RequestMirror', requestMirror: { backendRef: backend() } }], backendRefs: [backend()] }] }));
    api.apply(PATHS.httpRoutes, route('no-backend', { hostnames: ['missing.example.com'], rules: [{ backendRefs: [{ name: 'nowhere', port: 80 }] }] }));
    api.apply(PATHS.httpRoutes, route('other-ns', { hostnames: ['foreign.example.com'], rules: [{ backendRefs: [{ name: 'orders', namespace: 'default', port: ordersPort }] }] }, 'shop'));
    const accepted = (key: string): Cond | undefined => cond(parents(key)[0]?.conditions, 'Accepted');
    await eventually(async () => ['default/bad-regex', 'default/bad-filter', 'default/no-backend', 'shop/other-ns'].every((k) => parents(k).length === 1), 'every route has a status');
    expect(accepted('default/bad-regex')).toMatchObject({ status: 'False', reason: 'UnsupportedValue' });
    expect(accepted('default/bad-regex')?.message).toMatch(/regex|backtrack|nested/i);
    expect(accepted('default/bad-filter')).toMatchObject({ status: 'False', reason: 'UnsupportedValue' });
    expect(accepted('default/bad-filter')?.message).toMatch(/RequestMirror/);
    expect(cond(parents('default/no-backend')[0]?.conditions, 'ResolvedRefs')).toMatchObject({ status: 'False', reason: 'BackendNotFound' });
    expect(accepted('shop/other-ns')).toMatchObject({ status: 'False', reason: 'NotAllowedByListeners' });
    expect((await get('/v2/x')).status).toBe(200);
    expect((await get('/', 'missing.example.com')).status).toBe(404);
    const listeners = status(PATHS.gateways, 'default/edge').listeners as { name: string; attachedRoutes: number }[];
    // shop and no-backend (accepted, its rule left out) attach to web; only shop to tls (its hostname).
    expect(listeners.map((l) => [l.name, l.attachedRoutes])).toEqual([['web', 2], ['tls', 1]]);
  });

  it('serves a rotated Secret as the certificate of the next handshakes', async () => {
    expect(await peerFingerprint('shop.example.com')).toBe(firstCert.fingerprint);
    const next = tlsSecret('shop-tls', 'shop.example.com');
    api.apply(PATHS.secrets, next.secret);
    await eventually(async () => (await peerFingerprint('shop.example.com')) === next.fingerprint, 'the new certificate is served', 15_000);
  });

  it('resumes its watches when the API server goes away and comes back', async () => {
    await api.drop();
    await new Promise((r) => setTimeout(r, 1_500));
    expect((await get('/v2/x')).status).toBe(200);
    await api.restart();
    api.apply(PATHS.httpRoutes, route('after', { hostnames: ['after.example.com'], rules: [{ backendRefs: [backend()] }] }));
    await eventually(async () => (await get('/anything', 'after.example.com')).status === 200, 'a route made after the restart is served', 30_000);
  });

  it('leaves a Gateway of another class alone', async () => {
    api.apply(PATHS.gateways, { apiVersion: G, kind: 'Gateway', metadata: { name: 'foreign', namespace: 'default' }, spec: { gatewayClassName: 'other', listeners: [{ name: 'web', port: 1, protocol: 'HTTP' }] } });
    api.apply(PATHS.httpRoutes, { ...route('to-foreign', { hostnames: ['x.example.com'], rules: [{ backendRefs: [backend()] }] }), spec: { parentRefs: [{ name: 'foreign' }], hostnames: ['x.example.com'], rules: [{ backendRefs: [backend()] }] } });
    api.apply(PATHS.httpRoutes, route('marker', { hostnames: ['marker.example.com'], rules: [{ backendRefs: [backend()] }] }));
    await eventually(async () => parents('default/marker').length === 1, 'a later change was planned');
    expect(api.get(PATHS.gateways, 'default/foreign')?.status).toBeUndefined();
    expect(parents('default/to-foreign')).toEqual([]);
    expect(api.statusWrites('gateways').some((w) => w.path.endsWith('/foreign/status'))).toBe(false);
    expect((await get('/', 'x.example.com')).status).toBe(404);
  });

  it('does not write a status again when nothing in it changed', async () => {
    // The earlier tests' last writes first (a loaded machine can take seconds over them): quiet for 1.5 s.
    let seen = -1;
    for (const deadline = Date.now() + 20_000; seen !== api.statusWrites().length && Date.now() < deadline;) {
      seen = api.statusWrites().length;
      await new Promise((r) => setTimeout(r, 1_500));
    }
    const before = api.statusWrites().length;
    // A change the statuses do not depend on, and a periodic-resync-like burst of the same objects.
    api.apply(PATHS.services, { apiVersion: 'v1', kind: 'Service', metadata: { name: 'unrelated', namespace: 'default' }, spec: { ports: [{ port: 9 }] } });
    api.apply(PATHS.namespaces, { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop', labels: { team: 'shop' } } });
    await new Promise((r) => setTimeout(r, 2_000));
    expect(api.statusWrites().slice(before).map((w) => w.path)).toEqual([]);
    const gw = api.get(PATHS.gateways, 'default/edge') as { metadata: { generation: number }; status: { conditions: Cond[] } };
    for (const c of gw.status.conditions) expect(c.observedGeneration).toBe(gw.metadata.generation);
  });

  it('stops routing a Gateway that is deleted', async () => {
    expect((await get('/v2/x')).status).toBe(200);
    api.remove(PATHS.gateways, 'default', 'edge');
    await eventually(async () => (await get('/v2/x')).status === 404, 'the routes are gone');
    expect(gateway.child.exitCode).toBeNull();
  });
});
