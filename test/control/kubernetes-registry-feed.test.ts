/**
 * The registry fed from Services, EndpointSlices and Pods, watched on a loopback API server that
 * answers with the API's own JSON: endpoints appear, turn unready and go; a broken watch resumes from
 * its last resourceVersion; an expired one (410 Gone) relists and sees what it missed.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Registry } from 'prom-client';
import { silentLogger } from '../../common/log.js';
import { ServiceRegistry } from '../../control/registry.js';
import { KubernetesRegistryFeed } from '../../control/kubernetes/registry-feed.js';
import { KubernetesMetrics } from '../../control/kubernetes/kubernetes-metrics.js';
import { fixture, PATHS, startFakeKubeApi, type FakeKubeApi } from './fixtures/k8s-fake-api.js';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const ZONE = 'east';

function secondPod(): Json {
  const pod = fixture<Json>('k8s-pod-payments.json');
  pod.metadata.name = 'payments-5d8f9c7b6d-z9k4m';
  pod.metadata.uid = '5c7d1e2f-3a4b-4c5d-8e9f-0a1b2c3d4e5f';
  pod.spec.nodeName = 'east-worker2';
  pod.status.podIP = '10.244.2.9';
  pod.status.podIPs = [{ ip: '10.244.2.9' }];
  return pod;
}

function uninjectedPod(): Json {
  const pod = secondPod();
  delete pod.metadata.annotations;
  pod.spec.initContainers = [];
  return pod;
}

describe('KubernetesRegistryFeed', () => {
  let api: FakeKubeApi;
  let registry: ServiceRegistry;
  let feed: KubernetesRegistryFeed | undefined;
  let metrics: Registry;
  const upstream = (): ReturnType<ServiceRegistry['upstream']> => registry.upstream('shop', 'payments');

  const start = async (pageSize = 500): Promise<KubernetesRegistryFeed> => {
    feed = new KubernetesRegistryFeed({
      kubeConfig: api.kubeConfig(),
      registry,
      zone: ZONE,
      log: silentLogger(),
      metrics: new KubernetesMetrics(metrics),
      tuning: { backoff: { initialMs: 20, maxMs: 100 }, pageSize },
    });
    await feed.start(10_000);
    return feed;
  };
  const endpoints = (): { address: string; tunnelPort: number; zone: string; healthy: boolean }[] =>
    [...registry.upstream('shop', 'payments').endpoints].map((e) => ({ address: e.address, tunnelPort: e.tunnelPort, zone: e.zone, healthy: e.healthy })).sort((a, b) => (a.address < b.address ? -1 : 1));

  beforeEach(async () => {
    api = await startFakeKubeApi();
    registry = new ServiceRegistry({ zone: ZONE, disconnectGraceMs: 1_000, startupGraceMs: 1_000, leaseMs: 60_000 });
    metrics = new Registry();
  });
  afterEach(async () => {
    await feed?.close();
    feed = undefined;
    registry.close();
    await api.close();
  });

  it('builds a service from its Service, EndpointSlice and pods: ports, cluster IP, tunnel endpoints', async () => {
    api.apply(PATHS.services, fixture('k8s-service-payments.json'));
    api.apply(PATHS.pods, fixture('k8s-pod-payments.json'));
    api.apply(PATHS.pods, uninjectedPod());
    api.apply(PATHS.slices, fixture('k8s-endpointslice-payments.json'));
    await start(1); // one object per page: the list follows `continue`

    // The pod without the sidecar cannot be reached through the mesh; its zone label is the cloud's, not the mesh's.
    expect(endpoints()).toEqual([{ address: '10.244.1.17', tunnelPort: 15008, zone: ZONE, healthy: true }]);
    expect(upstream().ports).toEqual([
      { port: 80, targetPort: 8080, protocol: 'http', name: 'http' },
      { port: 9000, targetPort: 9000, protocol: 'http2', name: 'grpc-admin' },
    ]);
    expect(upstream().virtualIps).toEqual(['10.96.120.15']);
    expect(api.listRequests(PATHS.pods).length).toBeGreaterThanOrEqual(2);
    expect(await metrics.getSingleMetricAsString('trellis_control_k8s_endpoints_outside_mesh')).toMatch(/outside_mesh 1$/m);
  });

  it('follows endpoints as they appear, turn unready, and are deleted', async () => {
    api.apply(PATHS.services, fixture('k8s-service-payments.json'));
    api.apply(PATHS.pods, fixture('k8s-pod-payments.json'));
    await start();
    expect(endpoints()).toEqual([]);

    const slice = fixture<Json>('k8s-endpointslice-payments.json');
    api.apply(PATHS.slices, slice);
    await vi.waitFor(() => expect(endpoints()).toHaveLength(1));

    // The second pod's sidecar becomes known: its endpoint joins.
    api.apply(PATHS.pods, secondPod());
    await vi.waitFor(() => expect(endpoints().map((e) => e.address)).toEqual(['10.244.1.17', '10.244.2.9']));

    // The first pod fails its readiness probe: the slice says so, and its endpoint leaves the healthy set.
    slice.endpoints[0].conditions = { ready: false, serving: false, terminating: false };
    api.apply(PATHS.slices, slice);
    await vi.waitFor(() => expect(endpoints()).toEqual([
      { address: '10.244.1.17', tunnelPort: 15008, zone: ZONE, healthy: false },
      { address: '10.244.2.9', tunnelPort: 15008, zone: ZONE, healthy: true },
    ]));

    // Scaled down: the first pod leaves the slice, then the pod object goes.
    slice.endpoints.splice(0, 1);
    api.apply(PATHS.slices, slice);
    api.remove(PATHS.pods, 'shop', 'payments-5d8f9c7b6d-q2w7x');
    await vi.waitFor(() => expect(endpoints().map((e) => e.address)).toEqual(['10.244.2.9']));

    // The Service is deleted (its slices go with it): nothing of it stays in the registry.
    api.remove(PATHS.slices, 'shop', 'payments-7xk2p');
    api.remove(PATHS.services, 'shop', 'payments');
    await vi.waitFor(() => {
      expect(endpoints()).toEqual([]);
      expect(upstream().ports).toEqual([]);
      expect(upstream().virtualIps).toBeUndefined();
    });
  });

  it('resumes a broken watch from the last resourceVersion, without relisting, and misses nothing', async () => {
    api.apply(PATHS.services, fixture('k8s-service-payments.json'));
    api.apply(PATHS.pods, fixture('k8s-pod-payments.json'));
    api.apply(PATHS.pods, secondPod());
    const slice = fixture<Json>('k8s-endpointslice-payments.json');
    api.apply(PATHS.slices, slice);
    await start();
    await vi.waitFor(() => expect(api.openWatches(PATHS.slices)).toBe(1));
    api.bookmark(PATHS.slices);
    const listsBefore = api.listRequests(PATHS.slices).length;
    const lastSeen = api.resourceVersion;

    api.breakWatches(PATHS.slices);
    // Changed while no watch was open: the resumed watch replays it from history.
    slice.endpoints[1].conditions = { ready: false, serving: true, terminating: true };
    api.apply(PATHS.slices, slice);

    await vi.waitFor(() => expect(endpoints().find((e) => e.address === '10.244.2.9')?.healthy).toBe(false));
    const watches = api.watchRequests(PATHS.slices);
    expect(watches.length).toBe(2);
    expect(watches[1]?.query.get('resourceVersion')).toBe(lastSeen);
    expect(watches[1]?.query.get('allowWatchBookmarks')).toBe('true');
    expect(api.listRequests(PATHS.slices).length).toBe(listsBefore);
  });

  for (const expiredAs of ['event', 'http'] as const) {
    it(`relists after 410 Gone (${expiredAs === 'event' ? 'an ERROR event with a Status' : 'an HTTP 410'}) and applies what it missed, deletions included`, async () => {
      api.expiredWatchAs = expiredAs;
      api.apply(PATHS.services, fixture('k8s-service-payments.json'));
      api.apply(PATHS.pods, fixture('k8s-pod-payments.json'));
      api.apply(PATHS.pods, secondPod());
      const slice = fixture<Json>('k8s-endpointslice-payments.json');
      api.apply(PATHS.slices, slice);
      await start();
      await vi.waitFor(() => expect(endpoints()).toHaveLength(2));
      await vi.waitFor(() => expect(api.openWatches(PATHS.slices)).toBe(1));
      const listsBefore = api.listRequests(PATHS.slices).length;

      // The watch breaks; while it is down, the first pod leaves the slice and history is compacted.
      api.breakWatches(PATHS.slices);
      slice.endpoints.splice(0, 1);
      api.apply(PATHS.slices, slice);
      api.compact(PATHS.slices);

      await vi.waitFor(() => expect(endpoints().map((e) => e.address)).toEqual(['10.244.2.9']));
      expect(api.listRequests(PATHS.slices).length).toBe(listsBefore + 1);
      expect(await metrics.getSingleMetricAsString('trellis_control_k8s_relists_total')).toMatch(/resource="endpointslices",reason="expired"} 1$/m);
    });
  }

  it('relists when an open watch ends with 410, and retries a failing list with backoff', async () => {
    api.apply(PATHS.services, fixture('k8s-service-payments.json'));
    api.apply(PATHS.pods, fixture('k8s-pod-payments.json'));
    api.failNextLists(PATHS.slices, 2, 500);
    api.apply(PATHS.slices, fixture('k8s-endpointslice-payments.json'));
    await start();
    expect(api.listRequests(PATHS.slices).length).toBe(3);
    expect(endpoints()).toHaveLength(1);
    await vi.waitFor(() => expect(api.openWatches(PATHS.slices)).toBe(1));

    api.apply(PATHS.pods, secondPod());
    api.compact(PATHS.pods); // the open pod watch gets the ERROR event and ends
    await vi.waitFor(() => expect(endpoints()).toHaveLength(2));
    await vi.waitFor(() => expect(api.listRequests(PATHS.pods).length).toBe(2));
  });

  it('resyncs by relisting everything, without touching endpoints that did not change', async () => {
    api.apply(PATHS.services, fixture('k8s-service-payments.json'));
    api.apply(PATHS.pods, fixture('k8s-pod-payments.json'));
    api.apply(PATHS.slices, fixture('k8s-endpointslice-payments.json'));
    const running = await start();
    const events: unknown[] = [];
    registry.subscribe((e) => events.push(e));
    const lists = [PATHS.services, PATHS.slices, PATHS.pods].map((p) => api.listRequests(p).length);
    running.resync();
    await vi.waitFor(() => expect([PATHS.services, PATHS.slices, PATHS.pods].map((p) => api.listRequests(p).length)).toEqual(lists.map((n) => n + 1)));
    await vi.waitFor(() => expect([PATHS.services, PATHS.slices, PATHS.pods].map((p) => api.openWatches(p))).toEqual([1, 1, 1]));
    expect(events).toEqual([]);
    expect(endpoints()).toHaveLength(1);
    expect(await metrics.getSingleMetricAsString('trellis_control_k8s_relists_total')).toMatch(/resource="pods",reason="resync"} 1$/m);
  });

  it('gives up starting with a clear error when the API never lists', async () => {
    api.failNextLists(PATHS.pods, 1_000, 403);
    feed = new KubernetesRegistryFeed({ kubeConfig: api.kubeConfig(), registry, zone: ZONE, log: silentLogger(), tuning: { backoff: { initialMs: 20, maxMs: 50 } } });
    await expect(feed.start(300)).rejects.toMatchObject({ code: 'TRELLIS_K8S_SYNC_TIMEOUT', message: expect.stringContaining('pods') });
  });
});
