/**
 * TrafficPermission custom resources as the policy source: validated as files are, an invalid set
 * rejected whole while the last good set stays in force.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { silentLogger } from '../../common/log.js';
import type { PolicyState } from '../../control/policy-source.js';
import { KubernetesPolicyFeed } from '../../control/kubernetes/policy-feed.js';
import { fixture, PATHS, startFakeKubeApi, type FakeKubeApi } from './fixtures/k8s-fake-api.js';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

function permission(namespace: string, name: string, spec: Json): Json {
  return { apiVersion: 'trellis.dev/v1alpha1', kind: 'TrafficPermission', metadata: { name, namespace, uid: `uid-${name}`, generation: 1, creationTimestamp: '2026-11-20T09:14:00Z' }, spec };
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
});
