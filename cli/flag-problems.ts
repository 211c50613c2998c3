/**
 * Flag checking that reports every problem at once (exit 2 with the whole list), not the first: each
 * parse is attempted, and a failure is recorded while a fallback keeps the rest of the checking going.
 */

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
