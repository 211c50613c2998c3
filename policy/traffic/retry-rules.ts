/**
 * When a failed try may be tried again, and the budget that keeps retries from multiplying an outage.
 *
 * A retry needs all of: attempts left, a method that is safe to send twice (idempotent, RFC 9110 §9.2.2)
 * unless the policy says `nonIdempotent`, a condition the policy lists, and a token from the budget.
 * A per-try timeout counts as a gateway error (Envoy's reading): retried under `5xx` or `gateway-error`.
 */
import type { RetrySpec } from './types.js';
import { GRPC_STATUS } from './resilience-validator.js';

export type RetryReason = 'connect-failure' | 'reset' | 'refused-stream' | '5xx' | 'gateway-error' | 'retriable-status' | 'grpc-status' | 'per-try-timeout';

const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);

export function methodRetriable(spec: RetrySpec, method: string): boolean {
  return spec.nonIdempotent || IDEMPOTENT.has(method);
}

/** Why a response with `status` (and `grpc-status`, when the response carried one) may be retried, or undefined. */
export function statusRetryReason(spec: RetrySpec, status: number, grpcStatus?: number): RetryReason | undefined {
  const on = spec.retryOn;
  if (on.includes('gateway-error') && (status === 502 || status === 503 || status === 504)) return 'gateway-error';
  if (on.includes('5xx') && status >= 500 && status <= 599) return '5xx';
  if (on.includes('retriable-status') && spec.statuses.includes(status)) return 'retriable-status';
  if (grpcStatus !== undefined && spec.grpcStatuses.some((name) => GRPC_STATUS[name] === grpcStatus)) return 'grpc-status';
  return undefined;
}

/** Whether a failure with no response (`connect-failure`, `reset`, `refused-stream`, `per-try-timeout`) may be retried. */
export function failureRetriable(spec: RetrySpec, reason: 'connect-failure' | 'reset' | 'refused-stream' | 'per-try-timeout'): boolean {
  const on = spec.retryOn;
  if (reason === 'per-try-timeout') return on.includes('5xx') || on.includes('gateway-error');
  if (reason === 'reset') return on.includes('reset') || on.includes('5xx');
  if (reason === 'connect-failure') return on.includes('connect-failure') || on.includes('5xx') || on.includes('gateway-error');
  return on.includes('refused-stream') || on.includes('5xx');
}

const BUCKETS = 10;

/**
 * Linkerd's retry budget: over the last `windowMs`, retries may be at most `ratio` × requests plus
 * `minPerSecond` × the window in seconds. Counted in ten buckets that slide with time, so a burst ages out
 * smoothly. One budget per caller sidecar and destination service. Time is injected for tests.
 */
export class RetryBudget {
  private readonly requests = new Float64Array(BUCKETS);
  private readonly retries = new Float64Array(BUCKETS);
  private bucket = 0;
  private bucketStart: number;
  private readonly bucketMs: number;

  constructor(
    private readonly spec: RetrySpec['budget'],
    private readonly now: () => number = Date.now,
  ) {
    this.bucketMs = Math.max(1, spec.windowMs / BUCKETS);
    this.bucketStart = now();
  }

  /** A first attempt was sent: it earns `ratio` of a retry. */
  request(): void {
    this.advance();
    this.requests[this.bucket] = (this.requests[this.bucket] as number) + 1;
  }

  /** Takes a retry token; false when the budget is spent (the failure goes to the caller as it is). */
  tryRetry(): boolean {
    this.advance();
    let requests = 0;
    let retries = 0;
    for (let i = 0; i < BUCKETS; i++) {
      requests += this.requests[i] as number;
      retries += this.retries[i] as number;
    }
    const allowed = this.spec.ratio * requests + this.spec.minPerSecond * (this.spec.windowMs / 1000);
    if (retries + 1 > allowed) return false;
    this.retries[this.bucket] = (this.retries[this.bucket] as number) + 1;
    return true;
  }

  private advance(): void {
    const now = this.now();
    let steps = Math.floor((now - this.bucketStart) / this.bucketMs);
    if (steps <= 0) return;
    this.bucketStart += steps * this.bucketMs;
    if (steps > BUCKETS) steps = BUCKETS;
    for (let i = 0; i < steps; i++) {
      this.bucket = (this.bucket + 1) % BUCKETS;
      this.requests[this.bucket] = 0;
      this.retries[this.bucket] = 0;
    }
  }
}
