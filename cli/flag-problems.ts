/**
 * Flag checking that reports every problem at once (exit 2 with the whole list), not the first: each
 * parse is attempted, and a failure is recorded while a fallback keeps the rest of the checking going.
 */
import { limitFromText, type LimitSpec } from '../common/limit-schema.js';

/**
 * `attempt(parse, fallback)`: the parsed value, or `fallback` with the error described (its message, by
 * default) added to `problems`.
 */
export function attemptInto(problems: string[], describe: (err: unknown) => string = (err) => (err as Error).message): <T>(parse: () => T, fallback: T) => T {
  return <T>(parse: () => T, fallback: T): T => {
    try {
      return parse();
    } catch (err) {
      problems.push(describe(err));
      return fallback;
    }
  };
}

/**
 * A flag that sets a limit: its default when absent, else its text checked against the limit's schema
 * (bounds and unit, common/limit-schema.ts); a problem is recorded through `attempt`.
 */
export function limitFlag(text: string | undefined, spec: LimitSpec, flag: string, attempt: <T>(parse: () => T, fallback: T) => T): number {
  return text === undefined ? spec.default : attempt(() => limitFromText(text, spec, flag), spec.default);
}
