/**
 * Header regexes in a TrafficRoute run on every request with values the caller controls, so a pattern
 * that backtracks exponentially ("(a+)+$" against "aaaa…!") would let any caller stall the sidecar.
 * Node's engine backtracks, so we accept only the subset whose cost stays bounded: no back-references,
 * no look-around, no quantifier applied to a group that itself holds a quantifier or an alternation
 * (the shapes behind ReDoS), at most 256 characters, and values are matched only up to 8 KiB (a header
 * line longer than that is refused by the head limits anyway). Anything refused is said in words.
 */
import { TRAFFIC_LIMITS } from './types.js';

/** Header values longer than this never match a regex (they cannot reach us past the head limits). */
export const MAX_REGEX_INPUT = 8 * 1024;

/** Why `source` is not a safe pattern, or undefined when it is. */
export function unsafeRegexReason(source: string): string | undefined {
  if (source.length > TRAFFIC_LIMITS.regexLength) return `must be at most ${TRAFFIC_LIMITS.regexLength} characters`;
  try {
    new RegExp(source, 'u');
  } catch (err) {
    return `is not a valid regular expression (${(err as Error).message})`;
  }
  if (/\\[1-9]|\\k</.test(source)) return 'back-references are not allowed';
  if (/\(\?<?[=!]/.test(source)) return 'look-ahead and look-behind are not allowed';
  // Groups whose body holds a quantifier or an alternation may not be quantified themselves.
  const stack: { risky: boolean }[] = [];
  let inClass = false;
  for (let i = 0; i < source.length; i++) {
    const c = source[i] as string;
    if (c === '\\') {
      i += 1;
      continue;
    }
    if (inClass) {
      if (c === ']') inClass = false;
      continue;
    }
    if (c === '[') inClass = true;
    else if (c === '(') {
      stack.push({ risky: false });
      // "(?:" and "(?<name>" open groups; their "?" is no quantifier.
      if (source[i + 1] === '?') i = source[i + 2] === '<' ? source.indexOf('>', i) : i + 2;
    }
    else if (c === ')') {
      const group = stack.pop();
      const next = source[i + 1];
      if (group?.risky === true && (next === '*' || next === '+' || next === '?' || next === '{')) {
        return 'a group holding a quantifier or "|" may not be repeated (it can backtrack exponentially)';
      }
      const outer = stack[stack.length - 1];
      if (outer !== undefined && group?.risky === true) outer.risky = true;
    } else if (c === '*' || c === '+' || c === '?' || c === '{' || c === '|') {
      const top = stack[stack.length - 1];
      if (top !== undefined) top.risky = true;
    }
  }
  return undefined;
}

/** Compiles an already-validated pattern to match whole values (anchored, as Istio and Envoy do). */
export function compileSafeRegex(source: string): (value: string) => boolean {
  const re = new RegExp(`^(?:${source})$`, 'u');
  return (value) => value.length <= MAX_REGEX_INPUT && re.test(value);
}
