/**
 * The control plane and the injector agree on what a mesh pod looks like: a pod the injector patches
 * (native and classic layouts) is read by the registry feed as having a sidecar, with its tunnel port;
 * the same pod unpatched is not. The constants the feed mirrors are the injector's.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import fastJsonPatch from 'fast-json-patch';
import type { V1Pod } from '@kubernetes/client-node';
import { createInjectorConfig, type InjectorConfig } from '../../injector/config.js';
import { mutatePod } from '../../injector/mutation.js';
import { ANNOTATION_PORT_PROTOCOLS as INJECTOR_PORT_PROTOCOLS } from '../../injector/annotations.js';
import { TOKEN_AUDIENCE } from '../../injector/sidecar.js';
import { ANNOTATION_PORT_PROTOCOLS, podView } from '../../control/kubernetes/kubernetes-objects.js';
import { TRELLIS_TOKEN_AUDIENCE } from '../../control/kubernetes/token-review-authenticator.js';
import { createTestPki } from '../helpers/pki.js';
import { fixture } from './fixtures/k8s-fake-api.js';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

let bundlePem = '';
beforeAll(async () => {
  bundlePem = (await createTestPki()).bundlePem;
});

function config(minor: number): InjectorConfig {
  return createInjectorConfig({ image: 'ghcr.io/example/trellis:0.1.0', controlUrl: 'https://trellis-control.trellis-system.svc:15012', zone: 'east', trustBundlePem: bundlePem, kubernetesVersion: { major: 1, minor }, version: '0.1.0-test' });
}

/** The fixture pod as it was before injection: only the app container. */
function appPod(): Json {
  const pod = fixture<Json>('k8s-pod-payments.json');
  delete pod.metadata.annotations;
  delete pod.spec.initContainers;
  return pod;
}

describe('a pod injected by the injector, as the registry feed reads it', () => {
  it('mirrors the injector\'s audience and annotation names', () => {
    expect(TRELLIS_TOKEN_AUDIENCE).toBe(TOKEN_AUDIENCE);
    expect(ANNOTATION_PORT_PROTOCOLS).toBe(INJECTOR_PORT_PROTOCOLS);
  });

  for (const [layout, minor] of [['native', 30], ['classic', 28]] as const) {
    it(`finds the sidecar's tunnel port in the ${layout} layout`, () => {
      const pod = appPod();
      expect(podView(pod)?.tunnelPort).toBeUndefined();
      const cfg = config(minor);
      const result = mutatePod(pod as V1Pod, 'shop', 'namespace', cfg);
      expect(result.outcome).toBe('injected');
      if (result.outcome !== 'injected') return;
      const patched = fastJsonPatch.applyPatch(structuredClone(pod), result.patch as fastJsonPatch.Operation[], true, false).newDocument;
      expect(podView(patched)?.tunnelPort).toBe(cfg.ports.tunnel);
    });
  }
});
