/**
 * Durations as operators write them: "90s", "15m", "24h", "7d", "1h30m", "250ms".
 * Parsed once at the edge into milliseconds; a bare number is refused because its unit would be a guess.
 */
import { InputError } from './errors.js';
import { CODE } from './error-codes.js';

const UNIT_MS: Readonly<Record<string, number>> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const PART = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/y;

export function parseDuration(text: string, what = 'duration'): number {
  const input = text.trim();
  if (input === '') throw new InputError(CODE.DURATION_INVALID, `${what}: empty duration (expected e.g. 30s, 15m, 24h, 7d)`);
  let total = 0;
  PART.lastIndex = 0;
  let consumed = 0;
  while (consumed < input.length) {
    PART.lastIndex = consumed;
    const match = PART.exec(input);
    if (match === null) {
      throw new InputError(CODE.DURATION_INVALID, `${what}: "${text}" is not a duration (expected e.g. 30s, 15m, 24h, 7d, 1h30m)`);
    }
    total += Number(match[1]) * (UNIT_MS[match[2] as string] as number);
    consumed = PART.lastIndex;
  }
  if (!Number.isFinite(total) || total <= 0) {
    throw new InputError(CODE.DURATION_INVALID, `${what}: "${text}" must be greater than zero`);
  }
  return Math.round(total);
}

/** "23h59m", "4m10s", "850ms": for humans reading time left or elapsed. */
export function formatDuration(ms: number): string {
  const sign = ms < 0 ? '-' : '';
  let rest = Math.abs(Math.round(ms));
  if (rest < 1_000) return `${sign}${rest}ms`;
  const parts: string[] = [];
  for (const [unit, size] of [['d', 86_400_000], ['h', 3_600_000], ['m', 60_000], ['s', 1_000]] as const) {
    if (rest >= size) {
      parts.push(`${Math.floor(rest / size)}${unit}`);
      rest %= size;
    }
    if (parts.length === 2) break;
  }
  return sign + parts.join('');
}
