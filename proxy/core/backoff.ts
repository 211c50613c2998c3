/**
 * Reconnect delays: exponential with full jitter ("decorrelated" enough that a restarted endpoint is not
 * hit by every caller at the same instant), capped.
 */
export interface BackoffOptions {
  readonly initialMs: number;
  readonly maxMs: number;
}

export const DEFAULT_BACKOFF: BackoffOptions = Object.freeze({ initialMs: 100, maxMs: 10_000 });

/** Delay before attempt number `attempt` (0 = first retry). Half fixed, half random, so it never collapses to 0. */
export function backoffDelay(attempt: number, options: BackoffOptions = DEFAULT_BACKOFF, random: () => number = Math.random): number {
  const ceiling = Math.min(options.maxMs, options.initialMs * 2 ** Math.min(attempt, 20));
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}
