/**
 * What the outbound HTTP path needs, built once per sidecar: the session pool and load balancer it shares
 * with the TCP path, metrics, a logger, and its limits. The pool and balancer are named by the methods the
 * HTTP path uses, so a test can hand in its own.
 */
import type { Logger } from '../../../common/log.js';
import type { HttpMetrics } from '../../http/metrics.js';
import type { LoadBalancer } from '../tunnel-client/load-balancer.js';
import type { ProxyMetrics } from '../../core/metrics.js';
import type { SessionPool } from '../tunnel-client/session-pool.js';
import { OUTBOUND_HTTP_DEFAULTS } from '../../core/limits.js';
import { withOverrides } from '../../../common/limit-schema.js';
import type { ConnectionBudget } from '../connection-budget.js';
import type { OutboundTraffic } from '../traffic/outbound-traffic.js';

export interface OutboundHttpLimits {
  /** Largest request head accepted from the app (node:http `maxHeaderSize`). */
  readonly maxHeaderBytes: number;
  /** The app must send a complete request head within this (slowloris). */
  readonly headersTimeoutMs: number;
  /** The app must send a complete request (head and body) within this; 0 disables it. */
  readonly requestTimeoutMs: number;
  /** An idle kept-alive app connection is closed after this. */
  readonly keepAliveTimeoutMs: number;
  /** Concurrent app connections per listener (default `ProxyLimits.maxOutboundConnections`). */
  readonly maxConnections: number;
  /** Endpoints tried per request when the tunnel cannot be reached before anything was sent. */
  readonly maxAttempts: number;
  /** A request whose tunnel stream is silent this long (no response bytes) fails with 504 or is cut. */
  readonly upstreamIdleTimeoutMs: number;
  /** An upgraded (WebSocket) connection silent both ways this long is closed; 0 = never. */
  readonly upgradeIdleTimeoutMs: number;
}

export const DEFAULT_OUTBOUND_HTTP_LIMITS: OutboundHttpLimits = OUTBOUND_HTTP_DEFAULTS;

export interface OutboundHttpDeps {
  readonly pool: Pick<SessionPool, 'openStream' | 'tryOpenStream'>;
  readonly balancer: Pick<LoadBalancer, 'pick' | 'begin' | 'end' | 'endpoints'>;
  readonly metrics: ProxyMetrics;
  readonly httpMetrics: HttpMetrics;
  readonly logger: Logger;
  /** `namespace/service` of this workload, for metrics and logs. */
  readonly sourceLabel: string;
  /** One info line per request (default true). */
  readonly accessLog: boolean;
  readonly limits: OutboundHttpLimits;
  /** The sidecar-wide cap on app connections, shared with the other outbound listeners; none when absent. */
  readonly connections?: ConnectionBudget;
  /** Routes, retries, timeouts, outlier detection and circuit breaking (proxy/outbound/traffic/); none: the fixed rules. */
  readonly traffic?: OutboundTraffic;
}

export function resolveOutboundHttpLimits(overrides: Partial<OutboundHttpLimits> = {}): OutboundHttpLimits {
  return withOverrides(DEFAULT_OUTBOUND_HTTP_LIMITS, overrides);
}
