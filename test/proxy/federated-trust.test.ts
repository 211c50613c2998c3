/**
 * Federated trust domains on the tunnel, with real TLS and two CAs of different trust domains: the mesh
 * (cluster.local, the server `api.shop`) and a federated zone with its own root (other.example, the caller
 * `web.shop`). A federated caller passes the handshake only with its trust domain's roots in force, and is
 * admitted only where a policy names it; a federated root vouches for its own trust domain only, in both
 * directions; a bundle removed refuses new handshakes without a restart.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { connect as tlsConnect } from 'node:tls';
import { connect as h2connect, type ClientHttp2Session } from 'node:http2';
import { Registry } from 'prom-client';
import { createTestPki, forgeLeaf, type TestPki } from '../helpers/pki.js';
import { createSidecar, type Sidecar, type SidecarConfig } from '../../proxy/sidecar.js';
import type { WorkloadIdentity } from '../../api/data-plane.js';
import { encodeSni, trustDomainLabel } from '../../api/sni.js';
import { silentLogger } from '../../common/log.js';
import { allow, closeServer, echoServer, listenerPort, metricValue, policyOf, roundTrip, startServerSidecar } from './support/mesh.js';

const OTHER = 'other.example';
let mesh: TestPki;
let other: TestPki;
let app: Awaited<ReturnType<typeof echoServer>>;
const sidecars: Sidecar[] = [];

beforeAll(async () => {
  mesh = await createTestPki();
  other = await createTestPki({ trustDomain: OTHER });
  app = await echoServer();
});

afterEach(async () => {
  await Promise.all(sidecars.splice(0).map((s) => s.stop(0)));
});

afterAll(async () => {
  if (app !== undefined) await closeServer(app.server, app.sockets);
});

const federatedCaller = (from: string[]): ReturnType<typeof policyOf> => policyOf(allow('api', from));

async function server(policy: SidecarConfig['policy'], federatedBundles?: Record<string, string>): Promise<{ sidecar: Sidecar; port: number }> {
  const sidecar = await startServerSidecar({ identity: await mesh.issue('api', 'shop'), appPorts: [{ port: app.port, protocol: 'tcp', host: '127.0.0.1' }], policy });
  sidecars.push(sidecar);
  if (federatedBundles !== undefined) await sidecar.applyConfig({ upstreams: [], listeners: [], policy, federatedBundles });
  return { sidecar, port: sidecar.addresses().tunnel!.port };
}

/** The caller `web.shop` of other.example, dialling api.shop at `tunnelPort` as an endpoint of `endpointTrustDomain` (null: none said, so ours). */
async function caller(tunnelPort: number, federatedBundles: Record<string, string>, endpointTrustDomain: string | null = 'cluster.local'): Promise<Sidecar> {
  const sidecar = createSidecar({
    service: 'web',
    namespace: 'shop',
    trustDomain: OTHER,
    zone: 'far',
    identity: await other.issue('web', 'shop'),
    appPorts: [],
    tunnel: { address: '127.0.0.1', port: 0 },
    admin: null,
    logger: silentLogger(),
    registry: new Registry(),
    config: {
      upstreams: [{ name: 'api', namespace: 'shop', ports: [{ port: 80, targetPort: app.port, protocol: 'tcp' }], endpoints: [{ address: '127.0.0.1', tunnelPort, zone: 'zone-a', healthy: true, ...(endpointTrustDomain === null ? {} : { trustDomain: endpointTrustDomain }) }] }],
      listeners: [{ bindAddress: '127.0.0.1', localPort: 0, service: 'api', namespace: 'shop', port: 80 }],
      policy: policyOf(),
      federatedBundles,
    },
  });
  sidecars.push(sidecar);
  await sidecar.start();
  return sidecar;
}

/** One raw tunnel session with `identity` and `servername`, and one CONNECT stream: its status, or 0 when refused. */
function open(port: number, identity: WorkloadIdentity, servername: string | undefined): Promise<{ session: ClientHttp2Session; status: number }> {
  return new Promise((resolve) => {
    const session = h2connect(`https://127.0.0.1:${port}`, {
      createConnection: () => tlsConnect({ host: '127.0.0.1', port, ALPNProtocols: ['h2'], ca: mesh.bundlePem, cert: identity.certChainPem, key: identity.keyPem, checkServerIdentity: () => undefined, ...(servername === undefined ? {} : { servername }) }),
    });
    session.on('error', () => undefined);
    const stream = session.request({ ':method': 'CONNECT', ':authority': `api.shop:${app.port}` });
    stream.on('error', () => undefined);
    stream.on('response', (h) => resolve({ session, status: Number(h[':status']) }));
    stream.on('close', () => resolve({ session, status: 0 }));
  });
}

const sniFrom = (trustDomain: string): string => encodeSni({ service: 'api', namespace: 'shop', port: app.port, zone: 'zone-a', callerTrustDomain: trustDomainLabel(trustDomain) });

describe('federated trust domains on the tunnel', () => {
  it('admits a federated caller that a policy names by SPIFFE ID, through both sidecars', async () => {
    const api = await server(federatedCaller([`spiffe://${OTHER}/ns/shop/sa/web`]), { [OTHER]: other.bundlePem });
    const web = await caller(api.port, { 'cluster.local': mesh.bundlePem });
    const reply = await roundTrip(listenerPort(web), 'hello across trust domains');
    expect(reply.data.toString()).toBe('hello across trust domains');
    expect(await metricValue(api.sidecar, 'trellis_tunnel_handshakes_total', { direction: 'inbound', result: 'ok' })).toBeGreaterThanOrEqual(1);
  });

  it('admits a trust-domain pattern, and refuses the caller where no policy names its trust domain', async () => {
    const byPattern = await server(federatedCaller([`spiffe://${OTHER}/*`]), { [OTHER]: other.bundlePem });
    const web = await caller(byPattern.port, { 'cluster.local': mesh.bundlePem });
    expect((await roundTrip(listenerPort(web), 'x')).data.toString()).toBe('x');

    // `from: [web]` means web of this mesh only: the handshake passes, the stream is refused by policy.
    const shortName = await server(federatedCaller(['web', '*']), { [OTHER]: other.bundlePem });
    const own = await open(shortName.port, await other.issue('web', 'shop'), sniFrom(OTHER));
    expect(own.status).toBe(403);
    own.session.destroy();
    expect(await metricValue(shortName.sidecar, 'trellis_policy_denials_total', { policy: 'default-deny' })).toBe(1);
  });

  it('refuses the federated caller when its trust domain is not federated, whatever SNI it sends', async () => {
    const api = await server(federatedCaller([`spiffe://${OTHER}/*`]));
    const web = await other.issue('web', 'shop');
    for (const sni of [sniFrom(OTHER), undefined, sniFrom('cluster.local')]) {
      const attempt = await open(api.port, web, sni);
      expect(attempt.status, String(sni)).toBe(0);
      attempt.session.destroy();
    }
    expect(await metricValue(api.sidecar, 'trellis_tunnel_handshakes_total', { direction: 'inbound', result: 'failed', reason: 'trust-domain-not-federated' })).toBe(1);
    expect(await metricValue(api.sidecar, 'trellis_tunnel_handshakes_total', { direction: 'inbound', result: 'failed', reason: 'untrusted' })).toBe(2);
  });

  it('refuses a certificate naming one trust domain that chains to the other\'s root, in either direction and with any SNI', async () => {
    const api = await server(federatedCaller(['web', `spiffe://${OTHER}/*`]), { [OTHER]: other.bundlePem });
    // other.example's CA mints an identity of this mesh: its root vouches for other.example only.
    const impostor = forgeLeaf(other.intermediate, 'spiffe://cluster.local/ns/shop/sa/web');
    for (const sni of [sniFrom(OTHER), undefined, sniFrom('cluster.local')]) {
      const attempt = await open(api.port, impostor, sni);
      expect(attempt.status, String(sni)).toBe(0);
      attempt.session.destroy();
    }
    // And this mesh's CA minting an other.example identity is no other.example caller either.
    const reverse = forgeLeaf(mesh.intermediate, `spiffe://${OTHER}/ns/shop/sa/web`);
    for (const sni of [sniFrom(OTHER), undefined]) {
      const attempt = await open(api.port, reverse, sni);
      expect(attempt.status, String(sni)).toBe(0);
      attempt.session.destroy();
    }
    expect(await metricValue(api.sidecar, 'trellis_tunnel_handshakes_total', { direction: 'inbound', result: 'failed', reason: 'trust-domain' })).toBe(2);
    // The genuine callers of both trust domains still pass.
    for (const [identity, sni] of [[await mesh.issue('web', 'shop'), undefined], [await other.issue('web', 'shop'), sniFrom(OTHER)]] as const) {
      const ok = await open(api.port, identity, sni);
      expect(ok.status).toBe(200);
      ok.session.destroy();
    }
  });

  it('refuses, as the dialling side, a destination whose certificate does not belong to the trust domain its endpoint names', async () => {
    // api presents a leaf of other.example signed by this mesh's CA; web trusts cluster.local's roots for that endpoint only.
    const rogue = createSidecar({ service: 'api', namespace: 'shop', trustDomain: 'cluster.local', zone: 'zone-a', identity: forgeLeaf(mesh.intermediate, `spiffe://${OTHER}/ns/shop/sa/api`), appPorts: [{ port: app.port, protocol: 'tcp', host: '127.0.0.1' }], tunnel: { address: '127.0.0.1', port: 0 }, admin: null, logger: silentLogger(), registry: new Registry(), config: { upstreams: [], listeners: [], policy: federatedCaller([`spiffe://${OTHER}/*`]) } });
    sidecars.push(rogue);
    await rogue.start();
    const rogueWeb = await caller(rogue.addresses().tunnel!.port, { 'cluster.local': mesh.bundlePem });
    expect((await roundTrip(listenerPort(rogueWeb), 'x')).data.length).toBe(0);
    expect(await metricValue(rogueWeb, 'trellis_tunnel_handshakes_total', { direction: 'outbound', result: 'failed', reason: 'trust-domain' })).toBeGreaterThanOrEqual(1);

    // An endpoint of a trust domain the caller does not federate with is not dialled at all.
    const api = await server(federatedCaller([`spiffe://${OTHER}/*`]), { [OTHER]: other.bundlePem });
    const unfederated = await caller(api.port, {}, 'cluster.local');
    expect((await roundTrip(listenerPort(unfederated), 'x')).data.length).toBe(0);
    expect(await metricValue(unfederated, 'trellis_tunnel_handshakes_total', { direction: 'outbound', result: 'failed', reason: 'trust-domain-not-federated' })).toBeGreaterThanOrEqual(1);
    // An endpoint said to be of our own trust domain is verified against our roots: api's chain is refused.
    const mislabelled = await caller(api.port, { 'cluster.local': mesh.bundlePem }, null);
    expect((await roundTrip(listenerPort(mislabelled), 'x')).data.length).toBe(0);
  });

  it('applies bundle changes without a restart: added admits, removed refuses new handshakes, other sessions stay', async () => {
    const policy = federatedCaller(['web', `spiffe://${OTHER}/*`]);
    const api = await server(policy);
    const local = await open(api.port, await mesh.issue('web', 'shop'), undefined);
    expect(local.status).toBe(200);
    const web = await other.issue('web', 'shop');
    const before = await open(api.port, web, sniFrom(OTHER));
    expect(before.status).toBe(0);
    before.session.destroy();

    await api.sidecar.applyConfig({ upstreams: [], listeners: [], policy, federatedBundles: { [OTHER]: other.bundlePem } });
    const admitted = await open(api.port, web, sniFrom(OTHER));
    expect(admitted.status).toBe(200);
    const goaway = new Promise<void>((r) => admitted.session.once('goaway', () => r()));

    await api.sidecar.applyConfig({ upstreams: [], listeners: [], policy, federatedBundles: {} });
    const after = await open(api.port, web, sniFrom(OTHER));
    expect(after.status).toBe(0);
    after.session.destroy();
    // The federated session takes no new streams; the local one is untouched.
    await goaway;
    expect(local.session.closed || local.session.destroyed).toBe(false);
    const again = local.session.request({ ':method': 'CONNECT', ':authority': `api.shop:${app.port}` });
    again.on('error', () => undefined);
    expect(await new Promise((r) => again.on('response', (h) => r(h[':status'])))).toBe(200);
    again.close();
    local.session.destroy();
    admitted.session.destroy();
  });

  it('refuses a federated set the sidecar cannot use, and keeps the config in force', async () => {
    const policy = federatedCaller([`spiffe://${OTHER}/*`]);
    const api = await server(policy, { [OTHER]: other.bundlePem });
    const bads: Record<string, string>[] = [{ 'cluster.local': mesh.bundlePem }, { 'Bad Name': other.bundlePem }, { [OTHER]: 'not a certificate' }, { [OTHER]: (await other.issue('x', 'y')).certChainPem.split('-----END CERTIFICATE-----')[0] + '-----END CERTIFICATE-----\n' }];
    for (const bad of bads) {
      await expect(api.sidecar.applyConfig({ upstreams: [], listeners: [], policy: policyOf(), federatedBundles: bad })).rejects.toMatchObject({ code: 'TRELLIS_PROXY_FEDERATION_INVALID' });
    }
    const still = await open(api.port, await other.issue('web', 'shop'), sniFrom(OTHER));
    expect(still.status).toBe(200);
    still.session.destroy();
  });
});
