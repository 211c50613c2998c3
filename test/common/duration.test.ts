import { describe, expect, it } from 'vitest';
import { formatDuration, parseDuration } from '../../common/duration.js';

describe('parseDuration', () => {
  it.each([
    ['250ms', 250],
    ['30s', 30_000],
    ['15m', 900_000],
    ['24h', 86_400_000],
    ['7d', 604_800_000],
    ['1h30m', 5_400_000],
    ['1.5h', 5_400_000],
  ])('reads %s', (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });

  it.each(['', '10', 'h', '5 m', '-5m', '0s', '5y', '5m3'])('refuses %j with a coded error', (text) => {
    expect(() => parseDuration(text, '--ttl')).toThrowError(expect.objectContaining({ code: 'TRELLIS_DURATION_INVALID' }));
  });

  it('round-trips through formatDuration for whole units', () => {
    expect(formatDuration(parseDuration('23h59m'))).toBe('23h59m');
    expect(formatDuration(850)).toBe('850ms');
    expect(formatDuration(-61_000)).toBe('-1m1s');
  });
});
