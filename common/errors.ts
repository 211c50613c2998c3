/**
 * Errors with stable codes.
 *
 * Every error Trellis raises on purpose is a TrellisError: a stable `code` (operators grep for it, tests
 * assert on it), the `side` it came from (so one place can turn it into 403/502/503/504 or an exit code),
 * and whether retrying the same operation elsewhere is safe.
 */

/** Where an error came from, as seen by the component that raises it. */
export type ErrorSide =
  | 'input' // bad input from an operator or a file: a clear message, exit code 2, nothing written
  | 'downstream' // the peer that called us misbehaved (garbage, no certificate, too slow)
  | 'upstream' // the thing we called failed (connect refused, reset, timeout)
  | 'policy' // a decision, not a failure: authorization denied
  | 'internal'; // a bug or an impossible state

export interface TrellisErrorOptions {
  readonly side?: ErrorSide;
  readonly retryable?: boolean;
  readonly cause?: unknown;
  /** Machine-readable details, safe to log (never keys or tokens). */
  readonly details?: Readonly<Record<string, unknown>>;
}

export class TrellisError extends Error {
  readonly code: string;
  readonly side: ErrorSide;
  readonly retryable: boolean;
  readonly details: Readonly<Record<string, unknown>> | undefined;

  constructor(code: string, message: string, options: TrellisErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'TrellisError';
    this.code = code;
    this.side = options.side ?? 'internal';
    this.retryable = options.retryable ?? false;
    this.details = options.details;
  }
}

/** Bad operator input: the CLI prints the message and exits 2. */
export class InputError extends TrellisError {
  constructor(code: string, message: string, options: Omit<TrellisErrorOptions, 'side'> = {}) {
    super(code, message, { ...options, side: 'input' });
    this.name = 'InputError';
  }
}

export function isTrellisError(err: unknown): err is TrellisError {
  return err instanceof TrellisError;
}

/** A short, single-line description of any thrown value, for logs and CLI output. */
export function describeError(err: unknown): string {
  if (err instanceof TrellisError) return `${err.message} [${err.code}]`;
  if (err instanceof Error) return err.message;
  return String(err);
}
