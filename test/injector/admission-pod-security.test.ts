/**
 * The injector against each Pod Security level and capture mode, with AdmissionReviews in the API's JSON
 * shape: under `init` capture, baseline and restricted namespaces refuse with the fix; under `cni` capture
 * the injected pod has no privileged container, satisfies every `restricted` rule, carries the plugin's
 * marker, and no mesh container gets the Kubernetes API token. Metrics say what really happened.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import type { V1Pod } from '@kubernetes/client-node';
import { handleAdmissionReview } from '../../injector/admission-handler.js';
import { createInjectorConfig, type InjectorConfig } from '../../injector/config.js';
import { evaluatePodSecurity } from '../../injector/pod-security.js';
import { createTestPki } from '../helpers/pki.js';
import { applyPatch, decodePatch, loadReview, metricValue, testDeps, validatePod, type Review } from './review-helpers.js';
import { validateRedirectOptions } from '../../capture/options.js';

let bundlePem = '';
beforeAll(async () => {
  bundlePem = (await createTestPki()).bundlePem;
});

function config(captureMode = 'init'): InjectorConfig {
  return createInjectorConfig({ image: 'ghcr.io/example/trellis:0.1.0', controlUrl: 'https://trellis-control.trellis-system.svc:15012', zone: 'east', trustBundlePem: bundlePem, kubernetesVersion: { major: 1, minor: 30 }, captureMode });
}

/** The Job fixture made to satisfy `restricted` on its own, as a team enforcing it would write it. */
function restrictedReview(): Review {
  const review = loadReview('job-pod.json');
  const spec = review.request.object.spec!;
  spec.securityContext = { runAsNonRoot: true, runAsUser: 10001, seccompProfile: { type: 'RuntimeDefault' } };
  for (const c of spec.containers) c.securityContext = { allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } };
  return review;
}

async function run(review: Review, cfg: InjectorConfig, labels: Record<string, string>) {
  const deps = testDeps(cfg, labels);
  const handled = await handleAdmissionReview(review, 'namespace', deps);
  return { handled, deps };
}

const LEVELS = ['privileged', 'baseline', 'restricted'] as const;

describe('Pod Security level × capture mode', () => {
  for (const level of LEVELS) {
    for (const mode of ['init', 'cni'] as const) {
      const refused = mode === 'init' && level !== 'privileged';
      it(`${level} namespace, ${mode} capture: ${refused ? 'refused with the fix' : 'injected, and the pod passes the level'}`, async () => {
        const review = restrictedReview();
        const labels = { 'pod-security.kubernetes.io/enforce': level, 'trellis.dev/capture-mode': mode };
        const { handled, deps } = await run(review, config(), labels);
        const response = handled.review.response;
        if (refused) {
          expect(response.allowed).toBe(false);
          expect(response.patch).toBeUndefined();
          expect(handled.result).toBe('refused');
          expect(response.status?.message).toContain(`violates PodSecurity "${level}:latest": non-default capabilities (container "trellis-init" must not include "NET_ADMIN", "NET_RAW" in securityContext.capabilities.add)`);
          if (level === 'restricted') {
            expect(response.status?.message).toMatch(/runAsNonRoot != true \(container "trellis-init" must not set securityContext.runAsNonRoot=false\)/);
            expect(response.status?.message).toMatch(/runAsUser=0 \(container "trellis-init" must not set runAsUser=0\)/);
          }
          expect(response.status?.message).toContain('trellis.dev/capture-mode=cni');
          expect(response.status?.message).toContain('pod-security.kubernetes.io/enforce');
          expect(await metricValue(deps.registry, 'trellis_injector_pod_security_refusals_total', { level, capture_mode: 'init' })).toBe(1);
          return;
        }
        expect(response.allowed).toBe(true);
        expect(handled.result).toBe('injected');
        const pod = applyPatch(review.request.object, decodePatch(handled.review));
        validatePod(pod);
        expect(evaluatePodSecurity(pod, level)).toEqual([]);
        const names = (pod.spec?.initContainers ?? []).map((c) => c.name);
        expect(names).toEqual(mode === 'cni' ? ['trellis-proxy'] : ['trellis-init', 'trellis-proxy']);
        expect(pod.metadata?.annotations?.['trellis.dev/capture']).toBe(mode);
        expect(await metricValue(deps.registry, 'trellis_injector_pod_security_refusals_total', { level, capture_mode: mode })).toBe(0);
      });
    }
  }

  it('under cni capture the injected pod satisfies every restricted rule, with nothing privileged and no API token', async () => {
    const review = restrictedReview();
    const { handled } = await run(review, config('cni'), { 'pod-security.kubernetes.io/enforce': 'restricted' });
    const pod = applyPatch(review.request.object, decodePatch(handled.review));
    expect(evaluatePodSecurity(pod, 'restricted')).toEqual([]);
    const sidecar = pod.spec?.initContainers?.find((c) => c.name === 'trellis-proxy');
    expect(sidecar?.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: 1337, allowPrivilegeEscalation: false, privileged: false, capabilities: { drop: ['ALL'] }, seccompProfile: { type: 'RuntimeDefault' } });
    expect(sidecar?.securityContext?.capabilities?.add).toBeUndefined();
    expect(sidecar?.args).toContain('--require-redirect');
    // The ServiceAccount admission plugin skips a container with a mount at its path: ours is empty.
    const tokenMount = sidecar?.volumeMounts?.find((m) => m.mountPath === '/var/run/secrets/kubernetes.io/serviceaccount');
    expect(tokenMount).toEqual({ name: 'trellis-no-api-token', mountPath: '/var/run/secrets/kubernetes.io/serviceaccount', readOnly: true });
    expect(pod.spec?.volumes?.find((v) => v.name === 'trellis-no-api-token')).toEqual({ name: 'trellis-no-api-token', emptyDir: { medium: 'Memory', sizeLimit: '1Ki' } });
    // The plugin's marker: the redirect as validated redirect options, the same rules as the init container's.
    const redirect = JSON.parse(pod.metadata?.annotations?.['trellis.dev/redirect'] ?? '{}') as Record<string, unknown>;
    const options = validateRedirectOptions(redirect);
    expect(options).toMatchObject({ platform: 'pod', proxyUids: [1337], proxyGids: [1337], outboundPort: 15001, inboundPort: 15006, tunnelPort: 15008 });
    expect(options.excludeInboundPorts.map((p) => p.text)).toEqual(['15020']);
  });

  it('the init container carries no API token either', async () => {
    const review = restrictedReview();
    const { handled } = await run(review, config('init'), {});
    const pod = applyPatch(review.request.object, decodePatch(handled.review));
    for (const name of ['trellis-init', 'trellis-proxy']) {
      const c = pod.spec?.initContainers?.find((x) => x.name === name);
      expect(c?.volumeMounts?.find((m) => m.mountPath === '/var/run/secrets/kubernetes.io/serviceaccount')?.name, name).toBe('trellis-no-api-token');
    }
  });

  it('the mesh-wide cni mode applies where the namespace does not say, and the label overrides it both ways', async () => {
    const a = await run(restrictedReview(), config('cni'), { 'pod-security.kubernetes.io/enforce': 'restricted' });
    expect(a.handled.result).toBe('injected');
    const b = await run(restrictedReview(), config('cni'), { 'pod-security.kubernetes.io/enforce': 'baseline', 'trellis.dev/capture-mode': 'init' });
    expect(b.handled.result).toBe('refused');
    const c = await run(restrictedReview(), config('init'), { 'trellis.dev/capture-mode': 'cni' });
    expect((c.handled.review.response.patch ?? '') !== '').toBe(true);
  });

  it("leaves the app's own violations to the API server (injects; the API server will name them)", async () => {
    const review = restrictedReview();
    review.request.object.spec!.containers[0]!.securityContext = { privileged: true };
    const { handled } = await run(review, config('cni'), { 'pod-security.kubernetes.io/enforce': 'baseline' });
    expect(handled.result).toBe('injected');
  });

  it('refuses a namespace with an unknown capture mode, naming it', async () => {
    const { handled } = await run(restrictedReview(), config(), { 'trellis.dev/capture-mode': 'ebpf' });
    expect(handled.review.response.allowed).toBe(false);
    expect(handled.review.response.status?.message).toMatch(/trellis.dev\/capture-mode="ebpf"; use "init" or "cni"/);
  });

  it('refuses (retryable) when the namespace cannot be read, and never counts it as injected', async () => {
    const deps = { ...testDeps(config()), namespaces: { facts: () => Promise.reject(new Error('connection refused')) } };
    const handled = await handleAdmissionReview(restrictedReview(), 'namespace', deps);
    expect(handled.result).toBe('error');
    expect(handled.review.response.allowed).toBe(false);
    expect(handled.review.response.status?.message).toMatch(/connection refused/);
  });

  it('does not read the namespace for pods it would not inject', async () => {
    let reads = 0;
    const deps = { ...testDeps(config()), namespaces: { facts: () => (reads++, Promise.reject(new Error('unused'))) } };
    const handled = await handleAdmissionReview(loadReview('host-network-pod.json'), 'namespace', deps);
    expect(handled.result).toBe('skipped');
    expect(reads).toBe(0);
  });

  it('checks an ordinary Deployment pod (init containers, probes) the same way', async () => {
    const review = loadReview('deployment-pod.json');
    const pod: V1Pod = review.request.object;
    expect(pod.spec?.initContainers?.length).toBeGreaterThan(0);
    const { handled } = await run(review, config(), { 'pod-security.kubernetes.io/enforce': 'baseline' });
    expect(handled.result).toBe('refused');
  });
});
