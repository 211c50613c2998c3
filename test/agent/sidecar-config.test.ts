/**
 * From a snapshot to the proxy's config: policies validated again on arrival (a bad one refuses the
 * whole config), one listener per upstream whose port is known, and a clear reason for those waiting.
 */
import { describe, expect, it } from 'vitest';
import type { AgentSnapshot } from '../../api/control-protocol.js';
import { buildSidecarConfig } from '../../agent/sidecar-config.js';
import type { UpstreamSpec } from '../../agent/config.js';

const snapshot: AgentSnapshot = {
  trustDomain: 'example.org', rootNamespace: 'trellis-system', zone: 'z1',
  self: { service: 'frontend', namespace: 'shop', spiffeId: 'spiffe://example.org/ns/shop/sa/frontend' },
  trustBundlePem: 'PEM', policyRevision: 'r',
  policies: [{ apiVersion: 'trellis.dev/v1alpha1', kind: 'TrafficPermission', metadata: { name: 'p', namespace: 'shop' }, spec: { destination: 'frontend', mode: 'enforce', rules: [{ action: 'allow', from: ['web'] }] } }],
  upstreams: [
    { name: 'orders', namespace: 'shop', ports: [{ port: 8080, targetPort: 8080, protocol: 'http' }], endpoints: [] },
    { name: 'multi', namespace: 'shop', ports: [{ port: 80, targetPort: 80, protocol: 'http' }, { port: 81, targetPort: 81, protocol: 'tcp' }], endpoints: [] },
    { name: 'empty', namespace: 'shop', ports: [], endpoints: [] },
  ],
};
const up = (service: string, localPort: number, port?: number): UpstreamSpec => ({ service, namespace: 'shop', port, bindAddress: '127.0.0.1', localPort });

describe('buildSidecarConfig', () => {
  it('binds what it can and says why the rest waits', () => {
    const { config, waiting } = buildSidecarConfig(snapshot, 'e.1', { upstreams: [up('orders', 7001), up('multi', 7002), up('multi', 7003, 81), up('empty', 7004)] });
    expect(config.listeners).toEqual([
      { bindAddress: '127.0.0.1', localPort: 7001, service: 'orders', namespace: 'shop', port: 8080 },
      { bindAddress: '127.0.0.1', localPort: 7003, service: 'multi', namespace: 'shop', port: 81 },
    ]);
    expect(waiting).toEqual(['shop/multi (it has ports 80, 81; name one with --upstream multi:PORT=7002)', 'shop/empty (no instance registered yet)']);
    expect(config.policy.evaluate({ source: { trustDomain: 'example.org', namespace: 'shop', service: 'web' }, destination: { namespace: 'shop', service: 'frontend' }, protocol: 'tcp' }).allowed).toBe(true);
  });

  it('carries the zone the control plane places the workload in (the sidecar\'s locality follows it)', () => {
    expect(buildSidecarConfig(snapshot, 'e.1', { upstreams: [] }).config.zone).toBe('z1');
  });

  it('refuses a snapshot whose policy does not validate', () => {
    const bad = { ...snapshot, policies: [{ ...snapshot.policies[0], spec: { destination: 'frontend', mode: 'enforce', rules: [{ action: 'permit', from: ['web'] }] } }] } as unknown as AgentSnapshot;
    expect(() => buildSidecarConfig(bad, 'e.2', { upstreams: [] })).toThrow(/control plane snapshot.*action/s);
  });
});

describe('listeners that vanish when an instance appears', () => {
  it('keeps a bound listener on its service port when a second instance adds another port', () => {
    const one = { ...snapshot, upstreams: [{ name: 'payments', namespace: 'shop', ports: [{ port: 8080, targetPort: 8080, protocol: 'http' as const }], endpoints: [] }] };
    const first = buildSidecarConfig(one, 'e.1', { upstreams: [up('payments', 15101)] });
    expect(first.config.listeners.map((l) => l.port)).toEqual([8080]);
    // A second instance registers app port 9090: the service now lists both.
    const two = { ...one, upstreams: [{ ...one.upstreams[0]!, ports: [...one.upstreams[0]!.ports, { port: 9090, targetPort: 9090, protocol: 'http' as const }] }] };
    const second = buildSidecarConfig(two, 'e.2', { upstreams: [up('payments', 15101)] }, first.config.listeners);
    expect(second.config.listeners).toEqual(first.config.listeners);
    expect(second.waiting).toEqual([]);
    // Without a listener in force there is no port to keep: the choice is the operator's.
    expect(buildSidecarConfig(two, 'e.2', { upstreams: [up('payments', 15101)] }).waiting).toHaveLength(1);
  });
});

describe('traffic resources in the snapshot', () => {
  const route = { apiVersion: 'trellis.dev/v1alpha1', kind: 'TrafficRoute', metadata: { name: 'r', namespace: 'shop' }, spec: { destination: 'orders', rules: [{ backends: [{ labels: { version: 'v2' }, weight: 1 }] }] } };

  it('are validated again and compiled into the config; absent, the defaults apply', () => {
    const { config } = buildSidecarConfig({ ...snapshot, traffic: [route] } as unknown as AgentSnapshot, 'e.3', { upstreams: [] });
    const req = { method: 'GET', path: '/', query: '', headerValues: () => [] };
    expect(config.traffic?.route('shop', 'orders', req).label).toBe('r/0');
    expect(buildSidecarConfig(snapshot, 'e.4', { upstreams: [] }).config.traffic?.route('shop', 'orders', req).label).toBe('default');
  });

  it('refuse the whole config when one does not validate', () => {
    const bad = { ...snapshot, traffic: [{ ...route, spec: { destination: 'orders', rules: [{ backends: [{ weight: 0 }] }] } }] } as unknown as AgentSnapshot;
    expect(() => buildSidecarConfig(bad, 'e.5', { upstreams: [] })).toThrow(/weights add up to 0/);
  });
});
