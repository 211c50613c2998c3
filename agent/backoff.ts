/**
 * Jittered exponential backoff ("full jitter"): each wait is random in [base, min(max, base·2^n)], so a
 * thousand agents that lost the same control plane do not come back in lockstep.
 */
export interface BackoffOptions {
  readonly initialMs: number;
  readonly maxMs: number;
  readonly random?: () => number;
}

export class Backoff {
  private attempt = 0;
  private readonly random: () => number;

  constructor(private readonly options: BackoffOptions) {
    this.random = options.random ?? Math.random;
  }

  next(): number {
    const ceiling = Math.min(this.options.maxMs, this.options.initialMs * 2 ** Math.min(this.attempt, 30));
    this.attempt++;
    return Math.round(this.options.initialMs + this.random() * (ceiling - this.options.initialMs));
  }

  reset(): void {
    this.attempt = 0;
  }
}
