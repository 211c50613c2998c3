/**
 * Connection caps of the outbound listeners: each listener has its own (`maxOutboundConnections`), and
 * all of them together share the sidecar's (`maxOutboundConnectionsTotal`), TCP and HTTP alike. Refusals
 * are counted in `trellis_outbound_connections_refused_total{listener,reason}`.
 */
import { describe, expect, it } from 'vitest';
import { connect, type Socket } from 'node:net';
import { Registry } from 'prom-client';
import { createSidecar } from '../../proxy/sidecar.js';
import { silentLogger } from '../../common/log.js';
import { allow, meshFixture, metricValue, policyOf, startServerSidecar, TRUST_DOMAIN } from './support/mesh.js';

const mesh = meshFixture();

/** Connects; resolves 'open' once `probe` got an answer through the mesh, 'closed' if the sidecar closed it first. */
function open(host: string, port: number, probe: string, answered: (data: string) => boolean): Promise<{ socket: Socket; state: 'open' | 'closed' }> {
  return new Promise((resolve) => {
    const socket = connect(port, host);
    let data = '';
    socket.on('error', () => undefined);
    socket.on('connect', () => socket.write(probe));
    socket.on('data', (c: Buffer) => {
      data += c.toString('latin1');
      if (answered(data)) resolve({ socket, state: 'open' });
    });
    socket.on('close', () => resolve({ socket, state: 'closed' }));
  });
}

describe('outbound connection caps', () => {
  it('refuses beyond the per-listener cap and beyond the sidecar-wide cap, and counts both', async () => {
    const app = await mesh.echo();
    const server = await startServerSidecar({
      identity: await mesh.pki.issue('api', 'shop'),
      appPorts: [{ port: app.port, protocol: 'tcp', host: '127.0.0.1' }],
      policy: policyOf(allow('api', ['web'])),
    });
    mesh.cleanup.push(() => server.stop(0));
    const endpoint = { address: '127.0.0.1', tunnelPort: server.addresses().tunnel!.port, zone: 'zone-a', healthy: true };
    const client = createSidecar({
      service: 'web',
      namespace: 'shop',
      trustDomain: TRUST_DOMAIN,
      zone: 'zone-a',
      identity: await mesh.pki.issue('web', 'shop'),
      appPorts: [],
      tunnel: { address: '127.0.0.1', port: 0 },
      admin: null,
      limits: { maxOutboundConnections: 2, maxOutboundConnectionsTotal: 3 },
      logger: silentLogger(),
      registry: new Registry(),
      config: {
        upstreams: [{ name: 'api', namespace: 'shop', ports: [{ port: 80, targetPort: app.port, protocol: 'tcp' }, { port: 81, targetPort: app.port + 1, protocol: 'http' }], endpoints: [endpoint] }],
        listeners: [
          { bindAddress: '127.0.0.1', localPort: 0, service: 'api', namespace: 'shop', port: 80 },
          // Another loopback address: listeners are keyed by address and port, and both ask for port 0.
          { bindAddress: '127.0.0.2', localPort: 0, service: 'api', namespace: 'shop', port: 81 },
        ],
        policy: policyOf(),
      },
    });
    await client.start();
    mesh.cleanup.push(() => client.stop(0));
    const [tcp, http] = client.addresses().listeners.map((l) => l.address!.port);
    const sockets: Socket[] = [];
    mesh.cleanup.push(async () => sockets.forEach((s) => s.destroy()));
    const viaTcp = async (): Promise<'open' | 'closed'> => {
      const r = await open('127.0.0.1', tcp!, 'ping', (d) => d === 'ping');
      sockets.push(r.socket);
      return r.state;
    };
    const viaHttp = async (): Promise<'open' | 'closed'> => {
      const r = await open('127.0.0.2', http!, 'GET / HTTP/1.1\r\nhost: api\r\n\r\n', (d) => d.startsWith('HTTP/1.1 '));
      sockets.push(r.socket);
      return r.state;
    };

    expect(await viaTcp()).toBe('open');
    expect(await viaTcp()).toBe('open');
    expect(await viaTcp()).toBe('closed');
    expect(await metricValue(client, 'trellis_outbound_connections_refused_total', { listener: 'shop/api:80', reason: 'listener-limit' })).toBe(1);

    expect(await viaHttp()).toBe('open');
    expect(await viaHttp()).toBe('closed');
    expect(await metricValue(client, 'trellis_outbound_connections_refused_total', { listener: 'shop/api:81', reason: 'sidecar-limit' })).toBe(1);

    // A connection that closes gives its place back.
    sockets[0]!.destroy();
    await expect.poll(async () => (await viaHttp()) === 'open').toBe(true);
  });
});
