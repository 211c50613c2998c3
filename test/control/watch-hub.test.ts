/**
 * Config distribution without sockets: a snapshot first, endpoint changes batched per tick into one delta
 * per service whose bytes are shared by every interested stream, policies filtered per namespace, and a
 * stream that reads too slowly closed rather than buffered without bound.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { setImmediate as tick } from 'node:timers/promises';
import type { WatchDeltaMessage, WatchMessage, WatchSnapshotMessage } from '../../api/control-protocol.js';
import { ServiceRegistry } from '../../control/registry.js';
import type { StoredRegistration } from '../../control/store.js';
import { WatchHub, type WatchSink } from '../../control/watch-hub.js';
import type { TrafficPermission } from '../../policy/types.js';

class Sink implements WatchSink {
  lines: string[] = [];
  bufferedBytes = 0;
  closed: string | undefined;
  write(line: string): void {
    this.lines.push(line);
  }
  close(reason: string): void {
    this.closed = reason;
  }
  messages(): WatchMessage[] {
    return this.lines.map((l) => JSON.parse(l) as WatchMessage);
  }
}

const reg = (id: string, service: string, port: number): StoredRegistration => ({
  instanceId: id, service, namespace: 'shop', zone: 'z1', address: '10.0.0.1', tunnelPort: port,
  ports: [{ port: 8080, protocol: 'tcp' }], upstreams: [], healthy: true, updatedAt: '',
});
const policy = (ns: string, name: string): TrafficPermission => ({
  apiVersion: 'trellis.dev/v1alpha1', kind: 'TrafficPermission', metadata: { name, namespace: ns },
  spec: { destination: '*', mode: 'enforce', rules: [{ action: 'allow', from: ['*'] }] },
});

let registry: ServiceRegistry;
let hub: WatchHub;
let policies: TrafficPermission[];
beforeEach(() => {
  registry = new ServiceRegistry({ zone: 'z1', disconnectGraceMs: 1_000, startupGraceMs: 1_000, leaseMs: 60_000 });
  policies = [policy('shop', 'a'), policy('other', 'b'), policy('trellis-system', 'mesh')];
  hub = new WatchHub({ registry, trustDomain: 'example.org', rootNamespace: 'trellis-system', zone: 'z1', pingIntervalMs: 60_000, maxBufferedBytes: 1_000, trustBundlePem: () => 'PEM', policies: () => policies });
});
afterEach(() => {
  hub.close();
  registry.close();
});

const subscriber = (id: string, namespace = 'shop') => ({ instanceId: id, service: 'frontend', namespace, spiffeId: `spiffe://example.org/ns/${namespace}/sa/frontend`, upstreams: [{ service: 'orders', namespace: 'shop' }] });

describe('WatchHub', () => {
  it('starts every stream with a snapshot holding its upstreams and its namespace\'s policies', () => {
    registry.connect(reg('o1', 'orders', 1));
    const sink = new Sink();
    hub.open(subscriber('f1'), sink);
    const [first] = sink.messages() as [WatchSnapshotMessage];
    expect(first.type).toBe('snapshot');
    expect(first.snapshot.upstreams[0]?.endpoints.map((e) => e.tunnelPort)).toEqual([1]);
    expect(first.snapshot.policies.map((p) => p.metadata.name)).toEqual(['a', 'mesh']);
  });

  it('batches a burst of endpoint changes into one delta line, the same bytes for every interested stream', async () => {
    registry.connect(reg('o1', 'orders', 1));
    const sinks = [new Sink(), new Sink(), new Sink()];
    sinks.forEach((s, i) => hub.open(subscriber(`f${i}`), s));
    const bystander = new Sink();
    hub.open({ ...subscriber('x'), upstreams: [{ service: 'payments', namespace: 'shop' }] }, bystander);
    registry.setHealth('o1', false);
    registry.connect(reg('o2', 'orders', 2));
    registry.connect(reg('o3', 'orders', 3));
    await tick();
    const deltas = sinks.map((s) => s.lines.slice(1));
    expect(deltas[0]).toHaveLength(1);
    expect(deltas[1]).toEqual(deltas[0]);
    expect(deltas[2]).toEqual(deltas[0]);
    const delta = JSON.parse(deltas[0]?.[0] as string) as WatchDeltaMessage;
    expect(delta.endpoints?.map((c) => `${c.set?.tunnelPort}:${c.set?.healthy}`)).toEqual(['1:false', '2:true', '3:true']);
    expect(bystander.lines).toHaveLength(1);
  });

  it('sends each namespace only its policies when they change', () => {
    const shop = new Sink();
    const other = new Sink();
    hub.open(subscriber('f1'), shop);
    hub.open(subscriber('f2', 'other'), other);
    policies = [policy('other', 'b2')];
    hub.policyChanged();
    expect((shop.messages()[1] as WatchDeltaMessage).policies).toEqual([]);
    expect((other.messages()[1] as WatchDeltaMessage).policies?.map((p) => p.metadata.name)).toEqual(['b2']);
  });

  it('closes a stream whose agent does not read', async () => {
    const slow = new Sink();
    hub.open(subscriber('f1'), slow);
    slow.bufferedBytes = 5_000;
    registry.connect(reg('o1', 'orders', 1));
    await tick();
    expect(slow.closed).toMatch(/read too slowly/);
    expect(hub.streamCount).toBe(0);
  });
});
