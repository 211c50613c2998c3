/**
 * Instances of one service listening on different app ports behind one service port (hardening item 13):
 * the registry keeps one service port and gives each endpoint its own target port, from registrations
 * (universal mode) and from EndpointSlices whose named targetPort resolves differently per pod
 * (Kubernetes mode, the API's real JSON shape).
 */
import { describe, expect, it } from 'vitest';
import type { RegisteredPort } from '../../api/control-protocol.js';
import { endpointTargetPort } from '../../api/data-plane.js';
import { podView, serviceView, sliceView, type PodView } from '../../control/kubernetes/kubernetes-objects.js';
import { desiredService } from '../../control/kubernetes/service-endpoints.js';
import { ServiceRegistry, type RegistryEvent } from '../../control/registry.js';
import { layoutFromRegistrations } from '../../control/service-ports.js';
import type { StoredRegistration } from '../../control/store.js';
import { fixture } from './fixtures/k8s-fake-api.js';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const reg = (id: string, tunnelPort: number, ports: RegisteredPort[]): StoredRegistration => ({
  instanceId: id, service: 'payments', namespace: 'shop', zone: 'z1', address: '10.0.0.1', tunnelPort,
  ports, upstreams: [], healthy: true, updatedAt: '',
});

function registry(): { registry: ServiceRegistry; events: RegistryEvent[] } {
  const r = new ServiceRegistry({ zone: 'z1', disconnectGraceMs: 3_000, startupGraceMs: 30_000, leaseMs: 60_000 });
  const events: RegistryEvent[] = [];
  r.subscribe((e) => events.push(e));
  return { registry: r, events };
}

describe('a second instance registering a different app port', () => {
  it('serves the same service port on its own app port: one port, the newcomer with targetPorts', () => {
    const { registry: r, events } = registry();
    r.connect(reg('a', 15001, [{ port: 8080, protocol: 'http' }]));
    events.length = 0;
    r.connect(reg('b', 15002, [{ port: 9090, protocol: 'http' }]));
    const up = r.upstream('shop', 'payments');
    // The port the first instance gave callers stays; nobody's listener is renumbered by a newcomer.
    expect(up.ports).toEqual([{ port: 8080, targetPort: 8080, protocol: 'http' }]);
    expect(up.endpoints.map((e) => [e.tunnelPort, e.targetPorts])).toEqual([[15001, undefined], [15002, { 8080: 9090 }]]);
    // Ports unchanged: only the new endpoint goes out, not the whole upstream.
    expect(events.map((e) => e.kind)).toEqual(['endpoint']);
    expect(endpointTargetPort(up.endpoints[1]!, 8080, 8080)).toBe(9090);
    r.close();
  });

  it('renumbers only when the instance that defined the port leaves, and re-announces the rest', () => {
    const { registry: r, events } = registry();
    r.connect(reg('a', 15001, [{ port: 8080, protocol: 'http' }]));
    r.connect(reg('b', 15002, [{ port: 9090, protocol: 'http' }]));
    events.length = 0;
    r.remove('a');
    const up = r.upstream('shop', 'payments');
    expect(up.ports).toEqual([{ port: 9090, targetPort: 9090, protocol: 'http' }]);
    expect(up.endpoints[0]?.targetPorts).toBeUndefined();
    expect(events.map((e) => e.kind)).toEqual(['endpoint', 'ports']);
    r.close();
  });

  it('an instance without a service port is never offered for it', () => {
    const { registry: r } = registry();
    r.connect(reg('a', 15001, [{ port: 8080, protocol: 'http' }, { port: 7000, protocol: 'tcp' }]));
    r.connect(reg('b', 15002, [{ port: 9090, protocol: 'http' }]));
    const up = r.upstream('shop', 'payments');
    expect(up.ports.map((p) => p.port)).toEqual([7000, 8080]);
    const b = up.endpoints[1]!;
    expect(b.targetPorts).toEqual({ 8080: 9090 });
    expect(endpointTargetPort(b, 7000, 7000)).toBeUndefined();
    r.close();
  });
});

describe('the registration rule (service-ports.ts)', () => {
  it('matches by name, then number, then the one port of a protocol; else a new port', () => {
    const layout = layoutFromRegistrations([
      { id: 'a', ports: [{ port: 8080, protocol: 'http', name: 'web' }, { port: 5000, protocol: 'tcp' }] },
      // web by name; 5000 by number; 6000 has no unnamed tcp port left to pair with: a port of its own.
      { id: 'b', ports: [{ port: 8081, protocol: 'http', name: 'web' }, { port: 5000, protocol: 'tcp' }, { port: 6000, protocol: 'tcp' }] },
      // Two unnamed tcp service ports it could serve (5000, 6000): ambiguous, so a port of its own.
      { id: 'c', ports: [{ port: 7000, protocol: 'tcp' }] },
      // Named differently from "web" at the same number: not the same port, and the number is taken.
      { id: 'd', ports: [{ port: 8080, protocol: 'http', name: 'admin' }] },
      { id: 'e', ports: [{ port: 9999, protocol: 'http' }] },
    ]);
    expect(layout.ports.map((p) => `${p.port}>${p.targetPort}/${p.protocol}/${p.name ?? ''}`)).toEqual(['5000>5000/tcp/', '6000>6000/tcp/', '7000>7000/tcp/', '8080>8080/http/web', '9999>9999/http/']);
    expect(Object.fromEntries(layout.targetPorts)).toEqual({
      a: { 5000: 5000, 8080: 8080 },
      b: { 5000: 5000, 6000: 6000, 8080: 8081 },
      c: { 7000: 7000 },
      d: {},
      e: { 9999: 9999 },
    });
  });

  it('sends nothing new when the instances are alike', () => {
    const ports: RegisteredPort[] = [{ port: 8080, protocol: 'http' }, { port: 9000, protocol: 'tcp' }];
    const layout = layoutFromRegistrations([{ id: 'a', ports }, { id: 'b', ports: [...ports].reverse() }]);
    expect([...layout.targetPorts.values()]).toEqual([undefined, undefined]);
  });
});

describe('Kubernetes: a named targetPort resolving differently per pod (EndpointSlice per port set)', () => {
  it('gives each pod the port of the slice it is in', () => {
    const service = serviceView(fixture('k8s-service-payments.json'));
    const slice = fixture<Json>('k8s-endpointslice-payments.json');
    // The slice controller puts pods whose "http" container port differs into slices of their own.
    const first: Json = { ...slice, metadata: { ...slice.metadata, name: 'payments-a' }, endpoints: [slice.endpoints[0]] };
    const second: Json = {
      ...slice,
      metadata: { ...slice.metadata, name: 'payments-b' },
      ports: [{ name: 'http', port: 9090, protocol: 'TCP' }, { name: 'grpc-admin', port: 9000, protocol: 'TCP' }],
      endpoints: [slice.endpoints[1]],
    };
    const podJson = fixture<Json>('k8s-pod-payments.json');
    const podA = podView(podJson) as PodView;
    const podB = podView({ ...podJson, metadata: { ...podJson.metadata, name: 'payments-5d8f9c7b6d-z9k4m', uid: 'uid-b' }, status: { ...podJson.status, podIP: '10.244.2.9', podIPs: [{ ip: '10.244.2.9' }] } }) as PodView;
    const byName = new Map([podA, podB].map((p) => [p.name, p]));
    const desired = desiredService(service!, [sliceView(first)!, sliceView(second)!], (_ns, name) => byName.get(name), 'z1', '2026-11-23T09:00:00.000Z');
    expect(desired.definition.ports.map((p) => [p.port, p.targetPort, p.name])).toEqual([[80, 8080, 'http'], [9000, 9000, 'grpc-admin']]);

    const r = new ServiceRegistry({ zone: 'z1', disconnectGraceMs: 3_000, startupGraceMs: 30_000, leaseMs: 60_000 });
    r.defineService('shop', 'payments', desired.definition);
    for (const instance of desired.instances.values()) r.connect(instance);
    const up = r.upstream('shop', 'payments');
    const byAddress = Object.fromEntries(up.endpoints.map((e) => [e.address, e.targetPorts]));
    expect(byAddress).toEqual({ '10.244.1.17': undefined, '10.244.2.9': { 80: 9090, 9000: 9000 } });

    // A pod whose slice lacks a port (its container has no port of that name) does not serve it.
    const third: Json = { ...second, ports: [{ name: 'grpc-admin', port: 9000, protocol: 'TCP' }] };
    const partial = desiredService(service!, [sliceView(first)!, sliceView(third)!], (_ns, name) => byName.get(name), 'z1', '2026-11-23T09:00:00.000Z');
    for (const instance of partial.instances.values()) r.connect(instance);
    expect(r.upstream('shop', 'payments').endpoints.find((e) => e.address === '10.244.2.9')?.targetPorts).toEqual({ 9000: 9000 });
    r.close();
  });
});
