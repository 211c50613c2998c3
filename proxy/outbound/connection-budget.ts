/**
 * The sidecar-wide cap on app connections held by outbound listeners, on top of each listener's own cap
 * (`ProxyLimits.maxOutboundConnections` / `maxOutboundConnectionsTotal`). Each app connection is a file
 * descriptor of the sidecar; several listeners at their own caps together could otherwise exhaust them
 * and starve the tunnel port and the admin port.
 *
 * One counter shared by every explicit listener (TCP and HTTP) and the capture HTTP listener: `take` when a
 * connection is accepted, `release` once when it closes. Refusals are counted by the caller in
 * `trellis_outbound_connections_refused_total` and logged at most once per interval, since a client that
 * hits a cap usually retries in a tight loop.
 */
import type { Logger } from 'pino';
import type { ProxyMetrics } from '../core/metrics.js';

/** At most one warning per this interval per cause: refusals come in bursts. */
const WARN_INTERVAL_MS = 10_000;

export class ConnectionBudget {
  private open = 0;
  private readonly lastWarned = new Map<string, number>();

  constructor(readonly max: number) {}

  /** Connections held now, over all listeners. */
  get inUse(): number {
    return this.open;
  }

  /** Reserves one connection; false when the sidecar is at its cap. */
  take(): boolean {
    if (this.open >= this.max) return false;
    this.open += 1;
    return true;
  }

  release(): void {
    if (this.open > 0) this.open -= 1;
  }

  /** Counts a refused connection and warns, at most once per interval per listener and reason. */
  refused(metrics: ProxyMetrics, logger: Logger, listener: string, reason: 'listener-limit' | 'sidecar-limit', limit: number): void {
    metrics.outboundRefused.inc({ listener, reason });
    const key = `${listener} ${reason}`;
    const now = Date.now();
    if (now - (this.lastWarned.get(key) ?? 0) < WARN_INTERVAL_MS) return;
    this.lastWarned.set(key, now);
    const what = reason === 'listener-limit' ? `listener ${listener} is at its limit of ${limit} connections` : `the sidecar is at its limit of ${limit} outbound connections`;
    logger.warn({ listener, reason, limit }, `outbound connection refused: ${what}; the app holds too many connections open (raise the limit if it really needs them)`);
  }
}

/** A budget with no sidecar-wide cap, for a listener used on its own (tests, tools). */
export function unlimitedBudget(): ConnectionBudget {
  return new ConnectionBudget(Number.MAX_SAFE_INTEGER);
}
