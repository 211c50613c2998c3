/**
 * The caller's zone at the destination sidecar, from its certificate alone: callers issued by east's zone
 * intermediate are "east", by west's "west", by an intermediate made before zones (or a root) "unknown".
 * A policy naming east/shop/web admits only the first; the denial log and metrics carry the zone.
 * Real sidecar, real TLS on loopback.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect as tlsConnect } from 'node:tls';
import { connect as h2connect } from 'node:http2';
import { createRootCa, type CertificateAuthority } from '../../ca/authority.js';
import { workloadId } from '../../ca/spiffe-id.js';
import type { WorkloadIdentity } from '../../api/data-plane.js';
import type { Sidecar } from '../../proxy/sidecar.js';
import { allow, closeServer, echoServer, metricValue, policyOf, startServerSidecar, TRUST_DOMAIN } from './support/mesh.js';

let root: CertificateAuthority;
let zones: Record<'east' | 'west' | 'legacy', CertificateAuthority>;
let app: Awaited<ReturnType<typeof echoServer>>;
let server: Sidecar;
let port: number;

async function issue(ca: CertificateAuthority, service: string): Promise<WorkloadIdentity> {
  const issued = await ca.issueWorkload(workloadId(TRUST_DOMAIN, 'shop', service));
  return { certChainPem: issued.certChainPem, keyPem: issued.keyPem, trustBundlePem: issued.trustBundlePem };
}

function status(identity: WorkloadIdentity): Promise<number> {
  return new Promise((resolve) => {
    const session = h2connect(`https://127.0.0.1:${port}`, {
      createConnection: () => tlsConnect({ host: '127.0.0.1', port, ALPNProtocols: ['h2'], ca: root.bundle.toPem(), cert: identity.certChainPem, key: identity.keyPem, checkServerIdentity: () => undefined }),
    });
    session.on('error', () => undefined);
    const stream = session.request({ ':method': 'CONNECT', ':authority': `api.shop:${app.port}` });
    stream.on('error', () => undefined);
    const done = (code: number): void => {
      session.destroy();
      resolve(code);
    };
    stream.on('response', (h) => done(Number(h[':status'])));
    stream.on('close', () => done(0));
  });
}

beforeAll(async () => {
  root = await createRootCa({ trustDomain: TRUST_DOMAIN });
  zones = {
    east: await root.createIntermediate({ name: 'Trellis zone east', zone: 'east' }),
    west: await root.createIntermediate({ name: 'Trellis zone west', zone: 'west' }),
    legacy: await root.createIntermediate({ name: 'made before zones' }),
  };
  app = await echoServer();
  server = await startServerSidecar({ identity: await issue(zones.west, 'api'), appPorts: [{ port: app.port, protocol: 'tcp', host: '127.0.0.1' }], policy: policyOf(allow('api', ['east/shop/web', 'eu-*/shop/*'])) });
  port = server.addresses().tunnel!.port;
});

afterAll(async () => {
  await server?.stop(0);
  if (app !== undefined) await closeServer(app.server, app.sockets);
});

describe('the caller zone at the destination', () => {
  it('admits the caller of the zone a policy names, and no other', async () => {
    expect(await status(await issue(zones.east, 'web'))).toBe(200);
    expect(await status(await issue(zones.west, 'web'))).toBe(403);
    // An intermediate without a zone (made before zones), and a leaf signed by the root itself: zone unknown.
    expect(await status(await issue(zones.legacy, 'web'))).toBe(403);
    expect(await status(await issue(root, 'web'))).toBe(403);
    expect(await metricValue(server, 'trellis_tunnel_peer_sessions_total', { source_zone: 'east' })).toBe(1);
    expect(await metricValue(server, 'trellis_tunnel_peer_sessions_total', { source_zone: 'unknown' })).toBe(2);
    expect(await metricValue(server, 'trellis_policy_denials_total', { source: 'shop/web', source_zone: 'west' })).toBe(1);
    expect(await metricValue(server, 'trellis_policy_denials_total', { source: 'shop/web', source_zone: 'unknown' })).toBe(2);
  });

  it('matches zone patterns against the proven zone', async () => {
    const euWest = await root.createIntermediate({ name: 'Trellis zone eu-west', zone: 'eu-west' });
    expect(await status(await issue(euWest, 'anything'))).toBe(200);
  });
});
