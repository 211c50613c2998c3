/**
 * Certificates of a revoked join token on the tunnel: once a config push lists a serial, a session from
 * that certificate already open is closed and a new one is refused at its start; other peers go on.
 * Real sidecar, real TLS and HTTP/2 on loopback.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect as tlsConnect } from 'node:tls';
import { connect as h2connect, type ClientHttp2Session, type ClientHttp2Stream } from 'node:http2';
import { createTestPki, type TestPki, type TestWorkloadIdentity } from '../helpers/pki.js';
import { normaliseSerial } from '../../api/control-protocol.js';
import type { Sidecar } from '../../proxy/sidecar.js';
import { allow, closeServer, echoServer, metricValue, policyOf, startServerSidecar } from './support/mesh.js';

let pki: TestPki;
let server: Sidecar;
let app: Awaited<ReturnType<typeof echoServer>>;
let tunnelPort: number;
const policy = (): ReturnType<typeof policyOf> => policyOf(allow('api', ['web']));

beforeAll(async () => {
  pki = await createTestPki();
  app = await echoServer();
  server = await startServerSidecar({ identity: await pki.issue('api', 'shop'), appPorts: [{ port: app.port, protocol: 'tcp', host: '127.0.0.1' }], policy: policy() });
  tunnelPort = server.addresses().tunnel!.port;
});

afterAll(async () => {
  await server?.stop(0);
  if (app !== undefined) await closeServer(app.server, app.sockets);
});

/** A session with `identity` and one CONNECT stream; resolves once the stream is answered. */
function open(identity: TestWorkloadIdentity): Promise<{ session: ClientHttp2Session; stream: ClientHttp2Stream; status: number }> {
  return new Promise((resolve) => {
    const session = h2connect(`https://127.0.0.1:${tunnelPort}`, {
      createConnection: () => tlsConnect({ host: '127.0.0.1', port: tunnelPort, ALPNProtocols: ['h2'], ca: pki.bundlePem, cert: identity.certChainPem, key: identity.keyPem, checkServerIdentity: () => undefined }),
    });
    session.on('error', () => undefined);
    const stream = session.request({ ':method': 'CONNECT', ':authority': `api.shop:${app.port}` });
    stream.on('error', () => undefined);
    stream.on('response', (h) => resolve({ session, stream, status: Number(h[':status']) }));
    stream.on('close', () => resolve({ session, stream, status: 0 }));
  });
}

describe('revoked certificates on the tunnel', () => {
  it('closes an open session at the push, refuses a new one, and leaves other peers alone', async () => {
    const revoked = await pki.issue('web', 'shop');
    const other = await pki.issue('web', 'shop');
    const first = await open(revoked);
    expect(first.status).toBe(200);
    const closed = new Promise<void>((r) => first.session.once('close', () => r()));

    await server.applyConfig({ upstreams: [], listeners: [], policy: policy(), revokedSerials: new Set([normaliseSerial(revoked.serial.toUpperCase())]) });
    await closed;
    expect(first.session.destroyed || first.session.closed).toBe(true);
    expect(await metricValue(server, 'trellis_tunnel_errors_total', { direction: 'inbound', reason: 'peer-certificate-revoked' })).toBe(1);

    const again = await open(revoked);
    expect(again.status).toBe(0);
    again.session.destroy();
    expect(await metricValue(server, 'trellis_tunnel_handshakes_total', { direction: 'inbound', result: 'failed', reason: 'revoked' })).toBe(1);

    const fine = await open(other);
    expect(fine.status).toBe(200);
    fine.session.destroy();
  });
});
