/**
 * Local rate limits: one token bucket per (route, key), the key being the client's address or a verified
 * JWT claim. A bucket holds `burst` tokens and gains `perSecond` a second; a request takes one or is
 * refused with the seconds until one is there (`Retry-After`). Buckets are kept in a bounded map: past
 * `maxKeys` the least recently used is dropped, which can only give that key a full bucket again, never
 * refuse anyone wrongly; so a flood of distinct addresses costs bounded memory.
 */
import type { RateLimitSpec } from './config-types.js';

interface Bucket {
  tokens: number;
  at: number;
}

export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>();

  constructor(
    private readonly spec: RateLimitSpec,
    private readonly maxKeys = 100_000,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** 0 when admitted; else the whole seconds (at least 1) until a token is there. */
  take(key: string): number {
    const now = this.now();
    let b = this.buckets.get(key);
    if (b === undefined) {
      b = { tokens: this.spec.burst, at: now };
      if (this.buckets.size >= this.maxKeys) this.buckets.delete(this.buckets.keys().next().value as string);
    } else {
      this.buckets.delete(key);
      b.tokens = Math.min(this.spec.burst, b.tokens + ((now - b.at) / 1000) * this.spec.perSecond);
      b.at = now;
    }
    // Re-inserted: the map's order is least recently used first.
    this.buckets.set(key, b);
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return 0;
    }
    return Math.max(1, Math.ceil((1 - b.tokens) / this.spec.perSecond));
  }

  get size(): number {
    return this.buckets.size;
  }
}
