/**
 * The one retry-delay rule (common/backoff.ts) that the proxy and the agent share: the ceiling doubles up to
 * the cap, and each wait lies in [ceiling/2, ceiling].
 */
import { describe, expect, it } from 'vitest';
import { Backoff, backoffDelay, DEFAULT_BACKOFF } from '../../common/backoff.js';

describe('backoffDelay', () => {
  const options = { initialMs: 100, maxMs: 1_000 };

  it('doubles the ceiling per attempt and stops at the cap', () => {
    const ceilings = [0, 1, 2, 3, 4, 5, 40].map((attempt) => backoffDelay(attempt, options, () => 1));
    expect(ceilings).toEqual([100, 200, 400, 800, 1_000, 1_000, 1_000]);
  });

  it('waits at least half the ceiling, so a wait never collapses towards 0', () => {
    const floors = [0, 1, 2, 3, 4, 40].map((attempt) => backoffDelay(attempt, options, () => 0));
    expect(floors).toEqual([50, 100, 200, 400, 500, 500]);
  });

  it('spreads callers across the upper half of the window', () => {
    for (let i = 0; i < 1_000; i++) {
      const delay = backoffDelay(3, options);
      expect(delay).toBeGreaterThanOrEqual(400);
      expect(delay).toBeLessThanOrEqual(800);
    }
  });

  it('defaults to 100 ms doubling to 10 s', () => {
    expect(DEFAULT_BACKOFF).toEqual({ initialMs: 100, maxMs: 10_000 });
    expect(backoffDelay(30, undefined, () => 1)).toBe(10_000);
    expect(Object.isFrozen(DEFAULT_BACKOFF)).toBe(true);
  });
});

describe('Backoff', () => {
  it('counts its own attempts with the same rule, and starts over after reset()', () => {
    const backoff = new Backoff({ initialMs: 10, maxMs: 50 }, () => 1);
    expect([backoff.next(), backoff.next(), backoff.next(), backoff.next()]).toEqual([10, 20, 40, 50]);
    backoff.reset();
    expect(backoff.next()).toBe(10);
  });

  it('uses the injected random source', () => {
    const backoff = new Backoff({ initialMs: 1_000, maxMs: 60_000 }, () => 0.5);
    expect([backoff.next(), backoff.next()]).toEqual([750, 1_500]);
  });
});
