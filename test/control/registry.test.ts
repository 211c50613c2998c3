/**
 * The registry's health rules, on fake timers: an endpoint stays healthy through a short disconnect,
 * leaves the healthy set after the grace, comes back on reconnect; restored registrations keep their
 * state for the startup grace; a late close of an old stream does not disconnect a newer one.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ServiceRegistry, type RegistryEvent } from '../../control/registry.js';
import type { StoredRegistration } from '../../control/store.js';

const reg = (id: string, port: number, extra: Partial<StoredRegistration> = {}): StoredRegistration => ({
  instanceId: id, service: 'orders', namespace: 'shop', zone: 'z1', address: '10.0.0.1', tunnelPort: port,
  ports: [{ port: 8080, protocol: 'http' }], upstreams: [], healthy: true, updatedAt: '', ...extra,
});

let registry: ServiceRegistry;
let events: RegistryEvent[];
let dropped: string[];
beforeEach(() => {
  vi.useFakeTimers();
  dropped = [];
  registry = new ServiceRegistry({ zone: 'z1', disconnectGraceMs: 3_000, startupGraceMs: 30_000, leaseMs: 60_000, onDropped: (r, why) => dropped.push(`${r.instanceId}:${why}`) });
  events = [];
  registry.subscribe((e) => events.push(e));
});
afterEach(() => {
  registry.close();
  vi.useRealTimers();
});

const healthy = () => registry.upstream('shop', 'orders').endpoints.map((e) => `${e.tunnelPort}:${e.healthy}`);

describe('ServiceRegistry', () => {
  it('keeps an endpoint healthy through the grace after a disconnect, then drops it; a reconnect restores it', () => {
    const lease = registry.connect(reg('a', 1));
    expect(registry.upstream('shop', 'orders').ports).toEqual([{ port: 8080, targetPort: 8080, protocol: 'http' }]);
    registry.disconnect('a', lease);
    vi.advanceTimersByTime(2_999);
    expect(healthy()).toEqual(['1:true']);
    vi.advanceTimersByTime(1);
    expect(healthy()).toEqual(['1:false']);
    registry.connect(reg('a', 1));
    expect(healthy()).toEqual(['1:true']);
    expect(events.filter((e) => e.kind === 'endpoint').map((e) => (e.kind === 'endpoint' ? e.endpoint?.healthy : null))).toEqual([true, false, true]);
  });

  it('ignores the late close of a replaced stream', () => {
    const old = registry.connect(reg('a', 1));
    registry.connect(reg('a', 1));
    registry.disconnect('a', old);
    vi.advanceTimersByTime(10_000);
    expect(healthy()).toEqual(['1:true']);
  });

  it('takes an unhealthy app out at once and counts it', () => {
    registry.connect(reg('a', 1));
    registry.connect(reg('b', 2));
    registry.setHealth('b', false);
    expect(healthy()).toEqual(['1:true', '2:false']);
    expect(registry.counts()).toEqual({ instances: 2, connected: 2, healthy: 1 });
  });

  it('restores stored registrations as they were for the startup grace', () => {
    registry.restore([reg('a', 1), reg('b', 2, { healthy: false })]);
    expect(healthy()).toEqual(['1:true', '2:false']);
    registry.connect(reg('a', 1));
    vi.advanceTimersByTime(30_000);
    expect(healthy()).toEqual(['1:true', '2:false']);
    expect(registry.entries().find((e) => e.instanceId === 'b')?.agent).toBe('gone');
  });

  it('replaces an old instance that held the same tunnel address, and removes expired ones', () => {
    registry.connect(reg('a', 1));
    const lease = registry.connect(reg('b', 1));
    expect(registry.entries().map((e) => e.instanceId)).toEqual(['b']);
    registry.disconnect('b', lease);
    vi.advanceTimersByTime(60_000);
    expect(registry.entries()).toEqual([]);
    expect(registry.upstream('shop', 'orders')).toEqual({ name: 'orders', namespace: 'shop', ports: [], endpoints: [] });
    expect(dropped).toEqual(['a:replaced', 'b:lease']);
  });

  it('removes an instance once its lease ends after the watch closed, and says the service left', () => {
    const lease = registry.connect(reg('a', 1));
    events.length = 0;
    registry.disconnect('a', lease);
    vi.advanceTimersByTime(59_999);
    expect(healthy()).toEqual(['1:false']);
    vi.advanceTimersByTime(1);
    expect(registry.get('a')).toBeUndefined();
    expect(events.slice(-3)).toEqual([
      { kind: 'endpoint', namespace: 'shop', service: 'orders', key: '10.0.0.1:1', endpoint: undefined },
      { kind: 'ports', namespace: 'shop', service: 'orders' },
      { kind: 'service', namespace: 'shop', service: 'orders', present: false },
    ]);
    expect(dropped).toEqual(['a:lease']);
  });

  it('gives restored instances a fresh lease: a reconnect within it keeps one, the unclaimed one goes', () => {
    registry.restore([reg('a', 1), reg('b', 2)]);
    vi.advanceTimersByTime(59_000);
    const lease = registry.connect(reg('a', 1));
    vi.advanceTimersByTime(1_000);
    expect(registry.entries().map((e) => e.instanceId)).toEqual(['a']);
    expect(dropped).toEqual(['b:lease']);
    // Its watch closes later: the lease starts again from that close.
    registry.disconnect('a', lease);
    vi.advanceTimersByTime(60_000);
    expect(registry.entries()).toEqual([]);
  });

  it('takes a service definition over the ports registrations declare, with virtual IPs, and says so once', () => {
    registry.connect(reg('a', 1));
    events.length = 0;
    const definition = { ports: [{ port: 9000, targetPort: 9000, protocol: 'tcp' as const }, { port: 80, targetPort: 8080, protocol: 'http' as const, name: 'http' }], virtualIps: ['10.96.0.7'] };
    registry.defineService('shop', 'orders', definition);
    expect(registry.upstream('shop', 'orders')).toMatchObject({
      ports: [{ port: 80, targetPort: 8080, protocol: 'http', name: 'http' }, { port: 9000, targetPort: 9000, protocol: 'tcp' }],
      virtualIps: ['10.96.0.7'],
      endpoints: [{ tunnelPort: 1, healthy: true }],
    });
    expect(registry.protocolsOf('shop', 'orders')).toEqual(new Set(['http', 'tcp']));
    expect(events).toEqual([{ kind: 'ports', namespace: 'shop', service: 'orders' }]);

    // The same definition again (a relist) tells no one; the registrations' ports no longer matter.
    registry.defineService('shop', 'orders', { ports: [...definition.ports], virtualIps: ['10.96.0.7'] });
    registry.connect(reg('b', 2, { ports: [{ port: 7000, protocol: 'tcp' }] }));
    expect(events.filter((e) => e.kind === 'ports')).toHaveLength(1);
    expect(registry.upstream('shop', 'orders').ports.map((p) => p.port)).toEqual([80, 9000]);

    // A changed virtual IP is a change; removing the definition falls back to the registrations' ports.
    registry.defineService('shop', 'orders', { ...definition, virtualIps: ['10.96.0.8'] });
    expect(events.filter((e) => e.kind === 'ports')).toHaveLength(2);
    registry.defineService('shop', 'orders', undefined);
    expect(events.filter((e) => e.kind === 'ports')).toHaveLength(3);
    expect(registry.upstream('shop', 'orders').ports.map((p) => p.port)).toEqual([7000, 8080]);
    expect(registry.upstream('shop', 'orders').virtualIps).toBeUndefined();
  });

  it('defines a service with no endpoints yet (a Service whose pods are not ready)', () => {
    registry.defineService('shop', 'billing', { ports: [{ port: 443, targetPort: 8443, protocol: 'tcp' }], virtualIps: [] });
    expect(registry.upstream('shop', 'billing')).toEqual({ name: 'billing', namespace: 'shop', ports: [{ port: 443, targetPort: 8443, protocol: 'tcp' }], endpoints: [] });
    registry.defineService('shop', 'billing', undefined);
    expect(registry.upstream('shop', 'billing').ports).toEqual([]);
  });
});
