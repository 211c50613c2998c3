/**
 * `trellis policy check FILE|DIR...`: validates TrafficPermission files the way the control plane and the
 * proxy will, and prints every problem as `file:line:column: field: message` (exit 2), or a one-line
 * summary (exit 0). Meant for editors, pre-commit hooks and CI, before a policy reaches a cluster.
 */
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { InputError } from '../common/errors.js';
import { configIssuesOf, formatConfigIssue, readConfigFile, type ConfigIssue, type YamlText } from '../common/yaml-source.js';
import { DEFAULT_ROOT_NAMESPACE, isPolicyFileName, parsePolicyAndTraffic } from '../policy/index.js';
import { DNS_LABEL } from '../policy/selectors.js';
import { EXIT_OK, EXIT_USAGE, type Command, type CommandContext } from './command.js';
import { formatHelp, parseFlags, type CommandSpec } from './flag-spec.js';
import { CODE } from '../common/error-codes.js';

const SPEC = {
  usage: 'trellis policy check [--root-namespace NS] FILE|DIR...',
  about: `Validates TrafficPermission policy files and the traffic-management resources beside them (YAML,
several "---" documents per file allowed). A directory stands for its *.yaml and *.yml files. Every error is printed as file:line:column: field: message.`,
  flags: {
    'root-namespace': { type: 'string', value: 'NS', help: "the mesh's root namespace, whose policies may name any destination", whenAbsent: DEFAULT_ROOT_NAMESPACE },
  },
  footer: 'Exit status: 0 when every file is valid, 2 when any is not.',
} as const satisfies CommandSpec;

const USAGE = formatHelp(SPEC);

/** Expands directories into their policy files (sorted); files are taken as named. */
async function expand(paths: readonly string[]): Promise<{ files: string[]; unreadable: ConfigIssue[] }> {
  const files: string[] = [];
  const unreadable: ConfigIssue[] = [];
  for (const path of paths) {
    let isDir = false;
    try {
      isDir = (await fs.stat(path)).isDirectory();
    } catch (err) {
      unreadable.push({ file: path, line: 0, column: 0, path: '', message: `cannot read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})` });
      continue;
    }
    if (!isDir) files.push(path);
    else files.push(...(await fs.readdir(path)).filter(isPolicyFileName).sort().map((name) => join(path, name)));
  }
  return { files, unreadable };
}

async function check(argv: readonly string[], ctx: CommandContext): Promise<number> {
  const { values, positionals } = parseFlags(SPEC, argv);
  if (positionals.length === 0) throw new InputError(CODE.CLI_USAGE, `no policy files given\n\n${USAGE}`);
  const rootNamespace = values['root-namespace'] ?? DEFAULT_ROOT_NAMESPACE;
  if (!DNS_LABEL.test(rootNamespace)) throw new InputError(CODE.CLI_USAGE, `--root-namespace: "${rootNamespace}" is not a DNS label`);
  const { files, unreadable } = await expand(positionals);
  const texts: YamlText[] = [];
  for (const file of files) {
    try {
      texts.push(await readConfigFile(file));
    } catch (err) {
      unreadable.push({ file, line: 0, column: 0, path: '', message: (err as Error).message.replace(`${file}: `, '') });
    }
  }
  let issues: readonly ConfigIssue[] = unreadable;
  let count = 0;
  let trafficCount = 0;
  try {
    const parsed = parsePolicyAndTraffic(texts, { rootNamespace });
    count = parsed.policies.length;
    trafficCount = parsed.traffic.length;
  } catch (err) {
    const found = configIssuesOf(err);
    if (found.length === 0) throw err;
    issues = [...unreadable, ...found];
  }
  if (issues.length > 0) {
    for (const issue of issues) ctx.stderr.write(`${formatConfigIssue(issue)}\n`);
    ctx.stderr.write(`${issues.length === 1 ? '1 error' : `${issues.length} errors`}: policy rejected (nothing would be applied)\n`);
    return EXIT_USAGE;
  }
  const fileCount = texts.length === 1 ? '1 file' : `${texts.length} files`;
  const traffic = trafficCount === 0 ? '' : ` and ${trafficCount === 1 ? '1 traffic resource' : `${trafficCount} traffic resources`}`;
  ctx.stdout.write(`ok: ${count === 1 ? '1 policy' : `${count} policies`}${traffic} in ${fileCount}\n`);
  return EXIT_OK;
}

export const policyCommand: Command = {
  name: 'policy',
  usage: USAGE,
  forms: { '': SPEC, check: SPEC },
  async run(argv, ctx) {
    const [sub, ...rest] = argv;
    if (sub === 'check') return check(rest, ctx);
    throw new InputError(CODE.CLI_USAGE, `${sub === undefined ? 'missing subcommand' : `unknown subcommand "${sub}"`}\n\n${USAGE}`);
  },
};
