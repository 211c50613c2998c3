/**
 * The webhook over real HTTPS with certificates from the mesh CA: a real AdmissionReview body in, a
 * patch out; bad requests refused with 415, 400, 404, 405, 413, 431 while the server keeps serving; the
 * certificate swapped in place; and the whole injector started against a fake API server, reachable the
 * way the API server reaches it (the caBundle it wrote, the Service's DNS name).
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Registry } from 'prom-client';
import { AdmissionregistrationV1Api } from '@kubernetes/client-node';
import { createTestPki, type TestPki } from '../helpers/pki.js';
import { issueServingCertificate, serviceDnsNames, type ServingMaterial } from '../../injector/serving-certificate-issuer.js';
import { WebhookServer } from '../../injector/webhook-server.js';
import { UNKNOWN_NAMESPACES } from '../../injector/namespace-facts.js';
import { createInjectorConfig, type InjectorConfig } from '../../injector/config.js';
import { createInjectorMetrics } from '../../injector/metrics.js';
import { silentLogger } from '../../common/log.js';
import { CollectingSink, applyPatch, loadReview, metricValue, validatePod } from './review-helpers.js';
import { callWebhook } from './https-client.js';
import { startInjector, type RunningInjector } from '../../injector/injector.js';
import { IssuedServingSource } from '../../injector/serving-certificate.js';
import { WebhookCaBundleSync } from '../../injector/ca-bundle-sync.js';
import { startFakeKubeApi, type FakeKubeApi } from './fake-kube-api.js';
import type { AdmissionReviewResponse } from '../../injector/admission-review.js';
import { readFileSync } from 'node:fs';
import { connect } from 'node:tls';
import { parse } from 'yaml';

let pki: TestPki;
let material: ServingMaterial;
let config: InjectorConfig;
const NAMES = serviceDnsNames('trellis-injector', 'trellis-system');

function issuer() {
  return { certChainPem: pki.intermediate.certChainPem, keyPem: pki.intermediate.exportKeyPem(), bundlePem: pki.bundlePem };
}

beforeAll(async () => {
  pki = await createTestPki();
  material = await issueServingCertificate(issuer(), NAMES, 3_600_000);
  config = createInjectorConfig({ image: 'trellis:test', controlUrl: 'https://trellis-control.trellis-system.svc:15012', trustBundlePem: pki.bundlePem, kubernetesVersion: { major: 1, minor: 30 } });
});

describe('the webhook server', () => {
  let server: WebhookServer;
  let port: number;
  let registry: Registry;

  beforeAll(async () => {
    registry = new Registry();
    server = new WebhookServer({ material, config: () => config, namespaces: UNKNOWN_NAMESPACES, metrics: createInjectorMetrics(registry), events: new CollectingSink(), logger: silentLogger(), limits: { maxBodyBytes: 256 * 1024 } });
    port = (await server.listen(0, '127.0.0.1')).port;
  });

  afterAll(async () => {
    server.closeAllConnections();
    await server.close();
  });

  const post = (body: string | Buffer, headers: Record<string, string> = {}, path = '/inject') => callWebhook({ port, ca: pki.bundlePem, path, body, headers });

  it('answers a real AdmissionReview with the uid, allowed and a base64 JSONPatch', async () => {
    const review = loadReview('deployment-pod.json');
    const reply = await post(JSON.stringify(review));
    expect(reply.status).toBe(200);
    expect(reply.headers['content-type']).toBe('application/json');
    const answer = JSON.parse(reply.body) as AdmissionReviewResponse;
    expect(answer.apiVersion).toBe('admission.k8s.io/v1');
    expect(answer.kind).toBe('AdmissionReview');
    expect(answer.response).toMatchObject({ uid: review.request.uid, allowed: true, patchType: 'JSONPatch' });
    const ops = JSON.parse(Buffer.from(answer.response.patch ?? '', 'base64').toString('utf8'));
    validatePod(applyPatch(review.request.object, ops));
    expect(await metricValue(registry, 'trellis_injector_admissions_total', { result: 'injected' })).toBeGreaterThanOrEqual(1);
  });

  it('accepts a charset parameter on application/json', async () => {
    const reply = await post(JSON.stringify(loadReview('job-pod.json')), { 'content-type': 'application/json; charset=utf-8' });
    expect(reply.status).toBe(200);
  });

  it('refuses a body that is not JSON with 415', async () => {
    const reply = await post('<xml/>', { 'content-type': 'application/xml' });
    expect(reply.status).toBe(415);
    expect(reply.body).toMatch(/content-type must be application\/json/);
  });

  it('refuses broken JSON and malformed reviews with 400, saying what is wrong', async () => {
    expect((await post('{"apiVersion":')).status).toBe(400);
    const wrongVersion = await post(JSON.stringify({ ...loadReview('job-pod.json'), apiVersion: 'admission.k8s.io/v1beta1' }));
    expect(wrongVersion.status).toBe(400);
    const message = (reply: { body: string }) => (JSON.parse(reply.body) as { error: { message: string } }).error.message;
    expect(message(wrongVersion)).toBe('malformed AdmissionReview: apiVersion is "admission.k8s.io/v1beta1", expected "admission.k8s.io/v1"');
    const noUid = loadReview('job-pod.json') as unknown as { request: Record<string, unknown> };
    delete noUid.request.uid;
    expect(message(await post(JSON.stringify(noUid)))).toMatch(/request.uid is missing/);
    const noContainers = loadReview('job-pod.json');
    (noContainers.request.object.spec as unknown as Record<string, unknown>).containers = 'web';
    expect((await post(JSON.stringify(noContainers))).status).toBe(400);
    expect((await post('[]')).status).toBe(400);
    expect(await metricValue(registry, 'trellis_injector_admissions_total', { result: 'malformed' })).toBeGreaterThanOrEqual(5);
  });

  it('refuses an oversized body with 413 and unknown paths and methods with 404 and 405', async () => {
    const big = JSON.stringify({ ...loadReview('job-pod.json'), padding: 'x'.repeat(300 * 1024) });
    expect((await post(big)).status).toBe(413);
    expect((await post('{}', {}, '/mutate')).status).toBe(404);
    const get = await callWebhook({ port, ca: pki.bundlePem, path: '/inject', method: 'GET' });
    expect(get.status).toBe(405);
    expect(get.headers.allow).toBe('POST');
  });

  it('refuses oversized headers (431) and still serves afterwards', async () => {
    const reply = await post('{}', { 'x-filler': 'y'.repeat(20 * 1024) });
    expect(reply.status).toBe(431);
    const after = await post(JSON.stringify(loadReview('job-pod.json')));
    expect(after.status).toBe(200);
  });

  it('serves /healthz for the kubelet', async () => {
    const reply = await callWebhook({ port, ca: pki.bundlePem, path: '/healthz', method: 'GET' });
    expect(reply).toMatchObject({ status: 200, body: 'ok\n' });
  });

  it('swaps its certificate without a restart: new connections see the new one', async () => {
    const before = await post(JSON.stringify(loadReview('job-pod.json')));
    const renewed = await issueServingCertificate(issuer(), NAMES, 7_200_000);
    server.updateCertificate(renewed);
    const after = await post(JSON.stringify(loadReview('job-pod.json')));
    expect(after.status).toBe(200);
    expect(after.peerSerial).not.toBe(before.peerSerial);
    expect(await metricValue(registry, 'trellis_injector_serving_certificate_expiry_timestamp_seconds', {})).toBe(renewed.notAfter.getTime() / 1000);
  });

  it('presents a certificate that names the Service and is refused under any other name', async () => {
    await expect(callWebhook({ port, ca: pki.bundlePem, path: '/healthz', method: 'GET', servername: 'evil.example.com' })).rejects.toThrow(/does not match|altnames/i);
    const other = await createTestPki();
    await expect(callWebhook({ port, ca: other.bundlePem, path: '/healthz', method: 'GET' })).rejects.toThrow(/certificate/i);
  });
});

describe('the connection cap', () => {
  it('refuses connections beyond maxConnections while the first stays open', async () => {
    const server = new WebhookServer({ material, config: () => config, namespaces: UNKNOWN_NAMESPACES, metrics: createInjectorMetrics(new Registry()), events: new CollectingSink(), logger: silentLogger(), limits: { maxConnections: 1 } });
    const { port } = await server.listen(0, '127.0.0.1');
    const first = connect({ host: '127.0.0.1', port, ca: pki.bundlePem, servername: NAMES[0] });
    try {
      await new Promise<void>((resolve, reject) => first.once('secureConnect', resolve).once('error', reject));
      await expect(callWebhook({ port, ca: pki.bundlePem, path: '/healthz', method: 'GET' })).rejects.toThrow(/socket hang up|ECONNRESET|disconnected/);
    } finally {
      first.destroy();
      server.closeAllConnections();
      await server.close();
    }
  });
});

describe('the whole injector against a fake API server', () => {
  let api: FakeKubeApi;
  let running: RunningInjector | undefined;

  beforeAll(async () => {
    const apiCert = await issueServingCertificate(issuer(), ['127.0.0.1'], 3_600_000);
    api = await startFakeKubeApi(apiCert);
  });

  afterEach(async () => {
    await running?.stop();
    running = undefined;
  });

  afterAll(async () => {
    await api.close();
  });

  it('issues its certificate from the mesh CA, writes the caBundle, and is reachable the way the API server calls it', async () => {
    const manifest = parse(readFileSync(new URL('../../deploy/kubernetes/base/injector-webhook.yaml', import.meta.url), 'utf8')) as Record<string, unknown>;
    api.webhookConfigurations.set('trellis-injector', { ...manifest, metadata: { ...(manifest.metadata as object), resourceVersion: '1', uid: 'u' } });
    const registry = new Registry();
    const metrics = createInjectorMetrics(registry);
    const logger = silentLogger();
    running = await startInjector({
      config,
      trustBundleFromServing: true,
      source: new IssuedServingSource({ loadIssuer: async () => issuer(), dnsNames: NAMES, ttlMs: 3_600_000, logger, metrics }),
      caBundleSync: new WebhookCaBundleSync({ api: api.kubeConfig().makeApiClient(AdmissionregistrationV1Api), name: 'trellis-injector', logger, metrics }),
      events: new CollectingSink(),
      metrics,
      registry,
      logger,
      listen: { host: '127.0.0.1', port: 0 },
      admin: { host: '127.0.0.1', port: 0 },
    });
    // The API server trusts exactly what the configuration says.
    const stored = api.webhookConfigurations.get('trellis-injector') as { webhooks: { clientConfig: { caBundle: string; service: { path: string } } }[] };
    const caBundle = Buffer.from(stored.webhooks[0]!.clientConfig.caBundle, 'base64').toString('utf8');
    for (const webhook of stored.webhooks) {
      const reply = await callWebhook({ port: running.webhook.port, ca: caBundle, path: webhook.clientConfig.service.path, body: JSON.stringify(loadReview('job-pod.json')) });
      expect(reply.status).toBe(200);
    }
    const ready = await fetch(`http://127.0.0.1:${running.admin!.port}/ready`);
    expect(ready.status).toBe(200);
    const text = await (await fetch(`http://127.0.0.1:${running.admin!.port}/metrics`)).text();
    expect(text).toMatch(/trellis_injector_ca_bundle_syncs_total\{result="updated"\} 1/);
    expect(running.config().trustBundlePem).toBe(pki.bundlePem);
  });

  it('starts but reports not ready while the webhook configuration cannot be updated', async () => {
    api.webhookConfigurations.delete('trellis-injector');
    const registry = new Registry();
    const metrics = createInjectorMetrics(registry);
    const logger = silentLogger();
    running = await startInjector({
      config,
      trustBundleFromServing: true,
      source: new IssuedServingSource({ loadIssuer: async () => issuer(), dnsNames: NAMES, ttlMs: 3_600_000, logger, metrics }),
      caBundleSync: new WebhookCaBundleSync({ api: api.kubeConfig().makeApiClient(AdmissionregistrationV1Api), name: 'trellis-injector', logger, metrics, retryMs: 60_000 }),
      events: new CollectingSink(),
      metrics,
      registry,
      logger,
      listen: { host: '127.0.0.1', port: 0 },
      admin: { host: '127.0.0.1', port: 0 },
    });
    const ready = await fetch(`http://127.0.0.1:${running.admin!.port}/ready`);
    expect(ready.status).toBe(503);
    expect(await ready.text()).toMatch(/caBundle sync failing/);
  });
});
