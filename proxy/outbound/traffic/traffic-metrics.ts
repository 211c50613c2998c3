/**
 * Metrics of traffic management, per destination, route rule and backend version: what a canary analysis
 * (Flagger's or Argo Rollouts' Prometheus queries) reads to compare a canary with its primary.
 *
 *   trellis_route_requests_total{source,destination,route,version,status_code}   counter
 *   trellis_route_request_duration_seconds{source,destination,route,version}      histogram
 *   trellis_route_retries_total{destination,reason}                              counter
 *   trellis_route_retry_budget_exhausted_total{destination}                      counter
 *   trellis_outlier_ejections_total{destination,reason}                          counter
 *   trellis_circuit_breaker_overflows_total{destination,limit}                   counter
 *   trellis_route_mirrors_total{destination,result}                              counter (mirror.ts)
 *
 * `version` is the backend's `version` label (or its labels as `k=v,...`, or `all` for every endpoint), so
 * a success-rate query is `sum(rate(trellis_route_requests_total{version="v2",status_code!~"5.."}[1m])) /
 * sum(rate(trellis_route_requests_total{version="v2"}[1m]))`.
 */
import { Counter, Histogram, type Registry } from 'prom-client';
import type { BreakerOverflow, EjectionReason, RetryReason } from '../../../policy/traffic/index.js';
import type { MirrorResult } from './mirror.js';

const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

export interface TrafficMetrics {
  request(source: string, destination: string, route: string, version: string, status: number, seconds: number): void;
  retry(destination: string, reason: RetryReason): void;
  budgetExhausted(destination: string): void;
  ejection(destination: string, reason: EjectionReason): void;
  overflow(destination: string, limit: BreakerOverflow): void;
  mirror(destination: string, result: MirrorResult): void;
}

export function createTrafficMetrics(registry: Registry): TrafficMetrics {
  const registers = [registry];
  const requests = new Counter({
    name: 'trellis_route_requests_total',
    help: 'Requests by destination, route rule, backend version and HTTP status code.',
    labelNames: ['source', 'destination', 'route', 'version', 'status_code'] as const,
    registers,
  });
  const latency = new Histogram({
    name: 'trellis_route_request_duration_seconds',
    help: 'Time from the request head to the end of the response, per route rule and backend version.',
    labelNames: ['source', 'destination', 'route', 'version'] as const,
    buckets: LATENCY_BUCKETS,
    registers,
  });
  const retries = new Counter({ name: 'trellis_route_retries_total', help: 'Retries sent, by destination and reason.', labelNames: ['destination', 'reason'] as const, registers });
  const exhausted = new Counter({
    name: 'trellis_route_retry_budget_exhausted_total',
    help: 'Retries not sent because the retry budget of the destination was spent.',
    labelNames: ['destination'] as const,
    registers,
  });
  const ejections = new Counter({ name: 'trellis_outlier_ejections_total', help: 'Endpoints ejected by outlier detection, by reason.', labelNames: ['destination', 'reason'] as const, registers });
  const overflows = new Counter({
    name: 'trellis_circuit_breaker_overflows_total',
    help: 'Requests failed fast because a circuit-breaker limit of the destination was reached.',
    labelNames: ['destination', 'limit'] as const,
    registers,
  });
  const mirrors = new Counter({
    name: 'trellis_route_mirrors_total',
    help: 'Mirror copies of requests, by destination and result (sent, failed, abandoned, skipped-limit, skipped-body, no-endpoint).',
    labelNames: ['destination', 'result'] as const,
    registers,
  });
  return Object.freeze({
    request(source: string, destination: string, route: string, version: string, status: number, seconds: number): void {
      requests.labels(source, destination, route, version, String(status)).inc();
      latency.labels(source, destination, route, version).observe(seconds);
    },
    retry: (destination: string, reason: RetryReason) => retries.labels(destination, reason).inc(),
    budgetExhausted: (destination: string) => exhausted.labels(destination).inc(),
    ejection: (destination: string, reason: EjectionReason) => ejections.labels(destination, reason).inc(),
    overflow: (destination: string, limit: BreakerOverflow) => overflows.labels(destination, limit).inc(),
    mirror: (destination: string, result: MirrorResult) => mirrors.labels(destination, result).inc(),
  });
}

/** The `version` label of a backend: its `version` label, else its selector as text, else `all`. */
export function versionLabel(labels: Readonly<Record<string, string>>): string {
  const v = labels.version;
  if (typeof v === 'string' && Object.hasOwn(labels, 'version')) return v;
  const pairs = Object.entries(labels).map(([k, val]) => `${k}=${val}`);
  return pairs.length === 0 ? 'all' : pairs.sort().join(',');
}
