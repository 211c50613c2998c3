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
beforeEach(() => {
  vi.useFakeTimers();
  registry = new ServiceRegistry({ zone: 'z1', disconnectGraceMs: 3_000, startupGraceMs: 30_000, expireAfterMs: 3_600_000 });
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
    vi.advanceTimersByTime(3_000 + 3_600_000);
    expect(registry.entries()).toEqual([]);
    expect(registry.upstream('shop', 'orders')).toEqual({ name: 'orders', namespace: 'shop', ports: [], endpoints: [] });
  });
});
