/**
 * Rapid reset (CVE-2023-44487): a peer opens streams and resets them at once, so every stream costs us its
 * setup (policy decision, app dial, log, metrics) while it never counts against the concurrent-stream limit.
 * Per session, streams opened and streams reset are counted in fixed windows (`rapidResetWindowMs`, 1 s); a
 * window with at least `rapidResetMaxResets` resets that are also more than half of the streams opened in it
 * marks the session abusive. The count makes it a rate: a caller that resets every connection it ends, at a
 * few hundred per second, never gets there; an attack (thousands of streams per read) gets there after
 * `rapidResetMaxResets` streams. The ratio (Envoy's premature-reset rule) spares a busy caller whose clients
 * abort a minority of streams.
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
