/**
 * The contract every `trellis` subcommand meets. A command parses its own arguments (node:util parseArgs),
 * validates them once, and returns an exit code: 0 success, 1 a runtime failure, 2 bad input or usage.
 * Throwing an InputError is the same as returning 2 with its message printed.
 */
export interface CommandContext {
  /** Output of the command itself (tables, PEM, JSON). Logs never go here. */
  readonly stdout: NodeJS.WritableStream;
  /** Human-readable errors and warnings. */
  readonly stderr: NodeJS.WritableStream;
  /** The process environment, read here at the edge and nowhere below. */
  readonly env: Readonly<Record<string, string | undefined>>;
}

export interface Command {
  /** First word after `trellis`, e.g. "ca". */
  readonly name: string;
  /** Full usage text, printed for `trellis NAME --help` and on usage errors. */
  readonly usage: string;
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
