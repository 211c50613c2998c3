/**
 * One flag table per command (or subcommand) that both parses its arguments and prints its `--help`: the
 * parser accepts exactly the flags of the table, and the help lists each of them with what applies when it
 * is absent, so a flag cannot exist without its line in the help. `-h`/`--help` is added to every table;
 * asking for help anywhere among the arguments prints the help on stdout and exits 0 (HelpRequested).
 */
import { parseArgs } from 'node:util';
import { InputError } from '../common/errors.js';
import { CODE } from '../common/error-codes.js';

export interface FlagSpec {
  readonly type: 'string' | 'boolean';
  readonly multiple?: boolean;
  readonly short?: string;
  /** The value's placeholder in the help, e.g. `DIR` or `HOST:PORT`. */
  readonly value?: string;
  /** What the flag does; `\n` starts a continuation line. */
  readonly help: string;
  /** What applies when the flag is not given, as the help prints it; REQUIRED when it must be given. */
  readonly whenAbsent: string;
}

/** `whenAbsent` of a flag that must be given. */
export const REQUIRED = 'required';

export type FlagTable = Readonly<Record<string, FlagSpec>>;

export interface CommandSpec<F extends FlagTable = FlagTable> {
  /** The synopsis after `Usage: `; several lines for several forms. */
  readonly usage: string;
  /** Paragraphs between the synopsis and the options. */
  readonly about?: string;
  readonly flags: F;
  /** Paragraphs after the options (exit status, examples). */
  readonly footer?: string;
}

/** Thrown by parseFlags when -h or --help is among the arguments; main prints the text and exits 0. */
export class HelpRequested extends Error {
  constructor(readonly text: string) {
    super('help requested');
    this.name = 'HelpRequested';
  }
}

/** How the help states what applies without the flag: `(required)`, `(required unless ...)` or `(default X)`. */
export function absentText(flag: FlagSpec): string {
  return flag.whenAbsent.startsWith(REQUIRED) ? `(${flag.whenAbsent})` : `(default ${flag.whenAbsent})`;
}

/** Help lines longer than this put the default on a line of its own. */
const LINE_WIDTH = 110;

const HELP_FLAG = { type: 'boolean', short: 'h', help: 'print this help and exit', whenAbsent: 'off' } as const satisfies FlagSpec;

/** The help text of one command: synopsis, description, every flag with its default, footer. */
export function formatHelp(spec: CommandSpec): string {
  const table: FlagTable = { ...spec.flags, help: HELP_FLAG };
  const rows = Object.entries(table).map(([name, flag]) => {
    const left = `${flag.short === undefined ? '' : `-${flag.short}, `}--${name}${flag.type === 'string' ? ` ${flag.value ?? 'VALUE'}` : ''}${flag.multiple === true ? ' ...' : ''}`;
    return { left, lines: flag.help.split('\n'), absent: absentText(flag) };
  });
  const width = Math.min(30, Math.max(...rows.map((r) => r.left.length)));
  for (const row of rows) {
    const last = row.lines.length - 1;
    if (width + 4 + (row.lines[last] as string).length + 1 + row.absent.length <= LINE_WIDTH) row.lines[last] = `${row.lines[last] as string} ${row.absent}`;
    else row.lines.push(row.absent);
  }
  const options = rows.flatMap(({ left, lines }) => {
    const [first = '', ...rest] = lines;
    const head = left.length > width ? [`  ${left}`, `  ${''.padEnd(width)}  ${first}`] : [`  ${left.padEnd(width)}  ${first}`];
    return [...head, ...rest.map((line) => `  ${''.padEnd(width)}  ${line.trim()}`)];
  });
  const sections = [`Usage: ${spec.usage}`, ...(spec.about === undefined ? [] : [spec.about.trimEnd()]), ['Options:', ...options].join('\n'), ...(spec.footer === undefined ? [] : [spec.footer.trimEnd()])];
  return `${sections.join('\n\n')}\n`;
}

type Parsed<F extends FlagTable> = ReturnType<typeof parseArgs<{ args: string[]; options: F; allowPositionals: true; tokens: true }>>;

/**
 * Parses ARGV against the table. Unknown flags and missing values are bad input (exit 2, with the help);
 * positionals are returned for the command to check.
 */
export function parseFlags<F extends FlagTable>(spec: CommandSpec<F>, argv: readonly string[]): Parsed<F> {
  let parsed;
  try {
    parsed = parseArgs({ args: [...argv], options: { ...spec.flags, help: HELP_FLAG }, allowPositionals: true, tokens: true, strict: true });
  } catch (err) {
    // An unknown flag next to --help still gets the help: the user asked for it.
    if (argv.includes('--help') || argv.includes('-h')) throw new HelpRequested(formatHelp(spec));
    throw new InputError(CODE.CLI_USAGE, `${(err as Error).message}\n\n${formatHelp(spec)}`);
  }
  if ((parsed.values as Record<string, unknown>).help === true) throw new HelpRequested(formatHelp(spec));
  return parsed as unknown as Parsed<F>;
}
