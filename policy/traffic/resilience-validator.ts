/**
 * The specs of `RetryPolicy`, `TimeoutPolicy`, `OutlierDetection` and `CircuitBreaker`. Absent fields take
 * the day-one defaults (types.ts), so a resource names only what it changes. Each returns undefined when
 * its spec has a problem (reported at its node).
 */
import type { ConfigObject } from '../../common/config-node.js';
import { readDuration } from './spec-readers.js';
import {
  DEFAULT_BREAKER,
  DEFAULT_OUTLIER,
  DEFAULT_RETRY,
  DEFAULT_TIMEOUTS,
  RETRY_CONDITIONS,
  TRAFFIC_LIMITS,
  type BreakerSpec,
  type OutlierSpec,
  type RetryCondition,
  type RetrySpec,
  type TimeoutSpec,
} from './types.js';

export const RETRY_FIELDS = ['attempts', 'perTryTimeout', 'retryOn', 'statuses', 'grpcStatuses', 'backoff', 'nonIdempotent', 'budget'];
export const TIMEOUT_FIELDS = ['connect', 'request', 'perTry', 'idle'];
export const OUTLIER_FIELDS = ['consecutive5xx', 'consecutiveGatewayErrors', 'consecutiveConnectFailures', 'successRate', 'interval', 'baseEjectionTime', 'maxEjectionTime', 'maxEjectedPercent', 'panicThreshold'];
export const BREAKER_FIELDS = ['maxConnections', 'maxPendingRequests', 'maxRequests', 'maxRetries'];

/** gRPC status names as `grpc-status` numbers (the ones worth retrying are a subset; all are accepted). */
export const GRPC_STATUS: Readonly<Record<string, number>> = Object.freeze({
  cancelled: 1, unknown: 2, 'deadline-exceeded': 4, 'resource-exhausted': 8, aborted: 10, internal: 13, unavailable: 14,
});

/** A value, or the default when the field is absent; `false` marks a reported problem. */
function or<T>(present: boolean, value: T | undefined, fallback: T): T | false {
  if (!present) return fallback;
  return value === undefined ? false : value;
}

export function validateRetry(spec: ConfigObject): RetrySpec | undefined {
  const d = DEFAULT_RETRY;
  const attempts = or(spec.has('attempts'), spec.field('attempts')?.integer({ min: 1, max: TRAFFIC_LIMITS.attempts }), d.attempts);
  const perTry = spec.has('perTryTimeout') ? readDuration(spec.field('perTryTimeout')) ?? false : undefined;
  const retryOn: RetryCondition[] = [];
  let ok = true;
  for (const item of spec.field('retryOn')?.list({ minItems: 1, maxItems: RETRY_CONDITIONS.length }) ?? []) {
    const c = item.oneOf(RETRY_CONDITIONS);
    if (c === undefined) ok = false;
    else if (!retryOn.includes(c)) retryOn.push(c);
  }
  if (spec.has('retryOn') && retryOn.length === 0) ok = false;
  const statuses: number[] = [];
  for (const item of spec.field('statuses')?.list({ minItems: 1, maxItems: TRAFFIC_LIMITS.statuses }) ?? []) {
    const s = item.integer({ min: 100, max: 599 });
    if (s === undefined) ok = false;
    else statuses.push(s);
  }
  if (statuses.length > 0 && !retryOn.includes('retriable-status')) retryOn.push('retriable-status');
  const grpc: string[] = [];
  for (const item of spec.field('grpcStatuses')?.list({ minItems: 1, maxItems: 16 }) ?? []) {
    const s = item.oneOf(Object.keys(GRPC_STATUS));
    if (s === undefined) ok = false;
    else grpc.push(s);
  }
  const backoffObj = spec.field('backoff')?.object({ optional: ['base', 'max'] });
  const baseMs = backoffObj?.has('base') === true ? readDuration(backoffObj.field('base'), 60_000) : d.backoff.baseMs;
  const maxMs = backoffObj?.has('max') === true ? readDuration(backoffObj.field('max'), 300_000) : Math.max(d.backoff.maxMs, baseMs ?? 0);
  if (baseMs !== undefined && maxMs !== undefined && maxMs < baseMs) spec.field('backoff')?.report('"max" must not be less than "base"');
  const nonIdempotent = spec.has('nonIdempotent') ? spec.field('nonIdempotent')?.boolean() : d.nonIdempotent;
  const budgetObj = spec.field('budget')?.object({ optional: ['ratio', 'minPerSecond', 'window'] });
  const ratio = budgetObj?.has('ratio') === true ? budgetObj.field('ratio')?.number({ min: 0, max: 10 }) : d.budget.ratio;
  const minPerSecond = budgetObj?.has('minPerSecond') === true ? budgetObj.field('minPerSecond')?.integer({ min: 0, max: 100_000 }) : d.budget.minPerSecond;
  const windowMs = budgetObj?.has('window') === true ? readDuration(budgetObj.field('window'), 600_000) : d.budget.windowMs;
  if (attempts === false || perTry === false || !ok || nonIdempotent === undefined) return undefined;
  if (baseMs === undefined || maxMs === undefined || maxMs < baseMs || ratio === undefined || minPerSecond === undefined || windowMs === undefined) return undefined;
  if ((spec.has('backoff') && backoffObj === undefined) || (spec.has('budget') && budgetObj === undefined)) return undefined;
  return Object.freeze({
    attempts,
    ...(perTry === undefined ? {} : { perTryTimeoutMs: perTry }),
    retryOn: Object.freeze(spec.has('retryOn') || statuses.length > 0 ? retryOn : [...d.retryOn]),
    statuses: Object.freeze(statuses),
    grpcStatuses: Object.freeze(grpc),
    backoff: Object.freeze({ baseMs, maxMs }),
    nonIdempotent,
    budget: Object.freeze({ ratio, minPerSecond, windowMs }),
  });
}

export function validateTimeouts(spec: ConfigObject): TimeoutSpec | undefined {
  const d = DEFAULT_TIMEOUTS;
  const connect = spec.has('connect') ? readDuration(spec.field('connect'), 300_000) : d.connectMs;
  const request = spec.has('request') ? readDuration(spec.field('request')) : d.requestMs;
  const perTry = spec.has('perTry') ? readDuration(spec.field('perTry')) ?? false : undefined;
  const idle = spec.has('idle') ? readDuration(spec.field('idle')) : d.idleMs;
  if (connect === undefined || request === undefined || perTry === false || idle === undefined) return undefined;
  if (perTry !== undefined && perTry > request) {
    spec.field('perTry')?.report('must not be longer than "request" (the whole exchange, retries included)');
    return undefined;
  }
  return Object.freeze({ connectMs: connect, requestMs: request, ...(perTry === undefined ? {} : { perTryMs: perTry }), idleMs: idle });
}

export function validateOutlier(spec: ConfigObject): OutlierSpec | undefined {
  const d = DEFAULT_OUTLIER;
  const count = (key: 'consecutive5xx' | 'consecutiveGatewayErrors' | 'consecutiveConnectFailures'): number | undefined | false =>
    spec.has(key) ? spec.field(key)?.integer({ min: 1, max: 1000 }) ?? false : d[key];
  const c5 = count('consecutive5xx');
  const cg = count('consecutiveGatewayErrors');
  const cc = count('consecutiveConnectFailures');
  const srObj = spec.field('successRate')?.object({ optional: ['minimumHosts', 'requestVolume', 'stdevFactor'] });
  const minimumHosts = srObj?.has('minimumHosts') === true ? srObj.field('minimumHosts')?.integer({ min: 2, max: 1000 }) : 3;
  const requestVolume = srObj?.has('requestVolume') === true ? srObj.field('requestVolume')?.integer({ min: 1, max: 1_000_000 }) : 20;
  const stdevFactor = srObj?.has('stdevFactor') === true ? srObj.field('stdevFactor')?.number({ min: 0.1, max: 10 }) : 1.9;
  const interval = spec.has('interval') ? readDuration(spec.field('interval'), 600_000) : d.intervalMs;
  const base = spec.has('baseEjectionTime') ? readDuration(spec.field('baseEjectionTime')) : d.baseEjectionTimeMs;
  const max = spec.has('maxEjectionTime') ? readDuration(spec.field('maxEjectionTime')) : Math.max(d.maxEjectionTimeMs, base ?? 0);
  const maxEjected = spec.has('maxEjectedPercent') ? spec.field('maxEjectedPercent')?.number({ min: 0, max: 100 }) : d.maxEjectedPercent;
  const panic = spec.has('panicThreshold') ? spec.field('panicThreshold')?.number({ min: 0, max: 100 }) : d.panicThresholdPercent;
  if (c5 === false || cg === false || cc === false || interval === undefined || base === undefined || max === undefined) return undefined;
  if (maxEjected === undefined || panic === undefined || minimumHosts === undefined || requestVolume === undefined || stdevFactor === undefined) return undefined;
  if (spec.has('successRate') && srObj === undefined) return undefined;
  if (max < base) {
    spec.field('maxEjectionTime')?.report('must not be less than "baseEjectionTime"');
    return undefined;
  }
  return Object.freeze({
    ...(c5 === undefined ? {} : { consecutive5xx: c5 }),
    ...(cg === undefined ? {} : { consecutiveGatewayErrors: cg }),
    ...(cc === undefined ? {} : { consecutiveConnectFailures: cc }),
    ...(srObj === undefined ? {} : { successRate: Object.freeze({ minimumHosts, requestVolume, stdevFactor }) }),
    intervalMs: interval,
    baseEjectionTimeMs: base,
    maxEjectionTimeMs: max,
    maxEjectedPercent: maxEjected,
    panicThresholdPercent: panic,
  });
}

export function validateBreaker(spec: ConfigObject): BreakerSpec | undefined {
  const d = DEFAULT_BREAKER;
  const read = (key: keyof BreakerSpec): number | undefined => (spec.has(key) ? spec.field(key)?.integer({ min: 0, max: 1_000_000 }) : d[key]);
  const maxConnections = read('maxConnections');
  const maxPendingRequests = read('maxPendingRequests');
  const maxRequests = read('maxRequests');
  const maxRetries = read('maxRetries');
  if (maxConnections === undefined || maxPendingRequests === undefined || maxRequests === undefined || maxRetries === undefined) return undefined;
  return Object.freeze({ maxConnections, maxPendingRequests, maxRequests, maxRetries });
}
