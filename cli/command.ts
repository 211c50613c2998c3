/**
 * The contract every `trellis` subcommand meets. A command parses its own arguments (its flag tables, cli/flag-spec.ts),
 * validates them once, and returns an exit code: 0 success, 1 a runtime failure, 2 bad input or usage.
 * Throwing an InputError is the same as returning 2 with its message printed; throwing HelpRequested (what
 * parseFlags does for -h/--help) prints the help on stdout and returns 0.
 */
import type { CommandSpec } from './flag-spec.js';

export interface CommandContext {
  /** Output of the command itself (tables, PEM, JSON). Logs never go here. */
  readonly stdout: NodeJS.WritableStream;
  /** Human-readable errors and warnings. */
  readonly stderr: NodeJS.WritableStream;
  /** The process environment, read here at the edge and nowhere below. */
  readonly env: Readonly<Record<string, string | undefined>>;
  /** The process's stdin, for commands that read a request from it (the CNI plugin). */
  readonly stdin?: NodeJS.ReadableStream;
}

export interface Command {
  /** First word after `trellis`, e.g. "ca". */
  readonly name: string;
  /** Full usage text, printed for `trellis NAME --help` and on usage errors. */
  readonly usage: string;
  /**
   * The flag table of each form, by the words after NAME ('' for NAME itself, 'init' for `NAME init`):
   * the same tables parse the arguments and print `--help`, so every flag has its line there.
   */
  readonly forms: Readonly<Record<string, CommandSpec>>;
  run(argv: readonly string[], ctx: CommandContext): Promise<number>;
}

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

/**
 * A command as `trellis --help` lists it. Commands are imported only when run: loading every module of the
 * mesh (CA, control plane, proxy, injector, Kubernetes client) costs a sidecar tens of megabytes of memory
 * it never uses, so `trellis proxy run` loads the proxy and nothing else.
 */
export interface CommandEntry {
  readonly name: string;
  /** One line for `trellis --help`. */
  readonly summary: string;
  load(): Promise<Command>;
}
