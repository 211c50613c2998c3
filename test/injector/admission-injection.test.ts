/**
 * Fixture AdmissionReviews shaped like the API server's (Deployment, Job and StatefulSet pods, init
 * containers, every probe kind, named ports) go through the handler (skips and refusals: admission-selection);
 * each patch is applied with fast-json-patch, the result validated against kubernetes-models' Pod schema,
 * then re-submitted to prove the second pass changes nothing.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import type { V1Pod } from '@kubernetes/client-node';
import { handleAdmissionReview } from '../../injector/admission-handler.js';
import { createInjectorConfig, type InjectorConfig } from '../../injector/config.js';
import { createTestPki } from '../helpers/pki.js';
import { applyPatch, container, decodePatch, loadReview, resubmit, testDeps, validatePod, type Review } from './review-helpers.js';
import type { AppProbes } from '../../injector/probes.js';
import type { InjectionStatus } from '../../injector/mutation.js';

let bundlePem = '';
beforeAll(async () => {
  bundlePem = (await createTestPki()).bundlePem;
});

function config(minor: number, extra: Partial<Parameters<typeof createInjectorConfig>[0]> = {}): InjectorConfig {
  return createInjectorConfig({
    image: 'ghcr.io/example/trellis:0.1.0',
    controlUrl: 'https://trellis-control.trellis-system.svc:15012',
    zone: 'east',
    trustBundlePem: bundlePem,
    kubernetesVersion: { major: 1, minor },
    version: '0.1.0-test',
    ...extra,
  });
}

async function inject(review: Review, cfg: InjectorConfig, route: 'namespace' | 'opt-in' = 'namespace') {
  const deps = testDeps(cfg);
  const handled = await handleAdmissionReview(review, route, deps);
  return { handled, deps, ops: decodePatch(handled.review) };
}

async function injectAndCheck(fixture: string, cfg: InjectorConfig): Promise<{ pod: V1Pod; review: Review; warnings: readonly string[] }> {
  const review = loadReview(fixture);
  validatePod(review.request.object); // the fixture itself is a valid pod
  const { handled, ops } = await inject(review, cfg);
  expect(handled.review.response.uid).toBe(review.request.uid);
  expect(handled.review.response.allowed).toBe(true);
  expect(handled.review.response.patchType).toBe('JSONPatch');
  expect(handled.result).toBe('injected');
  const pod = applyPatch(review.request.object, ops);
  expect(() => validatePod(pod)).not.toThrow();
  // Idempotent: the injected pod, submitted again, gets no patch at all.
  const again = await inject(resubmit(review, pod), cfg);
  expect(again.handled.review.response).toEqual({ uid: `${review.request.uid}-again`, allowed: true });
  expect(again.handled.result).toBe('unchanged');
  return { pod, review, warnings: handled.review.response.warnings ?? [] };
}

/** `--app-port P --protocol X` pairs, as "P/X". */
function appPortArgs(args: readonly string[]): string[] {
  const out: string[] = [];
  args.forEach((arg, i) => {
    if (arg === '--app-port') {
      expect(args[i + 2]).toBe('--protocol');
      out.push(`${args[i + 1]}/${args[i + 3]}`);
    }
  });
  return out;
}

function status(pod: V1Pod): InjectionStatus {
  return JSON.parse(pod.metadata?.annotations?.['trellis.dev/status'] ?? '{}') as InjectionStatus;
}

describe('a Deployment pod (init container, two containers, every probe kind)', () => {
  it('on Kubernetes 1.30 gets a native sidecar after the capture init container, before the app init containers', async () => {
    const { pod } = await injectAndCheck('deployment-pod.json', config(30));
    expect(pod.spec?.initContainers?.map((c) => c.name)).toEqual(['trellis-init', 'trellis-proxy', 'migrate']);
    expect(pod.spec?.containers.map((c) => c.name)).toEqual(['orders', 'log-shipper']);
    const sidecar = container(pod, 'trellis-proxy');
    expect(sidecar?.restartPolicy).toBe('Always');
    expect(sidecar?.startupProbe?.httpGet).toEqual({ path: '/ready', port: 15020, scheme: 'HTTP' });
    expect(sidecar?.lifecycle).toBeUndefined();
    expect(status(pod)).toMatchObject({ version: '0.1.0-test', layout: 'native', initContainers: ['trellis-init', 'trellis-proxy'], containers: [] });
  });

  it('on Kubernetes 1.28 gets the sidecar as first container with a post-start wait', async () => {
    const { pod } = await injectAndCheck('deployment-pod.json', config(28));
    expect(pod.spec?.initContainers?.map((c) => c.name)).toEqual(['trellis-init', 'migrate']);
    expect(pod.spec?.containers.map((c) => c.name)).toEqual(['trellis-proxy', 'orders', 'log-shipper']);
    const sidecar = container(pod, 'trellis-proxy');
    expect(sidecar?.restartPolicy).toBeUndefined();
    expect(sidecar?.lifecycle?.postStart?.exec?.command).toEqual(['trellis', 'injector', 'wait-ready', '--url', 'http://127.0.0.1:15020/ready', '--timeout', '120s']);
    expect(pod.metadata?.annotations?.['kubectl.kubernetes.io/default-container']).toBe('orders');
    expect(status(pod).layout).toBe('classic');
  });

  it('locks the sidecar down and gives the init container only NET_ADMIN and NET_RAW', async () => {
    const { pod } = await injectAndCheck('deployment-pod.json', config(30));
    const sidecar = container(pod, 'trellis-proxy');
    expect(sidecar?.securityContext).toMatchObject({
      runAsUser: 1337,
      runAsGroup: 1337,
      runAsNonRoot: true,
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ['ALL'] },
    });
    expect(sidecar?.securityContext?.capabilities?.add).toBeUndefined();
    expect(sidecar?.resources?.requests).toEqual({ cpu: '50m', memory: '64Mi' });
    const init = container(pod, 'trellis-init');
    expect(init?.securityContext?.capabilities).toEqual({ add: ['NET_ADMIN', 'NET_RAW'], drop: ['ALL'] });
    expect(init?.securityContext?.privileged).toBe(false);
    expect(init?.securityContext?.runAsUser).toBe(0);
    expect(init?.args?.slice(0, 3)).toEqual(['agent', 'redirect', 'install']);
    expect(init?.args).toEqual(expect.arrayContaining(['--proxy-uid', '1337', '--proxy-gid', '1337', '--exclude-inbound-ports', '15020', '--platform', 'pod']));
  });

  it('mounts the projected token (audience trellis, under a day) and the memory emptyDir only in the sidecar', async () => {
    const { pod } = await injectAndCheck('deployment-pod.json', config(30));
    const identity = pod.spec?.volumes?.find((v) => v.name === 'trellis-identity');
    const token = identity?.projected?.sources?.find((s) => s.serviceAccountToken !== undefined)?.serviceAccountToken;
    expect(token).toEqual({ audience: 'trellis', expirationSeconds: 43200, path: 'token' });
    expect(pod.spec?.volumes?.find((v) => v.name === 'trellis-data')?.emptyDir).toEqual({ medium: 'Memory', sizeLimit: '16Mi' });
    const mounting = [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])].filter((c) => (c.volumeMounts ?? []).some((m) => m.name === 'trellis-data' || m.name === 'trellis-identity'));
    expect(mounting.map((c) => c.name)).toEqual(['trellis-proxy']);
    // The pod's own volumes are kept, in order, before ours.
    expect(pod.spec?.volumes?.map((v) => v.name)).toEqual(['config', 'kube-api-access-9xk2p', 'trellis-data', 'trellis-no-api-token', 'trellis-identity']);
    expect(pod.metadata?.annotations?.['trellis.dev/ca-bundle']).toBe(bundlePem);
    expect(pod.metadata?.annotations?.['prometheus.io/scrape']).toBe('true');
  });

  it('passes the agent its Kubernetes-mode flags: control URL, token, service account, namespace, pod IP, app ports', async () => {
    const { pod } = await injectAndCheck('deployment-pod.json', config(30));
    const sidecar = container(pod, 'trellis-proxy');
    const args = sidecar?.args ?? [];
    const flag = (name: string) => args[args.indexOf(name) + 1];
    expect(args.slice(0, 2)).toEqual(['agent', 'run']);
    expect(flag('--control')).toBe('https://trellis-control.trellis-system.svc:15012');
    expect(flag('--token-file')).toBe('/var/run/secrets/trellis.dev/identity/token');
    expect(flag('--ca-file')).toBe('/var/run/secrets/trellis.dev/identity/ca.pem');
    expect(flag('--service')).toBe('$(TRELLIS_SERVICE_ACCOUNT)');
    expect(flag('--namespace')).toBe('$(TRELLIS_POD_NAMESPACE)');
    expect(flag('--address')).toBe('$(TRELLIS_POD_IP)');
    expect(flag('--zone')).toBe('east');
    expect(appPortArgs(args)).toEqual(['8080/http', '9090/tcp', '9000/grpc']);
    expect(flag('--status')).toBe('0.0.0.0:15020');
    expect(flag('--tunnel')).toBe('0.0.0.0:15008');
    expect(flag('--capture')).toBe('transparent');
    const env = Object.fromEntries((sidecar?.env ?? []).map((e) => [e.name, e.valueFrom?.fieldRef?.fieldPath]));
    expect(env).toMatchObject({ TRELLIS_POD_NAMESPACE: 'metadata.namespace', TRELLIS_POD_IP: 'status.podIP', TRELLIS_SERVICE_ACCOUNT: 'spec.serviceAccountName' });
  });

  it('rewrites HTTP, TCP and gRPC probes to /app-health and keeps the originals for the agent; exec probes stay', async () => {
    const { review, pod } = await injectAndCheck('deployment-pod.json', config(30));
    const orders = container(pod, 'orders');
    expect(orders?.livenessProbe).toEqual({
      httpGet: { path: '/app-health/orders/livez', port: 15020, scheme: 'HTTP' },
      initialDelaySeconds: 5,
      timeoutSeconds: 2,
      periodSeconds: 10,
      successThreshold: 1,
      failureThreshold: 3,
    });
    expect(orders?.readinessProbe?.httpGet?.path).toBe('/app-health/orders/readyz');
    expect(orders?.readinessProbe?.tcpSocket).toBeUndefined();
    expect(orders?.startupProbe?.httpGet?.path).toBe('/app-health/orders/startupz');
    expect(orders?.startupProbe?.grpc).toBeUndefined();
    expect(orders?.startupProbe?.failureThreshold).toBe(30);
    expect(container(pod, 'log-shipper')?.livenessProbe).toEqual(container(review.request.object, 'log-shipper')?.livenessProbe);
    const originals = JSON.parse(pod.metadata?.annotations?.['trellis.dev/app-probes'] ?? '{}') as AppProbes;
    expect(originals).toEqual({
      '/app-health/orders/livez': { kind: 'http', port: 8080, path: '/healthz', scheme: 'HTTP', headers: [{ name: 'X-Probe', value: 'kubelet' }], timeoutSeconds: 2 },
      '/app-health/orders/readyz': { kind: 'tcp', port: 9090, timeoutSeconds: 1 },
      '/app-health/orders/startupz': { kind: 'grpc', port: 9000, service: 'orders.v1.Health', timeoutSeconds: 1 },
    });
    const items = pod.spec?.volumes?.find((v) => v.name === 'trellis-identity')?.projected?.sources?.flatMap((s) => s.downwardAPI?.items ?? []);
    expect(items?.map((i) => [i.path, i.fieldRef?.fieldPath])).toEqual([
      ['ca.pem', "metadata.annotations['trellis.dev/ca-bundle']"],
      ['app-probes.json', "metadata.annotations['trellis.dev/app-probes']"],
    ]);
    expect(container(pod, 'trellis-proxy')?.args).toEqual(expect.arrayContaining(['--app-probes', '/var/run/secrets/trellis.dev/identity/app-probes.json']));
  });

  it("also rewrites the probes of the app's own native sidecars, at their original index", async () => {
    const review = loadReview('deployment-pod.json');
    review.request.object.spec!.initContainers!.push({
      name: 'cache',
      image: 'redis:7',
      restartPolicy: 'Always',
      ports: [{ name: 'tcp-cache', containerPort: 6379 }],
      readinessProbe: { tcpSocket: { port: 'tcp-cache' }, periodSeconds: 5 },
    });
    const { ops } = await inject(review, config(30));
    const pod = applyPatch(review.request.object, ops);
    validatePod(pod);
    expect(pod.spec?.initContainers?.map((c) => c.name)).toEqual(['trellis-init', 'trellis-proxy', 'migrate', 'cache']);
    expect(container(pod, 'cache')?.readinessProbe).toEqual({ periodSeconds: 5, httpGet: { path: '/app-health/cache/readyz', port: 15020, scheme: 'HTTP' } });
    const originals = JSON.parse(pod.metadata?.annotations?.['trellis.dev/app-probes'] ?? '{}') as AppProbes;
    expect(originals['/app-health/cache/readyz']).toEqual({ kind: 'tcp', port: 6379, timeoutSeconds: 1 });
    expect(container(pod, 'trellis-proxy')?.args).toEqual(expect.arrayContaining(['--app-port', '6379']));
  });

  it('leaves probes alone when the pod opts out of the rewrite', async () => {
    const review = loadReview('deployment-pod.json');
    review.request.object.metadata!.annotations!['trellis.dev/rewrite-app-probes'] = 'false';
    const { ops } = await inject(review, config(30));
    const pod = applyPatch(review.request.object, ops);
    validatePod(pod);
    expect(container(pod, 'orders')?.livenessProbe).toEqual(container(review.request.object, 'orders')?.livenessProbe);
    expect(pod.metadata?.annotations?.['trellis.dev/app-probes']).toBeUndefined();
    expect(container(pod, 'trellis-proxy')?.args).not.toContain('--app-probes');
  });
});

describe('a Job pod', () => {
  it('on 1.29+ gets a native sidecar, which ends with the Job', async () => {
    const { pod, warnings } = await injectAndCheck('job-pod.json', config(29));
    expect(container(pod, 'trellis-proxy')?.restartPolicy).toBe('Always');
    expect(pod.spec?.containers.map((c) => c.name)).toEqual(['report']);
    expect(warnings).toEqual([]);
  });

  it('on 1.28 gets the classic layout and a warning saying how the sidecar exits', async () => {
    const { pod, warnings } = await injectAndCheck('job-pod.json', config(28));
    expect(pod.spec?.containers.map((c) => c.name)).toEqual(['trellis-proxy', 'report']);
    expect(warnings.join('\n')).toMatch(/quitquitquit/);
  });

  it('has no app ports and no probes: the agent gets neither flag', async () => {
    const { pod } = await injectAndCheck('job-pod.json', config(30));
    const args = container(pod, 'trellis-proxy')?.args ?? [];
    expect(args).not.toContain('--app-port');
    expect(args).not.toContain('--app-probes');
    // automountServiceAccountToken: false does not stop the projected token for audience trellis.
    expect(pod.spec?.automountServiceAccountToken).toBe(false);
    expect(pod.spec?.volumes?.map((v) => v.name)).toEqual(['trellis-data', 'trellis-no-api-token', 'trellis-identity']);
  });
});

describe('a StatefulSet pod with named ports and exclusion annotations (dry run)', () => {
  it('derives protocols from port names and the override annotation, skipping UDP', async () => {
    const { pod } = await injectAndCheck('statefulset-named-ports-pod.json', config(30));
    const args = container(pod, 'trellis-proxy')?.args ?? [];
    expect(appPortArgs(args)).toEqual(['8080/http', '8081/http', '7000/http', '9090/grpc', '9102/tcp']);
    expect(status(pod).appPorts).toEqual(['8080/http', '8081/http', '7000/http', '9090/grpc', '9102/tcp']);
  });

  it('passes the exclusions to the capture init container', async () => {
    const { pod } = await injectAndCheck('statefulset-named-ports-pod.json', config(30));
    const args = container(pod, 'trellis-init')?.args ?? [];
    const flag = (name: string) => args[args.indexOf(name) + 1];
    expect(flag('--exclude-inbound-ports')).toBe('15020,9102');
    expect(flag('--exclude-outbound-ports')).toBe('5432,6379');
    expect(flag('--exclude-outbound-cidrs')).toBe('10.96.0.0/12,fd00:10:96::/112');
    expect(flag('--exclude-inbound-cidrs')).toBe('192.168.0.10/32');
  });

  it('resolves a named HTTPS probe port and leaves a probe on an undeclared port unchanged, with a warning', async () => {
    const { pod, review, warnings } = await injectAndCheck('statefulset-named-ports-pod.json', config(30));
    const originals = JSON.parse(pod.metadata?.annotations?.['trellis.dev/app-probes'] ?? '{}') as AppProbes;
    expect(originals['/app-health/payments/readyz']).toEqual({ kind: 'http', port: 8081, path: '/ready', scheme: 'HTTPS', timeoutSeconds: 1 });
    expect(container(pod, 'payments')?.livenessProbe).toEqual(container(review.request.object, 'payments')?.livenessProbe);
    expect(warnings).toEqual([expect.stringContaining('"no-such-port" is not declared')]);
  });
});
