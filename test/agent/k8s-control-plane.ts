/**
 * A zone control plane's API for Kubernetes bootstrap tests: the real API server, issuer, registry and
 * watch hub, with the real TokenReview authenticator asking a loopback fake Kubernetes API
 * (`test/control/fixtures/k8s-fake-api.ts`) whose answers the test decides. Assembled here because
 * `startControlPlane` takes join tokens only; the rest is the same code the control plane runs.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { Registry } from 'prom-client';
import { CONTROL_PLANE_SERVICE } from '../../api/control-protocol.js';
import { silentLogger } from '../../common/log.js';
import { createApiServer } from '../../control/api-server.js';
import { FileStore } from '../../control/file-store.js';
import { IdentityIssuer } from '../../control/identity-issuer.js';
import { TokenReviewAuthenticator } from '../../control/kubernetes/token-review-authenticator.js';
import { ControlMetrics } from '../../control/metrics.js';
import { ServiceRegistry } from '../../control/registry.js';
import { TokenService } from '../../control/token-service.js';
import { WatchHub } from '../../control/watch-hub.js';
import { DEFAULT_ROOT_NAMESPACE } from '../../policy/types.js';
import { FakeKubeApi } from '../control/fixtures/k8s-fake-api.js';
import { createTestPki, type TestPki } from '../helpers/pki.js';

export interface KubernetesControlPlane {
  readonly url: string;
  readonly pki: TestPki;
  readonly kubeApi: FakeKubeApi;
  readonly registry: ServiceRegistry;
  close(): Promise<void>;
}

export async function startKubernetesControlPlane(trustDomain: string): Promise<KubernetesControlPlane> {
  const dir = mkdtempSync(join(tmpdir(), 'trellis-k8s-cp-'));
  const kubeApi = new FakeKubeApi();
  await kubeApi.start();
  const pki = await createTestPki({ trustDomain });
  const store = await FileStore.open(join(dir, 'data'));
  const metricsRegistry = new Registry();
  const registry = new ServiceRegistry({ zone: 'east', disconnectGraceMs: 3_000, startupGraceMs: 0, leaseMs: 3_600_000 });
  const metrics = new ControlMetrics(metricsRegistry, () => registry.counts());
  const hub = new WatchHub({
    registry,
    trustDomain,
    rootNamespace: DEFAULT_ROOT_NAMESPACE,
    zone: 'east',
    pingIntervalMs: 10_000,
    maxBufferedBytes: 4 * 1024 * 1024,
    trustBundlePem: () => pki.bundlePem,
    policies: () => [],
  });
  const issuer = new IdentityIssuer({ ca: pki.intermediate, zone: 'east', workloadTtlMs: 3_600_000, trustBundlePem: () => pki.bundlePem });
  const tokens = new TokenService(store, trustDomain);
  const serving = await issuer.serving(DEFAULT_ROOT_NAMESPACE, CONTROL_PLANE_SERVICE);
  const api = createApiServer({
    trustDomain,
    zone: 'east',
    issuer,
    // Join tokens are asked first, as a zone control plane in Kubernetes mode would still accept them (VMs).
    authenticators: [tokens, new TokenReviewAuthenticator({ kubeConfig: kubeApi.kubeConfig(), cacheTtlMs: 0, refusalTtlMs: 0 })],
    tokens,
    adminToken: await store.secret('admin-token'),
    registry,
    hub,
    store,
    metrics,
    log: silentLogger(),
    tls: { certChainPem: serving.certChainPem, keyPem: serving.keyPem, trustBundlePem: pki.bundlePem },
    maxConnections: 100,
  });
  api.listen(0, '127.0.0.1');
  await once(api, 'listening');
  return {
    url: `https://127.0.0.1:${(api.address() as AddressInfo).port}`,
    pki,
    kubeApi,
    registry,
    async close() {
      hub.close();
      registry.close();
      const closed = new Promise((r) => api.close(r));
      api.closeAllConnections();
      await closed;
      await kubeApi.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
