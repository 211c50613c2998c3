/**
 * No request fails because one instance's app just died: when the destination's sidecar answers that its
 * app refused the connection (nothing reached any app), the request is retried on another endpoint, and
 * the refusing endpoint is reported to the balancer. Never when the app itself answered 503, and never
 * once a request body was consumed.
 *
 * The live endpoint is marked unhealthy in config so the first pick is always the refusing one (the only
 * healthy candidate) and the retry, excluding it, gets the live one (the balancer's degraded choice).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { send } from './http-client.js';
import { closeApp, endpointOf, startMesh, type TestMesh } from './http-harness.js';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { allow, clientConfig, closeServer, listenerPort, meshFixture, metricValue, policyOf, roundTrip, startClientSidecar, startServerSidecar } from './support/mesh.js';

for (const lanes of [true, false]) {
  describe(`HTTP ${lanes ? 'lane' : 'HTTP/2 request'} path: retry after the destination app refused`, () => {
    let mesh: TestMesh | undefined;
    afterEach(async () => {
      await mesh?.close();
      mesh = undefined;
    });

    /** Endpoint A's app is down (its sidecar is up); B serves. A is picked first, B only on a retry. */
    async function deadFirst(handlerA: Parameters<typeof startMesh>[0]['apps'][number] = (_req, res) => res.end('A')): Promise<TestMesh> {
      const m = await startMesh({ lanes, apps: [handlerA, (_req, res) => res.end('B')] });
      const [a, b] = m.tunnels;
      m.setEndpoints([endpointOf(a!.port), { ...endpointOf(b!.port), healthy: false }]);
      return m;
    }

    it('retries a request without a body on another endpoint and reports the refusing one', async () => {
      mesh = await deadFirst();
      await closeApp(mesh.apps[0]!);
      const res = await send({ port: mesh.outboundPort, path: '/after-crash' });
      expect(res.status).toBe(200);
      expect(res.body).toBe('B');
      const a = mesh.balancer.endpoints('payments', 'shop')[0]!;
      expect(a.consecutiveFailures).toBeGreaterThan(0);
      expect(a.ejectedUntil).toBeGreaterThan(Date.now());
      expect(mesh.balancer.endpoints('payments', 'shop').map((e) => e.outstanding)).toEqual([0, 0]);
    });

    it('does not retry when the app itself answered 503', async () => {
      mesh = await deadFirst((_req, res) => {
        res.statusCode = 503;
        res.setHeader('trellis-error', 'TRELLIS_HTTP_APP_UNAVAILABLE'); // an app cannot pass for its sidecar
        res.end('A says no');
      });
      const res = await send({ port: mesh.outboundPort, path: '/busy' });
      expect(res.status).toBe(503);
      expect(res.body).toBe('A says no');
      expect(res.headers['trellis-error']).toBeUndefined();
    });

    it('does not retry a request whose body was sent', async () => {
      const seen: string[] = [];
      mesh = await startMesh({ lanes, apps: [(_req, res) => res.end('A'), (req, res) => { seen.push(req.url ?? ''); res.end('B'); }] });
      const [a, b] = mesh.tunnels;
      mesh.setEndpoints([endpointOf(a!.port), { ...endpointOf(b!.port), healthy: false }]);
      await closeApp(mesh.apps[0]!);
      const res = await send({ port: mesh.outboundPort, method: 'POST', path: '/upload', body: 'payload' });
      expect(res.status).toBe(503);
      expect(res.headers['trellis-error']).toBe('TRELLIS_HTTP_APP_UNAVAILABLE');
      expect(seen).toEqual([]);
    });
  });
}

describe('TCP path: retry after the destination app refused (CONNECT 503)', () => {
  const fixture = meshFixture();

  it('connects through another endpoint when the first one answers 503 before any byte, and reports it', async () => {
    // Both instances serve target port P; the live app listens on 127.0.0.2:P, the dead one's 127.0.0.1:P is closed.
    const sockets = new Set<Socket>();
    const live = createServer({ allowHalfOpen: true }, (s) => {
      sockets.add(s);
      s.on('error', () => undefined);
      s.pipe(s);
    });
    await new Promise<void>((resolve) => live.listen(0, '127.0.0.2', resolve));
    fixture.cleanup.push(() => closeServer(live, sockets));
    const port = (live.address() as AddressInfo).port;
    const policy = policyOf(allow('api', ['web']));
    const dead = await startServerSidecar({ identity: await fixture.pki.issue('api', 'shop'), appPorts: [{ port, protocol: 'tcp', host: '127.0.0.1' }], policy });
    fixture.cleanup.push(() => dead.stop(0));
    const up = await startServerSidecar({ identity: await fixture.pki.issue('api', 'shop'), appPorts: [{ port, protocol: 'tcp', host: '127.0.0.2' }], policy });
    fixture.cleanup.push(() => up.stop(0));
    const client = await startClientSidecar(await fixture.pki.issue('web', 'shop'), [], port);
    fixture.cleanup.push(() => client.stop(0));
    const config = clientConfig([dead.addresses().tunnel!.port, up.addresses().tunnel!.port], port, policyOf());
    const [first, second] = config.upstreams[0]!.endpoints;
    await client.applyConfig({ ...config, upstreams: [{ ...config.upstreams[0]!, endpoints: [first!, { ...second!, healthy: false }] }] });
    const result = await roundTrip(listenerPort(client), 'hello');
    expect(result.data.toString()).toBe('hello');
    expect(await metricValue(dead, 'trellis_tcp_connections_total', { direction: 'inbound', result: 'app-refused' })).toBe(1);
  });
});
