/**
 * Applying watch deltas: endpoint sets and removals, whole-upstream replacement, policy swaps; a delta
 * that does not fit (unknown upstream, older version) changes nothing.
 */
import { describe, expect, it } from 'vitest';
import type { AgentSnapshot } from '../../api/control-protocol.js';
import { ConfigState } from '../../agent/config-state.js';

const snapshot: AgentSnapshot = {
  trustDomain: 'example.org', rootNamespace: 'trellis-system', zone: 'z1',
  self: { service: 'frontend', namespace: 'shop', spiffeId: 'spiffe://example.org/ns/shop/sa/frontend' },
  trustBundlePem: 'PEM', policies: [], policyRevision: 'empty',
  upstreams: [{ name: 'orders', namespace: 'shop', ports: [{ port: 80, targetPort: 80, protocol: 'http' }], endpoints: [{ address: '10.0.0.1', tunnelPort: 15008, zone: 'z1', healthy: true }] }],
};
const ep = (address: string, healthy = true) => ({ address, tunnelPort: 15008, zone: 'z1', healthy });

describe('ConfigState', () => {
  it('applies endpoint changes and keeps the rest as it was', () => {
    const state = ConfigState.fromSnapshot({ snapshot, version: 3, epoch: 'e' });
    state.apply({ type: 'delta', version: 4, endpoints: [
      { service: 'orders', namespace: 'shop', set: ep('10.0.0.2') },
      { service: 'orders', namespace: 'shop', set: ep('10.0.0.1', false) },
    ] });
    state.apply({ type: 'delta', version: 5, endpoints: [{ service: 'orders', namespace: 'shop', remove: '10.0.0.2:15008' }] });
    const { snapshot: now, version } = state.current();
    expect(version).toBe(5);
    expect(now.upstreams[0]?.endpoints).toEqual([ep('10.0.0.1', false)]);
    expect(now.upstreams[0]?.ports).toEqual(snapshot.upstreams[0]?.ports);
    expect(now.trustBundlePem).toBe('PEM');
  });

  it('replaces a whole upstream, the policies and the trust bundle', () => {
    const state = ConfigState.fromSnapshot({ snapshot, version: 1, epoch: 'e' });
    state.apply({ type: 'delta', version: 2, upstreams: [{ name: 'orders', namespace: 'shop', ports: [], endpoints: [] }], policyRevision: 'r2', policies: [], trustBundlePem: 'PEM2' });
    state.apply({ type: 'delta', version: 3, endpoints: [{ service: 'orders', namespace: 'shop', set: ep('10.0.0.9') }] });
    const now = state.current().snapshot;
    expect(now.upstreams[0]?.endpoints).toEqual([ep('10.0.0.9')]);
    expect(now.policyRevision).toBe('r2');
    expect(now.trustBundlePem).toBe('PEM2');
  });

  it('refuses a delta for an upstream it never asked for, or an older version, and changes nothing', () => {
    const state = ConfigState.fromSnapshot({ snapshot, version: 7, epoch: 'e' });
    const before = state.current();
    expect(() => state.apply({ type: 'delta', version: 8, endpoints: [{ service: 'orders', namespace: 'shop', set: ep('10.0.0.5') }, { service: 'payments', namespace: 'shop', set: ep('10.0.0.6') }] })).toThrow(/payments/);
    expect(() => state.apply({ type: 'delta', version: 6, endpoints: [] })).toThrow(/older/);
    expect(state.current()).toEqual(before);
    // The refused delta's first, valid change did not leak in either.
    state.apply({ type: 'delta', version: 8, endpoints: [] });
    expect(state.current().snapshot.upstreams[0]?.endpoints).toEqual([ep('10.0.0.1')]);
  });

  it('under a wildcard subscription, takes a service that appears and drops one that leaves', () => {
    const payments = { name: 'payments', namespace: 'bank', ports: [{ port: 80, targetPort: 8080, protocol: 'http' as const }], endpoints: [ep('10.0.1.1')] };
    const state = ConfigState.fromSnapshot({ snapshot, version: 1, epoch: 'e' }, [{ service: '*', namespace: '*' }]);
    state.apply({ type: 'delta', version: 2, upstreams: [payments] });
    state.apply({ type: 'delta', version: 3, endpoints: [{ service: 'payments', namespace: 'bank', set: ep('10.0.1.2') }] });
    expect(state.current().snapshot.upstreams.map((u) => `${u.namespace}/${u.name}:${u.endpoints.length}`)).toEqual(['shop/orders:1', 'bank/payments:2']);
    state.apply({ type: 'delta', version: 4, removedUpstreams: [{ service: 'orders', namespace: 'shop' }] });
    expect(state.current().snapshot.upstreams.map((u) => u.name)).toEqual(['payments']);
    // A removed service's endpoints are gone: a later endpoint change for it does not fit.
    expect(() => state.apply({ type: 'delta', version: 5, endpoints: [{ service: 'orders', namespace: 'shop', set: ep('10.0.0.3') }] })).toThrow(/orders/);
    // A removal of something it does not hold (joined and left within one batch) changes nothing.
    const before = state.current().snapshot;
    state.apply({ type: 'delta', version: 5, removedUpstreams: [{ service: 'ghost', namespace: 'bank' }] });
    expect(state.current().snapshot.upstreams).toBe(before.upstreams);
    // It comes back whole.
    state.apply({ type: 'delta', version: 6, upstreams: [{ ...snapshot.upstreams[0] as typeof payments, endpoints: [ep('10.0.0.4')] }] });
    expect(state.current().snapshot.upstreams.find((u) => u.name === 'orders')?.endpoints).toEqual([ep('10.0.0.4')]);
  });

  it('under a namespace wildcard, refuses a new service of another namespace', () => {
    const state = ConfigState.fromSnapshot({ snapshot, version: 1, epoch: 'e' }, [{ service: '*', namespace: 'shop' }]);
    state.apply({ type: 'delta', version: 2, upstreams: [{ name: 'cart', namespace: 'shop', ports: [], endpoints: [] }] });
    expect(() => state.apply({ type: 'delta', version: 3, upstreams: [{ name: 'payments', namespace: 'bank', ports: [], endpoints: [] }] })).toThrow(/bank\/payments/);
    expect(state.current().snapshot.upstreams.map((u) => u.name)).toEqual(['orders', 'cart']);
  });
});
