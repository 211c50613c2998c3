/**
 * Health is reported up per service, and callers fail over per service and zone, not per ingress: with
 * the real pieces chained (a zone's registry → its exported records, `exports.ts` → another zone's mesh
 * view, `mesh-view.ts` → the caller's balancer with locality, `locality.ts`), west's orders going to zero
 * healthy endpoints moves east's calls to orders to north, while east's calls to payments, which west still
 * serves, stay in west; when orders recovers in west its calls come back.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { UpstreamService } from '../../../api/data-plane.js';
import { ServiceRegistry } from '../../../control/registry.js';
import type { StoredRegistration } from '../../../control/store.js';
import { exportedService } from '../../../control/zone-sync/exports.js';
import { MeshView } from '../../../control/zone-sync/mesh-view.js';
import { serviceKey, type ExportedService, type ZoneIngress } from '../../../control/zone-sync/records.js';
import { LoadBalancer } from '../../../proxy/outbound/tunnel-client/load-balancer.js';

const registries: ServiceRegistry[] = [];
afterEach(() => {
  for (const r of registries.splice(0)) r.close();
});

function zoneRegistry(zone: string): ServiceRegistry {
  const registry = new ServiceRegistry({ zone, disconnectGraceMs: 1_000, startupGraceMs: 1_000, leaseMs: 60_000 });
  registries.push(registry);
  return registry;
}

function instance(id: string, zone: string, service: string, n: number): StoredRegistration {
  return { instanceId: id, service, namespace: 'shop', zone, address: `10.${zone.length}.0.${n}`, tunnelPort: 15008, ports: [{ port: 8080, protocol: 'http' }], upstreams: [], healthy: true, updatedAt: new Date(0).toISOString() };
}

/** What each zone's link would publish for its services now. */
function records(zones: readonly [string, ServiceRegistry][]): [string, ExportedService][] {
  const out: [string, ExportedService][] = [];
  for (const [zone, registry] of zones) {
    for (const name of ['orders', 'payments']) {
      const record = exportedService(registry, 'mesh.test', zone, 'shop', name);
      if (record !== undefined) out.push([serviceKey(zone, 'shop', name), record]);
    }
  }
  return out;
}

function zonesPicked(lb: LoadBalancer, service: string, times = 100): Record<string, number> {
  const seen: Record<string, number> = {};
  for (let i = 0; i < times; i++) {
    const zone = lb.pick(service, 'shop')?.endpoint.zone ?? 'none';
    seen[zone] = (seen[zone] ?? 0) + 1;
  }
  return seen;
}

describe('per-service health across zones', () => {
  it("moves only the service that lost its healthy endpoints in a zone, not the zone's other services", () => {
    const west = zoneRegistry('west');
    const north = zoneRegistry('north');
    west.connect(instance('wo1', 'west', 'orders', 1));
    west.connect(instance('wo2', 'west', 'orders', 2));
    west.connect(instance('wp1', 'west', 'payments', 3));
    north.connect(instance('no1', 'north', 'orders', 1));
    north.connect(instance('np1', 'north', 'payments', 2));
    const zones: [string, ServiceRegistry][] = [['west', west], ['north', north]];
    let catalogue = records(zones);
    const ingresses: [string, ZoneIngress][] = [['west/registered', { zone: 'west', addresses: ['203.0.113.1:15443'] }], ['north/registered', { zone: 'north', addresses: ['198.51.100.1:15443'] }]];
    const east = new MeshView(zoneRegistry('east'), 'east', { services: () => catalogue, ingresses: () => ingresses }, 'mesh.test');
    // East's caller prefers west, then north (its own zone has neither service).
    const lb = new LoadBalancer({ locality: { zone: 'east', order: ['east', 'west', 'north'] } });
    const refresh = (): void => lb.setServices(['orders', 'payments'].map((s): UpstreamService => east.upstream('shop', s)));
    refresh();
    expect(zonesPicked(lb, 'orders')).toEqual({ west: 100 });
    expect(zonesPicked(lb, 'payments')).toEqual({ west: 100 });

    // West's orders: both instances unhealthy. West reports it per service: orders 0 of 2, payments 1 of 1.
    west.setHealth('wo1', false);
    west.setHealth('wo2', false);
    catalogue = records(zones);
    const westRecord = (name: string): ExportedService | undefined => catalogue.find(([key]) => key === serviceKey('west', 'shop', name))?.[1];
    expect(westRecord('orders')?.localities).toEqual([{ locality: 'west', healthy: 0, total: 2 }]);
    expect(westRecord('payments')?.localities).toEqual([{ locality: 'west', healthy: 1, total: 1 }]);
    east.catalogueChanged();
    refresh();
    expect(zonesPicked(lb, 'orders')).toEqual({ north: 100 });
    expect(zonesPicked(lb, 'payments')).toEqual({ west: 100 });

    // One of west's orders recovers: its calls come back to west.
    west.setHealth('wo1', true);
    catalogue = records(zones);
    east.catalogueChanged();
    refresh();
    expect(zonesPicked(lb, 'orders')).toEqual({ west: 100 });
    east.close();
  });
});
