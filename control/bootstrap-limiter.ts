/**
 * The limit on failed bootstrap attempts per source address: a token bucket per address that only
 * refused credentials drain (a bad, expired, spent or revoked token; an unknown kind), so a fleet of VMs
 * joining at once with good tokens never notices it, while guessing or replaying tokens from one address
 * slows to `refillMs` per try after `burst` failures. Over the limit an issue request is answered 429
 * (`TRELLIS_CONTROL_BOOTSTRAP_RATE_LIMITED`, with `retry-after`) before its credential is looked at.
 *
 * Bounded memory: at most `maxSources` addresses are tracked; when full, buckets that have refilled are
 * dropped first, else the oldest. Addresses are as the socket reports them (an IPv6 /64 counts per address).
 */

export interface FailedBootstrapLimit {
  /** Failures allowed back to back from one address. */
  readonly burst: number;
  /** One more failure is allowed per this many ms. */
  readonly refillMs: number;
  /** Addresses tracked at once. */
  readonly maxSources: number;
}

export const DEFAULT_FAILED_BOOTSTRAP_LIMIT: FailedBootstrapLimit = Object.freeze({ burst: 10, refillMs: 6_000, maxSources: 10_000 });

interface Bucket {
  tokens: number;
  updatedAt: number;
}

export class FailedBootstrapLimiter {
  private readonly buckets = new Map<string, Bucket>();

  constructor(
    readonly limit: FailedBootstrapLimit = DEFAULT_FAILED_BOOTSTRAP_LIMIT,
    private readonly now: () => number = Date.now,
  ) {}

  /** 0 when `source` may try now, else the ms until it may. */
  retryAfterMs(source: string): number {
    const bucket = this.refill(source);
    if (bucket === undefined || bucket.tokens >= 1) return 0;
    return Math.ceil((1 - bucket.tokens) * this.limit.refillMs);
  }

  /** Counts one refused attempt from `source`. */
  failed(source: string): void {
    let bucket = this.refill(source);
    if (bucket === undefined) {
      this.makeRoom();
      bucket = { tokens: this.limit.burst, updatedAt: this.now() };
      this.buckets.set(source, bucket);
    }
    bucket.tokens = Math.max(0, bucket.tokens - 1);
  }

  get trackedSources(): number {
    return this.buckets.size;
  }

  private refill(source: string): Bucket | undefined {
    const bucket = this.buckets.get(source);
    if (bucket === undefined) return undefined;
    const now = this.now();
    bucket.tokens = Math.min(this.limit.burst, bucket.tokens + (now - bucket.updatedAt) / this.limit.refillMs);
    bucket.updatedAt = now;
    return bucket;
  }

  private makeRoom(): void {
    if (this.buckets.size < this.limit.maxSources) return;
    for (const [source] of this.buckets) {
      const bucket = this.refill(source);
      if (bucket !== undefined && bucket.tokens >= this.limit.burst) this.buckets.delete(source);
    }
    // Still full: forget the oldest (Map order is insertion order).
    while (this.buckets.size >= this.limit.maxSources) this.buckets.delete(this.buckets.keys().next().value as string);
  }
}
