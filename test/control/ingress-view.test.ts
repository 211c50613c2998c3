/**
 * What the watch hub tells the zone ingress (control/ingress-view.ts): exactly the services its zone
 * exports, by the same decision the zone link publishes by (zone-sync/exports.ts `ZoneExports`), whatever
 * the ingress subscribes to; a service that stops being exported is removed from the ingress's view at the
 * next push (and comes back whole when exported again), while other agents hear nothing of export words.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { setImmediate as tick } from 'node:timers/promises';
import type { UpstreamRef, WatchDeltaMessage, WatchMessage, WatchSnapshotMessage } from '../../api/control-protocol.js';
import { ServiceRegistry } from '../../control/registry.js';
import type { StoredRegistration } from '../../control/store.js';
import { WatchHub, type WatchSink } from '../../control/watch-hub.js';
import { NO_EXPORT_RULES, ZoneExports, type ExportRules } from '../../control/zone-sync/exports.js';
import { MeshView } from '../../control/zone-sync/mesh-view.js';
import type { ExportedService, ZoneIngress } from '../../control/zone-sync/records.js';

class Sink implements WatchSink {
  lines: string[] = [];
  bufferedBytes = 0;
  write(line: string): void {
    this.lines.push(line);
  }
  close(): void {}
  messages(): WatchMessage[] {
    return this.lines.map((l) => JSON.parse(l) as WatchMessage);
  }
  deltas(): WatchDeltaMessage[] {
    return this.messages().filter((m): m is WatchDeltaMessage => m.type === 'delta');
  }
  snapshot(): WatchSnapshotMessage {
    return this.messages()[0] as WatchSnapshotMessage;
  }
}

const reg = (id: string, service: string, namespace: string, port: number, exported?: boolean): StoredRegistration => ({
  instanceId: id, service, namespace, zone: 'west', address: '10.0.0.1', tunnelPort: port,
  ports: [{ port: 8080, protocol: 'http' }], upstreams: [], healthy: true, updatedAt: '',
  ...(exported === undefined ? {} : { export: exported }),
});

const names = (upstreams: readonly { name: string; namespace: string }[] | undefined): string[] => (upstreams ?? []).map((u) => `${u.namespace}/${u.name}`).sort();
const removed = (deltas: readonly WatchDeltaMessage[]): string[] => deltas.flatMap((d) => (d.removedUpstreams ?? []).map((r) => `${r.namespace}/${r.service}`)).sort();
const gained = (deltas: readonly WatchDeltaMessage[]): string[] => names(deltas.flatMap((d) => d.upstreams ?? []));

let registry: ServiceRegistry;
let hub: WatchHub;
let exports: ZoneExports;

function start(rules: ExportRules, fallback: 'all' | 'none', withDecision = true): void {
  exports = new ZoneExports(registry, rules, fallback, 'trellis-system');
  hub = new WatchHub({
    registry, trustDomain: 'example.org', rootNamespace: 'trellis-system', zone: 'west', pingIntervalMs: 60_000, maxBufferedBytes: 1 << 20,
    trustBundlePem: () => 'PEM', policies: () => [], scopeDiscovery: true,
    ...(withDecision ? { ingressExports: (ns: string, svc: string) => exports.exported(ns, svc) } : {}),
  });
}

function openIngress(upstreams: readonly UpstreamRef[] = [{ service: '*', namespace: '*' }]): Sink {
  const sink = new Sink();
  hub.open({ instanceId: `ingress-${Math.random()}`, service: 'trellis-ingress', namespace: 'trellis-system', spiffeId: 'spiffe://example.org/ns/trellis-system/sa/trellis-ingress', upstreams }, sink);
  return sink;
}

function openAgent(): Sink {
  const sink = new Sink();
  hub.open({ instanceId: 'fe', service: 'frontend', namespace: 'web', spiffeId: 'spiffe://example.org/ns/web/sa/frontend', upstreams: [{ service: 'orders', namespace: 'shop' }, { service: 'secret', namespace: 'shop' }] }, sink);
  return sink;
}

beforeEach(() => {
  registry = new ServiceRegistry({ zone: 'west', disconnectGraceMs: 1_000, startupGraceMs: 1_000, leaseMs: 60_000 });
  registry.connect(reg('o1', 'orders', 'shop', 1));
  registry.connect(reg('s1', 'secret', 'shop', 2));
  registry.connect(reg('p1', 'payments', 'bank', 3, false));
  registry.connect(reg('i1', 'trellis-ingress', 'trellis-system', 15443));
});
afterEach(() => {
  hub.close();
  registry.close();
});

describe("the zone ingress's view", () => {
  it('holds only what the zone exports: not a --no-export service, not one whose own word says no, not the ingress itself', () => {
    start({ exported: [], hidden: ['shop/secret'] }, 'all');
    expect(names(openIngress().snapshot().snapshot.upstreams)).toEqual(['shop/orders']);
    // Naming services does not widen it: the ingress's subscription is its zone's exports, nothing else.
    expect(names(openIngress([{ service: 'secret', namespace: 'shop' }, { service: 'payments', namespace: 'bank' }]).snapshot().snapshot.upstreams)).toEqual(['shop/orders']);
    // The decision is the one the zone link publishes by.
    expect(['shop/orders', 'shop/secret', 'bank/payments', 'trellis-system/trellis-ingress'].filter((k) => exports.exported(k.split('/')[0] as string, k.split('/')[1] as string))).toEqual(['shop/orders']);
  });

  it("follows the mesh-wide default when nobody spoke, and an --export rule over a service's own no", () => {
    start({ exported: ['bank/payments'], hidden: [] }, 'none');
    expect(names(openIngress().snapshot().snapshot.upstreams)).toEqual(['bank/payments']);
  });

  it('is empty when the hub was given no export decision (fails closed)', () => {
    start(NO_EXPORT_RULES, 'all', false);
    expect(openIngress().snapshot().snapshot.upstreams).toEqual([]);
  });

  it("drops a service at the next push when its own word turns to no, and takes it back whole when it turns to yes; agents hear nothing of it", async () => {
    start(NO_EXPORT_RULES, 'all');
    const ingress = openIngress();
    const agent = openAgent();
    expect(names(ingress.snapshot().snapshot.upstreams)).toEqual(['shop/orders', 'shop/secret']);
    registry.connect(reg('s1', 'secret', 'shop', 2, false));
    await tick();
    expect(removed(ingress.deltas())).toEqual(['shop/secret']);
    expect(agent.deltas()).toEqual([]);
    // Endpoint changes of an unexported service do not reach the ingress; an exported one's do.
    registry.setHealth('s1', false);
    registry.setHealth('o1', false);
    await tick();
    const endpointDeltas = ingress.deltas().slice(1);
    expect(endpointDeltas.flatMap((d) => (d.endpoints ?? []).map((e) => e.service))).toEqual(['orders']);
    expect(agent.deltas().flatMap((d) => (d.endpoints ?? []).map((e) => e.service)).sort()).toEqual(['orders', 'secret']);
    registry.connect(reg('s1', 'secret', 'shop', 2, true));
    await tick();
    const last = ingress.deltas().at(-1);
    expect(gained(last === undefined ? [] : [last])).toEqual(['shop/secret']);
  });

  it('recomputes when the mesh-wide default changes (the global\'s welcome): gained whole, lost removed, per stream', () => {
    start({ exported: ['shop/orders'], hidden: [] }, 'all');
    const ingress = openIngress();
    expect(names(ingress.snapshot().snapshot.upstreams)).toEqual(['shop/orders', 'shop/secret']);
    exports.setFallback('none');
    // A second ingress opened between the change and its push: its snapshot already has the new state.
    const second = openIngress();
    expect(names(second.snapshot().snapshot.upstreams)).toEqual(['shop/orders']);
    hub.exportsChanged();
    expect(removed(ingress.deltas())).toEqual(['shop/secret']);
    expect(second.deltas()).toEqual([]);
    exports.setFallback('all');
    hub.exportsChanged();
    expect(gained(ingress.deltas())).toEqual(['shop/secret']);
    // Nothing moved: nothing sent.
    const before = ingress.lines.length;
    hub.exportsChanged();
    expect(ingress.lines.length).toBe(before);
  });

  it('removes a service whose last instance left, and never offers another zone\'s service', async () => {
    const remote: ExportedService = { zone: 'east', namespace: 'shop', name: 'carts', ports: [{ port: 8080, protocol: 'http' }], identities: ['spiffe://example.org/ns/shop/sa/carts'], localities: [{ locality: 'east', healthy: 1, total: 1 }] };
    const ingressRecord: ZoneIngress = { zone: 'east', addresses: ['203.0.113.7:15443'] };
    const view = new MeshView(registry, 'west', { services: () => [['east/shop/carts', remote]], ingresses: () => [['east/registered', ingressRecord]] });
    exports = new ZoneExports(registry, NO_EXPORT_RULES, 'all', 'trellis-system');
    hub = new WatchHub({ registry: view, trustDomain: 'example.org', rootNamespace: 'trellis-system', zone: 'west', pingIntervalMs: 60_000, maxBufferedBytes: 1 << 20, trustBundlePem: () => 'PEM', policies: () => [], ingressExports: (ns, svc) => exports.exported(ns, svc) });
    const ingress = openIngress();
    expect(names(ingress.snapshot().snapshot.upstreams)).toEqual(['shop/orders', 'shop/secret']);
    registry.remove('o1');
    await tick();
    expect(removed(ingress.deltas())).toEqual(['shop/orders']);
    view.close();
  });
});
