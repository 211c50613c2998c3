/**
 * Retry delays for everything that reconnects or retries: the proxy's tunnel sessions and listener binds,
 * the agent's bootstrap, config watch and certificate renewal.
 *
 * The rule, "equal jitter": the ceiling doubles from `initialMs` per attempt up to `maxMs`, and each wait
 * is random in [ceiling/2, ceiling]. Half fixed, so the wait grows with every failure and never collapses
 * towards 0 (a dead peer is not hammered by unlucky draws); half random, so a thousand callers that lost
 * the same endpoint or control plane do not come back in lockstep.
 */
export interface BackoffOptions {
  readonly initialMs: number;
  readonly maxMs: number;
}

export const DEFAULT_BACKOFF: BackoffOptions = Object.freeze({ initialMs: 100, maxMs: 10_000 });

/** Delay before attempt number `attempt` (0 = first retry). The exponent stops at 20: 2^20 × any sane initial passes any max. */
export function backoffDelay(attempt: number, options: BackoffOptions = DEFAULT_BACKOFF, random: () => number = Math.random): number {
  const ceiling = Math.min(options.maxMs, options.initialMs * 2 ** Math.min(attempt, 20));
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}

/** The same rule for a caller that does not count its own attempts: `next()` per failure, `reset()` on success. */
export class Backoff {
  private attempt = 0;

  constructor(
    private readonly options: BackoffOptions,
    private readonly random: () => number = Math.random,
  ) {}

  next(): number {
    return backoffDelay(this.attempt++, this.options, this.random);
  }

  reset(): void {
    this.attempt = 0;
  }
}
