/**
 * Endpoint labels from pod labels in Kubernetes mode (what TrafficRoute backends select): the rules of
 * control/kubernetes/pod-labels.ts as a table, and end to end through the registry fed by a loopback API
 * server answering with the API's own JSON, including a relabel that moves a pod to another version.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { silentLogger } from '../../common/log.js';
import { ServiceRegistry } from '../../control/registry.js';
import { KubernetesRegistryFeed } from '../../control/kubernetes/registry-feed.js';
import { endpointLabelsOfPod } from '../../control/kubernetes/pod-labels.js';
import { fixture, PATHS, startFakeKubeApi, type FakeKubeApi } from './fixtures/k8s-fake-api.js';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

describe('endpointLabelsOfPod', () => {
  const cases: [string, Record<string, unknown>, Record<string, string> | undefined][] = [
    ['version and app kept, per-pod labels left out', { app: 'payments', version: 'v2', 'pod-template-hash': '5d8f9c7b6d', 'controller-revision-hash': 'abc' }, { version: 'v2', app: 'payments' }],
    ['the recommended version label gives version too', { 'app.kubernetes.io/version': '1.4.0' }, { version: '1.4.0', 'app.kubernetes.io/version': '1.4.0' }],
    ['an explicit version wins over the recommended one', { version: 'v2', 'app.kubernetes.io/version': '1.4.0' }, { version: 'v2', 'app.kubernetes.io/version': '1.4.0' }],
    ['StatefulSet pod labels left out', { 'statefulset.kubernetes.io/pod-name': 'db-0', 'apps.kubernetes.io/pod-index': '0' }, undefined],
    ['invalid keys and values skipped', { 'bad key': 'x', ok: 'not ok!', fine: 'yes' }, { fine: 'yes' }],
    ['__proto__ is a plain label', { ['__proto__']: 'x' }, undefined],
    ['none', {}, undefined],
  ];
  for (const [what, labels, want] of cases) {
    it(what, () => {
      const got = endpointLabelsOfPod(JSON.parse(JSON.stringify(labels)) as Record<string, unknown>);
      expect(got === undefined ? undefined : { ...got }).toEqual(want);
    });
  }

  it('keeps at most 16, version first', () => {
    const many: Record<string, string> = { version: 'v9' };
    for (let i = 0; i < 30; i++) many[`l${String(i).padStart(2, '0')}`] = 'x';
    const got = endpointLabelsOfPod(many) ?? {};
    expect(Object.keys(got)).toHaveLength(16);
    expect(Object.keys(got)[0]).toBe('version');
    expect(Object.isFrozen(got)).toBe(true);
  });
});

describe('pod labels on the endpoints of the Kubernetes registry', () => {
  let api: FakeKubeApi;
  let registry: ServiceRegistry;
  let feed: KubernetesRegistryFeed | undefined;

  beforeEach(async () => {
    api = await startFakeKubeApi();
    registry = new ServiceRegistry({ zone: 'east', disconnectGraceMs: 1_000, startupGraceMs: 1_000, leaseMs: 60_000 });
  });
  afterEach(async () => {
    await feed?.close();
    feed = undefined;
    registry.close();
    await api.close();
  });

  it('carries a pod\'s version label to its endpoint and follows a relabel', async () => {
    const pod = fixture<Json>('k8s-pod-payments.json');
    pod.metadata.labels = { ...pod.metadata.labels, version: 'v2' };
    api.apply(PATHS.services, fixture('k8s-service-payments.json'));
    api.apply(PATHS.pods, pod);
    api.apply(PATHS.slices, fixture('k8s-endpointslice-payments.json'));
    feed = new KubernetesRegistryFeed({ kubeConfig: api.kubeConfig(), registry, zone: 'east', log: silentLogger(), tuning: { backoff: { initialMs: 20, maxMs: 100 } } });
    await feed.start(10_000);
    const labels = (): unknown[] => [...registry.upstream('shop', 'payments').endpoints].map((e) => e.labels);
    // The slice's zone for the pod (its node's topology.kubernetes.io/zone) is the endpoint's subzone.
    expect(labels()).toEqual([{ version: 'v2', app: 'payments', 'trellis.dev/subzone': 'us-east-1a' }]);

    pod.metadata.labels = { app: 'payments', 'pod-template-hash': '5d8f9c7b6d', version: 'v3' };
    api.apply(PATHS.pods, pod);
    await vi.waitFor(() => expect(labels()).toEqual([{ version: 'v3', app: 'payments', 'trellis.dev/subzone': 'us-east-1a' }]));
  });
});
