/**
 * The outbound session pool against real tunnel servers: GOAWAY honoured (old streams finish, new ones go
 * elsewhere), TLS session resumption on reconnect, sessions opened ahead of need, and a server whose
 * certificate names another service refused.
 */
import { describe, expect, it } from 'vitest';
import { connect } from 'node:net';
import { allow, listenerPort, meshFixture, metricValue, policyOf, roundTrip, startClientSidecar, startServerSidecar } from './support/mesh.js';

const mesh = meshFixture();
const { cleanup, echo } = mesh;

describe('session pool', () => {
  it('opens sessions ahead of need, before the first connection', async () => {
    const app = await echo();
    const server = await startServerSidecar({ identity: await mesh.pki.issue('api', 'shop'), appPorts: [{ port: app.port, protocol: 'tcp', host: '127.0.0.1' }], policy: policyOf(allow('api', ['web'])) });
    cleanup.push(() => server.stop(0));
    const client = await startClientSidecar(await mesh.pki.issue('web', 'shop'), [server.addresses().tunnel!.port], app.port);
    cleanup.push(() => client.stop(0));
    await expect.poll(() => metricValue(client, 'trellis_tunnel_sessions', { direction: 'outbound' })).toBe(2);
    await expect.poll(() => metricValue(server, 'trellis_tunnel_sessions', { direction: 'inbound' })).toBe(2);
  });

  it('honours GOAWAY: an open connection finishes on the draining endpoint, new ones go to the other', async () => {
    const app = await echo();
    const policy = policyOf(allow('api', ['web']));
    const appPorts = [{ port: app.port, protocol: 'tcp' as const, host: '127.0.0.1' }];
    const a = await startServerSidecar({ identity: await mesh.pki.issue('api', 'shop'), appPorts, policy });
    const b = await startServerSidecar({ identity: await mesh.pki.issue('api', 'shop'), appPorts, policy });
    cleanup.push(() => b.stop(0));
    const client = await startClientSidecar(await mesh.pki.issue('web', 'shop'), [a.addresses().tunnel!.port, b.addresses().tunnel!.port], app.port);
    cleanup.push(() => client.stop(0));
    const port = listenerPort(client);

    // Open connections until one lands on a.
    const open: ReturnType<typeof connect>[] = [];
    for (let i = 0; i < 20 && (await metricValue(a, 'trellis_tcp_connections_active', { direction: 'inbound' })) === 0; i += 1) {
      const s = connect({ port, host: '127.0.0.1' });
      s.on('error', () => undefined);
      open.push(s);
      await new Promise<void>((r) => {
        s.once('data', () => r());
        s.write('x');
      });
    }
    cleanup.push(async () => open.forEach((s) => s.destroy()));
    expect(await metricValue(a, 'trellis_tcp_connections_active', { direction: 'inbound' })).toBe(1);
    const onA = open[open.length - 1]!;

    const stopping = a.stop(10_000);
    // New connections all succeed, on b.
    const bBefore = await metricValue(b, 'trellis_tcp_connections_total', { direction: 'inbound', result: 'ok' });
    for (let i = 0; i < 10; i += 1) expect((await roundTrip(port, `n${i}`)).data.toString()).toBe(`n${i}`);
    expect(await metricValue(b, 'trellis_tcp_connections_total', { direction: 'inbound', result: 'ok' })).toBe(bBefore + 10);
    // The connection on a still works while a drains.
    const reply = new Promise<string>((r) => onA.once('data', (d: Buffer) => r(d.toString())));
    onA.write('still here');
    expect(await reply).toBe('still here');
    for (const s of open) s.end();
    await stopping;
  });

  it('opens another session when every session is at its stream bound', async () => {
    const app = await echo();
    const server = await startServerSidecar({ identity: await mesh.pki.issue('api', 'shop'), appPorts: [{ port: app.port, protocol: 'tcp', host: '127.0.0.1' }], policy: policyOf(allow('api', ['web'])) });
    cleanup.push(() => server.stop(0));
    const client = await startClientSidecar(await mesh.pki.issue('web', 'shop'), [server.addresses().tunnel!.port], app.port, { pool: { sessionsPerEndpoint: 1, maxStreamsPerSession: 2 } });
    cleanup.push(() => client.stop(0));
    await expect.poll(() => metricValue(client, 'trellis_tunnel_sessions', { direction: 'outbound' })).toBe(1);
    const open: ReturnType<typeof connect>[] = [];
    cleanup.push(async () => open.forEach((s) => s.destroy()));
    for (let i = 0; i < 6; i += 1) {
      const s = connect({ port: listenerPort(client), host: '127.0.0.1' });
      s.on('error', () => undefined);
      open.push(s);
      await new Promise<void>((r) => {
        s.once('data', () => r());
        s.write('x');
      });
    }
    expect(await metricValue(client, 'trellis_tunnel_sessions', { direction: 'outbound' })).toBe(3);
  });

  it('resumes TLS sessions when it reconnects', async () => {
    const app = await echo();
    // The server closes idle sessions quickly, so the pool keeps reconnecting.
    const server = await startServerSidecar({ identity: await mesh.pki.issue('api', 'shop'), appPorts: [{ port: app.port, protocol: 'tcp', host: '127.0.0.1' }], policy: policyOf(allow('api', ['web'])), limits: { idleTimeoutMs: 200 } });
    cleanup.push(() => server.stop(0));
    const client = await startClientSidecar(await mesh.pki.issue('web', 'shop'), [server.addresses().tunnel!.port], app.port);
    cleanup.push(() => client.stop(0));
    await expect.poll(() => metricValue(client, 'trellis_tunnel_handshakes_total', { direction: 'outbound', result: 'ok', reason: 'resumed' }), { timeout: 10_000 }).toBeGreaterThan(0);
    await expect.poll(() => metricValue(server, 'trellis_tunnel_handshakes_total', { direction: 'inbound', result: 'ok', reason: 'resumed' }), { timeout: 10_000 }).toBeGreaterThan(0);
    expect((await roundTrip(listenerPort(client), 'after resumption')).data.toString()).toBe('after resumption');
  });

  it('refuses a server whose certificate names another service', async () => {
    const app = await echo();
    // An endpoint listed for api that is really "payments": the client must not trust it with api's traffic.
    const impostor = await startServerSidecar({ service: 'payments', identity: await mesh.pki.issue('payments', 'shop'), appPorts: [{ port: app.port, protocol: 'tcp', host: '127.0.0.1' }], policy: policyOf(allow('payments', ['web'])) });
    cleanup.push(() => impostor.stop(0));
    const client = await startClientSidecar(await mesh.pki.issue('web', 'shop'), [impostor.addresses().tunnel!.port], app.port);
    cleanup.push(() => client.stop(0));
    const r = await roundTrip(listenerPort(client), 'secret');
    expect(r.data.length).toBe(0);
    expect(await metricValue(client, 'trellis_tunnel_handshakes_total', { direction: 'outbound', result: 'failed', reason: 'wrong-peer' })).toBeGreaterThan(0);
    expect(app.sockets.size).toBe(0);
  });
});
