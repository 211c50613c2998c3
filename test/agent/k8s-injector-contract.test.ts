/**
 * The agent honours the contract the injector generates: the `trellis agent run` arguments of a patched
 * fixture pod (native and classic layouts, Deployment, StatefulSet with named ports, Job with no port)
 * parse without error, with the files the pod would have mounted (token, the CA bundle and the app
 * probes projected from the pod's own annotations), and mean what the injector meant.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { V1Container, V1Pod } from '@kubernetes/client-node';
import { parseAgentArgs } from '../../cli/agent-run.js';
import { bootstrapTrustDomain } from '../../agent/bootstrap-trust-domain.js';
import { createInjectorConfig, type InjectorConfig } from '../../injector/config.js';
import { mutatePod } from '../../injector/mutation.js';
import { ANNOTATION_APP_PROBES, ANNOTATION_CA_BUNDLE, IDENTITY_DIR } from '../../injector/sidecar.js';
import { SIDECAR_CONTAINER } from '../../injector/selection.js';
import { createTestPki } from '../helpers/pki.js';
import { applyPatch, loadReview } from '../injector/review-helpers.js';

let bundlePem = '';
const dirs: string[] = [];
beforeAll(async () => {
  bundlePem = (await createTestPki({ trustDomain: 'mesh.example' })).bundlePem;
});
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

function injectorConfig(minor: number): InjectorConfig {
  return createInjectorConfig({ image: 'ghcr.io/example/trellis:0.1.0', controlUrl: 'https://trellis-control.trellis-system.svc:15012', zone: 'east', trustBundlePem: bundlePem, kubernetesVersion: { major: 1, minor }, version: '0.1.0-test' });
}

function injected(fixture: string, minor: number, captureMode: 'init' | 'cni' = 'init', labels: Record<string, string> = {}): V1Pod {
  const review = loadReview(fixture);
  const meta = review.request.object.metadata ?? {};
  review.request.object.metadata = { ...meta, labels: { ...meta.labels, ...labels } };
  const result = mutatePod(review.request.object, review.request.namespace ?? 'default', 'namespace', injectorConfig(minor), captureMode);
  if (result.outcome !== 'injected') throw new Error(`${fixture} was not injected: ${result.outcome}`);
  return applyPatch(review.request.object, result.patch as Parameters<typeof applyPatch>[1]);
}

function sidecarOf(pod: V1Pod): V1Container {
  const all = [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])];
  const sidecar = all.find((c) => c.name === SIDECAR_CONTAINER);
  if (sidecar === undefined) throw new Error('no sidecar');
  return sidecar;
}

/**
 * The arguments as the kubelet would run them: `$(VAR)` expanded from the container's env (downward API
 * values made up here), and the projected identity volume materialised in a temp dir from the pod's
 * annotations, as the kubelet writes it.
 */
function kubeletArgs(pod: V1Pod): string[] {
  const sidecar = sidecarOf(pod);
  const values: Record<string, string> = { TRELLIS_SERVICE_ACCOUNT: pod.spec?.serviceAccountName ?? 'default', TRELLIS_POD_NAMESPACE: 'shop', TRELLIS_POD_IP: '10.244.1.17', TRELLIS_POD_NAME: 'p', TRELLIS_NODE_NAME: 'n' };
  for (const env of sidecar.env ?? []) expect(values[env.name], `env ${env.name}`).toBeDefined();
  const dir = mkdtempSync(join(tmpdir(), 'trellis-k8s-args-'));
  dirs.push(dir);
  writeFileSync(join(dir, 'token'), 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln\n');
  writeFileSync(join(dir, 'ca.pem'), pod.metadata?.annotations?.[ANNOTATION_CA_BUNDLE] ?? '');
  const probes = pod.metadata?.annotations?.[ANNOTATION_APP_PROBES];
  if (probes !== undefined) writeFileSync(join(dir, 'app-probes.json'), probes);
  const args = (sidecar.args ?? []).map((a) => a.replace(/\$\((\w+)\)/g, (_, name: string) => values[name] ?? `$(${name})`).replace(IDENTITY_DIR, dir));
  expect(sidecar.command).toEqual(['trellis']);
  expect(args.slice(0, 2)).toEqual(['agent', 'run']);
  return args.slice(2);
}

describe('the injector\'s agent arguments, parsed by the agent', () => {
  it('under CNI capture: --require-redirect with the pod IP as the address the check dials', () => {
    const pod = injected('deployment-pod.json', 30, 'cni');
    const args = kubeletArgs(pod);
    expect(args).toContain('--require-redirect');
    const { redirectCheckAddress, config } = parseAgentArgs(args);
    expect(redirectCheckAddress).toBe('10.244.1.17');
    expect(config.capture).toBeDefined();
    expect(parseAgentArgs(kubeletArgs(injected('deployment-pod.json', 30))).redirectCheckAddress).toBeUndefined();
    expect(() => parseAgentArgs(args.filter((a) => a !== 'transparent' && a !== '--capture'))).toThrow(/--require-redirect goes with --capture transparent/);
  });

  for (const [layout, minor] of [['native', 30], ['classic', 28]] as const) {
    it(`a Deployment pod with several ports and every probe kind (${layout})`, () => {
      const pod = injected('deployment-pod.json', minor);
      const { config } = parseAgentArgs(kubeletArgs(pod));
      expect(config.service).toBe(pod.spec?.serviceAccountName ?? 'default');
      expect(config.namespace).toBe('shop');
      expect(config.address).toBe('10.244.1.17');
      // Transparent capture with no --upstream: the app may call any mesh service, so the agent subscribes to all.
      expect(config.capture).toBeDefined();
      expect(config.upstreams).toEqual([{ service: '*', namespace: '*', port: undefined, bindAddress: '127.0.0.1', localPort: undefined }]);
      expect(config.zone).toBe('east');
      expect(config.status).toEqual({ host: '0.0.0.0', port: 15020 });
      expect(config.tunnel).toEqual({ host: '0.0.0.0', port: 15008 });
      // http-api is http and grpc is grpc by their names; tcp-metrics tcp, as the injector decides.
      expect(config.appPorts).toEqual([
        { port: 8080, protocol: 'http', host: '127.0.0.1' },
        { port: 9090, protocol: 'tcp', host: '127.0.0.1' },
        { port: 9000, protocol: 'grpc', host: '127.0.0.1' },
      ]);
      expect(config.healthCheck).toMatchObject({ kind: 'tcp', port: 8080 });
      const annotation = JSON.parse(pod.metadata?.annotations?.[ANNOTATION_APP_PROBES] ?? '{}') as Record<string, { kind: string; port: number; timeoutSeconds: number }>;
      expect([...config.appProbes.keys()].sort()).toEqual(Object.keys(annotation).sort());
      expect(config.appProbes.size).toBe(3);
      for (const [path, original] of Object.entries(annotation)) {
        expect(config.appProbes.get(path)).toMatchObject({ kind: original.kind, port: original.port, timeoutMs: original.timeoutSeconds * 1000 });
      }
      // Every rewritten probe the kubelet will send lands on a path the agent serves.
      for (const container of pod.spec?.containers ?? []) {
        for (const probe of [container.livenessProbe, container.readinessProbe, container.startupProbe]) {
          const path = probe?.httpGet?.path;
          if (path?.startsWith('/app-health/') === true) {
            expect(probe?.httpGet?.port).toBe(15020);
            expect(config.appProbes.has(path)).toBe(true);
          }
        }
      }
      // The trust bundle projected from the annotation names the mesh's trust domain.
      expect(bootstrapTrustDomain({ configured: config.trustDomain, token: 'eyJ.x.y', bundlePem: pod.metadata?.annotations?.[ANNOTATION_CA_BUNDLE], bundleSource: 'ca.pem' })).toBe('mesh.example');
    });
  }

  it('a StatefulSet pod with named ports: probes resolved to numbers, UDP left out', () => {
    const pod = injected('statefulset-named-ports-pod.json', 30);
    const { config } = parseAgentArgs(kubeletArgs(pod));
    // `trellis.dev/port-protocols: 7000=http` overrides the name tcp-ledger; UDP ports are not app ports.
    expect(config.appPorts.map((p) => `${p.port}/${p.protocol}`)).toEqual(['8080/http', '8081/http', '7000/http', '9090/grpc', '9102/tcp']);
    const status = JSON.parse(pod.metadata?.annotations?.['trellis.dev/status'] ?? '{}') as { appPorts: string[] };
    expect(status.appPorts.length).toBe(config.appPorts.length);
    for (const probe of config.appProbes.values()) expect(probe.port).toBeGreaterThan(0);
    // The liveness probe names a port the container does not declare ("no-such-port"): the injector cannot
    // resolve it, leaves it as written for the kubelet to report, and only the readiness probe is proxied.
    const payments = pod.spec?.containers.find((c) => c.name === 'payments');
    expect(payments?.livenessProbe?.httpGet?.path).toBe('/live');
    expect(config.appProbes.size).toBe(1);
  });

  for (const [layout, minor] of [['native', 30], ['classic', 28]] as const) {
    it(`a Job pod with no port and no probes (${layout})`, () => {
      const pod = injected('job-pod.json', minor);
      const args = kubeletArgs(pod);
      expect(args).not.toContain('--app-port');
      expect(args).not.toContain('--app-probes');
      const { config } = parseAgentArgs(args);
      expect(config.appPorts).toEqual([]);
      expect(config.healthCheck).toBeNull();
      expect(config.appProbes.size).toBe(0);
      expect(config.status?.port).toBe(15020);
    });
  }

  it("a pod's own trellis.dev/subzone label becomes its agent's --subzone; a malformed one is left out", () => {
    const pod = injected('deployment-pod.json', 30, 'init', { 'trellis.dev/subzone': 'us-east-1a' });
    expect(parseAgentArgs(kubeletArgs(pod)).config.labels).toMatchObject({ 'trellis.dev/subzone': 'us-east-1a' });
    const odd = injected('deployment-pod.json', 30, 'init', { 'trellis.dev/subzone': '-no-' });
    expect(kubeletArgs(odd)).not.toContain('--subzone');
    expect(kubeletArgs(injected('deployment-pod.json', 30))).not.toContain('--subzone');
  });
});
