/**
 * The log sampler that bounds repeated warnings (denials, refusals): the first per key is written at once,
 * repeats only as one summary per interval with their count, a quiet key starts over, keys are bounded.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { LogSampler } from '../../proxy/core/log-sampler.js';

function recorder(): { lines: { fields: Record<string, unknown>; msg: string }[]; warn: (fields: Record<string, unknown>, msg: string) => void } {
  const lines: { fields: Record<string, unknown>; msg: string }[] = [];
  return { lines, warn: (fields, msg) => void lines.push({ fields, msg }) };
}

describe('LogSampler', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('writes the first occurrence per key at once and one summary per interval with the count', () => {
    const log = recorder();
    const sampler = new LogSampler(log as never, 10_000);
    for (let i = 0; i < 1_000; i++) sampler.warn('peer-a|rule-1', { n: i }, 'denied');
    expect(sampler.warn('peer-b|rule-1', { n: 0 }, 'denied')).toBe(true);
    expect(log.lines.map((l) => l.fields.n)).toEqual([0, 0]);
    vi.advanceTimersByTime(10_000);
    expect(log.lines).toHaveLength(3);
    expect(log.lines[2]?.fields).toMatchObject({ n: 1, suppressed: 999 });
    // Still repeating: counted, not written, until the next summary.
    for (let i = 0; i < 5; i++) sampler.warn('peer-a|rule-1', { n: i }, 'denied');
    expect(log.lines).toHaveLength(3);
    vi.advanceTimersByTime(10_000);
    expect(log.lines[3]?.fields).toMatchObject({ suppressed: 5 });
    // A whole quiet interval: the next occurrence is written at once again.
    vi.advanceTimersByTime(20_000);
    expect(sampler.warn('peer-a|rule-1', { n: 7 }, 'denied')).toBe(true);
    sampler.close();
  });

  it('bounds the keys it remembers: beyond maxKeys, occurrences share one overflow key', () => {
    const log = recorder();
    const sampler = new LogSampler(log as never, 10_000, 4);
    for (let i = 0; i < 100; i++) sampler.warn(`peer-${i}`, { i }, 'denied');
    expect(log.lines).toHaveLength(5);
    sampler.close();
    expect(log.lines.at(-1)?.fields).toMatchObject({ suppressed: 95 });
  });
});
