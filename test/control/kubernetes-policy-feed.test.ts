/**
 * TrafficPermission and the traffic-management custom resources (TrafficRoute, RetryPolicy, TimeoutPolicy,
 * OutlierDetection, CircuitBreaker) as the policy source: read into the same validated, frozen objects as
 * files, with the API server's own metadata dropped; one invalid resource of any kind rejects the whole
 * set while the last good set stays in force; a CRD not installed is named.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { silentLogger } from '../../common/log.js';
import type { PolicyState } from '../../control/policy-source.js';
import { KubernetesPolicyFeed } from '../../control/kubernetes/policy-feed.js';
import { parseTrafficFiles } from '../../policy/traffic/index.js';
import { fixture, PATHS, startFakeKubeApi, type FakeKubeApi } from './fixtures/k8s-fake-api.js';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

function permission(namespace: string, name: string, spec: Json): Json {
  return { apiVersion: 'trellis.dev/v1alpha1', kind: 'TrafficPermission', metadata: { name, namespace, uid: `uid-${name}`, generation: 1, creationTimestamp: '2026-11-20T09:14:00Z' }, spec };
}

function resource(kind: string, namespace: string, name: string, spec: Json): Json {
  return { apiVersion: 'trellis.dev/v1alpha1', kind, metadata: { name, namespace, uid: `uid-${name}`, resourceVersion: '7', generation: 1, creationTimestamp: '2026-12-01T10:00:00Z' }, spec };
}

describe('KubernetesPolicyFeed', () => {
  let api: FakeKubeApi;
  let feed: KubernetesPolicyFeed | undefined;
  let changes: PolicyState[];
  let errors: PolicyState[];

  const make = (): KubernetesPolicyFeed =>
    (feed = new KubernetesPolicyFeed({
      kubeConfig: api.kubeConfig(),
      rootNamespace: 'trellis-system',
      log: silentLogger(),
      tuning: { backoff: { initialMs: 20, maxMs: 100 } },
      onChange: (s) => changes.push(s),
      onError: (s) => errors.push(s),
    }));

  beforeEach(async () => {
    api = await startFakeKubeApi();
    changes = [];
    errors = [];
  });
  afterEach(async () => {
    await feed?.close();
    feed = undefined;
    await api.close();
  });

  it('loads the resources as policy, keeping only the fields of the format', async () => {
    api.apply(PATHS.policies, fixture('k8s-trafficpermission-payments.json'));
    api.apply(PATHS.policies, permission('trellis-system', 'mesh-guardrail', { destination: '*', rules: [{ action: 'deny', from: ['sandbox/*'] }] }));
    await make().start(5_000);
    const { policies, revision, error } = feed!.state;
    expect(error).toBeUndefined();
    expect(revision).toMatch(/^sha256:/);
    expect(policies.map((p) => `${p.metadata.namespace}/${p.metadata.name}`)).toEqual(['shop/payments-callers', 'trellis-system/mesh-guardrail']);
    expect(policies[0]).toEqual({
      apiVersion: 'trellis.dev/v1alpha1',
      kind: 'TrafficPermission',
      metadata: { name: 'payments-callers', namespace: 'shop' },
      spec: { destination: 'payments', mode: 'enforce', rules: [{ action: 'allow', from: ['orders'], http: { methods: ['POST'], paths: ['/charge'] } }] },
    });
    expect(Object.isFrozen(policies[0])).toBe(true);
  });

  it('rejects an invalid set whole, names the resource, keeps the last good set, and recovers', async () => {
    api.apply(PATHS.policies, fixture('k8s-trafficpermission-payments.json'));
    await make().start(5_000);
    const good = feed!.state;

    // Valid on its own, but only the root namespace may name another namespace's services.
    api.apply(PATHS.policies, permission('shop', 'reach-out', { destination: 'billing/invoicer', rules: [{ action: 'allow', from: ['orders'] }] }));
    // And one with a typo the CRD schema would not catch in a cluster without it.
    api.apply(PATHS.policies, permission('shop', 'typo', { destination: 'orders', rules: [{ action: 'alow', from: ['frontend'] }] }));
    await vi.waitFor(() => expect(errors.length).toBeGreaterThan(0));
    const rejected = feed!.state;
    expect(rejected.policies).toBe(good.policies);
    expect(rejected.revision).toBe(good.revision);
    expect(rejected.error?.issues.join('\n')).toMatch(/TrafficPermission shop\/reach-out: spec\.destination: /);
    expect(rejected.error?.issues.join('\n')).toMatch(/TrafficPermission shop\/typo: spec\.rules\[0\]\.action: .*allow/);
    expect(changes).toEqual([]);

    api.remove(PATHS.policies, 'shop', 'reach-out');
    const fixed = permission('shop', 'typo', { destination: 'orders', rules: [{ action: 'allow', from: ['frontend'] }] });
    api.apply(PATHS.policies, fixed);
    await vi.waitFor(() => expect(changes.length).toBe(1));
    expect(feed!.state.error).toBeUndefined();
    expect(feed!.state.revision).not.toBe(good.revision);
    expect(feed!.state.policies.map((p) => p.metadata.name)).toEqual(['payments-callers', 'typo']);

    // Deleting a resource applies too.
    api.remove(PATHS.policies, 'shop', 'typo');
    await vi.waitFor(() => expect(changes.length).toBe(2));
    expect(feed!.state.policies.map((p) => p.metadata.name)).toEqual(['payments-callers']);
  });

  it('refuses to start on an invalid set, listing every problem', async () => {
    api.apply(PATHS.policies, permission('shop', 'broken', { destination: 'payments', rules: [], extra: true }));
    await expect(make().start(5_000)).rejects.toMatchObject({
      code: 'TRELLIS_CONFIG_INVALID',
      message: expect.stringMatching(/TrafficPermission shop\/broken: spec.*extra[\s\S]*TrafficPermission shop\/broken: spec\.rules/),
    });
  });

  it('keeps the policy through a 410 relist and applies what changed meanwhile', async () => {
    api.apply(PATHS.policies, fixture('k8s-trafficpermission-payments.json'));
    await make().start(5_000);
    await vi.waitFor(() => expect(api.openWatches(PATHS.policies)).toBe(1));
    api.breakWatches(PATHS.policies);
    api.apply(PATHS.policies, permission('shop', 'orders-callers', { destination: 'orders', rules: [{ action: 'allow', from: ['frontend'] }] }));
    api.compact(PATHS.policies);
    await vi.waitFor(() => expect(changes.length).toBe(1));
    expect(feed!.state.policies.map((p) => p.metadata.name)).toEqual(['orders-callers', 'payments-callers']);
    expect(api.listRequests(PATHS.policies).length).toBe(2);
  });

  // The traffic-management kinds, read beside TrafficPermission as one set.
  it('reads every kind into the objects a traffic file gives', async () => {
    api.apply(PATHS.policies, fixture('k8s-trafficpermission-payments.json'));
    api.apply(PATHS.trafficRoutes, fixture('k8s-trafficroute-payments.json'));
    api.apply(PATHS.retryPolicies, resource('RetryPolicy', 'shop', 'payments-retry', { destination: 'payments', attempts: 3, perTryTimeout: '250ms', retryOn: ['gateway-error'], grpcStatuses: ['unavailable'] }));
    api.apply(PATHS.timeoutPolicies, resource('TimeoutPolicy', 'shop', 'payments-timeouts', { destination: 'payments', connect: '2s', request: '10s', idle: '30m' }));
    api.apply(PATHS.outlierDetections, resource('OutlierDetection', 'shop', 'all-outliers', { destination: '*', consecutive5xx: 3, baseEjectionTime: '10s' }));
    api.apply(PATHS.circuitBreakers, resource('CircuitBreaker', 'shop', 'payments-breaker', { destination: 'payments', maxPendingRequests: 64, maxRequests: 256 }));
    await make().start(5_000);
    const { traffic, policies, error, revision } = feed!.state;
    expect(error).toBeUndefined();
    expect(policies).toHaveLength(1);
    expect(revision).toMatch(/^sha256:/);
    expect(traffic?.map((r) => `${r.kind} ${r.metadata.namespace}/${r.metadata.name}`)).toEqual([
      'TrafficRoute shop/payments-canary',
      'RetryPolicy shop/payments-retry',
      'TimeoutPolicy shop/payments-timeouts',
      'OutlierDetection shop/all-outliers',
      'CircuitBreaker shop/payments-breaker',
    ]);
    // The same objects the file validator makes of the same resources written as YAML.
    const asFile = parseTrafficFiles([
      {
        path: 'traffic.yaml',
        text: `apiVersion: trellis.dev/v1alpha1
kind: TrafficRoute
metadata: { name: payments-canary, namespace: shop, labels: { team: payments } }
spec:
  destination: payments
  rules:
    - name: beta
      match: { headers: [{ name: x-beta, exact: "1" }] }
      backends: [{ labels: { version: v2 } }]
    - backends: [{ labels: { version: v1 }, weight: 90 }, { labels: { version: v2 }, weight: 10 }]
      mirror: { labels: { version: v3 }, percent: 5 }
---
apiVersion: trellis.dev/v1alpha1
kind: RetryPolicy
metadata: { name: payments-retry, namespace: shop }
spec: { destination: payments, attempts: 3, perTryTimeout: 250ms, retryOn: [gateway-error], grpcStatuses: [unavailable] }
`,
      },
    ]);
    expect(traffic?.slice(0, 2)).toEqual(asFile);
    expect(Object.isFrozen(traffic?.[0])).toBe(true);
    expect(JSON.stringify(traffic)).not.toMatch(/uid|managedFields|resourceVersion|last-applied/);
  });

  it('rejects the whole set for one bad resource of any kind, naming it, and recovers', async () => {
    api.apply(PATHS.policies, fixture('k8s-trafficpermission-payments.json'));
    api.apply(PATHS.trafficRoutes, fixture('k8s-trafficroute-payments.json'));
    await make().start(5_000);
    const good = feed!.state;

    // A bad RetryPolicy, and a route whose header regex could backtrack for ever (a schema cannot say that).
    api.apply(PATHS.retryPolicies, resource('RetryPolicy', 'shop', 'bad-retry', { destination: 'payments', attempts: 50, retryOn: ['sometimes'] }));
    api.apply(PATHS.trafficRoutes, resource('TrafficRoute', 'shop', 'redos', { destination: 'orders', rules: [{ match: { headers: [{ name: 'x', regex: '(a+)+$' }] }, backends: [{}] }] }));
    await vi.waitFor(() => expect(errors.length).toBeGreaterThan(0));
    // A change of permissions meanwhile does not apply either: the set is one.
    const seen = errors.length;
    api.apply(PATHS.policies, resource('TrafficPermission', 'shop', 'orders-callers', { destination: 'orders', rules: [{ action: 'allow', from: ['frontend'] }] }));
    await vi.waitFor(() => expect(errors.length).toBeGreaterThan(seen));
    const rejected = feed!.state;
    expect(rejected.policies).toBe(good.policies);
    expect(rejected.traffic).toBe(good.traffic);
    const text = rejected.error?.issues.join('\n') ?? '';
    expect(text).toMatch(/RetryPolicy shop\/bad-retry: spec\.attempts: /);
    expect(text).toMatch(/RetryPolicy shop\/bad-retry: spec\.retryOn\[0\]: /);
    expect(text).toMatch(/TrafficRoute shop\/redos: spec\.rules\[0\]\.match\.headers\[0\]\.regex: /);
    expect(changes).toEqual([]);

    api.remove(PATHS.retryPolicies, 'shop', 'bad-retry');
    api.remove(PATHS.trafficRoutes, 'shop', 'redos');
    await vi.waitFor(() => expect(changes.length).toBe(1));
    expect(feed!.state.error).toBeUndefined();
    expect(feed!.state.policies.map((p) => p.metadata.name)).toEqual(['orders-callers', 'payments-callers']);
    expect(feed!.state.traffic?.map((r) => r.metadata.name)).toEqual(['payments-canary']);

    // A change of traffic alone is a new revision too (agents get it with the next delta).
    api.apply(PATHS.circuitBreakers, resource('CircuitBreaker', 'shop', 'payments-breaker', { destination: 'payments', maxRequests: 10 }));
    await vi.waitFor(() => expect(changes.length).toBe(2));
    expect(changes[1]?.revision).not.toBe(changes[0]?.revision);
  });

  it('reads ZoneFailovers, and refuses the whole set for two that claim the same callers, naming both', async () => {
    api.apply(PATHS.policies, fixture('k8s-trafficpermission-payments.json'));
    api.apply(PATHS.zoneFailovers, resource('ZoneFailover', 'shop', 'payments-west-first', { destination: 'payments', order: ['west', '*'], threshold: '30%', from: ['east'] }));
    await make().start(5_000);
    expect(feed!.state.traffic).toEqual([expect.objectContaining({ kind: 'ZoneFailover', spec: { destination: 'payments', order: ['west', '*'], threshold: '30%', from: ['east'] } })]);
    const good = feed!.state;
    api.apply(PATHS.zoneFailovers, resource('ZoneFailover', 'shop', 'payments-north-first', { destination: 'payments', order: ['north'], from: ['central', 'east'] }));
    await vi.waitFor(() => expect(errors.length).toBeGreaterThan(0));
    expect(feed!.state.traffic).toBe(good.traffic);
    expect(feed!.state.error?.issues.join('\n')).toMatch(/ZoneFailover shop\/payments-west-first: metadata\.name: ZoneFailover shop\/payments-west-first conflicts with ZoneFailover shop\/payments-north-first: both set the failover of "payments" in shop for callers in zone east/);
  });

  it('names the CRDs it could not list when one is not installed', async () => {
    api.removeCollection(PATHS.outlierDetections);
    await expect(make().start(1_500)).rejects.toMatchObject({ code: 'TRELLIS_K8S_SYNC_TIMEOUT', message: expect.stringMatching(/did not list outlierdetections within/) });
  });
});
