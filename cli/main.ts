#!/usr/bin/env node
/**
 * The `trellis` command: one binary, subcommands dispatched by their first word.
 * This is the only place that reads process.env and process.argv; everything below receives values.
 */
import { commands } from './commands.js';
import { EXIT_FAILURE, EXIT_OK, EXIT_USAGE, type CommandContext } from './command.js';
import { isEntryPoint } from '../common/entry-point.js';
import { describeError, isTrellisError } from '../common/errors.js';
import { HelpRequested } from './flag-spec.js';

const VERSION = '0.1.0';

function topLevelHelp(): string {
  const width = Math.max(8, ...commands.map((c) => c.name.length));
  const lines = commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`);
  return [
    'trellis: a lightweight service mesh (SPIFFE identities, mTLS between sidecars, zero-trust policy)',
    '',
    'Usage: trellis <command> [options]',
    '',
    'Commands:',
    ...lines,
    '',
    'Run `trellis <command> --help` for the options of one command.',
    '',
  ].join('\n');
}

export async function main(argv: readonly string[], ctx: CommandContext): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    ctx.stdout.write(topLevelHelp());
    return name === undefined ? EXIT_USAGE : EXIT_OK;
  }
  if (name === '--version' || name === 'version') {
    // The runtime too: the project brings its own (the `node` devDependency), and a global install runs on the user's.
    ctx.stdout.write(`trellis ${VERSION} (node ${process.version})\n`);
    return EXIT_OK;
  }
  const entry = commands.find((c) => c.name === name);
  if (entry === undefined) {
    ctx.stderr.write(`trellis: unknown command "${name}"\n\n${topLevelHelp()}`);
    return EXIT_USAGE;
  }
  const command = await entry.load();
  if (rest.length === 1 && (rest[0] === '--help' || rest[0] === '-h')) {
    ctx.stdout.write(command.usage.endsWith('\n') ? command.usage : `${command.usage}\n`);
    return EXIT_OK;
  }
  try {
    return await command.run(rest, ctx);
  } catch (err) {
    if (err instanceof HelpRequested) {
      ctx.stdout.write(err.text);
      return EXIT_OK;
    }
    // parseArgs throws TypeErrors with ERR_PARSE_ARGS_* codes for unknown or malformed options.
    const parseError = (err as { code?: unknown }).code;
    if (typeof parseError === 'string' && parseError.startsWith('ERR_PARSE_ARGS')) {
      ctx.stderr.write(`trellis ${name}: ${(err as Error).message}\n\n${command.usage}\n`);
      return EXIT_USAGE;
    }
    ctx.stderr.write(`trellis ${name}: ${describeError(err)}\n`);
    if (isTrellisError(err) && err.side === 'input') return EXIT_USAGE;
    return EXIT_FAILURE;
  }
}

/** Runs the command line of this process and sets its exit code: what the `trellis` binary does. */
export function runAsBinary(): void {
  main(process.argv.slice(2), {
    stdout: process.stdout,
    stderr: process.stderr,
    env: process.env,
    // A getter: touching process.stdin creates the stream, which only the CNI plugin reads.
    get stdin() {
      return process.stdin;
    },
  }).then(
    (code) => {
      // Long-running commands (proxy, control, agent) never resolve until they stop; one-shot commands exit here.
      process.exitCode = code;
    },
    (err: unknown) => {
      process.stderr.write(`trellis: ${describeError(err)}\n`);
      process.exitCode = EXIT_FAILURE;
    },
  );
}

// Run when executed as a script (`node dist/cli/main.js`, the image's entrypoint), not when imported by
// tests or by the installed binary's launcher (cli/bin.ts).
if (isEntryPoint(import.meta.url)) runAsBinary();
