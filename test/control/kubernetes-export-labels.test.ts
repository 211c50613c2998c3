/**
 * Export in Kubernetes mode: the Service's `trellis.dev/export` label or annotation, else its
 * Namespace's label, becomes the service's export word in the registry, read from a loopback API server
 * that answers with the API's own JSON. The Service overrides its Namespace; anything but "true" or
 * "false" (or a label and an annotation that disagree) is not exported.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { silentLogger } from '../../common/log.js';
import { ServiceRegistry } from '../../control/registry.js';
import { KubernetesRegistryFeed } from '../../control/kubernetes/registry-feed.js';
import { isExported, serviceExportWord } from '../../control/zone-sync/exports.js';
import { fixture, PATHS, startFakeKubeApi, type FakeKubeApi } from './fixtures/k8s-fake-api.js';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

describe('Kubernetes export labels', () => {
  let api: FakeKubeApi;
  let registry: ServiceRegistry;
  let feed: KubernetesRegistryFeed | undefined;
  const word = (): boolean | undefined => serviceExportWord(registry.exportWords('shop', 'payments')).word;
  const namespace = (label?: string): Json => {
    const ns = fixture<Json>('k8s-namespace-shop.json');
    if (label !== undefined) ns.metadata.labels['trellis.dev/export'] = label;
    return ns;
  };
  const service = (label?: string, annotation?: string): Json => {
    const svc = fixture<Json>('k8s-service-payments.json');
    if (label !== undefined) svc.metadata.labels['trellis.dev/export'] = label;
    if (annotation !== undefined) svc.metadata.annotations['trellis.dev/export'] = annotation;
    return svc;
  };

  beforeEach(async () => {
    api = await startFakeKubeApi();
    registry = new ServiceRegistry({ zone: 'east', disconnectGraceMs: 1_000, startupGraceMs: 1_000, leaseMs: 60_000 });
    api.apply(PATHS.pods, fixture('k8s-pod-payments.json'));
    api.apply(PATHS.slices, fixture('k8s-endpointslice-payments.json'));
  });
  afterEach(async () => {
    await feed?.close();
    feed = undefined;
    registry.close();
    await api.close();
  });

  const start = async (): Promise<void> => {
    feed = new KubernetesRegistryFeed({ kubeConfig: api.kubeConfig(), registry, zone: 'east', log: silentLogger(), tuning: { backoff: { initialMs: 20, maxMs: 100 } } });
    await feed.start(10_000);
  };

  it('lists and watches namespaces, and leaves the word to the mesh-wide default when nothing is labelled', async () => {
    api.apply(PATHS.namespaces, namespace());
    api.apply(PATHS.services, service());
    await start();
    expect(registry.hasMeshService('shop', 'payments')).toBe(true);
    expect(word()).toBeUndefined();
    expect(api.listRequests(PATHS.namespaces).length).toBeGreaterThanOrEqual(1);
    expect(isExported({ exported: [], hidden: [] }, 'none', 'shop', 'payments', word())).toBe(false);
  });

  it("takes the Namespace's label, and the Service's own word over it, following changes to either", async () => {
    api.apply(PATHS.namespaces, namespace('true'));
    api.apply(PATHS.services, service());
    await start();
    expect(word()).toBe(true);
    expect(isExported({ exported: [], hidden: [] }, 'none', 'shop', 'payments', word())).toBe(true);

    api.apply(PATHS.services, service(undefined, 'false'));
    await vi.waitFor(() => expect(word()).toBe(false));
    api.apply(PATHS.namespaces, namespace('false'));
    api.apply(PATHS.services, service('true'));
    await vi.waitFor(() => expect(word()).toBe(true));

    // The Service drops its label: its Namespace speaks again.
    api.apply(PATHS.services, service());
    await vi.waitFor(() => expect(word()).toBe(false));
    api.apply(PATHS.namespaces, namespace());
    await vi.waitFor(() => expect(word()).toBeUndefined());
  });

  it('does not export on a value that is not "true" or "false", nor on a label and an annotation that disagree', async () => {
    api.apply(PATHS.namespaces, namespace('true'));
    api.apply(PATHS.services, service('yes'));
    await start();
    expect(word()).toBe(false);
    api.apply(PATHS.services, service('true', 'true'));
    await vi.waitFor(() => expect(word()).toBe(true));
    api.apply(PATHS.services, service('true', 'false'));
    await vi.waitFor(() => expect(word()).toBe(false));
    // An invalid Namespace label hides the Services that have no word of their own.
    api.apply(PATHS.services, service());
    api.apply(PATHS.namespaces, namespace('TRUE'));
    await vi.waitFor(() => expect(word()).toBe(false));
  });
});
