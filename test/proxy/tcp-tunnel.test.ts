import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { connect, type Server, type Socket } from 'node:net';
import { createTestPki, type TestPki } from '../helpers/pki.js';
import type { Sidecar } from '../../proxy/sidecar.js';
import { allow, closeServer, echoServer, listenerPort, metricValue, policyOf, roundTrip, startClientSidecar, startServerSidecar } from './support/mesh.js';

let pki: TestPki;
const cleanup: (() => Promise<void>)[] = [];

beforeAll(async () => {
  pki = await createTestPki();
});

afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

async function pair(policyFrom: string[]): Promise<{ server: Sidecar; client: Sidecar; app: { server: Server; port: number; sockets: Set<Socket> } }> {
  const app = await echoServer();
  cleanup.push(() => closeServer(app.server, app.sockets));
  const server = await startServerSidecar({
    identity: await pki.issue('api', 'shop'),
    appPorts: [{ port: app.port, protocol: 'tcp', host: '127.0.0.1' }],
    policy: policyOf(allow('api', policyFrom)),
  });
  cleanup.push(() => server.stop(0));
  const client = await startClientSidecar(await pki.issue('web', 'shop'), [server.addresses().tunnel!.port], app.port);
  cleanup.push(() => client.stop(0));
  return { server, client, app };
}

describe('TCP through a client and a server sidecar', () => {
  it('carries an allowed connection both ways, with half-close, and counts it', async () => {
    const { server, client } = await pair(['web']);
    const result = await roundTrip(listenerPort(client), 'hello through the mesh');
    expect(result.error).toBeUndefined();
    expect(result.data.toString()).toBe('hello through the mesh');
    await expect.poll(() => metricValue(server, 'trellis_tcp_connections_total', { direction: 'inbound', source: 'shop/web', destination: 'shop/api', result: 'ok' })).toBe(1);
    await expect.poll(() => metricValue(client, 'trellis_tcp_connections_total', { direction: 'outbound', result: 'ok' })).toBe(1);
    expect(await metricValue(server, 'trellis_tcp_bytes_total', { flow: 'to_destination' })).toBe(22);
    expect(await metricValue(client, 'trellis_tcp_bytes_total', { flow: 'to_source' })).toBe(22);
  });

  it('carries 4 MiB both ways intact and in order: bulk writes to the app coalesced per turn keep every byte', async () => {
    const { client } = await pair(['web']);
    // A pattern that does not repeat on 16 KiB boundaries, so a reordered or dropped chunk cannot compare equal.
    const payload = Buffer.alloc(4 * 1024 * 1024);
    for (let i = 0; i < payload.length; i++) payload[i] = (i * 7 + (i >>> 13)) & 0xff;
    const results = await Promise.all([roundTrip(listenerPort(client), payload), roundTrip(listenerPort(client), payload)]);
    for (const result of results) {
      expect(result.error).toBeUndefined();
      expect(result.data.length).toBe(payload.length);
      expect(result.data.equals(payload)).toBe(true);
    }
  });

  it('carries many concurrent connections on the pooled sessions without new handshakes per connection', async () => {
    const { client } = await pair(['web']);
    const port = listenerPort(client);
    await roundTrip(port, 'warm');
    const before = await metricValue(client, 'trellis_tunnel_handshakes_total', { direction: 'outbound' });
    const results = await Promise.all(Array.from({ length: 50 }, (_, i) => roundTrip(port, `payload ${i}`)));
    results.forEach((r, i) => expect(r.data.toString()).toBe(`payload ${i}`));
    expect(await metricValue(client, 'trellis_tunnel_handshakes_total', { direction: 'outbound' })).toBe(before);
  });

  it('refuses a caller that no policy allows, before the app sees a byte, and counts the denial', async () => {
    const { server, client, app } = await pair(['billing']);
    let appConnections = 0;
    app.server.on('connection', () => (appConnections += 1));
    const result = await roundTrip(listenerPort(client), 'let me in');
    expect(result.data.length).toBe(0);
    expect(appConnections).toBe(0);
    await expect.poll(() => metricValue(server, 'trellis_policy_denials_total', { source: 'shop/web', destination: 'shop/api', policy: 'default-deny' })).toBe(1);
    await expect.poll(() => metricValue(client, 'trellis_tcp_connections_total', { result: 'denied' })).toBe(1);
  });

  it('propagates a reset mid-stream both ways: app reset → caller sees a reset; caller reset → app sees a reset', async () => {
    const { server, client, app } = await pair(['web']);
    // The app resets any connection that sends "reset".
    app.server.removeAllListeners('connection');
    const appSawReset = new Promise<string>((resolve) => {
      app.server.on('connection', (s: Socket) => {
        s.on('data', (d: Buffer) => {
          if (d.toString() === 'reset') s.resetAndDestroy();
        });
        s.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'error'));
      });
    });
    const first = await new Promise<string>((resolve) => {
      const s = connect({ port: listenerPort(client), host: '127.0.0.1' });
      s.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'error'));
      s.on('close', () => resolve('closed without error'));
      s.write('reset');
    });
    expect(first).toBe('ECONNRESET');
    await expect.poll(() => metricValue(server, 'trellis_tcp_connections_total', { result: 'app-reset' })).toBe(1);
    await expect.poll(() => metricValue(client, 'trellis_tcp_connections_total', { result: 'peer-reset' })).toBe(1);

    const s = connect({ port: listenerPort(client), host: '127.0.0.1' });
    s.on('error', () => undefined);
    s.write('hello');
    await expect.poll(() => metricValue(server, 'trellis_tcp_connections_active', { direction: 'inbound' })).toBe(1);
    s.resetAndDestroy();
    expect(await appSawReset).toBe('ECONNRESET');
  });
});
