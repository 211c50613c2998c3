/**
 * Bootstrap authentication in Kubernetes: the agent presents its pod's projected service-account
 * token (audience `trellis`), and the API server says whose it is through TokenReview
 * (`authentication.k8s.io/v1`). The token's service account is the workload's service, its namespace
 * the workload's namespace; nothing the agent claims is believed.
 *
 * Checked: `status.authenticated`; that `status.audiences` includes ours (an API server that ignores
 * `spec.audiences` answers with none, and then the token may be one meant for the API server itself);
 * that the user is `system:serviceaccount:<namespace>:<name>` with names that are DNS labels.
 *
 * A short cache keyed by the token's SHA-256 spares the API server when a Deployment scales up and
 * every agent retries: answers are kept at most `cacheTtlMs`, never past the token's own expiry, and
 * refusals only `refusalTtlMs`. Concurrent reviews of one token share one request. The API server
 * failing is not a refusal: it is never cached, and the agent is told to retry.
 */
import { createHash } from 'node:crypto';
import { AuthenticationV1Api, type KubeConfig, type V1TokenReview } from '@kubernetes/client-node';
import { TrellisError, describeError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { DNS_LABEL } from '../../policy/selectors.js';
import type { AuthenticatedWorkload, BootstrapAuthenticator } from '../authenticator.js';
import type { KubernetesMetrics } from './kubernetes-metrics.js';
import { CODE } from '../../common/error-codes.js';
import { makeTrellisApiClient } from '../../common/kubernetes-client.js';

export const TRELLIS_TOKEN_AUDIENCE = 'trellis';

export const TOKEN_REVIEW_DEFAULTS = Object.freeze({
  cacheTtlMs: 60_000,
  refusalTtlMs: 5_000,
  maxCacheEntries: 10_000,
  reviewTimeoutMs: 5_000,
  /** A cached answer ends at least this long before the token expires. */
  expiryMarginMs: 5_000,
  /** Projected tokens are ~1 KiB; anything this large is not one. */
  maxTokenBytes: 16 * 1024,
});

export interface TokenReviewOptions {
  /** Creates the TokenReview; default: the API's, through `kubeConfig`. */
  readonly review?: (review: V1TokenReview) => Promise<V1TokenReview>;
  readonly kubeConfig?: KubeConfig;
  readonly audience?: string;
  readonly cacheTtlMs?: number;
  readonly refusalTtlMs?: number;
  readonly maxCacheEntries?: number;
  readonly reviewTimeoutMs?: number;
  readonly log?: Logger;
  readonly metrics?: KubernetesMetrics;
  readonly now?: () => number;
}

interface CacheEntry {
  readonly expiresAt: number;
  readonly result: AuthenticatedWorkload | TrellisError;
}

const SERVICE_ACCOUNT_USER = /^system:serviceaccount:([^:]+):([^:]+)$/;
const JWT = /^eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

function refused(code: string, message: string): TrellisError {
  // `TOKEN_*` codes are 403 in the API's reply (their status in common/error-codes.ts).
  return new TrellisError(code, message, { side: 'downstream' });
}

/** The token's `exp` claim in ms, read without verifying (TokenReview verified it); undefined if absent. */
export function tokenExpiryMs(token: string): number | undefined {
  try {
    const payload = JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8')) as { exp?: unknown };
    return typeof payload.exp === 'number' && Number.isFinite(payload.exp) ? payload.exp * 1000 : undefined;
  } catch {
    return undefined;
  }
}

export class TokenReviewAuthenticator implements BootstrapAuthenticator {
  readonly kind = 'k8s-sa-token';
  private readonly cache = new Map<string, CacheEntry>();
  private readonly inFlight = new Map<string, Promise<AuthenticatedWorkload>>();
  private readonly review: (review: V1TokenReview) => Promise<V1TokenReview>;
  private readonly audience: string;
  private readonly now: () => number;

  constructor(private readonly options: TokenReviewOptions) {
    this.audience = options.audience ?? TRELLIS_TOKEN_AUDIENCE;
    this.now = options.now ?? Date.now;
    if (options.review !== undefined) {
      this.review = options.review;
    } else if (options.kubeConfig !== undefined) {
      const api = makeTrellisApiClient(options.kubeConfig, AuthenticationV1Api, 'control');
      // A TokenReview is answered, not stored: no field manager; the User-Agent names the control plane.
      this.review = (body) => api.createTokenReview({ body });
    } else {
      throw new TrellisError(CODE.K8S_NO_API, 'TokenReviewAuthenticator needs a kubeConfig or a review function');
    }
  }

  /** Projected service-account tokens are JWTs; join tokens (`tjt1.…`) are not. */
  accepts(bearer: string): boolean {
    return bearer.length <= TOKEN_REVIEW_DEFAULTS.maxTokenBytes && JWT.test(bearer);
  }

  get cacheSize(): number {
    return this.cache.size;
  }

  async authenticate(bearer: string): Promise<AuthenticatedWorkload> {
    const key = createHash('sha256').update(bearer).digest('hex');
    const now = this.now();
    const cached = this.cache.get(key);
    if (cached !== undefined) {
      if (cached.expiresAt > now) {
        this.options.metrics?.tokenReviewCacheHits.inc();
        if (cached.result instanceof TrellisError) throw cached.result;
        return cached.result;
      }
      this.cache.delete(key);
    }
    let pending = this.inFlight.get(key);
    if (pending === undefined) {
      pending = this.reviewAndCache(bearer, key).finally(() => this.inFlight.delete(key));
      this.inFlight.set(key, pending);
    }
    return pending;
  }

  private async reviewAndCache(token: string, key: string): Promise<AuthenticatedWorkload> {
    let result: AuthenticatedWorkload;
    try {
      result = this.check(await this.callApi(token), key);
    } catch (err) {
      if (err instanceof TrellisError && err.side === 'downstream') {
        this.options.metrics?.tokenReviews.inc({ result: 'refused' });
        this.remember(key, err, this.now() + (this.options.refusalTtlMs ?? TOKEN_REVIEW_DEFAULTS.refusalTtlMs));
      } else {
        this.options.metrics?.tokenReviews.inc({ result: 'error' });
      }
      throw err;
    }
    this.options.metrics?.tokenReviews.inc({ result: 'ok' });
    const ttl = this.options.cacheTtlMs ?? TOKEN_REVIEW_DEFAULTS.cacheTtlMs;
    const expiry = tokenExpiryMs(token);
    const until = Math.min(this.now() + ttl, expiry === undefined ? Infinity : expiry - TOKEN_REVIEW_DEFAULTS.expiryMarginMs);
    if (until > this.now()) this.remember(key, result, until);
    return result;
  }

  private async callApi(token: string): Promise<V1TokenReview> {
    const timeoutMs = this.options.reviewTimeoutMs ?? TOKEN_REVIEW_DEFAULTS.reviewTimeoutMs;
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        this.review({ apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token, audiences: [this.audience] } }),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
        }),
      ]);
    } catch (err) {
      this.options.log?.warn({ err: describeError(err) }, 'TokenReview failed');
      throw new TrellisError(CODE.K8S_TOKEN_REVIEW_FAILED, `cannot check the service-account token with the Kubernetes API (TokenReview): ${describeError(err)}; retry`, {
        side: 'upstream',
        retryable: true,
        cause: err,
      });
    } finally {
      clearTimeout(timer);
    }
  }

  private check(review: V1TokenReview, key: string): AuthenticatedWorkload {
    const status = review.status;
    if (status?.authenticated !== true) {
      const why = status?.error === undefined || status.error === '' ? 'the token is invalid, expired, or its pod is gone' : status.error;
      throw refused(CODE.TOKEN_K8S_UNAUTHENTICATED, `the Kubernetes API did not authenticate the service-account token: ${why}`);
    }
    const audiences = status.audiences ?? [];
    if (!audiences.includes(this.audience)) {
      throw refused(
        CODE.TOKEN_K8S_WRONG_AUDIENCE,
        `the service-account token is not for audience "${this.audience}" (TokenReview answered ${audiences.length === 0 ? 'no audiences' : JSON.stringify(audiences)}); mount a projected token with audience "${this.audience}"`,
      );
    }
    const username = status.user?.username ?? '';
    const match = SERVICE_ACCOUNT_USER.exec(username);
    if (match === null) {
      throw refused(CODE.TOKEN_K8S_NOT_SERVICE_ACCOUNT, `the token belongs to "${username}", not to a service account (system:serviceaccount:<namespace>:<name>)`);
    }
    const namespace = match[1] as string;
    const service = match[2] as string;
    if (!DNS_LABEL.test(namespace) || !DNS_LABEL.test(service)) {
      throw refused(CODE.TOKEN_K8S_NAME_UNSUPPORTED, `service account ${namespace}/${service}: a Trellis service name must be a DNS label (lowercase letters, digits, "-", at most 63)`);
    }
    const podName = status.user?.extra?.['authentication.kubernetes.io/pod-name']?.[0];
    return Object.freeze({ namespace, service, credential: `k8s-sa-token:${namespace}/${service}${podName === undefined ? '' : `@${podName}`}:${key.slice(0, 12)}` });
  }

  private remember(key: string, result: CacheEntry['result'], expiresAt: number): void {
    this.cache.delete(key);
    this.cache.set(key, { result, expiresAt });
    // A Map iterates in insertion order: the first entries are the oldest.
    const max = this.options.maxCacheEntries ?? TOKEN_REVIEW_DEFAULTS.maxCacheEntries;
    while (this.cache.size > max) {
      const oldest = this.cache.keys().next().value as string;
      this.cache.delete(oldest);
    }
  }
}
