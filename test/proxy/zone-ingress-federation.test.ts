/**
 * A zone with its own PKI calling through a zone ingress, with real TLS and two trust domains on loopback:
 * west (cluster.local: the ingress and `api.shop`) and far (other.example: the caller `web.shop`). The
 * caller's outer session verifies the ingress against cluster.local's roots alone and names its own trust
 * domain in the server name; the ingress verifies it against other.example's roots alone (as a tunnel port
 * does); the inner session verifies api against cluster.local's roots (the endpoint's `trustDomain`, which
 * the zone's mesh view sets from the catalogue). Anything else is refused before a byte is forwarded.
 */
import { connect as h2connect } from 'node:http2';
import { connect as tlsConnect } from 'node:tls';
import { Registry } from 'prom-client';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { WorkloadIdentity } from '../../api/data-plane.js';
import { ingressSni, trustDomainLabel } from '../../api/sni.js';
import { silentLogger } from '../../common/log.js';
import { DEFAULT_LIMITS } from '../../proxy/core/limits.js';
import { createIngressMetrics } from '../../proxy/ingress/ingress-metrics.js';
import { IngressRoutes } from '../../proxy/ingress/ingress-routes.js';
import { IngressServer } from '../../proxy/ingress/ingress-server.js';
import { compilePolicy } from '../../policy/compiled-policy.js';
import { createSidecar, type Sidecar } from '../../proxy/sidecar.js';
import { createTestPki, forgeLeaf, type TestPki } from '../helpers/pki.js';
import { allow, closeServer, echoServer, listenerPort, metricValue, policyOf, roundTrip, startServerSidecar } from './support/mesh.js';

const OTHER = 'other.example';
let west: TestPki;
let far: TestPki;
let app: Awaited<ReturnType<typeof echoServer>>;
let appConnections = 0;
const stops: (() => Promise<void>)[] = [];

beforeAll(async () => {
  west = await createTestPki();
  far = await createTestPki({ trustDomain: OTHER });
  app = await echoServer();
  app.server.on('connection', () => (appConnections += 1));
});

afterEach(async () => {
  for (const stop of stops.splice(0).reverse()) await stop();
});

afterAll(async () => {
  if (app !== undefined) await closeServer(app.server, app.sockets);
});

interface Zones {
  readonly api: Sidecar;
  readonly ingress: IngressServer;
  readonly ingressPort: number;
  readonly registry: Registry;
  readonly identity: WorkloadIdentity;
}

/** api in west (allowing far's web), behind west's ingress, both federating with far unless told not to. */
async function westZone(federate = true): Promise<Zones> {
  const bundles: Record<string, string> = federate ? { [OTHER]: far.bundlePem } : {};
  const policy = policyOf(allow('api', [`spiffe://${OTHER}/ns/shop/sa/web`]));
  const api = await startServerSidecar({ identity: await west.issue('api', 'shop'), appPorts: [{ port: app.port, protocol: 'tcp', host: '127.0.0.1' }], policy });
  stops.push(() => api.stop(0));
  await api.applyConfig({ upstreams: [], listeners: [], policy, federatedBundles: bundles });
  const routes = new IngressRoutes();
  routes.set([{ name: 'api', namespace: 'shop', ports: [{ port: 80, targetPort: app.port, protocol: 'tcp' }], endpoints: [{ address: '127.0.0.1', tunnelPort: api.addresses().tunnel!.port, zone: 'west', healthy: true }] }], 'west');
  const registry = new Registry();
  const identity = { ...(await west.issue('trellis-ingress', 'trellis-system')), federatedBundles: bundles };
  const ingress = new IngressServer({ trustDomain: west.trustDomain, identity, routes, rules: { admitZones: '*', refuseIdentities: [] }, limits: DEFAULT_LIMITS, metrics: createIngressMetrics(registry), logger: silentLogger() });
  const ingressPort = (await ingress.listen(0, '127.0.0.1')).port;
  stops.push(() => ingress.close(0));
  return { api, ingress, ingressPort, registry, identity };
}

/** far's web, whose only endpoint of api is "via west's ingress", of trust domain `endpointTrustDomain`. */
async function farCaller(ingressPort: number, endpointTrustDomain: string | undefined): Promise<Sidecar> {
  const sidecar = createSidecar({
    service: 'web', namespace: 'shop', trustDomain: OTHER, zone: 'far', identity: await far.issue('web', 'shop'),
    appPorts: [], tunnel: { address: '127.0.0.1', port: 0 }, admin: null, logger: silentLogger(), registry: new Registry(),
    config: {
      upstreams: [{ name: 'api', namespace: 'shop', ports: [{ port: 80, targetPort: app.port, protocol: 'tcp' }], endpoints: [{ address: '127.0.0.1', tunnelPort: ingressPort, zone: 'west', healthy: true, ingress: { address: '127.0.0.1', port: ingressPort }, ...(endpointTrustDomain === undefined ? {} : { trustDomain: endpointTrustDomain }) }] }],
      listeners: [{ bindAddress: '127.0.0.1', localPort: 0, service: 'api', namespace: 'shop', port: 80 }],
      policy: compilePolicy([], { trustDomain: OTHER, rootNamespace: 'trellis-system' }),
      federatedBundles: { [west.trustDomain]: west.bundlePem },
    },
  });
  await sidecar.start();
  stops.push(() => sidecar.stop(0));
  return sidecar;
}

async function ingressMetric(registry: Registry, name: string, labels: Record<string, string> = {}): Promise<number> {
  const metric = await registry.getSingleMetric(name)?.get();
  let total = 0;
  for (const v of metric?.values ?? []) if (Object.entries(labels).every(([k, want]) => String((v.labels as Record<string, unknown>)[k]) === want)) total += v.value;
  return total;
}

/** One raw outer session to the ingress with `identity` and `servername`, trusting `ca`, and one CONNECT: its status, or 0 when refused. */
function connectThrough(port: number, identity: WorkloadIdentity, ca: string, servername: string): Promise<number> {
  return new Promise((resolve) => {
    const session = h2connect(`https://127.0.0.1:${port}`, {
      createConnection: () => tlsConnect({ host: '127.0.0.1', port, ALPNProtocols: ['h2'], ca, cert: identity.certChainPem, key: identity.keyPem, checkServerIdentity: () => undefined, servername }),
    });
    stops.push(async () => void session.destroy());
    session.on('error', () => undefined);
    const stream = session.request({ ':method': 'CONNECT', ':authority': `api.shop:${app.port}` });
    stream.on('error', () => undefined);
    stream.on('response', (h) => resolve(Number(h[':status'])));
    stream.on('close', () => resolve(0));
  });
}

describe('a federated zone through a zone ingress', () => {
  it("stops taking far's streams when far is no longer federated (GOAWAY to its open sessions, new handshakes refused)", async () => {
    const zones = await westZone();
    const farWeb = await far.issue('web', 'shop');
    const session = h2connect(`https://127.0.0.1:${zones.ingressPort}`, {
      createConnection: () => tlsConnect({ host: '127.0.0.1', port: zones.ingressPort, ALPNProtocols: ['h2'], ca: west.bundlePem, cert: farWeb.certChainPem, key: farWeb.keyPem, checkServerIdentity: () => undefined, servername: ingressSni(trustDomainLabel(OTHER)) }),
    });
    stops.push(async () => void session.destroy());
    session.on('error', () => undefined);
    const first = await new Promise<number>((resolve) => session.request({ ':method': 'CONNECT', ':authority': `api.shop:${app.port}` }).on('response', (h) => resolve(Number(h[':status']))).on('error', () => resolve(0)));
    expect(first).toBe(200);
    const goaway = new Promise<void>((resolve) => session.once('goaway', () => resolve()));
    zones.ingress.setIdentity({ ...zones.identity, federatedBundles: {} });
    await goaway;
    expect(await connectThrough(zones.ingressPort, farWeb, west.bundlePem, ingressSni(trustDomainLabel(OTHER)))).toBe(0);
  });

  it('carries far\'s call to west\'s api: the ingress verified far against far\'s roots, api authorizes far\'s own SPIFFE ID', async () => {
    const zones = await westZone();
    const web = await farCaller(zones.ingressPort, west.trustDomain);
    const reply = await roundTrip(listenerPort(web), 'hello from another trust domain');
    expect(reply.error).toBeUndefined();
    expect(reply.data.toString()).toBe('hello from another trust domain');
    await expect.poll(() => ingressMetric(zones.registry, 'trellis_ingress_streams_total', { result: 'ok', destination: 'shop/api' })).toBeGreaterThanOrEqual(1);
    await expect.poll(() => metricValue(zones.api, 'trellis_tcp_connections_total', { direction: 'inbound', source: 'shop/web', destination: 'shop/api', result: 'ok' })).toBe(1);
  });

  it('without `trustDomain` on the endpoint the caller cannot verify the ingress (its own roots): refused and counted, nothing forwarded', async () => {
    const zones = await westZone();
    const before = appConnections;
    const web = await farCaller(zones.ingressPort, undefined);
    expect((await roundTrip(listenerPort(web), 'x')).data.length).toBe(0);
    await expect.poll(() => metricValue(web, 'trellis_ingress_refusals_total', { zone: 'west' })).toBeGreaterThan(0);
    expect(await ingressMetric(zones.registry, 'trellis_ingress_streams_total')).toBe(0);
    expect(appConnections).toBe(before);
  });

  it('an ingress that does not federate with far refuses far\'s caller at the handshake', async () => {
    const zones = await westZone(false);
    const web = await farCaller(zones.ingressPort, west.trustDomain);
    expect((await roundTrip(listenerPort(web), 'x')).data.length).toBe(0);
    await expect.poll(() => ingressMetric(zones.registry, 'trellis_ingress_handshakes_total', { result: 'failed' })).toBeGreaterThan(0);
    expect(await ingressMetric(zones.registry, 'trellis_ingress_streams_total')).toBe(0);
  });

  it('verifies each caller against exactly the roots its server name picks: no label, a wrong label or a forged chain is refused', async () => {
    const zones = await westZone();
    const farWeb = await far.issue('web', 'shop');
    const farLabel = ingressSni(trustDomainLabel(OTHER));
    // The genuine caller with its label: admitted (the stream is answered).
    expect(await connectThrough(zones.ingressPort, farWeb, west.bundlePem, farLabel)).toBe(200);
    // Without its label it is verified against west's roots: refused at the handshake.
    expect(await connectThrough(zones.ingressPort, farWeb, west.bundlePem, ingressSni())).toBe(0);
    // West's own workload naming far's trust domain: verified against far's roots, refused.
    expect(await connectThrough(zones.ingressPort, await west.issue('web', 'shop'), west.bundlePem, farLabel)).toBe(0);
    // A chain of far's CA carrying a SPIFFE ID of west: passes far's roots, but names another trust domain.
    const impostor = forgeLeaf(far.intermediate, `spiffe://${west.trustDomain}/ns/shop/sa/web`);
    expect(await connectThrough(zones.ingressPort, impostor, west.bundlePem, farLabel)).toBe(0);
    // A label of a trust domain the ingress does not federate with: the handshake fails.
    expect(await connectThrough(zones.ingressPort, farWeb, west.bundlePem, ingressSni(trustDomainLabel('third.example')))).toBe(0);
    expect(await ingressMetric(zones.registry, 'trellis_ingress_streams_total', { result: 'ok' })).toBe(1);
  });
});
