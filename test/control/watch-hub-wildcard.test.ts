/**
 * Mesh-wide subscriptions (`*` / `*`, `ns/*`) in the watch hub, without sockets: the snapshot holds every
 * service of the mesh (and no Service without a mesh workload), a service that joins reaches wildcard
 * streams as a whole upstream and no one else, one that leaves is removed from them, endpoint changes
 * reach every stream that covers the service exactly once, and a registration that mixes wildcards and
 * names is normalised (`normaliseSubscription`).
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { setImmediate as tick } from 'node:timers/promises';
import type { UpstreamRef, WatchDeltaMessage, WatchMessage, WatchSnapshotMessage } from '../../api/control-protocol.js';
import { ServiceRegistry } from '../../control/registry.js';
import type { StoredRegistration } from '../../control/store.js';
import { normaliseSubscription } from '../../control/subscription-index.js';
import { WatchHub, type WatchSink } from '../../control/watch-hub.js';

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

const reg = (id: string, service: string, namespace: string, port: number): StoredRegistration => ({
  instanceId: id, service, namespace, zone: 'z1', address: '10.0.0.1', tunnelPort: port,
  ports: [{ port: 8080, protocol: 'http' }], upstreams: [], healthy: true, updatedAt: '',
});

let registry: ServiceRegistry;
let hub: WatchHub;
beforeEach(() => {
  registry = new ServiceRegistry({ zone: 'z1', disconnectGraceMs: 1_000, startupGraceMs: 1_000, leaseMs: 60_000 });
  hub = new WatchHub({ registry, trustDomain: 'example.org', rootNamespace: 'trellis-system', zone: 'z1', pingIntervalMs: 60_000, maxBufferedBytes: 1 << 20, trustBundlePem: () => 'PEM', policies: () => [] });
});
afterEach(() => {
  hub.close();
  registry.close();
});

function open(id: string, upstreams: readonly UpstreamRef[]): Sink {
  const sink = new Sink();
  hub.open({ instanceId: id, service: 'frontend', namespace: 'web', spiffeId: 'spiffe://example.org/ns/web/sa/frontend', upstreams }, sink);
  return sink;
}

const names = (upstreams: readonly { name: string; namespace: string }[] | undefined): string[] => (upstreams ?? []).map((u) => `${u.namespace}/${u.name}`).sort();

describe('WatchHub, wildcard subscribers', () => {
  it('puts every mesh service in the snapshot, but not a defined Service without a mesh workload', () => {
    registry.connect(reg('o1', 'orders', 'shop', 1));
    registry.connect(reg('p1', 'payments', 'bank', 2));
    registry.defineService('default', 'kubernetes', { ports: [{ port: 443, targetPort: 6443, protocol: 'tcp' }], virtualIps: ['10.96.0.1'] });
    expect(names(open('all', [{ service: '*', namespace: '*' }]).snapshot().snapshot.upstreams)).toEqual(['bank/payments', 'shop/orders']);
    expect(names(open('shop', [{ service: '*', namespace: 'shop' }]).snapshot().snapshot.upstreams)).toEqual(['shop/orders']);
    // A name is kept even when nothing backs it (its listener waits for it), as before wildcards.
    expect(names(open('named', [{ service: 'kubernetes', namespace: 'default' }]).snapshot().snapshot.upstreams)).toEqual(['default/kubernetes']);
  });

  it('gives a mesh-wide snapshot opened after a change the changed list (the shared list is rebuilt)', async () => {
    registry.connect(reg('o1', 'orders', 'shop', 1));
    const first = open('a1', [{ service: '*', namespace: '*' }]);
    const again = open('a2', [{ service: '*', namespace: '*' }]);
    expect(again.snapshot().snapshot.upstreams).toEqual(first.snapshot().snapshot.upstreams);
    expect(again.snapshot().snapshot.self.spiffeId).toBe('spiffe://example.org/ns/web/sa/frontend');
    registry.connect(reg('p1', 'payments', 'bank', 2));
    registry.setHealth('o1', false);
    const later = open('a3', [{ service: '*', namespace: '*' }]);
    expect(names(later.snapshot().snapshot.upstreams)).toEqual(['bank/payments', 'shop/orders']);
    expect(later.snapshot().snapshot.upstreams.find((u) => u.name === 'orders')?.endpoints[0]?.healthy).toBe(false);
    expect(later.snapshot()).toMatchObject({ type: 'snapshot', snapshot: { policyRevision: 'empty', trustBundlePem: 'PEM' } });
  });

  it('sends a service that joins the mesh to wildcard streams only, as one whole upstream', async () => {
    registry.connect(reg('o1', 'orders', 'shop', 1));
    const all = open('all', [{ service: '*', namespace: '*' }]);
    const bank = open('bank', [{ service: '*', namespace: 'bank' }]);
    const shop = open('shop', [{ service: '*', namespace: 'shop' }]);
    const named = open('named', [{ service: 'orders', namespace: 'shop' }]);
    registry.connect(reg('p1', 'payments', 'bank', 2));
    registry.connect(reg('p2', 'payments', 'bank', 3));
    await tick();
    for (const sink of [all, bank]) {
      const [delta, ...rest] = sink.deltas();
      expect(rest).toEqual([]);
      expect(names(delta?.upstreams)).toEqual(['bank/payments']);
      expect(delta?.upstreams?.[0]?.endpoints.map((e) => e.tunnelPort).sort()).toEqual([2, 3]);
      expect(delta?.upstreams?.[0]?.ports).toEqual([{ port: 8080, targetPort: 8080, protocol: 'http' }]);
    }
    // The same bytes for both wildcard groups: serialised once.
    expect(all.lines[1]).toBe(bank.lines[1]);
    expect(shop.deltas()).toEqual([]);
    expect(named.deltas()).toEqual([]);
  });

  it('removes a service that leaves the mesh from wildcard streams; a stream that names it gets it empty', async () => {
    registry.connect(reg('p1', 'payments', 'bank', 2));
    const all = open('all', [{ service: '*', namespace: '*' }]);
    const named = open('named', [{ service: 'payments', namespace: 'bank' }]);
    registry.remove('p1');
    await tick();
    expect(all.deltas()).toEqual([{ type: 'delta', version: expect.any(Number) as number, removedUpstreams: [{ service: 'payments', namespace: 'bank' }] }]);
    const [delta] = named.deltas();
    expect(delta?.upstreams).toEqual([{ name: 'payments', namespace: 'bank', ports: [], endpoints: [] }]);
    expect(delta?.removedUpstreams).toBeUndefined();
  });

  it('sends endpoint changes of a mesh service to every stream that covers it, once each', async () => {
    registry.connect(reg('o1', 'orders', 'shop', 1));
    const all = open('all', [{ service: '*', namespace: '*' }]);
    const mixed = open('mixed', [{ service: '*', namespace: 'shop' }, { service: 'orders', namespace: 'shop' }, { service: '*', namespace: 'shop' }]);
    const named = open('named', [{ service: 'orders', namespace: 'shop' }]);
    const other = open('other', [{ service: '*', namespace: 'bank' }]);
    registry.setHealth('o1', false);
    registry.connect(reg('o2', 'orders', 'shop', 9));
    await tick();
    for (const sink of [all, mixed, named]) {
      expect(sink.deltas()).toHaveLength(1);
      expect(sink.deltas()[0]?.endpoints?.map((c) => `${c.set?.tunnelPort}:${c.set?.healthy}`)).toEqual(['1:false', '9:true']);
    }
    expect(mixed.snapshot().snapshot.upstreams).toHaveLength(1);
    expect(other.deltas()).toEqual([]);
  });

  it('sends a port change of a mesh service as a whole upstream, and ignores Services outside the mesh', async () => {
    registry.connect(reg('o1', 'orders', 'shop', 1));
    const all = open('all', [{ service: '*', namespace: '*' }]);
    registry.defineService('shop', 'orders', { ports: [{ port: 80, targetPort: 8080, protocol: 'http' }], virtualIps: ['10.96.0.7'] });
    registry.defineService('default', 'kubernetes', { ports: [{ port: 443, targetPort: 6443, protocol: 'tcp' }], virtualIps: ['10.96.0.1'] });
    await tick();
    const [delta, ...rest] = all.deltas();
    expect(rest).toEqual([]);
    expect(delta?.upstreams?.[0]).toMatchObject({ name: 'orders', namespace: 'shop', ports: [{ port: 80, targetPort: 8080, protocol: 'http' }], virtualIps: ['10.96.0.7'] });
  });

  it('sends a removal for a service that came and went within one batch (the agent ignores it)', async () => {
    const all = open('all', [{ service: '*', namespace: '*' }]);
    registry.connect(reg('p1', 'payments', 'bank', 2));
    registry.remove('p1');
    await tick();
    expect(all.deltas().map((d) => d.removedUpstreams)).toEqual([[{ service: 'payments', namespace: 'bank' }]]);
  });
});

describe('normaliseSubscription', () => {
  it('lets * / * swallow everything, and drops names a namespace wildcard covers', () => {
    expect(normaliseSubscription([{ service: 'a', namespace: 'x' }, { service: '*', namespace: '*' }])).toEqual([{ service: '*', namespace: '*' }]);
    expect(normaliseSubscription([{ service: 'a', namespace: 'x' }, { service: '*', namespace: 'x' }, { service: 'b', namespace: 'y' }, { service: 'b', namespace: 'y' }])).toEqual([
      { service: '*', namespace: 'x' },
      { service: 'b', namespace: 'y' },
    ]);
  });
});
