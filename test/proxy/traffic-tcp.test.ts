/**
 * Traffic management on the TCP path, with real sidecars: a TrafficRoute's weights pick the backend per
 * connection (and a change applies to the next connection), and a CircuitBreaker's maxConnections refuses
 * the connection over the limit at once.
 */
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { compileTraffic, parseTrafficFiles } from '../../policy/traffic/index.js';
import type { Sidecar, SidecarConfig } from '../../proxy/sidecar.js';
import { allow, clientConfig, closeServer, listenerPort, meshFixture, metricValue, policyOf, roundTrip, startClientSidecar, startServerSidecar } from './support/mesh.js';

const fixture = meshFixture();
const cleanup = fixture.cleanup;

/** An app that answers every connection with its name (and, with `hold`, keeps it open). */
async function namedApp(name: string, hold = false): Promise<{ server: Server; port: number; sockets: Set<Socket> }> {
  const sockets = new Set<Socket>();
  const server = createServer({ allowHalfOpen: true }, (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => undefined);
    if (hold) s.write(name);
    else s.end(name);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanup.push(() => closeServer(server, sockets));
  return { server, port: (server.address() as AddressInfo).port, sockets };
}

const traffic = (yaml: string): SidecarConfig['traffic'] => compileTraffic(parseTrafficFiles([{ path: 't.yaml', text: yaml }]));
const weights = (v1: number, v2: number): string => `apiVersion: trellis.dev/v1alpha1
kind: TrafficRoute
metadata: { name: api, namespace: shop }
spec:
  destination: api
  rules:
    - backends: [{ labels: { version: v1 }, weight: ${v1} }, { labels: { version: v2 }, weight: ${v2} }]
`;

async function twoVersions(hold = false): Promise<{ client: Sidecar; config: (yaml: string) => SidecarConfig }> {
  const apps = [await namedApp('v1', hold), await namedApp('v2', hold)];
  const tunnels: number[] = [];
  for (const app of apps) {
    const server = await startServerSidecar({ identity: await fixture.pki.issue('api', 'shop'), appPorts: [{ port: app.port, protocol: 'tcp', host: '127.0.0.1' }], policy: policyOf(allow('api', ['web'])) });
    cleanup.push(() => server.stop(0));
    tunnels.push(server.addresses().tunnel!.port);
  }
  const client = await startClientSidecar(await fixture.pki.issue('web', 'shop'), tunnels, apps[0]!.port);
  cleanup.push(() => client.stop(0));
  const base = clientConfig(tunnels, apps[0]!.port, policyOf(allow('web', ['nobody'])));
  const config = (yaml: string): SidecarConfig => ({
    ...base,
    upstreams: base.upstreams.map((u) => ({ ...u, endpoints: u.endpoints.map((e, i) => ({ ...e, labels: { version: `v${i + 1}` }, targetPorts: { 80: apps[i]!.port } })) })),
    traffic: traffic(yaml),
  });
  return { client, config };
}

describe('traffic management on the TCP path', () => {
  it('picks the backend by weight per connection, and a weight change applies to the next connection', async () => {
    const { client, config } = await twoVersions();
    await client.applyConfig(config(weights(100, 0)));
    const port = listenerPort(client);
    const first = await Promise.all(Array.from({ length: 20 }, () => roundTrip(port, 'x')));
    expect(first.map((r) => r.data.toString())).toEqual(Array(20).fill('v1'));
    await client.applyConfig(config(weights(0, 100)));
    const second = await Promise.all(Array.from({ length: 20 }, () => roundTrip(port, 'x')));
    expect(second.map((r) => r.data.toString())).toEqual(Array(20).fill('v2'));
    await client.applyConfig(config(weights(75, 25)));
    const mixed: string[] = [];
    for (let i = 0; i < 20; i++) mixed.push(...(await Promise.all(Array.from({ length: 10 }, () => roundTrip(port, 'x')))).map((r) => r.data.toString()));
    const v2 = mixed.filter((m) => m === 'v2').length / mixed.length;
    expect(Math.abs(v2 - 0.25)).toBeLessThan(0.1);
  });

  it('refuses a connection over the circuit breaker\'s maxConnections at once, and counts it', async () => {
    const { client, config } = await twoVersions(true);
    await client.applyConfig(config(`${weights(1, 1)}---
apiVersion: trellis.dev/v1alpha1
kind: CircuitBreaker
metadata: { name: api, namespace: shop }
spec:
  destination: api
  maxConnections: 1
`));
    const port = listenerPort(client);
    const { connect } = await import('node:net');
    const held = connect({ port, host: '127.0.0.1' });
    cleanup.push(async () => void held.destroy());
    await new Promise<void>((r) => held.once('data', () => r()));
    const started = performance.now();
    const refused = await roundTrip(port, 'x');
    expect(refused.data.length).toBe(0);
    expect(performance.now() - started).toBeLessThan(1_000);
    expect(await metricValue(client, 'trellis_circuit_breaker_overflows_total', { destination: 'shop/api', limit: 'max-connections' })).toBe(1);
    expect(await metricValue(client, 'trellis_tcp_connections_total', { result: 'circuit-breaker' })).toBe(1);
  });
});
