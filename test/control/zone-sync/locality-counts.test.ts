/**
 * The localities of an exported service record (control/zone-sync/records.ts `localityCounts`): one per
 * subzone of the zone's endpoints (`zone/subzone`), the zone alone for endpoints without one, healthy and
 * total counted, bounded by the record's limit with totals that still add up; the record validates.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { Endpoint } from '../../../api/data-plane.js';
import { ServiceRegistry } from '../../../control/registry.js';
import { exportedService } from '../../../control/zone-sync/exports.js';
import { localityCounts, RECORD_LIMITS, validateRecord } from '../../../control/zone-sync/records.js';
import type { StoredRegistration } from '../../../control/store.js';

const ep = (n: number, healthy: boolean, subzone?: string): Endpoint => ({ address: `10.0.0.${n}`, tunnelPort: 15008, zone: 'west', healthy, ...(subzone === undefined ? {} : { labels: { 'trellis.dev/subzone': subzone } }) });

describe('locality counts of an exported service', () => {
  let registry: ServiceRegistry | undefined;
  afterEach(() => registry?.close());

  it('counts per subzone, the zone alone for endpoints without one, in locality order', () => {
    expect(localityCounts('west', [ep(1, true, 'rack-b'), ep(2, false, 'rack-b'), ep(3, true), ep(4, true, 'rack-a')])).toEqual([
      { locality: 'west', healthy: 1, total: 1 },
      { locality: 'west/rack-a', healthy: 1, total: 1 },
      { locality: 'west/rack-b', healthy: 1, total: 2 },
    ]);
    expect(localityCounts('west', [])).toEqual([{ locality: 'west', healthy: 0, total: 0 }]);
  });

  it('folds subzones past the record limit into the zone, so the totals add up and the record validates', () => {
    const many = Array.from({ length: 100 }, (_, i) => ep(i, i % 2 === 0, `s${String(i).padStart(3, '0')}`));
    const counts = localityCounts('west', many);
    expect(counts).toHaveLength(RECORD_LIMITS.localities);
    expect(counts.reduce((n, c) => n + c.total, 0)).toBe(100);
    expect(counts.reduce((n, c) => n + c.healthy, 0)).toBe(50);
    const record = { zone: 'west', namespace: 'shop', name: 'orders', ports: [{ port: 80, protocol: 'http' }], identities: ['spiffe://trellis.local/ns/shop/sa/orders'], localities: counts };
    expect(() => validateRecord('service', 'west/shop/orders', record)).not.toThrow();
  });

  it('is what the zone exports, from its registrations\' subzone labels', () => {
    registry = new ServiceRegistry({ zone: 'west', disconnectGraceMs: 1_000, startupGraceMs: 1_000, leaseMs: 60_000 });
    const instance = (id: string, address: string, subzone: string): StoredRegistration => ({
      instanceId: id, service: 'orders', namespace: 'shop', zone: 'west', address, tunnelPort: 15008,
      ports: [{ port: 8080, protocol: 'http' }], upstreams: [], healthy: true, updatedAt: new Date(0).toISOString(), labels: { 'trellis.dev/subzone': subzone },
    });
    registry.connect(instance('a', '10.0.0.1', 'rack-a'));
    registry.connect(instance('b', '10.0.0.2', 'rack-b'));
    expect(exportedService(registry, 'trellis.local', 'west', 'shop', 'orders')?.localities).toEqual([
      { locality: 'west/rack-a', healthy: 1, total: 1 },
      { locality: 'west/rack-b', healthy: 1, total: 1 },
    ]);
  });
});
