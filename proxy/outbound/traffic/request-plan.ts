/**
 * One request's traffic decision on an outbound path, made when its head is read: the route rule that
 * matched, the weighted backend drawn for it, the settings of its destination, and the circuit-breaker
 * slot it holds. The path asks it, per try, which endpoints qualify (`accepts`), whether a failure may be
 * retried (`mayRetry`), and tells it each try's outcome and the request's end (`recordTry`, `finish`).
 *
 * This is the API the HTTP/2 and gRPC path can call too: `OutboundTraffic.plan(route, request, endpoints)`
 * with its own `TrafficRequest`.
 */
import { backoffDelay } from '../../../common/backoff.js';
import {
  failureRetriable,
  labelsMatch,
  methodRetriable,
  statusRetryReason,
  type BreakerOverflow,
  type CompiledRule,
  type RetryReason,
  type RouteBackend,
  type DestinationSettings,
  type TryOutcome,
} from '../../../policy/traffic/index.js';

/** True when a TimeoutPolicy speaks for the destination (its timeouts are not the day-one defaults). */
export function timeoutsConfigured(settings: DestinationSettings): boolean {
  return settings.sources.timeouts !== 'default';
}

/**
 * How long a destination's streams and upgrades may be silent: its TimeoutPolicy's `idle` when one is set,
 * else `fallback` (the listener's limit), so the day-one default never lengthens a configured limit.
 */
export function destinationIdleMs(settings: DestinationSettings, fallback: number): number {
  return timeoutsConfigured(settings) ? settings.timeouts.idleMs : fallback;
}
import type { BreakerSlot } from '../../../policy/traffic/index.js';
import type { BalancedEndpoint } from '../tunnel-client/load-balancer.js';
import type { DestinationState } from './destination-state.js';
import type { TrafficMetrics } from './traffic-metrics.js';
import type { MirrorResult } from './mirror.js';
import { versionLabel } from './traffic-metrics.js';

export class RequestPlan {
  /** Set when the circuit breaker refused the request: the path fails it at once with this reason. */
  readonly overflow: BreakerOverflow | undefined;
  private holds = false;
  /** The labels of the endpoints a copy of this request goes to, when its rule mirrors and the draw said so. */
  mirrorLabels: Readonly<Record<string, string>> | undefined;
  private mirrorHeld = false;
  /** Holds a `pending` slot: waiting for a tunnel stream or lane. */
  private pending = false;
  private retriesHeld = 0;
  private finished = false;
  /** Ejections are ignored for this request when too few endpoints of its backend would be left (panic). */
  private readonly honourEjections: boolean;

  constructor(
    readonly rule: CompiledRule,
    readonly backend: RouteBackend,
    readonly dest: DestinationState,
    private readonly method: string,
    private readonly source: string,
    private readonly metrics: TrafficMetrics,
    candidates: readonly BalancedEndpoint[],
    /** HTTP requests hold a `requests` slot; TCP connections a `connections` slot and count no request metrics. */
    private readonly slot: BreakerSlot = 'requests',
  ) {
    this.overflow = dest.breaker.take(slot);
    if (this.overflow === undefined) this.holds = true;
    else metrics.overflow(dest.label, this.overflow);
    let serving = 0;
    let live = 0;
    for (const e of candidates) {
      if (!labelsMatch(backend.labels, e.endpoint.labels)) continue;
      serving += 1;
      if (!dest.outlier.isEjected(e.key)) live += 1;
    }
    this.honourEjections = serving > 0 && (live * 100) / serving >= dest.settings.outlier.panicThresholdPercent;
  }

  get version(): string {
    return versionLabel(this.backend.labels);
  }

  /** The balancer's filter for this request: the backend's labels, and not ejected (unless in panic). */
  readonly accepts = (e: BalancedEndpoint): boolean =>
    labelsMatch(this.backend.labels, e.endpoint.labels) && (!this.honourEjections || !this.dest.outlier.isEjected(e.key));

  get perTryTimeoutMs(): number | undefined {
    return this.dest.settings.retry.perTryTimeoutMs ?? this.dest.settings.timeouts.perTryMs;
  }

  get requestTimeoutMs(): number {
    return this.dest.settings.timeouts.requestMs;
  }

  /** True when a TimeoutPolicy for this destination sets the timeouts (not the day-one defaults). */
  get timeoutsConfigured(): boolean {
    return timeoutsConfigured(this.dest.settings);
  }

  /**
   * How long a request's tunnel stream may be silent: the destination's `idle` when a TimeoutPolicy sets
   * it, else `fallback` (the listener's limit), so the day-one default never lengthens a configured limit.
   */
  idleTimeoutMs(fallback: number): number {
    return destinationIdleMs(this.dest.settings, fallback);
  }

  get connectTimeoutMs(): number {
    return this.dest.settings.timeouts.connectMs;
  }

  /** Attempts allowed in all, the first included. */
  get maxAttempts(): number {
    return this.dest.settings.retry.attempts;
  }

  /** The first try is on its way: it earns the budget its share of a retry. */
  firstTry(): void {
    this.dest.budget.request();
  }

  /** Why a response with this status should be retried, or undefined (then it goes to the caller). */
  statusReason(status: number, grpcStatus: number | undefined): RetryReason | undefined {
    return statusRetryReason(this.dest.settings.retry, status, grpcStatus);
  }

  failureReason(failure: 'connect-failure' | 'reset' | 'refused-stream' | 'per-try-timeout'): RetryReason | undefined {
    return failureRetriable(this.dest.settings.retry, failure) ? failure : undefined;
  }

  /**
   * Whether another try may go after `attempts` tries for `reason`: attempts left, a method safe to send
   * twice (unless nothing of the request was `sent`), a token of the budget and a retry slot of the
   * breaker. Counts the retry (or why not).
   */
  mayRetry(reason: RetryReason, attempts: number, sent: boolean): boolean {
    if (attempts >= this.maxAttempts || (sent && !methodRetriable(this.dest.settings.retry, this.method))) return false;
    if (!this.dest.budget.tryRetry()) {
      this.metrics.budgetExhausted(this.dest.label);
      return false;
    }
    const overflow = this.dest.breaker.take('retries');
    if (overflow !== undefined) {
      this.metrics.overflow(this.dest.label, overflow);
      return false;
    }
    this.retriesHeld += 1;
    this.metrics.retry(this.dest.label, reason);
    return true;
  }

  /** The wait before retry number `retry` (1 = first), with jitter (common/backoff.ts). */
  backoffMs(retry: number): number {
    const { baseMs, maxMs } = this.dest.settings.retry.backoff;
    return backoffDelay(retry - 1, { initialMs: baseMs, maxMs });
  }

  /**
   * The request waits for a tunnel stream or lane (Envoy's pending request): it holds a `pending` slot
   * until `endPending`. Returns the overflow when the destination's `maxPendingRequests` are waiting
   * already: the path fails the request at once, nothing is queued beyond the bound.
   */
  startPending(): BreakerOverflow | undefined {
    if (this.pending || this.slot !== 'requests') return undefined;
    const overflow = this.dest.breaker.take('pending');
    if (overflow !== undefined) {
      this.metrics.overflow(this.dest.label, overflow);
      return overflow;
    }
    this.pending = true;
    return undefined;
  }

  endPending(): void {
    if (!this.pending) return;
    this.pending = false;
    this.dest.breaker.release('pending');
  }

  /** A mirror slot of the destination (at most `max` copies at once); a miss is counted as skipped. */
  takeMirrorSlot(max: number): boolean {
    if (this.dest.mirrors >= max) {
      this.metrics.mirror(this.dest.label, 'skipped-limit');
      return false;
    }
    this.dest.mirrors += 1;
    this.mirrorHeld = true;
    return true;
  }

  /** The copy is over (or never went, for `result`): its slot is freed and the result counted. */
  mirrorEnded(result: MirrorResult): void {
    if (this.mirrorHeld) this.dest.mirrors -= 1;
    this.mirrorHeld = false;
    this.metrics.mirror(this.dest.label, result);
  }

  recordTry(endpointKey: string, outcome: TryOutcome): void {
    this.dest.outlier.record(endpointKey, outcome);
  }

  /** The request ended with `status` (0: the caller left first) after `seconds`; frees its breaker slots. Once. */
  finish(status: number, seconds: number): void {
    if (this.finished) return;
    this.finished = true;
    this.endPending();
    if (this.holds) this.dest.breaker.release(this.slot);
    for (; this.retriesHeld > 0; this.retriesHeld--) this.dest.breaker.release('retries');
    if (this.overflow === undefined && this.slot === 'requests') this.metrics.request(this.source, this.dest.label, this.rule.label, this.version, status, seconds);
  }
}

/** A try's outcome for outlier detection, from the status the caller would see (0 = no response). */
export function outcomeOf(status: number, connectFailed: boolean): TryOutcome {
  if (connectFailed) return 'connect-failure';
  if (status === 0 || status === 502 || status === 503 || status === 504) return 'gateway-error';
  return status >= 500 ? '5xx' : 'success';
}
