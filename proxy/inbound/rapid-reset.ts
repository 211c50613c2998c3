/**
 * Rapid reset (CVE-2023-44487): a peer opens streams and resets them at once, so every stream costs us its
 * setup (policy decision, app dial, log, metrics) while it never counts against the concurrent-stream limit.
 * Per session, streams opened and streams the peer reset are counted in fixed windows; a window with at least
 * `maxResets` resets that are also more than half of the streams opened in it marks the session abusive.
 * The ratio is Envoy's premature-reset rule: a busy, legitimate caller whose clients abort one request in ten
 * never gets there, an attacker whose every stream is reset gets there after `maxResets` streams.
 */
export interface RapidResetLimits {
  readonly rapidResetMaxResets: number;
  readonly rapidResetWindowMs: number;
}

export class RapidResetDetector {
  private windowStart = 0;
  private opened = 0;
  private resets = 0;

  constructor(private readonly limits: RapidResetLimits) {}

  streamOpened(now: number): void {
    this.roll(now);
    this.opened += 1;
  }

  /** Counts a stream the peer reset; true once the session crossed the line. */
  streamReset(now: number): boolean {
    this.roll(now);
    this.resets += 1;
    return this.resets >= this.limits.rapidResetMaxResets && this.resets * 2 > this.opened;
  }

  private roll(now: number): void {
    if (now - this.windowStart < this.limits.rapidResetWindowMs) return;
    this.windowStart = now;
    this.opened = 0;
    this.resets = 0;
  }
}
