/**
 * Structured logs through pino. Logs go to stderr so that a command's stdout stays its output
 * (`trellis ca inspect`, `trellis explain`). Components take a Logger and make one child per connection.
 */
import { pino, type Logger, type LevelWithSilent } from 'pino';

export type { Logger };

export interface LogOptions {
  readonly level?: LevelWithSilent;
  /** Component name, bound once into every line (pino serialises bindings at construction). */
  readonly name: string;
}

export function createLogger(options: LogOptions): Logger {
  return pino({ name: options.name, level: options.level ?? 'info', base: { pid: process.pid } }, pino.destination({ fd: 2, sync: false }));
}

/** A logger that drops everything, for tests and library users who bring no logger. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
