/**
 * The TokenReview authenticator against a loopback API server answering with the API's own JSON.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Registry } from 'prom-client';
import { TokenReviewAuthenticator } from '../../control/kubernetes/token-review-authenticator.js';
import { KubernetesMetrics } from '../../control/kubernetes/kubernetes-metrics.js';
import { TrellisError } from '../../common/errors.js';
import { statusOf } from '../../control/http-io.js';
import { fixture, startFakeKubeApi, type FakeKubeApi } from './fixtures/k8s-fake-api.js';

/** A JWT-shaped token (the API server is the only judge of its signature). */
function projectedToken(expSeconds: number, id = 'a'): string {
  const part = (o: unknown): string => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${part({ alg: 'RS256', kid: 'k1' })}.${part({ aud: ['trellis'], exp: expSeconds, iss: 'https://kubernetes.default.svc', sub: 'system:serviceaccount:shop:payments', jti: id })}.c2lnbmF0dXJl`;
}

const authenticatedStatus = (): Record<string, unknown> => fixture<{ status: Record<string, unknown> }>('k8s-tokenreview-authenticated.json').status;

async function refusal(promise: Promise<unknown>): Promise<TrellisError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(TrellisError);
  return err as TrellisError;
}

describe('TokenReviewAuthenticator', () => {
  let api: FakeKubeApi;
  let metrics: Registry;
  let k8sMetrics: KubernetesMetrics;
  let now: number;
  const make = (extra: Partial<ConstructorParameters<typeof TokenReviewAuthenticator>[0]> = {}): TokenReviewAuthenticator =>
    new TokenReviewAuthenticator({ kubeConfig: api.kubeConfig(), metrics: k8sMetrics, now: () => now, ...extra });
  const reviews = (): number => api.requests.filter((r) => r.path === '/apis/authentication.k8s.io/v1/tokenreviews').length;

  beforeEach(async () => {
    api = await startFakeKubeApi();
    metrics = new Registry();
    k8sMetrics = new KubernetesMetrics(metrics);
    now = Date.UTC(2026, 10, 23, 9, 0, 0);
  });
  afterEach(async () => {
    await api.close();
  });

  it('maps a valid token to its service account, asking for audience "trellis"', async () => {
    api.tokenReview = () => authenticatedStatus();
    const token = projectedToken(now / 1000 + 3600);
    const auth = make();
    expect(auth.accepts(token)).toBe(true);
    const who = await auth.authenticate(token);
    expect(who.namespace).toBe('shop');
    expect(who.service).toBe('payments');
    expect(who.credential).toMatch(/^k8s-sa-token:shop\/payments@payments-5d8f9c7b6d-q2w7x:[0-9a-f]{12}$/);
    const sent = JSON.parse(api.requests[0]?.body ?? '{}') as { apiVersion: string; kind: string; spec: { token: string; audiences: string[] } };
    expect(sent).toMatchObject({ apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token, audiences: ['trellis'] } });
    expect(api.requests[0]?.query.size).toBe(0);
  });

  it('does not claim join tokens or garbage', () => {
    api.tokenReview = () => authenticatedStatus();
    const auth = make();
    expect(auth.accepts('tjt1.eyJ0ZCI6InRyZWxsaXMubG9jYWwifQ.bWFj')).toBe(false);
    expect(auth.accepts('not a token')).toBe(false);
    expect(auth.accepts(`eyJ${'a'.repeat(20_000)}.b.c`)).toBe(false);
  });

  it('refuses a token whose audiences do not include trellis, and one reviewed with no audiences', async () => {
    api.tokenReview = () => ({ ...authenticatedStatus(), audiences: ['https://kubernetes.default.svc.cluster.local'] });
    const err = await refusal(make().authenticate(projectedToken(now / 1000 + 3600, 'x')));
    expect(err.code).toBe('TRELLIS_TOKEN_K8S_WRONG_AUDIENCE');
    expect(statusOf(err)).toBe(403);

    // An API server that ignores spec.audiences answers authenticated with none: the token may be for the API server itself.
    const { audiences: _dropped, ...noAudiences } = authenticatedStatus();
    api.tokenReview = () => noAudiences;
    expect((await refusal(make().authenticate(projectedToken(now / 1000 + 3600, 'y')))).code).toBe('TRELLIS_TOKEN_K8S_WRONG_AUDIENCE');
  });

  it('refuses an unauthenticated token with the API server\'s reason', async () => {
    // What the API server answers for an expired or revoked token (the pod it was bound to is gone).
    api.tokenReview = () => ({ user: {}, error: '[invalid bearer token, service account token has been invalidated]' });
    const err = await refusal(make().authenticate(projectedToken(now / 1000 + 3600)));
    expect(err.code).toBe('TRELLIS_TOKEN_K8S_UNAUTHENTICATED');
    expect(err.message).toContain('service account token has been invalidated');
  });

  it('refuses a user that is not a service account', async () => {
    api.tokenReview = () => ({ authenticated: true, user: { username: 'kubernetes-admin', groups: ['kubeadm:cluster-admins', 'system:authenticated'] }, audiences: ['trellis'] });
    expect((await refusal(make().authenticate(projectedToken(now / 1000 + 3600)))).code).toBe('TRELLIS_TOKEN_K8S_NOT_SERVICE_ACCOUNT');
    api.tokenReview = () => ({ ...authenticatedStatus(), user: { username: 'system:node:east-worker' } });
    expect((await refusal(make().authenticate(projectedToken(now / 1000 + 3600, 'n')))).code).toBe('TRELLIS_TOKEN_K8S_NOT_SERVICE_ACCOUNT');
  });

  it('refuses a service account whose name cannot be a Trellis service', async () => {
    api.tokenReview = () => ({ ...authenticatedStatus(), user: { username: 'system:serviceaccount:shop:payments.v2' } });
    expect((await refusal(make().authenticate(projectedToken(now / 1000 + 3600)))).code).toBe('TRELLIS_TOKEN_K8S_NAME_UNSUPPORTED');
  });

  it('reports an API failure as retryable, not as a refusal, and does not cache it', async () => {
    api.tokenReview = () => ({ httpStatus: 503, body: { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: 'the server is currently unable to handle the request', reason: 'ServiceUnavailable', code: 503 } });
    const auth = make();
    const token = projectedToken(now / 1000 + 3600);
    const err = await refusal(auth.authenticate(token));
    expect(err.code).toBe('TRELLIS_K8S_TOKEN_REVIEW_FAILED');
    expect(err.retryable).toBe(true);
    expect(err.side).toBe('upstream');
    api.tokenReview = () => authenticatedStatus();
    expect((await auth.authenticate(token)).service).toBe('payments');
    expect(reviews()).toBe(2);
  });

  it('answers repeats from the cache until the TTL, and never past the token\'s expiry', async () => {
    api.tokenReview = () => authenticatedStatus();
    const auth = make({ cacheTtlMs: 60_000 });
    const longLived = projectedToken(now / 1000 + 3600, 'long');
    await Promise.all([auth.authenticate(longLived), auth.authenticate(longLived), auth.authenticate(longLived)]);
    expect(reviews()).toBe(1); // concurrent reviews of one token share one request
    now += 59_000;
    await auth.authenticate(longLived);
    expect(reviews()).toBe(1);
    now += 2_000;
    await auth.authenticate(longLived);
    expect(reviews()).toBe(2);

    // A token expiring in 20 s is cached less than 20 s, whatever the TTL.
    const shortLived = projectedToken(now / 1000 + 20, 'short');
    await auth.authenticate(shortLived);
    now += 16_000;
    await auth.authenticate(shortLived);
    expect(reviews()).toBe(4);
    // One hit: the 59 s repeat (the concurrent calls shared a request; the others were past their time).
    expect(await metrics.getSingleMetricAsString('trellis_control_k8s_token_review_cache_hits_total')).toMatch(/_total 1$/m);
  });

  it('caches a refusal only briefly', async () => {
    api.tokenReview = () => ({ authenticated: false, error: 'invalid bearer token' });
    const auth = make({ refusalTtlMs: 5_000 });
    const token = projectedToken(now / 1000 + 3600);
    await refusal(auth.authenticate(token));
    await refusal(auth.authenticate(token));
    expect(reviews()).toBe(1);
    now += 5_001;
    api.tokenReview = () => authenticatedStatus();
    expect((await auth.authenticate(token)).namespace).toBe('shop');
    expect(reviews()).toBe(2);
  });

  it('keeps the cache bounded, evicting the oldest answers', async () => {
    api.tokenReview = () => authenticatedStatus();
    const auth = make({ maxCacheEntries: 3 });
    for (const id of ['1', '2', '3', '4', '5']) await auth.authenticate(projectedToken(now / 1000 + 3600, id));
    expect(auth.cacheSize).toBe(3);
    await auth.authenticate(projectedToken(now / 1000 + 3600, '5'));
    expect(reviews()).toBe(5);
    await auth.authenticate(projectedToken(now / 1000 + 3600, '1'));
    expect(reviews()).toBe(6);
  });
});
