/**
 * The rapid-reset rule on its own, with explicit clocks: a rate (resets per window) and a ratio (more than
 * half of the streams opened in the window), so a caller that resets every stream it ends at a moderate rate,
 * or a busy caller that resets a minority, is never cut.
 */
import { describe, expect, it } from 'vitest';
import { RapidResetDetector } from '../../proxy/inbound/tunnel/rapid-reset.js';

const limits = { rapidResetMaxResets: 200, rapidResetWindowMs: 1_000 };

function run(detector: RapidResetDetector, at: number, opened: number, reset: number): boolean {
  let crossed = false;
  for (let i = 0; i < opened; i++) detector.streamOpened(at);
  for (let i = 0; i < reset; i++) crossed = detector.streamReset(at) || crossed;
  return crossed;
}

describe('RapidResetDetector', () => {
  it('crosses the line at the 200th reset within a window when resets are most of the streams', () => {
    const d = new RapidResetDetector(limits);
    expect(run(d, 10_000, 199, 199)).toBe(false);
    expect(run(d, 10_100, 1, 1)).toBe(true);
  });

  it('spares a caller that resets every stream it ends at 150 per second, for as long as it likes', () => {
    const d = new RapidResetDetector(limits);
    for (let second = 0; second < 30; second++) expect(run(d, 10_000 + second * 1_000, 150, 150)).toBe(false);
  });

  it('spares a busy caller whose resets are a minority of its streams', () => {
    const d = new RapidResetDetector(limits);
    expect(run(d, 10_000, 1_000, 300)).toBe(false);
  });
});
