/**
 * A whole control plane in Kubernetes mode (`mode: 'kubernetes'`, reached through a kubeconfig file),
 * over real HTTPS with real certificates, against a loopback Kubernetes API that answers with the API's
 * own JSON: agents get certificates for their own service account (TokenReview) and are refused any
 * other; their watches carry endpoints from EndpointSlices and policy from TrafficPermission resources
 * and follow changes to both; agents' own registrations and health reports add no endpoints (the API is
 * the authority); join tokens still work for VMs; an invalid TrafficPermission set stops the start.
 */
import { validateTrafficObjects } from '../../policy/traffic/index.js';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CONTROL_PATHS, type CreateTokenResponse, type WatchDeltaMessage, type WatchSnapshotMessage } from '../../api/control-protocol.js';
import { ControlError, controlRequest } from '../../api/control-client.js';
import { KubernetesPolicyFeed } from '../../control/kubernetes/policy-feed.js';
import { fixture, PATHS, startFakeKubeApi, type FakeKubeApi } from './fixtures/k8s-fake-api.js';
import { issueWithToken, registration, removeDir, startTestControlPlane, TestWatch, type TestControlPlane } from './support.js';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const ID = (svc: string, ns = 'shop'): string => `spiffe://trellis.local/ns/${ns}/sa/${svc}`;

/** A JWT-shaped projected token; the fake API's TokenReview decides whose it is from its claims. */
function projectedToken(namespace: string, serviceAccount: string, audience = 'trellis'): string {
  const part = (o: unknown): string => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${part({ alg: 'RS256' })}.${part({ aud: [audience], exp: Math.floor(Date.now() / 1000) + 3600, sub: `system:serviceaccount:${namespace}:${serviceAccount}` })}.c2ln`;
}

/** TokenReview as the API server answers it: authenticated, with the audiences the token and the request share. */
function answerTokenReviews(api: FakeKubeApi): void {
  api.tokenReview = (token, audiences) => {
    const claims = JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString()) as { aud: string[]; sub: string };
    const status = fixture<Json>('k8s-tokenreview-authenticated.json').status;
    return { ...status, user: { ...status.user, username: claims.sub }, audiences: claims.aud.filter((a) => audiences.includes(a)) };
  };
}

/** A kubeconfig file as kubectl writes it, with two contexts: the current one points nowhere. */
function writeKubeconfig(dir: string, api: FakeKubeApi): string {
  const path = join(dir, 'kubeconfig');
  writeFileSync(
    path,
    [
      'apiVersion: v1',
      'kind: Config',
      'clusters:',
      // The fake API speaks plain HTTP, which the client allows only with this set.
      `- name: fake\n  cluster:\n    server: ${api.url}\n    insecure-skip-tls-verify: true`,
      '- name: elsewhere\n  cluster:\n    server: http://127.0.0.1:9',
      'users:',
      '- name: control\n  user:\n    token: control-plane-sa-token',
      'contexts:',
      '- name: fake\n  context:\n    cluster: fake\n    user: control',
      '- name: elsewhere\n  context:\n    cluster: elsewhere\n    user: control',
      'current-context: elsewhere',
      '',
    ].join('\n'),
  );
  return path;
}

async function refusal(promise: Promise<unknown>): Promise<ControlError> {
  const err = await promise.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(ControlError);
  return err as ControlError;
}

function invalidPermission(name: string): Json {
  return { apiVersion: 'trellis.dev/v1alpha1', kind: 'TrafficPermission', metadata: { name, namespace: 'shop' }, spec: { destination: 'payments', rules: [{ action: 'permit', from: ['orders'] }] } };
}

interface KubernetesModeSetup {
  readonly api: FakeKubeApi;
  readonly t: TestControlPlane;
  close(): Promise<void>;
}

/** A fake API holding the payments Service, its pod and its slice (and what `seed` adds), and a control plane on it. */
async function startKubernetesMode(seed: (api: FakeKubeApi) => void): Promise<KubernetesModeSetup> {
  const api = await startFakeKubeApi();
  const dir = mkdtempSync(join(tmpdir(), 'trellis-k8s-cp-'));
  try {
    answerTokenReviews(api);
    api.apply(PATHS.services, fixture('k8s-service-payments.json'));
    api.apply(PATHS.pods, fixture('k8s-pod-payments.json'));
    api.apply(PATHS.slices, fixture('k8s-endpointslice-payments.json'));
    seed(api);
    const t = await startTestControlPlane({ mode: 'kubernetes', kubernetes: { kind: 'kubeconfig', path: writeKubeconfig(dir, api), context: 'fake' } }, dir);
    return {
      api,
      t,
      async close() {
        await t.close();
        await api.close();
        removeDir(dir);
      },
    };
  } catch (err) {
    await api.close();
    removeDir(dir);
    throw err;
  }
}

describe('control plane in Kubernetes mode', () => {
  let setup: KubernetesModeSetup | undefined;
  let api: FakeKubeApi;
  let t: TestControlPlane;

  beforeAll(async () => {
    setup = await startKubernetesMode((a) => a.apply(PATHS.policies, fixture('k8s-trafficpermission-payments.json')));
    ({ api, t } = setup);
  });

  afterAll(async () => {
    await setup?.close();
  });

  it('issues a certificate for the projected token\'s service account, and refuses any other identity', async () => {
    const { issued } = await issueWithToken(t.endpoint, projectedToken('shop', 'payments'), ID('payments'));
    expect(issued.spiffeId).toBe(ID('payments'));
    const review = api.requests.find((r) => r.path === '/apis/authentication.k8s.io/v1/tokenreviews');
    expect((JSON.parse(review?.body ?? '{}') as Json).spec.audiences).toEqual(['trellis']);

    const otherService = await refusal(issueWithToken(t.endpoint, projectedToken('shop', 'payments'), ID('orders')));
    expect(otherService.status).toBe(403);
    expect(otherService.code).toBe('TRELLIS_TOKEN_WRONG_SERVICE');
    const otherNamespace = await refusal(issueWithToken(t.endpoint, projectedToken('shop', 'payments'), ID('payments', 'billing')));
    expect(otherNamespace.code).toBe('TRELLIS_TOKEN_WRONG_SERVICE');

    // A token meant for the API server itself is not a Trellis credential.
    const wrongAudience = await refusal(issueWithToken(t.endpoint, projectedToken('shop', 'orders', 'https://kubernetes.default.svc'), ID('orders')));
    expect(wrongAudience.status).toBe(403);
    expect(wrongAudience.code).toBe('TRELLIS_TOKEN_K8S_WRONG_AUDIENCE');
  });

  it('still issues to VMs with join tokens (asked after TokenReview, which does not claim them)', async () => {
    const admin = readFileSync(join(t.dir, 'data', 'admin-token'), 'utf8').trim();
    const created = await controlRequest<CreateTokenResponse>(t.endpoint, { method: 'POST', path: CONTROL_PATHS.adminTokens, bearer: admin, body: { service: 'legacy-billing', namespace: 'shop', ttlMs: 60_000 } });
    const reviews = api.requests.filter((r) => r.path === '/apis/authentication.k8s.io/v1/tokenreviews').length;
    const { issued } = await issueWithToken(t.endpoint, created.token, ID('legacy-billing'));
    expect(issued.spiffeId).toBe(ID('legacy-billing'));
    expect(api.requests.filter((r) => r.path === '/apis/authentication.k8s.io/v1/tokenreviews').length).toBe(reviews);
  });

  it('serves endpoints from EndpointSlices and policy from TrafficPermissions, and pushes changes to both', async () => {
    const orders = await issueWithToken(t.endpoint, projectedToken('shop', 'orders'), ID('orders'));
    const watch = await TestWatch.open(t.endpoint, orders, registration('orders-1', 15008, { address: '10.244.3.3', upstreams: [{ service: 'payments', namespace: 'shop' }] }));
    try {
      const { snapshot } = (await watch.next((m) => m.type === 'snapshot')) as WatchSnapshotMessage;
      const payments = snapshot.upstreams.find((u) => u.name === 'payments');
      expect(payments?.endpoints).toEqual([{ address: '10.244.1.17', tunnelPort: 15008, zone: 'default', healthy: true, labels: { app: 'payments', 'trellis.dev/subzone': 'us-east-1a' } }]);
      expect(payments?.ports).toEqual([
        { port: 80, targetPort: 8080, protocol: 'http', name: 'http' },
        { port: 9000, targetPort: 9000, protocol: 'http2', name: 'grpc-admin' },
      ]);
      expect(payments?.virtualIps).toEqual(['10.96.120.15']);
      expect(snapshot.policies.map((p) => `${p.metadata.namespace}/${p.metadata.name}`)).toEqual(['shop/payments-callers']);

      // The agent's own registration and health reports add no endpoint: the API is the authority.
      expect(t.cp.registry.upstream('shop', 'orders').endpoints).toEqual([]);
      expect(t.cp.registry.get('orders-1')).toBeUndefined();
      const report = await controlRequest<Json>(t.endpoint, { method: 'PUT', path: `${CONTROL_PATHS.endpointPrefix}orders-1`, body: { healthy: false }, clientCert: orders });
      expect(report.healthy).toBe(false);
      const malformed = await refusal(controlRequest(t.endpoint, { method: 'PUT', path: `${CONTROL_PATHS.endpointPrefix}orders-1`, body: { healthy: 'no' }, clientCert: orders }));
      expect(malformed.status).toBe(400);
      const gone = await controlRequest<Json>(t.endpoint, { method: 'DELETE', path: `${CONTROL_PATHS.endpointPrefix}orders-1`, clientCert: orders });
      expect(gone.deregistered).toBe('orders-1');
      expect(t.cp.registry.entries().map((e) => e.instanceId)).toEqual([expect.stringMatching(/^k8s:payments:/)]);
      expect(existsSync(join(t.dir, 'data', 'registrations', 'orders-1.json'))).toBe(false);

      // The pod fails its readiness probe: the EndpointSlice says so, and the watching agent hears it.
      const slice = fixture<Json>('k8s-endpointslice-payments.json');
      slice.endpoints[0].conditions = { ready: false, serving: false, terminating: false };
      api.apply(PATHS.slices, slice);
      const delta = (await watch.next((m) => m.type === 'delta' && (m.endpoints ?? []).some((e) => e.set?.healthy === false))) as WatchDeltaMessage;
      expect(delta.endpoints).toEqual([{ service: 'payments', namespace: 'shop', set: { address: '10.244.1.17', tunnelPort: 15008, zone: 'default', healthy: false, labels: { app: 'payments', 'trellis.dev/subzone': 'us-east-1a' } } }]);

      // A TrafficPermission is changed with kubectl: the new set reaches the watch.
      const permission = fixture<Json>('k8s-trafficpermission-payments.json');
      permission.spec.rules[0].http.paths = ['/charge', '/refund'];
      api.apply(PATHS.policies, permission);
      const policyDelta = (await watch.next((m) => m.type === 'delta' && m.policies !== undefined)) as WatchDeltaMessage;
      expect(policyDelta.policies?.map((p) => p.spec.rules[0]?.http?.paths)).toEqual([['/charge', '/refund']]);
      expect(policyDelta.policyRevision).toBe(t.cp.policy.state.revision);
      expect(t.cp.policy).toBeInstanceOf(KubernetesPolicyFeed);

      // A TrafficRoute is applied with kubectl: the traffic set reaches the watch with the policy delta.
      api.apply(PATHS.trafficRoutes, fixture('k8s-trafficroute-payments.json'));
      const trafficDelta = (await watch.next((m) => m.type === 'delta' && (m.traffic ?? []).length > 0)) as WatchDeltaMessage;
      expect(validateTrafficObjects(trafficDelta.traffic ?? [], 'delta').map((r) => `${r.kind} ${r.metadata.namespace}/${r.metadata.name}`)).toEqual(['TrafficRoute shop/payments-canary']);

      // An invalid one is rejected whole; the set in force stays, the rejection is visible, nothing is pushed.
      const pushed = watch.messages.length;
      api.apply(PATHS.policies, invalidPermission('bad'));
      await vi.waitFor(() => expect(t.cp.policy.state.error?.issues.join('\n') ?? '').toMatch(/TrafficPermission shop\/bad: spec\.rules\[0\]\.action/));
      expect(t.cp.policy.state.policies.map((p) => p.metadata.name)).toEqual(['payments-callers']);
      expect(watch.messages.slice(pushed).filter((m) => m.type === 'delta' && m.policies !== undefined)).toEqual([]);
      const ready = (await (await fetch(`http://127.0.0.1:${t.cp.adminAddress.port}/ready`)).json()) as Json;
      expect(ready.mode).toBe('kubernetes');
      expect(await t.cp.metrics.getSingleMetricAsString('trellis_control_policy_valid')).toMatch(/policy_valid 0$/m);
      api.remove(PATHS.policies, 'shop', 'bad');
      await vi.waitFor(() => expect(t.cp.policy.state.error).toBeUndefined());
    } finally {
      watch.close();
    }
  });
});

/** The payments fixtures renamed: another Service whose one pod runs the sidecar as its own service account. */
function ledgerObjects(): { service: Json; pod: Json; slice: Json } {
  const service = fixture<Json>('k8s-service-payments.json');
  service.metadata = { name: 'ledger', namespace: 'shop', uid: 'c0ffee00-0000-4000-8000-000000000001', resourceVersion: '2001' };
  service.spec.clusterIP = '10.96.7.7';
  service.spec.clusterIPs = ['10.96.7.7'];
  const pod = fixture<Json>('k8s-pod-payments.json');
  pod.metadata = { ...pod.metadata, name: 'ledger-0', uid: 'c0ffee00-0000-4000-8000-000000000002', resourceVersion: '2002', ownerReferences: [] };
  pod.spec.serviceAccountName = 'ledger';
  pod.spec.serviceAccount = 'ledger';
  pod.status.podIP = '10.244.5.5';
  pod.status.podIPs = [{ ip: '10.244.5.5' }];
  const slice = fixture<Json>('k8s-endpointslice-payments.json');
  slice.metadata = { ...slice.metadata, name: 'ledger-x1', uid: 'c0ffee00-0000-4000-8000-000000000003', resourceVersion: '2003', labels: { 'kubernetes.io/service-name': 'ledger' }, ownerReferences: [] };
  slice.endpoints = [{ addresses: ['10.244.5.5'], conditions: { ready: true }, targetRef: { kind: 'Pod', namespace: 'shop', name: 'ledger-0', uid: pod.metadata.uid } }];
  return { service, pod, slice };
}

/** A Service with no mesh pod behind it (the API server's): defined in the registry, in nobody's wildcard. */
function apiServerObjects(): { service: Json; slice: Json } {
  const service = fixture<Json>('k8s-service-payments.json');
  service.metadata = { name: 'kubernetes', namespace: 'default', uid: 'c0ffee00-0000-4000-8000-000000000004', resourceVersion: '2004' };
  service.spec = { ...service.spec, ports: [{ name: 'https', protocol: 'TCP', port: 443, targetPort: 6443 }], clusterIP: '10.96.0.1', clusterIPs: ['10.96.0.1'], selector: undefined };
  const slice = fixture<Json>('k8s-endpointslice-payments.json');
  slice.metadata = { ...slice.metadata, name: 'kubernetes', namespace: 'default', uid: 'c0ffee00-0000-4000-8000-000000000005', resourceVersion: '2005', labels: { 'kubernetes.io/service-name': 'kubernetes' }, ownerReferences: [] };
  slice.endpoints = [{ addresses: ['172.18.0.2'], conditions: { ready: true } }];
  slice.ports = [{ name: 'https', protocol: 'TCP', port: 6443 }];
  return { service, slice };
}

describe('control plane in Kubernetes mode, a mesh-wide subscriber', () => {
  let setup: KubernetesModeSetup | undefined;
  let api: FakeKubeApi;
  let t: TestControlPlane;

  beforeAll(async () => {
    setup = await startKubernetesMode((a) => {
      // orders may call payments: with discovery scoped by policy, that is what puts payments in its config.
      a.apply(PATHS.policies, fixture('k8s-trafficpermission-payments.json'));
      const outside = apiServerObjects();
      a.apply(PATHS.services, outside.service);
      a.apply(PATHS.slices, outside.slice);
    });
    ({ api, t } = setup);
  });

  afterAll(async () => {
    await setup?.close();
  });

  it('hears of a new Service with its EndpointSlice, and of its going', async () => {
    const orders = await issueWithToken(t.endpoint, projectedToken('shop', 'orders'), ID('orders'));
    const watch = await TestWatch.open(t.endpoint, orders, registration('orders-1', 15008, { address: '10.244.3.3', upstreams: [{ service: '*', namespace: '*' }] }));
    try {
      const { snapshot } = (await watch.next((m) => m.type === 'snapshot')) as WatchSnapshotMessage;
      // The API server's Service has no pod of the mesh: capture must pass its connections through.
      expect(snapshot.upstreams.map((u) => `${u.namespace}/${u.name}`)).toEqual(['shop/payments']);
      expect(t.cp.registry.upstream('default', 'kubernetes').virtualIps).toEqual(['10.96.0.1']);

      // Discovery is scoped by policy: orders learns of ledger because a TrafficPermission lets it call ledger.
      const callers = fixture<Json>('k8s-trafficpermission-payments.json');
      callers.metadata = { name: 'ledger-callers', namespace: 'shop', uid: 'c0ffee00-0000-4000-8000-000000000004', resourceVersion: '2000' };
      callers.spec = { destination: 'ledger', rules: [{ action: 'allow', from: ['orders'] }] };
      api.apply(PATHS.policies, callers);
      await watch.next((m) => m.type === 'delta' && (m.policies ?? []).some((p) => p.metadata.name === 'ledger-callers'));
      const ledger = ledgerObjects();
      api.apply(PATHS.pods, ledger.pod);
      api.apply(PATHS.services, ledger.service);
      api.apply(PATHS.slices, ledger.slice);
      const joined = (await watch.next((m) => m.type === 'delta' && (m.upstreams ?? []).some((u) => u.name === 'ledger' && u.endpoints.length > 0))) as WatchDeltaMessage;
      expect(joined.upstreams?.find((u) => u.name === 'ledger')).toMatchObject({
        namespace: 'shop',
        virtualIps: ['10.96.7.7'],
        ports: [{ port: 80, targetPort: 8080, protocol: 'http', name: 'http' }, { port: 9000, targetPort: 9000, protocol: 'http2', name: 'grpc-admin' }],
        endpoints: [{ address: '10.244.5.5', tunnelPort: 15008, zone: 'default', healthy: true }],
      });

      api.remove(PATHS.services, 'shop', 'ledger');
      const left = (await watch.next((m) => m.type === 'delta' && m.removedUpstreams !== undefined)) as WatchDeltaMessage;
      expect(left.removedUpstreams).toEqual([{ service: 'ledger', namespace: 'shop' }]);
      expect(watch.messages.some((m) => m.type === 'delta' && (m.upstreams ?? []).some((u) => u.name === 'kubernetes'))).toBe(false);
    } finally {
      watch.close();
    }
  });
});

describe('control plane in Kubernetes mode, at start-up', () => {
  let api: FakeKubeApi | undefined;
  let dir: string | undefined;

  afterAll(async () => {
    await api?.close();
    if (dir !== undefined) removeDir(dir);
  });

  it('stops the start when the TrafficPermission set is invalid, naming each resource, with nothing left listening', async () => {
    api = await startFakeKubeApi();
    api.apply(PATHS.policies, fixture('k8s-trafficpermission-payments.json'));
    api.apply(PATHS.policies, invalidPermission('bad'));
    api.apply(PATHS.policies, { ...invalidPermission('worse'), spec: { destination: 'Payments!', rules: [] } });
    dir = mkdtempSync(join(tmpdir(), 'trellis-k8s-cp-'));
    const start = startTestControlPlane({ mode: 'kubernetes', kubernetes: { kind: 'kubeconfig', path: writeKubeconfig(dir, api), context: 'fake' } }, dir);
    const err = (await start.then(() => undefined, (e: unknown) => e)) as { code?: string; message?: string };
    expect(err.code).toBe('TRELLIS_CONFIG_INVALID');
    expect(err.message).toMatch(/TrafficPermission shop\/bad: spec\.rules\[0\]\.action/);
    expect(err.message).toMatch(/TrafficPermission shop\/worse: /);
    // The policy feed stopped its watch: nothing keeps the process alive.
    await vi.waitFor(() => expect(api?.openWatches(PATHS.policies)).toBe(0));
    expect(api.openWatches(PATHS.slices)).toBe(0);
  });

  it('refuses a kubeconfig context that does not exist, before the data dir is made', async () => {
    api ??= await startFakeKubeApi();
    dir ??= mkdtempSync(join(tmpdir(), 'trellis-k8s-cp-'));
    const sub = join(dir, 'no-context');
    const err = (await startTestControlPlane({ mode: 'kubernetes', kubernetes: { kind: 'kubeconfig', path: writeKubeconfig(dir, api), context: 'nope' } }, sub).then(() => undefined, (e: unknown) => e)) as { code?: string; message?: string };
    expect(err.code).toBe('TRELLIS_K8S_KUBECONFIG_INVALID');
    expect(err.message).toContain('no context "nope" (it has "fake", "elsewhere")');
    expect(existsSync(join(sub, 'data'))).toBe(false);
  });

  it('refuses a policy directory in Kubernetes mode, and Kubernetes access in universal mode', async () => {
    dir ??= mkdtempSync(join(tmpdir(), 'trellis-k8s-cp-'));
    const both = (await startTestControlPlane({ mode: 'kubernetes', kubernetes: { kind: 'kubeconfig', path: join(dir, 'kubeconfig') }, policyDir: dir }, join(dir, 'both')).then(() => undefined, (e: unknown) => e)) as { code?: string; message?: string };
    expect(both.code).toBe('TRELLIS_CONFIG_INVALID');
    expect(both.message).toContain('policy comes from TrafficPermission resources');
    const stray = (await startTestControlPlane({ kubernetes: { kind: 'kubeconfig', path: join(dir, 'kubeconfig') } }, join(dir, 'stray')).then(() => undefined, (e: unknown) => e)) as { message?: string };
    expect(stray.message).toContain('need --mode kubernetes');
  });
});
