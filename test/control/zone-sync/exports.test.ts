/**
 * Which services a zone exports: the zone's rules first, then the service's own word (the Kubernetes
 * labels the feed resolved, or the agents' --export / --no-export, where not exporting wins a
 * disagreement), then the mesh-wide default. The registry carries each word and says when it changed.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { ServiceRegistry, type RegistryEvent } from '../../../control/registry.js';
import { isExported, serviceExportWord, type ExportRules } from '../../../control/zone-sync/exports.js';
import type { StoredRegistration } from '../../../control/store.js';

const none: ExportRules = { exported: [], hidden: [] };

function instance(id: string, address: string, exported?: boolean): StoredRegistration {
  return {
    instanceId: id, service: 'orders', namespace: 'shop', zone: 'west', address, tunnelPort: 15008,
    ports: [{ port: 8080, protocol: 'http' }], upstreams: [], healthy: true, updatedAt: new Date(0).toISOString(),
    ...(exported === undefined ? {} : { export: exported }),
  };
}

describe('isExported precedence', () => {
  it('falls back to the mesh-wide default only when nobody spoke', () => {
    expect(isExported(none, 'all', 'shop', 'orders')).toBe(true);
    expect(isExported(none, 'none', 'shop', 'orders')).toBe(false);
  });

  it("takes the service's word over the mesh-wide default, either way", () => {
    expect(isExported(none, 'none', 'shop', 'orders', true)).toBe(true);
    expect(isExported(none, 'all', 'shop', 'orders', false)).toBe(false);
  });

  it("takes the zone's rules over the service's word: a labelled-exported service stays hidden under --no-export", () => {
    expect(isExported({ exported: [], hidden: ['shop/orders'] }, 'all', 'shop', 'orders', true)).toBe(false);
    expect(isExported({ exported: [], hidden: ['shop/*'] }, 'all', 'shop', 'orders', true)).toBe(false);
    expect(isExported({ exported: ['shop/orders'], hidden: [] }, 'none', 'shop', 'orders', false)).toBe(true);
    // The zone's rule about another service does not speak for this one.
    expect(isExported({ exported: [], hidden: ['shop/payments'] }, 'none', 'shop', 'orders', true)).toBe(true);
  });
});

describe("a service's own word", () => {
  it("is the platform's when the feed resolved one, whatever its instances say", () => {
    expect(serviceExportWord({ platform: false, instances: [true, true] })).toEqual({ word: false, conflict: false });
    expect(serviceExportWord({ platform: true, instances: [false] })).toEqual({ word: true, conflict: false });
  });

  it('is its instances\': silent instances do not count, and a disagreement hides the service and is reported', () => {
    expect(serviceExportWord({ instances: [] })).toEqual({ word: undefined, conflict: false });
    expect(serviceExportWord({ instances: [undefined, undefined] })).toEqual({ word: undefined, conflict: false });
    expect(serviceExportWord({ instances: [undefined, true] })).toEqual({ word: true, conflict: false });
    expect(serviceExportWord({ instances: [true, false, undefined] })).toEqual({ word: false, conflict: true });
  });
});

describe('the registry carries the word', () => {
  let registry: ServiceRegistry | undefined;
  afterEach(() => registry?.close());

  it('from registrations, and reports a change of word alone as an export event (agents hear nothing)', () => {
    registry = new ServiceRegistry({ zone: 'west', disconnectGraceMs: 1_000, startupGraceMs: 1_000, leaseMs: 60_000 });
    const events: RegistryEvent[] = [];
    registry.subscribe((e) => events.push(e));
    registry.connect(instance('a', '10.0.0.1', true));
    registry.connect(instance('b', '10.0.0.2'));
    expect(serviceExportWord(registry.exportWords('shop', 'orders'))).toEqual({ word: true, conflict: false });
    events.length = 0;
    registry.connect(instance('b', '10.0.0.2', false));
    expect(events.map((e) => e.kind)).toEqual(['export']);
    expect(serviceExportWord(registry.exportWords('shop', 'orders'))).toEqual({ word: false, conflict: true });
    events.length = 0;
    registry.connect(instance('b', '10.0.0.2', false));
    expect(events).toEqual([]);
    registry.remove('b');
    expect(serviceExportWord(registry.exportWords('shop', 'orders'))).toEqual({ word: true, conflict: false });
  });

  it("from the platform's definition: a change of the word alone is an export event, not a ports one", () => {
    registry = new ServiceRegistry({ zone: 'west', disconnectGraceMs: 1_000, startupGraceMs: 1_000, leaseMs: 60_000 });
    registry.connect(instance('a', '10.0.0.1', true));
    const ports = [{ port: 80, targetPort: 8080, protocol: 'http' as const }];
    registry.defineService('shop', 'orders', { ports, virtualIps: ['10.96.0.10'] });
    const events: RegistryEvent[] = [];
    registry.subscribe((e) => events.push(e));
    registry.defineService('shop', 'orders', { ports, virtualIps: ['10.96.0.10'], export: false });
    expect(events.map((e) => e.kind)).toEqual(['export']);
    expect(serviceExportWord(registry.exportWords('shop', 'orders'))).toEqual({ word: false, conflict: false });
    events.length = 0;
    registry.defineService('shop', 'orders', { ports, virtualIps: ['10.96.0.10', '10.96.0.11'], export: false });
    expect(events.map((e) => e.kind)).toEqual(['ports']);
  });
});
