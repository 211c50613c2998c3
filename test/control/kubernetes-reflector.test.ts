/**
 * The reflector's guards against hammering the API server: a watch that ends as soon as it starts is
 * retried with backoff, not in a loop, and stopping interrupts a backoff at once.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { setTimeout as delay } from 'node:timers/promises';
import { silentLogger } from '../../common/log.js';
import { Reflector } from '../../common/kubernetes-reflector.js';
import { serviceSource } from '../../control/kubernetes/resource-sources.js';
import { serviceView, type ServiceView } from '../../control/kubernetes/kubernetes-objects.js';
import { fixture, PATHS, startFakeKubeApi, type FakeKubeApi } from './fixtures/k8s-fake-api.js';

describe('Reflector', () => {
  let api: FakeKubeApi;
  let reflector: Reflector<ServiceView> | undefined;
  const upserts: string[] = [];

  const make = (backoff = { initialMs: 50, maxMs: 400 }): Reflector<ServiceView> =>
    (reflector = new Reflector<ServiceView>({
      kubeConfig: api.kubeConfig(),
      source: serviceSource(api.kubeConfig()),
      project: serviceView,
      handler: { upsert: (key) => upserts.push(key), delete: () => undefined },
      log: silentLogger(),
      backoff,
    }));

  beforeEach(async () => {
    api = await startFakeKubeApi();
    upserts.length = 0;
  });
  afterEach(async () => {
    await reflector?.stop();
    reflector = undefined;
    await api.close();
  });

  it('backs off when watches end as soon as they start, instead of spinning', async () => {
    api.apply(PATHS.services, fixture('k8s-service-payments.json'));
    api.endWatchesAtOnce = true;
    const r = make();
    r.start();
    await r.whenSynced();
    expect(upserts).toEqual(['shop/payments']);
    await delay(600);
    // 50, 100, 200, 400 ms (±20%) fit at most 5 watches in 600 ms; a loop would make hundreds.
    const watches = api.watchRequests(PATHS.services).length;
    expect(watches).toBeGreaterThanOrEqual(2);
    expect(watches).toBeLessThanOrEqual(6);
    expect(api.listRequests(PATHS.services).length).toBe(1);
  });

  it('stops at once, also in the middle of a long backoff', async () => {
    api.failNextLists(PATHS.services, 1_000, 500);
    const r = make({ initialMs: 60_000, maxMs: 60_000 });
    r.start();
    while (api.listRequests(PATHS.services).length === 0) await delay(5);
    const started = Date.now();
    await r.stop();
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(r.synced).toBe(false);
  });
});
