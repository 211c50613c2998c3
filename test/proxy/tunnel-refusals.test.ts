/**
 * What the tunnel port does with peers that must not get in: no certificate, a certificate from another
 * trust domain, an expired certificate, garbage bytes, a handshake that never finishes, a client without
 * ALPN h2. Each is cut off, counted, and harms no other connection.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';
import { connect as netConnect } from 'node:net';
import { connect as h2connect, type IncomingHttpHeaders } from 'node:http2';
import { CODE } from '../../common/error-codes.js';
import { createTestPki, type TestPki } from '../helpers/pki.js';
import type { Sidecar } from '../../proxy/sidecar.js';
import { allow, closeServer, echoServer, listenerPort, metricValue, policyOf, roundTrip, startClientSidecar, startServerSidecar } from './support/mesh.js';

let pki: TestPki;
let server: Sidecar;
let client: Sidecar;
let app: Awaited<ReturnType<typeof echoServer>>;
let tunnelPort: number;

beforeAll(async () => {
  pki = await createTestPki();
  app = await echoServer();
  server = await startServerSidecar({
    identity: await pki.issue('api', 'shop'),
    appPorts: [{ port: app.port, protocol: 'tcp', host: '127.0.0.1' }],
    policy: policyOf(allow('api', ['web'])),
    // Long enough that a real handshake finishes on a loaded 2-core CI machine (at 500 ms a slow one was
    // counted as a timeout, not as the refusal under test); short enough for the stalled-handshake test.
    limits: { handshakeTimeoutMs: 2_000 },
  });
  tunnelPort = server.addresses().tunnel!.port;
  client = await startClientSidecar(await pki.issue('web', 'shop'), [tunnelPort], app.port);
});

afterAll(async () => {
  await client?.stop(0);
  await server?.stop(0);
  if (app !== undefined) await closeServer(app.server, app.sockets);
});

/** Tries a TLS handshake plus one HTTP/2 CONNECT; resolves with how far it got. */
function attempt(options: ConnectionOptions): Promise<'refused' | 'connected'> {
  return new Promise((resolve) => {
    const session = h2connect(`https://127.0.0.1:${tunnelPort}`, {
      createConnection: () => tlsConnect({ host: '127.0.0.1', port: tunnelPort, ALPNProtocols: ['h2'], checkServerIdentity: () => undefined, ...options }),
    });
    session.on('error', () => undefined);
    const stream = session.request({ ':method': 'CONNECT', ':authority': `api.shop:${app.port}` });
    stream.on('error', () => undefined);
    stream.on('response', (h) => {
      session.destroy();
      resolve(h[':status'] === 200 ? 'connected' : 'refused');
    });
    stream.on('close', () => {
      session.destroy();
      resolve('refused');
    });
  });
}

async function stillServesGoodTraffic(): Promise<void> {
  const r = await roundTrip(listenerPort(client), 'still fine');
  expect(r.data.toString()).toBe('still fine');
}

describe('the tunnel port refuses', () => {
  it('a peer with no certificate', async () => {
    const before = await metricValue(server, 'trellis_tunnel_handshakes_total', { direction: 'inbound', result: 'failed', reason: 'no-certificate' });
    expect(await attempt({ ca: pki.bundlePem })).toBe('refused');
    await expect.poll(() => metricValue(server, 'trellis_tunnel_handshakes_total', { direction: 'inbound', result: 'failed', reason: 'no-certificate' })).toBe(before + 1);
    await stillServesGoodTraffic();
  });

  it('a certificate from another trust domain', async () => {
    const foreign = await createTestPki({ trustDomain: 'other.example' });
    const id = await foreign.issue('web', 'shop');
    const before = await metricValue(server, 'trellis_tunnel_handshakes_total', { direction: 'inbound', result: 'failed', reason: 'untrusted' });
    expect(await attempt({ cert: id.certChainPem, key: id.keyPem, ca: pki.bundlePem })).toBe('refused');
    await expect.poll(() => metricValue(server, 'trellis_tunnel_handshakes_total', { direction: 'inbound', result: 'failed', reason: 'untrusted' })).toBe(before + 1);
    await stillServesGoodTraffic();
  });

  it('an expired certificate from our own CA', async () => {
    const hour = 3_600_000;
    const expired = await pki.issue('web', 'shop', { notBefore: new Date(Date.now() - 2 * hour), notAfter: new Date(Date.now() - hour) });
    const before = await metricValue(server, 'trellis_tunnel_handshakes_total', { direction: 'inbound', result: 'failed', reason: 'expired' });
    expect(await attempt({ cert: expired.certChainPem, key: expired.keyPem, ca: pki.bundlePem })).toBe('refused');
    await expect.poll(() => metricValue(server, 'trellis_tunnel_handshakes_total', { direction: 'inbound', result: 'failed', reason: 'expired' })).toBe(before + 1);
    await stillServesGoodTraffic();
  });

  it('lets a valid peer of this mesh through (the refusals above are not a broken harness)', async () => {
    const id = await pki.issue('web', 'shop');
    expect(await attempt({ cert: id.certChainPem, key: id.keyPem, ca: pki.bundlePem })).toBe('connected');
  });

  it('garbage bytes: the connection is closed and counted', async () => {
    const before = await metricValue(server, 'trellis_tunnel_handshakes_total', { direction: 'inbound', result: 'failed', reason: 'not-tls' });
    await new Promise<void>((resolve) => {
      const s = netConnect({ port: tunnelPort, host: '127.0.0.1' }, () => s.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n' + 'x'.repeat(4096)));
      s.on('error', () => undefined);
      s.on('close', () => resolve());
      s.resume();
    });
    await expect.poll(() => metricValue(server, 'trellis_tunnel_handshakes_total', { direction: 'inbound', result: 'failed', reason: 'not-tls' })).toBe(before + 1);
    await stillServesGoodTraffic();
  });

  it('a handshake that never finishes is cut after the handshake timeout', async () => {
    const before = await metricValue(server, 'trellis_tunnel_handshakes_total', { direction: 'inbound', result: 'failed', reason: 'timeout' });
    await new Promise<void>((resolve) => {
      const s = netConnect({ port: tunnelPort, host: '127.0.0.1' });
      s.on('error', () => undefined);
      s.on('close', () => resolve());
      s.resume();
    });
    expect(await metricValue(server, 'trellis_tunnel_handshakes_total', { direction: 'inbound', result: 'failed', reason: 'timeout' })).toBe(before + 1);
    await stillServesGoodTraffic();
  });

  it('a CONNECT for another service or an unknown port is refused with a reason', async () => {
    const id = await pki.issue('web', 'shop');
    const refusal = (authority: string): Promise<IncomingHttpHeaders> =>
      new Promise((resolve) => {
        const session = h2connect(`https://127.0.0.1:${tunnelPort}`, {
          createConnection: () => tlsConnect({ host: '127.0.0.1', port: tunnelPort, ALPNProtocols: ['h2'], checkServerIdentity: () => undefined, cert: id.certChainPem, key: id.keyPem, ca: pki.bundlePem }),
        });
        session.on('error', () => undefined);
        const stream = session.request({ ':method': 'CONNECT', ':authority': authority });
        stream.on('error', () => undefined);
        stream.on('response', (h) => {
          session.destroy();
          resolve(h);
        });
      });
    // The status, the short reason peers and metrics know, and the registry code (common/error-codes.ts).
    const expected: [string, number, string, string][] = [
      ['payments.shop:1234', 421, 'misdirected', CODE.STREAM_MISDIRECTED],
      ['api.shop:1', 404, 'unknown-port', CODE.STREAM_UNKNOWN_PORT],
      ['not-an-authority', 400, 'bad-target', CODE.STREAM_BAD_TARGET],
    ];
    for (const [authority, status, reason, code] of expected) {
      const h = await refusal(authority);
      expect(Number(h[':status']), authority).toBe(status);
      expect(h['trellis-reason'], authority).toBe(reason);
      expect(h['trellis-error'], authority).toBe(code);
      expect(h['trellis-correlation-id'], authority).toMatch(/\S/);
    }
  });
});
