/**
 * What the outbound side keeps per destination service across requests: its retry budget, circuit
 * breaker and outlier detector, and the settings in force. A config push replaces the settings; the
 * counters carry over (requests in flight keep their slots, nothing is cut), and a budget or detector is
 * rebuilt only when its own spec changed.
 */
import {
  CircuitBreaker,
  OutlierDetector,
  RetryBudget,
  type DestinationSettings,
  type EjectionReason,
} from '../../../policy/traffic/index.js';
import type { TrafficMetrics } from './traffic-metrics.js';

export class DestinationState {
  budget: RetryBudget;
  readonly breaker: CircuitBreaker;
  outlier: OutlierDetector;
  /** Mirror copies in flight to this destination (mirror.ts bounds them). */
  mirrors = 0;

  constructor(
    readonly label: string,
    public settings: DestinationSettings,
    private readonly metrics: TrafficMetrics,
    private readonly now: () => number,
  ) {
    this.budget = new RetryBudget(settings.retry.budget, now);
    this.breaker = new CircuitBreaker(settings.breaker);
    this.outlier = this.detector(settings);
  }

  update(settings: DestinationSettings, endpoints: readonly { key: string; zone: string }[]): void {
    const before = this.settings;
    this.settings = settings;
    this.breaker.spec = settings.breaker;
    if (before.retry.budget !== settings.retry.budget) this.budget = new RetryBudget(settings.retry.budget, this.now);
    if (before.outlier !== settings.outlier) {
      this.outlier = this.detector(settings);
      this.outlier.setEndpoints(endpoints);
    }
  }

  private detector(settings: DestinationSettings): OutlierDetector {
    return new OutlierDetector(settings.outlier, this.now, (_key, reason: EjectionReason) => this.metrics.ejection(this.label, reason));
  }
}
