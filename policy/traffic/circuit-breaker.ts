/**
 * The circuit breaker of one destination service: counts of connections, requests waiting for a
 * connection, requests in flight and retries in flight, each with its limit. A request over a limit is
 * not queued: it fails at once with the limit it hit (`BreakerOverflow`), so an overloaded destination
 * sheds load instead of collecting a queue of callers who will time out anyway.
 */
import type { BreakerSpec } from './types.js';

export type BreakerOverflow = 'max-connections' | 'max-pending-requests' | 'max-requests' | 'max-retries';
export type BreakerSlot = 'connections' | 'pending' | 'requests' | 'retries';

const LIMIT: Readonly<Record<BreakerSlot, keyof BreakerSpec>> = { connections: 'maxConnections', pending: 'maxPendingRequests', requests: 'maxRequests', retries: 'maxRetries' };
const OVERFLOW: Readonly<Record<BreakerSlot, BreakerOverflow>> = { connections: 'max-connections', pending: 'max-pending-requests', requests: 'max-requests', retries: 'max-retries' };

export class CircuitBreaker {
  private readonly used: Record<BreakerSlot, number> = { connections: 0, pending: 0, requests: 0, retries: 0 };

  /** `spec` may be replaced by a config push; counts carry over, so in-flight work is never cut. */
  constructor(public spec: BreakerSpec) {}

  /** Takes a slot; the overflow when the limit is reached (nothing taken then). */
  take(slot: BreakerSlot): BreakerOverflow | undefined {
    if (this.used[slot] >= this.spec[LIMIT[slot]]) return OVERFLOW[slot];
    this.used[slot] += 1;
    return undefined;
  }

  release(slot: BreakerSlot): void {
    if (this.used[slot] > 0) this.used[slot] -= 1;
  }

  inUse(slot: BreakerSlot): number {
    return this.used[slot];
  }
}
