/**
 * The injector's calls to the Kubernetes API, made with @kubernetes/client-node over real HTTPS to a fake
 * API server on loopback that answers with the real JSON shapes: version detection, Events about skipped
 * pods, and the MutatingWebhookConfiguration's caBundle kept in step with the serving certificate.
 * The fake server's own certificate is issued by the injector's serving-certificate issuer, so the
 * client's TLS verification (chain to the mesh root, IP SAN) checks that issuer too.
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { AdmissionregistrationV1Api, CoreV1Api, VersionApi } from '@kubernetes/client-node';
import { Registry } from 'prom-client';
import { createTestPki, type TestPki } from '../helpers/pki.js';
import { issueServingCertificate, type ServingMaterial } from '../../injector/serving-certificate-issuer.js';
import { startFakeKubeApi, type FakeKubeApi } from './fake-kube-api.js';
import { detectKubernetesVersion } from '../../injector/kubernetes-version.js';
import { KubernetesEventSink } from '../../injector/events.js';
import { createInjectorMetrics } from '../../injector/metrics.js';
import { silentLogger } from '../../common/log.js';
import { WebhookCaBundleSync } from '../../injector/ca-bundle-sync.js';
import { loadReview, metricValue } from './review-helpers.js';
import { makeTrellisApiClient } from '../../common/kubernetes-client.js';
import { ApiNamespaceDirectory } from '../../injector/namespace-facts.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

let pki: TestPki;
let apiCert: ServingMaterial;
let api: FakeKubeApi;

beforeAll(async () => {
  pki = await createTestPki();
  apiCert = await issueServingCertificate(
    { certChainPem: pki.intermediate.certChainPem, keyPem: pki.intermediate.exportKeyPem(), bundlePem: pki.bundlePem },
    ['127.0.0.1', 'localhost'],
    3_600_000,
  );
  api = await startFakeKubeApi(apiCert);
});

afterAll(async () => {
  await api?.close();
});

/** The manifest as the API server returns it after `kubectl apply`: server fields and defaults filled in. */
function storedWebhookConfiguration(): Record<string, unknown> {
  const manifest = parse(readFileSync(join(ROOT, 'deploy/kubernetes/base/injector-webhook.yaml'), 'utf8')) as Record<string, unknown>;
  const metadata = manifest.metadata as Record<string, unknown>;
  return {
    ...manifest,
    metadata: {
      ...metadata,
      uid: '5d1ee4a2-8e64-4b3b-a1f5-3c2b7d9e0a11',
      resourceVersion: '812',
      generation: 1,
      creationTimestamp: '2026-11-23T08:00:00Z',
      annotations: { 'kubectl.kubernetes.io/last-applied-configuration': JSON.stringify(manifest) },
      managedFields: [{ manager: 'kubectl-client-side-apply', operation: 'Update', apiVersion: 'admissionregistration.k8s.io/v1', time: '2026-11-23T08:00:00Z', fieldsType: 'FieldsV1', fieldsV1: {} }],
    },
  };
}

describe('Kubernetes version detection', () => {
  it('reads major and minor from /version', async () => {
    const version = await detectKubernetesVersion(api.kubeConfig().makeApiClient(VersionApi));
    expect(version).toEqual({ major: 1, minor: 30 });
  });

  it('understands managed clusters reporting minor "28+"', async () => {
    const saved = api.version;
    api.version = { ...saved, minor: '28+', gitVersion: 'v1.28.9-eks-036c24b' };
    try {
      expect(await detectKubernetesVersion(api.kubeConfig().makeApiClient(VersionApi))).toEqual({ major: 1, minor: 28 });
    } finally {
      api.version = saved;
    }
  });

  it('fails with a clear code when the API server cannot be reached', async () => {
    const kc = api.kubeConfig();
    kc.clusters[0] = { ...kc.clusters[0]!, server: 'https://127.0.0.1:1' };
    await expect(detectKubernetesVersion(kc.makeApiClient(VersionApi))).rejects.toMatchObject({ code: 'TRELLIS_INJECTOR_VERSION_UNKNOWN' });
  });
});

describe('Events about skipped pods', () => {
  it('are created in the pod namespace, about the pod controller, with the real Event shape', async () => {
    const registry = new Registry();
    const metrics = createInjectorMetrics(registry);
    const sink = new KubernetesEventSink({ api: makeTrellisApiClient(api.kubeConfig(), CoreV1Api, 'injector'), metrics, logger: silentLogger(), instance: 'trellis-control-abc12' });
    const pod = loadReview('host-network-pod.json').request.object;
    const before = api.events.length;
    sink.report({ namespace: 'monitoring', pod, reason: 'TrellisInjectionSkipped', message: 'Trellis sidecar not injected: host network', type: 'Warning' });
    await sink.idle();
    expect(api.events.length).toBe(before + 1);
    const event = api.events.at(-1) as Record<string, unknown>;
    expect(event).toMatchObject({
      apiVersion: 'v1',
      kind: 'Event',
      metadata: { generateName: 'node-exporter.', namespace: 'monitoring' },
      involvedObject: { apiVersion: 'apps/v1', kind: 'DaemonSet', name: 'node-exporter', namespace: 'monitoring', uid: 'a7b8c9d0-e1f2-4a3b-8c4d-5e6f7a8b9c0d' },
      reason: 'TrellisInjectionSkipped',
      type: 'Warning',
      source: { component: 'trellis-injector' },
      reportingComponent: 'trellis.dev/trellis-injector',
      reportingInstance: 'trellis-control-abc12',
      count: 1,
    });
    expect(event.firstTimestamp).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/);
    expect(api.requests.at(-1)).toMatchObject({ method: 'POST', path: '/api/v1/namespaces/monitoring/events', authorization: 'Bearer fake-service-account-token', query: { fieldManager: 'trellis-injector' } });
    expect(api.requests.at(-1)?.userAgent).toMatch(/^trellis-injector\/0\.1\.0 \(trellis\.dev; node \d+\.\d+\.\d+\)$/);
    expect(await metricValue(registry, 'trellis_injector_events_total', { result: 'sent' })).toBe(1);
  });

  it('are sent once per object and reason in the window, and never block the caller', async () => {
    const registry = new Registry();
    const metrics = createInjectorMetrics(registry);
    let now = 1_000_000;
    const sink = new KubernetesEventSink({ api: api.kubeConfig().makeApiClient(CoreV1Api), metrics, logger: silentLogger(), instance: 'i', dedupeWindowMs: 60_000, now: () => now });
    const pod = loadReview('host-network-pod.json').request.object;
    const before = api.events.length;
    for (let i = 0; i < 5; i++) sink.report({ namespace: 'monitoring', pod, reason: 'TrellisInjectionSkipped', message: 'm', type: 'Warning' });
    await sink.idle();
    expect(api.events.length).toBe(before + 1);
    expect(await metricValue(registry, 'trellis_injector_events_total', { result: 'deduplicated' })).toBe(4);
    now += 60_000;
    sink.report({ namespace: 'monitoring', pod, reason: 'TrellisInjectionSkipped', message: 'm', type: 'Warning' });
    await sink.idle();
    expect(api.events.length).toBe(before + 2);
  });

  it('drop beyond the queue bound and count API failures without throwing', async () => {
    const registry = new Registry();
    const metrics = createInjectorMetrics(registry);
    const sink = new KubernetesEventSink({ api: api.kubeConfig().makeApiClient(CoreV1Api), metrics, logger: silentLogger(), instance: 'i', maxQueued: 2 });
    const base = loadReview('job-pod.json').request.object;
    api.failNext(1);
    for (let i = 0; i < 5; i++) {
      const pod = structuredClone(base);
      pod.metadata!.ownerReferences = [{ apiVersion: 'batch/v1', kind: 'Job', name: `job-${i}`, uid: `u-${i}`, controller: true }];
      sink.report({ namespace: 'shop', pod, reason: 'TrellisInjectionSkipped', message: 'm', type: 'Warning' });
    }
    await sink.idle();
    // The first is taken off the queue at once; two more fit; two are dropped; the first send fails (500).
    expect(await metricValue(registry, 'trellis_injector_events_total', { result: 'dropped' })).toBe(2);
    expect(await metricValue(registry, 'trellis_injector_events_total', { result: 'failed' })).toBe(1);
    expect(await metricValue(registry, 'trellis_injector_events_total', { result: 'sent' })).toBe(2);
  });
});

describe('the webhook caBundle', () => {
  let registry: Registry;
  let sync: WebhookCaBundleSync;

  beforeEach(() => {
    api.webhookConfigurations.set('trellis-injector', storedWebhookConfiguration());
    registry = new Registry();
    sync = new WebhookCaBundleSync({ api: makeTrellisApiClient(api.kubeConfig(), AdmissionregistrationV1Api, 'injector'), name: 'trellis-injector', logger: silentLogger(), metrics: createInjectorMetrics(registry) });
  });

  function bundles(): unknown[] {
    const stored = api.webhookConfigurations.get('trellis-injector') as { webhooks: { clientConfig: { caBundle?: string } }[] };
    return stored.webhooks.map((w) => w.clientConfig.caBundle);
  }

  it('is written into every webhook with one JSON Patch guarded by test operations', async () => {
    expect(await sync.sync(pki.bundlePem)).toBe('updated');
    const b64 = Buffer.from(pki.bundlePem).toString('base64');
    expect(bundles()).toEqual([b64, b64]);
    const patch = api.requests.filter((r) => r.method === 'PATCH').at(-1);
    expect(patch?.contentType).toBe('application/json-patch+json');
    expect(patch?.query.fieldManager).toBe('trellis-injector');
    expect(patch?.userAgent).toMatch(/^trellis-injector\/0\.1\.0 /);
    expect(patch?.body).toEqual([
      { op: 'test', path: '/webhooks/0/name', value: 'namespace.injector.trellis.dev' },
      { op: 'add', path: '/webhooks/0/clientConfig/caBundle', value: b64 },
      { op: 'test', path: '/webhooks/1/name', value: 'object.injector.trellis.dev' },
      { op: 'add', path: '/webhooks/1/clientConfig/caBundle', value: b64 },
    ]);
  });

  it('is left alone when already current (no PATCH sent)', async () => {
    await sync.sync(pki.bundlePem);
    const patches = api.requests.filter((r) => r.method === 'PATCH').length;
    expect(await sync.sync(pki.bundlePem)).toBe('unchanged');
    expect(api.requests.filter((r) => r.method === 'PATCH').length).toBe(patches);
    expect(await metricValue(registry, 'trellis_injector_ca_bundle_syncs_total', { result: 'unchanged' })).toBe(1);
  });

  it('follows a new CA and fixes only the webhook that drifted', async () => {
    await sync.sync(pki.bundlePem);
    const other = await createTestPki();
    const stored = api.webhookConfigurations.get('trellis-injector') as { webhooks: { clientConfig: { caBundle?: string } }[] };
    stored.webhooks[1]!.clientConfig.caBundle = '';
    expect(await sync.sync(`${pki.bundlePem}${other.bundlePem}`)).toBe('updated');
    const b64 = Buffer.from(`${pki.bundlePem}${other.bundlePem}`).toString('base64');
    expect(bundles()).toEqual([b64, b64]);
  });

  it('reports a missing configuration with the API status', async () => {
    api.webhookConfigurations.delete('trellis-injector');
    await expect(sync.sync(pki.bundlePem)).rejects.toMatchObject({ code: 'TRELLIS_INJECTOR_WEBHOOK_READ', message: expect.stringMatching(/not found|404/) });
    expect(await metricValue(registry, 'trellis_injector_ca_bundle_syncs_total', { result: 'failed' })).toBe(1);
  });

  it('refuses to write into reordered webhooks: the test operation fails the whole patch', async () => {
    const original = storedWebhookConfiguration();
    const reordered = structuredClone(original) as { webhooks: { name: string }[] };
    // The sync read the configuration, then someone reordered it before the PATCH arrived.
    const client = api.kubeConfig().makeApiClient(AdmissionregistrationV1Api);
    const racing = new WebhookCaBundleSync({
      api: {
        readMutatingWebhookConfiguration: async (param) => {
          const read = await client.readMutatingWebhookConfiguration(param);
          reordered.webhooks.reverse();
          api.webhookConfigurations.set('trellis-injector', reordered as unknown as Record<string, unknown>);
          return read;
        },
        patchMutatingWebhookConfiguration: (param, options) => client.patchMutatingWebhookConfiguration(param, options),
      },
      name: 'trellis-injector',
      logger: silentLogger(),
      metrics: createInjectorMetrics(new Registry()),
    });
    await expect(racing.sync(pki.bundlePem)).rejects.toMatchObject({ code: 'TRELLIS_INJECTOR_WEBHOOK_PATCH' });
    expect(bundles()).toEqual([undefined, undefined]);
  });

  it('retries in the background after an API failure', async () => {
    api.failNext(1);
    const quick = new WebhookCaBundleSync({
      api: api.kubeConfig().makeApiClient(AdmissionregistrationV1Api),
      name: 'trellis-injector',
      logger: silentLogger(),
      metrics: createInjectorMetrics(new Registry()),
      retryMs: 20,
      resyncMs: 60_000,
    });
    quick.start();
    try {
      expect(await quick.syncInBackground(pki.bundlePem)).toBeUndefined();
      await expect.poll(() => bundles()[0], { timeout: 5_000, interval: 20 }).toBe(Buffer.from(pki.bundlePem).toString('base64'));
    } finally {
      quick.stop();
    }
  });
});

describe('namespace facts for Pod Security and capture mode', () => {
  function namespace(name: string, labels: Record<string, string>): Record<string, unknown> {
    return {
      kind: 'Namespace',
      apiVersion: 'v1',
      metadata: { name, uid: '0b6c8a1e-2f3d-4e5a-9b7c-1d2e3f4a5b6c', resourceVersion: '4411', creationTimestamp: '2026-11-23T08:00:00Z', labels: { 'kubernetes.io/metadata.name': name, ...labels } },
      spec: { finalizers: ['kubernetes'] },
      status: { phase: 'Active' },
    };
  }

  it('reads the enforce level, its version and the capture mode, with the Trellis User-Agent, caching within the TTL', async () => {
    api.namespaces.set('payments', namespace('payments', { 'pod-security.kubernetes.io/enforce': 'restricted', 'pod-security.kubernetes.io/enforce-version': 'v1.32', 'trellis.dev/capture-mode': 'cni' }));
    let now = 1_000;
    const directory = new ApiNamespaceDirectory({ api: makeTrellisApiClient(api.kubeConfig(), CoreV1Api, 'injector'), ttlMs: 10_000, now: () => now });
    const before = api.requests.length;
    expect(await directory.facts('payments')).toEqual({ podSecurity: 'restricted', podSecurityVersion: 'v1.32', captureMode: 'cni' });
    await directory.facts('payments');
    expect(api.requests.length).toBe(before + 1);
    expect(api.requests.at(-1)).toMatchObject({ method: 'GET', path: '/api/v1/namespaces/payments' });
    expect(api.requests.at(-1)?.userAgent).toMatch(/^trellis-injector\//);
    api.namespaces.set('payments', namespace('payments', { 'pod-security.kubernetes.io/enforce': 'baseline' }));
    now += 10_001;
    expect(await directory.facts('payments')).toEqual({ podSecurity: 'baseline', podSecurityVersion: 'latest', captureMode: undefined });
  });

  it('fails with a retryable code for a missing namespace, and does not cache the failure', async () => {
    const directory = new ApiNamespaceDirectory({ api: makeTrellisApiClient(api.kubeConfig(), CoreV1Api, 'injector') });
    await expect(directory.facts('nowhere')).rejects.toMatchObject({ code: 'TRELLIS_INJECTOR_NAMESPACE_READ', retryable: true });
    api.namespaces.set('nowhere', namespace('nowhere', {}));
    expect((await directory.facts('nowhere')).podSecurity).toBe('privileged');
  });
});
