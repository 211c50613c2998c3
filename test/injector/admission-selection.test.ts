/**
 * Pods the injector leaves alone (with a reason, an Event and a metric) or refuses, requests it lets
 * through untouched, and checks of the checks: the Pod schema does reject bad pods, and patch paths
 * are escaped as RFC 6901 requires.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { handleAdmissionReview } from '../../injector/admission-handler.js';
import { createInjectorConfig, type InjectorConfig } from '../../injector/config.js';
import { createTestPki } from '../helpers/pki.js';
import { applyPatch, decodePatch, loadReview, metricValue, testDeps, validatePod, type Review } from './review-helpers.js';

let bundlePem = '';
beforeAll(async () => {
  bundlePem = (await createTestPki()).bundlePem;
});

function config(minor: number): InjectorConfig {
  return createInjectorConfig({ image: 'ghcr.io/example/trellis:0.1.0', controlUrl: 'https://trellis-control.trellis-system.svc:15012', zone: 'east', trustBundlePem: bundlePem, kubernetesVersion: { major: 1, minor } });
}

async function inject(review: Review, cfg: InjectorConfig, route: 'namespace' | 'opt-in' = 'namespace') {
  const deps = testDeps(cfg);
  const handled = await handleAdmissionReview(review, route, deps);
  return { handled, deps, ops: decodePatch(handled.review) };
}

describe('pods that are left alone or refused', () => {
  it('skips a hostNetwork pod with a reason, an Event about its DaemonSet, and a metric', async () => {
    const review = loadReview('host-network-pod.json');
    const { handled, deps } = await inject(review, config(30));
    expect(handled.review.response).toEqual({ uid: review.request.uid, allowed: true });
    expect(handled.result).toBe('skipped');
    expect(deps.sink.reports).toHaveLength(1);
    expect(deps.sink.reports[0]).toMatchObject({ namespace: 'monitoring', reason: 'TrellisInjectionSkipped', type: 'Warning' });
    expect(deps.sink.reports[0]?.message).toMatch(/host network/);
    expect(await metricValue(deps.registry, 'trellis_injector_skipped_total', { reason: 'host-network' })).toBe(1);
  });

  it('reports nothing for a dry run (no side effects), but still counts', async () => {
    const review = loadReview('host-network-pod.json');
    review.request.dryRun = true;
    const { handled, deps } = await inject(review, config(30));
    expect(handled.result).toBe('skipped');
    expect(deps.sink.reports).toEqual([]);
    expect(await metricValue(deps.registry, 'trellis_injector_skipped_total', { reason: 'host-network' })).toBe(1);
  });

  it("skips a pod carrying another mesh's sidecar", async () => {
    const review = loadReview('istio-pod.json');
    const { handled, deps } = await inject(review, config(30));
    expect(handled.review.response.patch).toBeUndefined();
    expect(deps.sink.reports[0]?.message).toMatch(/another mesh's sidecar \(container "istio-init"\)/);
  });

  for (const name of ['linkerd-proxy', 'kuma-sidecar']) {
    it(`skips a pod with a ${name} container`, async () => {
      const review = loadReview('job-pod.json');
      review.request.object.spec!.containers.push({ name, image: 'example/proxy:1' });
      const { handled } = await inject(review, config(30));
      expect(handled.result).toBe('skipped');
    });
  }

  it('refuses a pod whose app container runs as the proxy uid, naming it', async () => {
    const review = loadReview('deployment-pod.json');
    review.request.object.spec!.containers[1]!.securityContext = { runAsUser: 1337 };
    const { handled } = await inject(review, config(30));
    expect(handled.review.response.allowed).toBe(false);
    expect(handled.review.response.status?.code).toBe(403);
    expect(handled.review.response.status?.message).toMatch(/"log-shipper" run as uid 1337/);
  });

  it('refuses a pod whose pod-level runAsUser is the proxy uid', async () => {
    const review = loadReview('job-pod.json');
    review.request.object.spec!.securityContext = { runAsUser: 1337 };
    expect((await inject(review, config(30))).handled.review.response.allowed).toBe(false);
  });

  it('refuses malformed annotations, listing every problem at once', async () => {
    const review = loadReview('job-pod.json');
    review.request.object.metadata!.annotations = { 'trellis.dev/exclude-outbound-ports': '80,http', 'trellis.dev/exclude-outbound-cidrs': '10.0.0.0/33', 'trellis.dev/rewrite-app-probes': 'no' };
    const message = (await inject(review, config(30))).handled.review.response.status?.message ?? '';
    expect(message).toMatch(/"http" is not a port/);
    expect(message).toMatch(/"10.0.0.0\/33" is not an IPv4 or IPv6 CIDR/);
    expect(message).toMatch(/rewrite-app-probes: "no" must be "true" or "false"/);
  });

  it('honours trellis.dev/inject: "false" without an Event', async () => {
    const review = loadReview('deployment-pod.json');
    review.request.object.metadata!.annotations!['trellis.dev/inject'] = 'false';
    const { handled, deps } = await inject(review, config(30));
    expect(handled.result).toBe('skipped');
    expect(deps.sink.reports).toEqual([]);
  });

  it('never injects system namespaces, even if the selector let them through', async () => {
    for (const ns of ['kube-system', 'kube-public', 'kube-node-lease', 'trellis-system']) {
      const review = loadReview('job-pod.json');
      review.request.namespace = ns;
      expect((await inject(review, config(30))).handled.result).toBe('skipped');
    }
  });

  it('on the opt-in path injects only pods that ask for it', async () => {
    const review = loadReview('job-pod.json');
    expect((await inject(review, config(30), 'opt-in')).handled.result).toBe('skipped');
    review.request.object.metadata!.labels!['trellis.dev/inject'] = 'true';
    expect((await inject(review, config(30), 'opt-in')).handled.result).toBe('injected');
  });

  it('takes the namespace from the request when the generateName pod has none', async () => {
    const review = loadReview('deployment-pod.json');
    delete review.request.object.metadata!.namespace;
    const { handled, ops } = await inject(review, config(30));
    expect(handled.result).toBe('injected');
    validatePod(applyPatch(review.request.object, ops));
  });

  it('lets other operations and resources through untouched', async () => {
    const review = loadReview('job-pod.json');
    review.request.operation = 'UPDATE';
    expect((await inject(review, config(30))).handled.review.response).toEqual({ uid: review.request.uid, allowed: true });
    const binding = loadReview('job-pod.json');
    (binding.request as Record<string, unknown>).subResource = 'binding';
    expect((await inject(binding, config(30))).handled.result).toBe('ignored');
  });

  it('refuses to reuse names it would inject', async () => {
    const review = loadReview('job-pod.json');
    review.request.object.spec!.volumes = [{ name: 'trellis-data', emptyDir: {} }];
    expect((await inject(review, config(30))).handled.review.response.status?.message).toMatch(/a volume is already named "trellis-data"/);
  });
});

describe('the checks themselves', () => {
  it('the Pod schema rejects what the API server would (a container without an image name type, a string port)', async () => {
    const pod = loadReview('job-pod.json').request.object;
    const broken = structuredClone(pod);
    (broken.spec!.containers[0] as unknown as Record<string, unknown>).ports = [{ containerPort: 'eighty' }];
    expect(() => validatePod(broken)).toThrow(/containerPort must be integer/);
    const typo = structuredClone(pod);
    (typo.spec!.containers[0] as unknown as Record<string, unknown>).restartPolcy = 'Always';
    expect(() => validatePod(typo)).toThrow(/unknown fields in the pod: \$\.spec\.containers\[0\]\.restartPolcy/);
    const nameless = structuredClone(pod);
    delete (nameless.spec!.containers[0] as unknown as Record<string, unknown>).name;
    expect(() => validatePod(nameless)).toThrow(/name/);
  });

  it('addresses annotation keys with RFC 6901 escaping (/ as ~1)', async () => {
    const review = loadReview('deployment-pod.json');
    const paths = (await inject(review, config(30))).ops.map((op) => op.path);
    expect(paths).toContain('/metadata/annotations/trellis.dev~1status');
    expect(paths).toContain('/metadata/annotations/trellis.dev~1ca-bundle');
    expect(paths).not.toContain('/metadata/annotations/trellis.dev/status');
  });

  it('adds the annotations map when the pod has none', async () => {
    const review = loadReview('job-pod.json');
    const { ops } = await inject(review, config(30));
    expect(ops.find((op) => op.path === '/metadata/annotations')).toMatchObject({ op: 'add' });
  });
});

describe('pods with null fields (as some clients send them)', () => {
  it('treats null annotations, init containers and volumes as absent', async () => {
    const review = loadReview('job-pod.json');
    const pod = review.request.object as unknown as { metadata: Record<string, unknown>; spec: Record<string, unknown> };
    pod.metadata.annotations = null;
    pod.spec.initContainers = null;
    pod.spec.volumes = null;
    const { handled, ops } = await inject(review, config(30));
    expect(handled.result).toBe('injected');
    const patched = applyPatch(review.request.object, ops);
    expect(patched.spec?.initContainers?.map((c) => c.name)).toEqual(['trellis-init', 'trellis-proxy']);
    expect(patched.metadata?.annotations?.['trellis.dev/status']).toBeDefined();
  });
});
