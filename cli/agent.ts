/**
 * `trellis agent <subcommand>`: what runs beside a workload. A table of subcommands, each in its own file
 * (`agent-run.ts`, `agent-redirect.ts`); add one by importing it into SUBCOMMANDS.
 */
import { InputError } from '../common/errors.js';
import { EXIT_OK, EXIT_USAGE, type Command, type CommandContext } from './command.js';
import { redirectSubcommand } from './agent-redirect.js';
import { runSubcommand } from './agent-run.js';
import type { CommandSpec } from './flag-spec.js';
import { CODE } from '../common/error-codes.js';

export interface AgentSubcommand {
  /** The word after `trellis agent`. */
  readonly name: string;
  /** One line for `trellis agent --help`. */
  readonly summary: string;
  /** Its flag table (parses and prints its --help). */
  readonly spec: CommandSpec;
  run(argv: readonly string[], ctx: CommandContext): Promise<number>;
}

const SUBCOMMANDS: readonly AgentSubcommand[] = [runSubcommand, redirectSubcommand];

function usage(): string {
  const width = Math.max(...SUBCOMMANDS.map((s) => s.name.length));
  return [
    'Usage: trellis agent <subcommand> [options]',
    '',
    'Runs beside a workload (a pod sidecar or a VM): its identity, its config, its proxy, its traffic redirect.',
    '',
    'Subcommands:',
    ...SUBCOMMANDS.map((s) => `  ${s.name.padEnd(width)}  ${s.summary}`),
    '',
    'Run `trellis agent <subcommand> --help` for its options.',
    '',
  ].join('\n');
}

export const agentCommand: Command = {
  name: 'agent',
  get usage() {
    return usage();
  },
  forms: Object.fromEntries(SUBCOMMANDS.map((s) => [s.name, s.spec])),
  async run(argv: readonly string[], ctx: CommandContext): Promise<number> {
    const [name, ...rest] = argv;
    if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
      ctx.stdout.write(usage());
      return name === undefined ? EXIT_USAGE : EXIT_OK;
    }
    const sub = SUBCOMMANDS.find((s) => s.name === name);
    if (sub === undefined) throw new InputError(CODE.CLI_USAGE, `unknown agent subcommand "${name}"\n\n${usage()}`);
    return sub.run(rest, ctx);
  },
};
