/**
 * A zone ingress on loopback with real TLS: a caller sidecar of zone east reaches `api` of zone west only
 * through west's ingress, with its end-to-end TLS to api's sidecar nested in a CONNECT stream. Every
 * refusal is typed, counted by the caller, and leaves the destination app untouched.
 */
import { createServer, connect as netConnect, type AddressInfo, type Server, type Socket } from 'node:net';
import { connect as h2connect } from 'node:http2';
import { connect as tlsConnect } from 'node:tls';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import type { UpstreamService } from '../../api/data-plane.js';
import { silentLogger } from '../../common/log.js';
import { DEFAULT_LIMITS } from '../../proxy/core/limits.js';
import type { CallerRules } from '../../proxy/ingress/caller-admission.js';
import { createIngressMetrics } from '../../proxy/ingress/ingress-metrics.js';
import { IngressRoutes } from '../../proxy/ingress/ingress-routes.js';
import { IngressServer } from '../../proxy/ingress/ingress-server.js';
import type { Sidecar } from '../../proxy/sidecar.js';
import { allow, listenerPort, meshFixture, metricValue, policyOf, roundTrip, startServerSidecar, startViaIngressClient, TRUST_DOMAIN } from './support/mesh.js';

const mesh = meshFixture();

interface Zones {
  readonly server: Sidecar;
  readonly client: Sidecar;
  readonly ingress: IngressServer;
  readonly routes: IngressRoutes;
  readonly registry: Registry;
  readonly appConnections: () => number;
  readonly upstream: (healthy: boolean, tunnelPort?: number) => UpstreamService;
}

/** api in west behind west's ingress; web in east whose only endpoint of api is "via west's ingress". */
async function twoZones(options: { rules?: CallerRules; ingressIdentity?: 'ingress' | 'workload'; policyFrom?: string[]; via?: (tunnelPort: number) => Promise<number> } = {}): Promise<Zones> {
  const app = await mesh.echo();
  let connections = 0;
  app.server.on('connection', () => (connections += 1));
  const server = await startServerSidecar({ identity: await mesh.pki.issue('api', 'shop'), appPorts: [{ port: app.port, protocol: 'tcp', host: '127.0.0.1' }], policy: policyOf(allow('api', options.policyFrom ?? ['web'])) });
  mesh.cleanup.push(() => server.stop(0));
  const serverTunnel = server.addresses().tunnel!.port;
  const dialled = options.via === undefined ? serverTunnel : await options.via(serverTunnel);
  const upstream = (healthy: boolean, tunnelPort = dialled): UpstreamService => ({
    name: 'api',
    namespace: 'shop',
    ports: [{ port: 80, targetPort: app.port, protocol: 'tcp' }],
    endpoints: [{ address: '127.0.0.1', tunnelPort, zone: 'west', healthy }],
  });
  const routes = new IngressRoutes();
  routes.set([upstream(true)], 'west');
  const registry = new Registry();
  const identity = options.ingressIdentity === 'workload' ? await mesh.pki.issue('orders', 'shop') : await mesh.pki.issue('trellis-ingress', 'trellis-system');
  const ingress = new IngressServer({ trustDomain: TRUST_DOMAIN, identity, routes, rules: options.rules ?? { admitZones: '*', refuseIdentities: [] }, limits: DEFAULT_LIMITS, metrics: createIngressMetrics(registry), logger: silentLogger() });
  const ingressPort = (await ingress.listen(0, '127.0.0.1')).port;
  mesh.cleanup.push(() => ingress.close(0));
  const client = await startViaIngressClient(await mesh.pki.issue('web', 'shop'), app.port, ingressPort, 'west');
  mesh.cleanup.push(() => client.stop(0));
  return { server, client, ingress, routes, registry, appConnections: () => connections, upstream };
}

async function ingressMetric(registry: Registry, name: string, labels: Record<string, string> = {}): Promise<number> {
  const metric = await registry.getSingleMetric(name)?.get();
  let total = 0;
  for (const v of metric?.values ?? []) if (Object.entries(labels).every(([k, want]) => String((v.labels as Record<string, unknown>)[k]) === want)) total += v.value;
  return total;
}

/** A TCP relay in front of `port` that keeps every byte it carries toward it. */
async function recordingRelay(port: number): Promise<{ port: number; seen: () => Buffer }> {
  const chunks: Buffer[] = [];
  const sockets = new Set<Socket>();
  const relay: Server = createServer((inbound) => {
    const outbound = netConnect({ port, host: '127.0.0.1' });
    for (const s of [inbound, outbound]) {
      sockets.add(s);
      s.on('error', () => undefined);
      s.on('close', () => sockets.delete(s));
    }
    inbound.on('data', (c: Buffer) => chunks.push(Buffer.from(c)));
    inbound.pipe(outbound).pipe(inbound);
  });
  await new Promise<void>((r) => relay.listen(0, '127.0.0.1', r));
  mesh.cleanup.push(async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => relay.close(() => r()));
  });
  return { port: (relay.address() as AddressInfo).port, seen: () => Buffer.concat(chunks) };
}

describe('zone ingress: nested mTLS through another zone', () => {
  it('carries a call end to end: the destination authorizes the caller itself, and the ingress sees only ciphertext', async () => {
    let relay: Awaited<ReturnType<typeof recordingRelay>> | undefined;
    const zones = await twoZones({ via: async (port) => (relay = await recordingRelay(port)).port });
    const secret = 'a payload the ingress must never see in the clear';
    const result = await roundTrip(listenerPort(zones.client), secret);
    expect(result.error).toBeUndefined();
    expect(result.data.toString()).toBe(secret);
    // The destination's sidecar saw web's own identity (not the ingress's) and authorized it.
    await expect.poll(() => metricValue(zones.server, 'trellis_tcp_connections_total', { direction: 'inbound', source: 'shop/web', destination: 'shop/api', result: 'ok' })).toBe(1);
    // The warm pool opens its inner sessions ahead of need: one CONNECT stream each, none per connection.
    await expect.poll(() => ingressMetric(zones.registry, 'trellis_ingress_streams_total', { result: 'ok', destination: 'shop/api' })).toBeGreaterThanOrEqual(1);
    // What went from the ingress toward api's sidecar was TLS: the payload never appears in it.
    const seen = relay!.seen();
    expect(seen.length).toBeGreaterThan(secret.length);
    expect(seen[0]).toBe(0x16); // a TLS handshake record
    expect(seen.includes(Buffer.from(secret))).toBe(false);
  });

  it('keeps the destination policy in force across zones: a caller it does not allow is refused by the destination', async () => {
    const zones = await twoZones({ policyFrom: ['billing'] });
    const result = await roundTrip(listenerPort(zones.client), 'let me in');
    expect(result.data.length).toBe(0);
    expect(zones.appConnections()).toBe(0);
    await expect.poll(() => metricValue(zones.server, 'trellis_policy_denials_total', { source: 'shop/web', destination: 'shop/api' })).toBe(1);
  });

  it('answers no-healthy-endpoint when the zone has none, and the caller counts the typed reason', async () => {
    const zones = await twoZones();
    zones.routes.set([zones.upstream(false)], 'west');
    const result = await roundTrip(listenerPort(zones.client), 'hello');
    expect(result.data.length).toBe(0);
    await expect.poll(() => metricValue(zones.client, 'trellis_ingress_refusals_total', { zone: 'west', reason: 'no-healthy-endpoint' })).toBeGreaterThan(0);
    expect(zones.appConnections()).toBe(0);
  });

  it('tries the next endpoint when one does not answer, and never dials anything its table does not list', async () => {
    const zones = await twoZones();
    const dead = createServer();
    await new Promise<void>((r) => dead.listen(0, '127.0.0.1', r));
    const deadPort = (dead.address() as AddressInfo).port;
    await new Promise<void>((r) => dead.close(() => r()));
    const good = zones.upstream(true);
    zones.routes.set([{ ...good, endpoints: [...good.endpoints, { address: '127.0.0.1', tunnelPort: deadPort, zone: 'west', healthy: true }] }], 'west');
    const results = await Promise.all(Array.from({ length: 6 }, (_, i) => roundTrip(listenerPort(zones.client), `call ${i}`)));
    results.forEach((r, i) => expect(r.data.toString()).toBe(`call ${i}`));
  });

  it('answers unknown-service for a service this zone does not serve', async () => {
    const zones = await twoZones();
    zones.routes.set([], 'west');
    const result = await roundTrip(listenerPort(zones.client), 'hello');
    expect(result.data.length).toBe(0);
    await expect.poll(() => metricValue(zones.client, 'trellis_ingress_refusals_total', { zone: 'west', reason: 'unknown-service' })).toBeGreaterThan(0);
    expect(await ingressMetric(zones.registry, 'trellis_ingress_streams_total', { result: 'unknown-service' })).toBeGreaterThan(0);
  });

  it('a service dropped from the table (no longer exported): new CONNECTs get unknown-service, a stream already spliced goes on', async () => {
    const zones = await twoZones();
    const port = zones.ingress.address()!.port;
    const web = await mesh.pki.issue('web', 'shop');
    const session = h2connect(`https://127.0.0.1:${port}`, { cert: web.certChainPem, key: web.keyPem, ca: web.trustBundlePem, checkServerIdentity: () => undefined });
    mesh.cleanup.push(async () => void session.destroy());
    const authority = `api.shop:${zones.upstream(true).ports[0]!.targetPort}`;
    const connect = (): Promise<{ status: number; reason: string; stream: ReturnType<typeof session.request> }> =>
      new Promise((resolve, reject) => {
        const stream = session.request({ ':method': 'CONNECT', ':authority': authority }, { endStream: false });
        stream.on('response', (h) => resolve({ status: Number(h[':status']), reason: String(h['trellis-reason']), stream }));
        stream.on('error', reject);
      });
    const open = await connect();
    expect(open.status).toBe(200);
    zones.routes.set([], 'west');
    const refused = await connect();
    expect({ status: refused.status, reason: refused.reason }).toEqual({ status: 404, reason: 'unknown-service' });
    // The stream opened before still reaches api's sidecar: a whole mTLS handshake with it runs through.
    const inner = tlsConnect({ socket: open.stream, cert: web.certChainPem, key: web.keyPem, ca: web.trustBundlePem, ALPNProtocols: ['h2'], checkServerIdentity: () => undefined });
    mesh.cleanup.push(async () => void inner.destroy());
    await new Promise<void>((resolve, reject) => {
      inner.once('secureConnect', resolve);
      inner.once('error', reject);
    });
    expect(inner.alpnProtocol).toBe('h2');
    expect(await ingressMetric(zones.registry, 'trellis_ingress_streams_total', { result: 'unknown-service', destination: 'shop/api' })).toBe(1);
  });

  it('refuses a zone it does not admit (a caller whose chain names no admitted zone) and an identity it refuses', async () => {
    const byZone = await twoZones({ rules: { admitZones: ['east'], refuseIdentities: [] } });
    expect((await roundTrip(listenerPort(byZone.client), 'hello')).data.length).toBe(0);
    await expect.poll(() => metricValue(byZone.client, 'trellis_ingress_refusals_total', { reason: 'zone-not-admitted' })).toBeGreaterThan(0);
    expect(byZone.appConnections()).toBe(0);

    const byId = await twoZones({ rules: { admitZones: '*', refuseIdentities: [`spiffe://${TRUST_DOMAIN}/ns/shop/sa/web`] } });
    expect((await roundTrip(listenerPort(byId.client), 'hello')).data.length).toBe(0);
    await expect.poll(() => metricValue(byId.client, 'trellis_ingress_refusals_total', { reason: 'identity-refused' })).toBeGreaterThan(0);
  });

  it('the caller refuses an ingress address that answers with a workload identity instead of an ingress', async () => {
    const zones = await twoZones({ ingressIdentity: 'workload' });
    expect((await roundTrip(listenerPort(zones.client), 'hello')).data.length).toBe(0);
    await expect.poll(() => metricValue(zones.client, 'trellis_ingress_refusals_total', { reason: 'untrusted-ingress' })).toBeGreaterThan(0);
  });

  it('refuses a peer without a mesh certificate at the handshake, and a stream that is not a CONNECT naming a service', async () => {
    const zones = await twoZones();
    const port = zones.ingress.address()!.port;
    const outcome = await new Promise<string>((resolve) => {
      const s = tlsConnect({ port, host: '127.0.0.1', rejectUnauthorized: false, ALPNProtocols: ['h2'] });
      s.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
      s.on('close', () => resolve('closed'));
      s.on('secureConnect', () => s.write('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'));
    });
    expect(outcome).not.toBe('open');
    await expect.poll(() => ingressMetric(zones.registry, 'trellis_ingress_handshakes_total', { result: 'failed' })).toBeGreaterThan(0);

    const web = await mesh.pki.issue('web', 'shop');
    const session = h2connect(`https://127.0.0.1:${port}`, { cert: web.certChainPem, key: web.keyPem, ca: web.trustBundlePem, checkServerIdentity: () => undefined });
    mesh.cleanup.push(async () => void session.destroy());
    for (const headers of [{ ':method': 'GET', ':path': '/' }, { ':method': 'CONNECT', ':authority': '127.0.0.1:22' }, { ':method': 'CONNECT', ':authority': 'api.shop.evil:80' }]) {
      const answer = await new Promise<{ status: number; reason: string }>((resolve, reject) => {
        const stream = session.request(headers);
        stream.on('response', (h) => resolve({ status: Number(h[':status']), reason: String(h['trellis-reason']) }));
        stream.on('error', reject);
        stream.end();
      });
      expect(answer).toEqual({ status: 400, reason: 'bad-target' });
    }
    expect(zones.appConnections()).toBe(0);
  });
});
