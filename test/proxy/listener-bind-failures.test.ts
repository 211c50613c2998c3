/**
 * Listeners that vanish: one port that cannot be bound (here held by another process's server) must not
 * unbind the other listeners. It is retried with backoff until it binds, and meanwhile readiness is false
 * with a reason naming the listener and port, and `trellis_outbound_listeners_failing` counts it.
 */
import { describe, expect, it } from 'vitest';
import { createServer, type AddressInfo } from 'node:net';
import { allow, clientConfig, meshFixture, metricValue, policyOf, roundTrip, startClientSidecar, startServerSidecar } from './support/mesh.js';

const mesh = meshFixture();

describe('outbound listeners that cannot bind', () => {
  it('keep the others serving, make readiness say which port and why, and bind once the port is free', async () => {
    const app = await mesh.echo();
    const server = await startServerSidecar({
      identity: await mesh.pki.issue('api', 'shop'),
      appPorts: [{ port: app.port, protocol: 'tcp', host: '127.0.0.1' }],
      policy: policyOf(allow('api', ['web'])),
    });
    mesh.cleanup.push(() => server.stop(0));
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const taken = (blocker.address() as AddressInfo).port;
    let blockerOpen = true;
    mesh.cleanup.push(async () => {
      if (blockerOpen) await new Promise<void>((resolve) => blocker.close(() => resolve()));
    });

    const client = await startClientSidecar(await mesh.pki.issue('web', 'shop'), [server.addresses().tunnel!.port], app.port);
    mesh.cleanup.push(() => client.stop(0));
    const base = clientConfig([server.addresses().tunnel!.port], app.port, policyOf());
    const free = base.listeners[0]!;
    // The second listener asks for a port another process holds.
    await client.applyConfig({ ...base, listeners: [free, { ...free, localPort: taken }] });

    const serving = client.addresses().listeners.find((l) => l.address !== undefined && l.address.port !== taken);
    expect(serving).toBeDefined();
    expect((await roundTrip(serving!.address!.port, 'still here')).data.toString()).toBe('still here');
    const readiness = client.readiness();
    expect(readiness.ready).toBe(false);
    expect(readiness.reasons.join('\n')).toContain(`port ${taken} on 127.0.0.1 for upstream shop/api is in use by another process`);
    expect(await metricValue(client, 'trellis_outbound_listeners_failing')).toBe(1);

    await new Promise<void>((resolve) => blocker.close(() => resolve()));
    blockerOpen = false;
    await expect.poll(() => client.readiness().ready, { timeout: 10_000, interval: 100 }).toBe(true);
    expect(await metricValue(client, 'trellis_outbound_listeners_failing')).toBe(0);
    expect((await roundTrip(taken, 'bound at last')).data.toString()).toBe('bound at last');
  });
});
