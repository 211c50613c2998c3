/**
 * What a zone's agents learn of the other zones (control/zone-sync/mesh-view.ts): each exported service of
 * another zone as endpoints "via that zone's ingress", merged with the zone's own endpoints; a change of
 * the catalogue told to the watch hub as the events it already understands. And the zone's registered
 * ingresses as its ingress record (exports.ts `registeredIngresses`).
 */
import { describe, expect, it } from 'vitest';
import { ServiceRegistry, type RegistryEvent } from '../../../control/registry.js';
import type { StoredRegistration } from '../../../control/store.js';
import { registeredIngresses } from '../../../control/zone-sync/exports.js';
import { MeshView } from '../../../control/zone-sync/mesh-view.js';
import type { ExportedService, ZoneIngress } from '../../../control/zone-sync/records.js';
import { service, serviceEntry } from './support.js';

function instance(id: string, name: string, namespace: string, address: string, tunnelPort = 15008): StoredRegistration {
  return { instanceId: id, service: name, namespace, zone: 'east', address, tunnelPort, ports: namespace === 'trellis-system' ? [] : [{ port: 8080, protocol: 'http' }], upstreams: [], healthy: true, updatedAt: new Date(0).toISOString() };
}

function setup(): { registry: ServiceRegistry; view: MeshView; services: [string, ExportedService][]; ingresses: [string, ZoneIngress][]; events: RegistryEvent[] } {
  const registry = new ServiceRegistry({ zone: 'east', disconnectGraceMs: 1_000, startupGraceMs: 1_000, leaseMs: 60_000 });
  const services: [string, ExportedService][] = [];
  const ingresses: [string, ZoneIngress][] = [];
  const view = new MeshView(registry, 'east', { services: () => services, ingresses: () => ingresses }, 'mesh.test');
  const events: RegistryEvent[] = [];
  view.subscribe((e) => events.push(e));
  return { registry, view, services, ingresses, events };
}

describe('MeshView', () => {
  it("offers another zone's service through its ingresses, merged after the zone's own endpoints", () => {
    const { registry, view, services, ingresses, events } = setup();
    registry.connect(instance('o1', 'orders', 'shop', '10.0.0.1'));
    events.length = 0;
    services.push(serviceEntry({ ...service('west', 'orders', 2, 3), ports: [{ port: 8080, protocol: 'http', targetPort: 9090 }] }), serviceEntry(service('west', 'payments')));
    ingresses.push(['west/registered', { zone: 'west', addresses: ['203.0.113.7:15443', '[2001:db8::1]:15443'] }]);
    view.catalogueChanged();
    const orders = view.upstream('shop', 'orders');
    expect(orders.endpoints.map((e) => [e.zone, e.address, e.tunnelPort, e.ingress?.address])).toEqual([
      ['east', '10.0.0.1', 15008, undefined],
      ['west', '2001:db8::1', 15443, '2001:db8::1'],
      ['west', '203.0.113.7', 15443, '203.0.113.7'],
    ]);
    // Where west's endpoints listen behind this zone's service port 8080: west's app port.
    expect(orders.endpoints.filter((e) => e.zone === 'west').map((e) => e.targetPorts)).toEqual([{ 8080: 9090 }, { 8080: 9090 }]);
    // payments exists only in west: a mesh service here, with west's ports and app port.
    expect(view.hasMeshService('shop', 'payments')).toBe(true);
    expect(view.meshServices('shop').map((s) => s.service).sort()).toEqual(['orders', 'payments']);
    expect(view.upstream('shop', 'payments').ports).toEqual([{ port: 8080, targetPort: 8080, protocol: 'http' }]);
    expect(events).toEqual([{ kind: 'ports', namespace: 'shop', service: 'orders' }, { kind: 'service', namespace: 'shop', service: 'payments', present: true }]);
  });

  it('marks a zone unhealthy when it reports no healthy endpoint, drops a zone without an ingress, and says when a remote-only service leaves', () => {
    const { view, services, ingresses, events } = setup();
    services.push(serviceEntry(service('west', 'payments', 0, 2)), serviceEntry(service('north', 'payments')));
    ingresses.push(['west/default', { zone: 'west', addresses: ['198.51.100.1:15443'] }]);
    view.catalogueChanged();
    expect(view.upstream('shop', 'payments').endpoints.map((e) => [e.zone, e.healthy])).toEqual([['west', false]]);
    events.length = 0;
    view.catalogueChanged(); // nothing changed: nothing said
    expect(events).toEqual([]);
    services.length = 0;
    view.catalogueChanged();
    expect(view.hasMeshService('shop', 'payments')).toBe(false);
    expect(events).toEqual([{ kind: 'service', namespace: 'shop', service: 'payments', present: false }]);
  });

  it('says the trust domain of a zone with its own PKI on its endpoints (callers verify the ingress and the destination against its roots), not of ours', () => {
    const { view, services, ingresses } = setup();
    services.push(serviceEntry({ ...service('far', 'billing'), identities: ['spiffe://other.example/ns/shop/sa/billing'] }), serviceEntry(service('west', 'payments')));
    ingresses.push(['far/registered', { zone: 'far', addresses: ['198.51.100.7:15443'] }], ['west/registered', { zone: 'west', addresses: ['203.0.113.7:15443'] }]);
    view.catalogueChanged();
    expect(view.upstream('shop', 'billing').endpoints.map((e) => [e.zone, e.trustDomain, e.ingress?.address])).toEqual([['far', 'other.example', '198.51.100.7']]);
    expect(view.upstream('shop', 'payments').endpoints.map((e) => [e.zone, e.trustDomain])).toEqual([['west', undefined]]);
  });

  it("never lists this zone's own records as remote", () => {
    const { view, services, ingresses } = setup();
    services.push(serviceEntry(service('east', 'orders')));
    ingresses.push(['east/default', { zone: 'east', addresses: ['192.0.2.1:15443'] }]);
    view.catalogueChanged();
    expect(view.hasMeshService('shop', 'orders')).toBe(false);
  });

  it("publishes the zone's registered, healthy ingresses as its ingress record", () => {
    const { registry } = setup();
    expect(registeredIngresses(registry, 'trellis-system', 'east')).toBeUndefined();
    registry.connect(instance('i1', 'trellis-ingress', 'trellis-system', '203.0.113.9', 15443));
    registry.connect(instance('i2', 'trellis-ingress', 'trellis-system', '2001:db8::9', 15443));
    expect(registeredIngresses(registry, 'trellis-system', 'east')).toEqual({ zone: 'east', addresses: ['203.0.113.9:15443', '[2001:db8::9]:15443'] });
    registry.setHealth('i1', false);
    expect(registeredIngresses(registry, 'trellis-system', 'east')?.addresses).toEqual(['[2001:db8::9]:15443']);
  });
});
