import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CircuitBreaker, DEFAULT_BREAKER, DEFAULT_OUTLIER, DEFAULT_RETRY, failureRetriable, methodRetriable, OutlierDetector, RetryBudget, statusRetryReason, type RetrySpec } from '../../../policy/traffic/index.js';

const spec = (over: Partial<RetrySpec>): RetrySpec => ({ ...DEFAULT_RETRY, ...over });

describe('retry rules (table)', () => {
  it.each<[string, Partial<RetrySpec>, number, number | undefined, string | undefined]>([
    ['defaults never retry an answered 503', {}, 503, undefined, undefined],
    ['gateway-error takes 502', { retryOn: ['gateway-error'] }, 502, undefined, 'gateway-error'],
    ['gateway-error leaves 500', { retryOn: ['gateway-error'] }, 500, undefined, undefined],
    ['5xx takes 500', { retryOn: ['5xx'] }, 500, undefined, '5xx'],
    ['5xx leaves 429', { retryOn: ['5xx'] }, 429, undefined, undefined],
    ['listed status', { retryOn: ['retriable-status'], statuses: [409] }, 409, undefined, 'retriable-status'],
    ['grpc unavailable', { grpcStatuses: ['unavailable'] }, 200, 14, 'grpc-status'],
    ['grpc not listed', { grpcStatuses: ['unavailable'] }, 200, 13, undefined],
  ])('%s', (_n, over, status, grpc, reason) => {
    expect(statusRetryReason(spec(over), status, grpc)).toBe(reason);
  });

  it.each<[Partial<RetrySpec>, 'connect-failure' | 'reset' | 'refused-stream' | 'per-try-timeout', boolean]>([
    [{}, 'connect-failure', true],
    [{}, 'refused-stream', true],
    [{}, 'reset', false],
    [{}, 'per-try-timeout', false],
    [{ retryOn: ['5xx'] }, 'per-try-timeout', true],
    [{ retryOn: ['reset'] }, 'reset', true],
    [{ retryOn: ['gateway-error'] }, 'connect-failure', true],
  ])('failure %#', (over, failure, expected) => {
    expect(failureRetriable(spec(over), failure)).toBe(expected);
  });

  it('retries only idempotent methods unless told', () => {
    expect(['GET', 'HEAD', 'PUT', 'DELETE', 'OPTIONS'].every((m) => methodRetriable(DEFAULT_RETRY, m))).toBe(true);
    expect(methodRetriable(DEFAULT_RETRY, 'POST')).toBe(false);
    expect(methodRetriable(spec({ nonIdempotent: true }), 'POST')).toBe(true);
  });
});

describe('retry budget', () => {
  it('allows ratio × requests + minPerSecond × window retries, then refuses until the window slides', () => {
    let now = 0;
    const budget = new RetryBudget({ ratio: 0.2, minPerSecond: 1, windowMs: 10_000 }, () => now);
    for (let i = 0; i < 100; i++) budget.request();
    let granted = 0;
    while (budget.tryRetry()) granted += 1;
    expect(granted).toBe(30); // 20 from the ratio + 10 from 1/s over 10 s
    now = 10_500;
    expect(budget.tryRetry()).toBe(true);
  });

  it('agrees with a slow sliding-window reference on random event sequences', () => {
    fc.assert(
      fc.property(fc.array(fc.record({ dt: fc.integer({ min: 0, max: 3_000 }), retry: fc.boolean() }), { maxLength: 200 }), (events) => {
        let now = 0;
        const windowMs = 10_000;
        const budget = new RetryBudget({ ratio: 0.5, minPerSecond: 0, windowMs }, () => now);
        const log: { bucket: number; retry: boolean }[] = [];
        let bucketStart = 0;
        let bucket = 0;
        for (const e of events) {
          now += e.dt;
          const steps = Math.floor((now - bucketStart) / (windowMs / 10));
          bucketStart += steps * (windowMs / 10);
          bucket += steps;
          if (!e.retry) {
            budget.request();
            log.push({ bucket, retry: false });
            continue;
          }
          const live = log.filter((l) => l.bucket > bucket - 10);
          const expected = live.filter((l) => l.retry).length + 1 <= 0.5 * live.filter((l) => !l.retry).length;
          expect(budget.tryRetry()).toBe(expected);
          if (expected) log.push({ bucket, retry: true });
        }
      }),
      { numRuns: 200 },
    );
  });
});

describe('outlier detection', () => {
  const eps = (n: number, zone = 'z1'): { key: string; zone: string }[] => Array.from({ length: n }, (_, i) => ({ key: `e${i}`, zone }));

  it('ejects after consecutive gateway errors, for a time growing with repeated ejections', () => {
    let now = 0;
    const ejected: string[] = [];
    const d = new OutlierDetector({ ...DEFAULT_OUTLIER, consecutiveGatewayErrors: 3, baseEjectionTimeMs: 1_000, maxEjectionTimeMs: 2_500 }, () => now, (k, r) => ejected.push(`${k}:${r}`));
    d.setEndpoints(eps(4));
    d.record('e0', 'gateway-error');
    d.record('e0', 'success');
    d.record('e0', 'gateway-error');
    d.record('e0', 'gateway-error');
    expect(d.isEjected('e0')).toBe(false);
    expect(d.record('e0', 'gateway-error')).toBe('consecutive-gateway-errors');
    expect(d.isEjected('e0')).toBe(true);
    now = 1_001;
    expect(d.isEjected('e0')).toBe(false);
    for (let i = 0; i < 3; i++) d.record('e0', 'gateway-error');
    now = 2_900;
    expect(d.isEjected('e0')).toBe(true); // second ejection: 2 s
    for (let i = 0; i < 2; i++) {
      now += 10_000;
      for (let k = 0; k < 3; k++) d.record('e0', 'gateway-error');
    }
    expect(ejected.length).toBe(4);
    now += 2_499;
    expect(d.isEjected('e0')).toBe(true); // capped at 2.5 s
    now += 2;
    expect(d.isEjected('e0')).toBe(false);
  });

  it('never ejects more than maxEjectedPercent of a zone, nor the only endpoint of a zone (a remote ingress)', () => {
    const d = new OutlierDetector({ ...DEFAULT_OUTLIER, consecutiveConnectFailures: 1, maxEjectedPercent: 50 });
    d.setEndpoints([...eps(4), { key: 'ingress', zone: 'z2' }]);
    for (const k of ['e0', 'e1', 'e2', 'ingress']) d.record(k, 'connect-failure');
    expect(['e0', 'e1', 'e2', 'ingress'].map((k) => d.isEjected(k))).toEqual([true, true, false, false]);
  });

  it('ignores ejections below the panic threshold', () => {
    const d = new OutlierDetector({ ...DEFAULT_OUTLIER, consecutiveConnectFailures: 1, maxEjectedPercent: 100, panicThresholdPercent: 50 });
    d.setEndpoints(eps(4));
    d.record('e0', 'connect-failure');
    d.record('e1', 'connect-failure');
    expect(d.honoured(['e0', 'e1', 'e2', 'e3'])).toBe(true);
    d.record('e2', 'connect-failure');
    expect(d.honoured(['e0', 'e1', 'e2', 'e3'])).toBe(false);
  });

  it('ejects on success rate below mean − factor × stdev at a sweep', () => {
    const d = new OutlierDetector({ ...DEFAULT_OUTLIER, consecutive5xx: undefined, consecutiveGatewayErrors: undefined, successRate: { minimumHosts: 3, requestVolume: 10, stdevFactor: 1 } });
    d.setEndpoints(eps(5));
    for (let i = 0; i < 20; i++) for (const k of ['e0', 'e1', 'e2', 'e3']) d.record(k, 'success');
    for (let i = 0; i < 20; i++) d.record('e4', i % 2 === 0 ? '5xx' : 'success');
    d.sweep();
    expect(d.isEjected('e4')).toBe(true);
    expect(d.isEjected('e0')).toBe(false);
  });
});

describe('circuit breaker', () => {
  it('fails fast with the limit it hit and frees slots', () => {
    const b = new CircuitBreaker({ ...DEFAULT_BREAKER, maxRequests: 2, maxRetries: 1 });
    expect(b.take('requests')).toBeUndefined();
    expect(b.take('requests')).toBeUndefined();
    expect(b.take('requests')).toBe('max-requests');
    expect(b.inUse('requests')).toBe(2);
    b.release('requests');
    expect(b.take('requests')).toBeUndefined();
    expect(b.take('retries')).toBeUndefined();
    expect(b.take('retries')).toBe('max-retries');
  });
});
