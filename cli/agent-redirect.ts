/**
 * `trellis agent redirect install|uninstall|show`: the iptables rules that send a workload's TCP traffic
 * through its sidecar (transparent capture). Options are validated together before anything runs; install
 * is atomic per address family, idempotent, and undone exactly by uninstall. `--dry-run` prints the rules
 * without touching the system (no root needed); `--netns` applies them inside a named network namespace.
 */
import { execFileSync } from 'node:child_process';
import { InputError, TrellisError } from '../common/errors.js';
import { hostRunner, netnsRunner, type CommandRunner } from '../capture/command-runner.js';
import type { BackendKind } from '../capture/backend.js';
import { createRedirectInstaller, formatStatus } from '../capture/installer.js';
import {
  DEFAULT_ADMIN_PORT,
  DEFAULT_INBOUND_PORT,
  DEFAULT_OUTBOUND_PORT,
  DEFAULT_TUNNEL_PORT,
  validateRedirectOptions,
  type RedirectConfig,
  type RedirectPlatform,
} from '../capture/options.js';
import { buildNatRules, renderRuleSet } from '../capture/rules.js';
import { originalDstUnavailableReason } from '../proxy/core/original-dst.js';
import { EXIT_OK, type CommandContext } from './command.js';
import type { AgentSubcommand } from './agent.js';
import { formatHelp, parseFlags, type CommandSpec } from './flag-spec.js';
import { CODE } from '../common/error-codes.js';

const OPTIONS = {
  'proxy-uid': { type: 'string', multiple: true, value: 'USER[,USER]', help: 'install: user(s) the proxy runs as, name or number (repeatable);\nat least one uid or gid is required', whenAbsent: 'none' },
  'proxy-gid': { type: 'string', multiple: true, value: 'GROUP[,GROUP]', help: 'install: group(s) the proxy runs as, name or number (repeatable)', whenAbsent: 'none' },
  'outbound-port': { type: 'string', value: 'N', help: "install: the sidecar's outbound capture port", whenAbsent: String(DEFAULT_OUTBOUND_PORT) },
  'inbound-port': { type: 'string', value: 'N', help: "install: the sidecar's inbound capture port", whenAbsent: String(DEFAULT_INBOUND_PORT) },
  'tunnel-port': { type: 'string', value: 'N', help: 'install: the tunnel port (never captured)', whenAbsent: String(DEFAULT_TUNNEL_PORT) },
  'admin-port': { type: 'string', value: 'N', help: 'install: the admin port (never captured)', whenAbsent: String(DEFAULT_ADMIN_PORT) },
  'exclude-inbound-ports': { type: 'string', multiple: true, value: 'LIST', help: 'install: ports on this workload not captured, e.g. 8081,9000-9100', whenAbsent: 'none' },
  'exclude-outbound-ports': { type: 'string', multiple: true, value: 'LIST', help: 'install: destination ports not captured', whenAbsent: 'none' },
  'exclude-inbound-cidrs': { type: 'string', multiple: true, value: 'LIST', help: 'install: source ranges not captured, e.g. 10.0.0.0/8', whenAbsent: 'none' },
  'exclude-outbound-cidrs': { type: 'string', multiple: true, value: 'LIST', help: 'install: destination ranges not captured, e.g. 169.254.169.254/32', whenAbsent: 'none' },
  platform: { type: 'string', value: 'vm|pod', help: 'install: on a VM SSH (22) is always excluded', whenAbsent: 'vm' },
  'exclude-ssh': { type: 'boolean', help: 'install: on a pod, also exclude port 22', whenAbsent: 'off' },
  ipv6: { type: 'boolean', help: 'install: also the IPv6 rules (ip6tables)', whenAbsent: 'off: IPv4 only' },
  'dry-run': { type: 'boolean', help: 'install: print the rules (iptables-restore format) and change nothing', whenAbsent: 'off' },
  force: { type: 'boolean', help: 'install even though this build cannot read original destinations', whenAbsent: 'off' },
  backend: { type: 'string', value: 'nft|legacy', help: 'skip detection', whenAbsent: 'what `iptables --version` names, or the one holding rules' },
  netns: { type: 'string', value: 'NAME', help: "act inside the network namespace NAME (ip netns), e.g. a container's", whenAbsent: 'this one' },
} as const;

const SPEC = {
  usage: 'trellis agent redirect install|uninstall|show [options]',
  about: `Transparent capture: iptables nat rules (chains TRELLIS_*) send the workload's outbound TCP to the sidecar's
outbound port and inbound TCP to its inbound port, so apps need no change. The proxy's own traffic is
excluded by its user and group; the tunnel and admin ports are never captured, nor SSH (22) on a VM.

  install     apply the rules atomically (again: replaces them; nothing is duplicated)
  uninstall   remove every TRELLIS_* chain and the jumps into them, nothing else
  show        print what is installed, per address family, and which iptables backend is used`,
  flags: OPTIONS,
  footer: 'Needs root (CAP_NET_ADMIN) except with --dry-run. Exit status: 0 done, 1 iptables failed, 2 bad options.',
} as const satisfies CommandSpec;

const USAGE = formatHelp(SPEC);

function list(values: readonly string[] | undefined): string[] {
  return (values ?? []).flatMap((v) => v.split(',')).map((v) => v.trim()).filter((v) => v !== '');
}

/** A numeric id as is; a name through the system's user or group database (getent), as `id` would. */
function resolveId(kind: 'passwd' | 'group', value: string, problems: string[]): number | undefined {
  if (/^\d+$/.test(value)) return Number(value);
  try {
    const entry = execFileSync('getent', [kind, value], { stdio: ['ignore', 'pipe', 'ignore'], timeout: 5_000 }).toString();
    const id = Number(entry.split(':')[2]);
    if (Number.isInteger(id)) return id;
  } catch {
    // reported below
  }
  problems.push(`${kind === 'passwd' ? 'proxy uid' : 'proxy gid'}: no ${kind === 'passwd' ? 'user' : 'group'} named "${value}" on this system`);
  return undefined;
}

function portOption(name: string, value: string | undefined, problems: string[]): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d{1,5}$/.test(value)) {
    problems.push(`--${name}: "${value}" is not a port number`);
    return undefined;
  }
  return Number(value);
}

type ParsedValues = ReturnType<typeof parseFlags<typeof OPTIONS>>['values'];

function configFrom(values: ParsedValues): RedirectConfig {
  const problems: string[] = [];
  const platform = values.platform ?? 'vm';
  if (platform !== 'vm' && platform !== 'pod') problems.push(`--platform: "${platform}" is not vm or pod`);
  const uids = list(values['proxy-uid']).map((v) => resolveId('passwd', v, problems));
  const gids = list(values['proxy-gid']).map((v) => resolveId('group', v, problems));
  const ports = {
    outboundPort: portOption('outbound-port', values['outbound-port'], problems),
    inboundPort: portOption('inbound-port', values['inbound-port'], problems),
    tunnelPort: portOption('tunnel-port', values['tunnel-port'], problems),
    adminPort: portOption('admin-port', values['admin-port'], problems),
  };
  if (values['exclude-ssh'] === true && platform === 'vm') problems.push('--exclude-ssh: on a VM SSH is always excluded; the flag is for --platform pod');
  if (problems.length > 0) throw new InputError(CODE.REDIRECT_OPTIONS_INVALID, `invalid redirect options:\n  - ${problems.join('\n  - ')}`, { details: { problems } });
  return validateRedirectOptions({
    platform: platform as RedirectPlatform,
    ...ports,
    proxyUids: uids.filter((id): id is number => id !== undefined),
    proxyGids: gids.filter((id): id is number => id !== undefined),
    excludeInboundPorts: list(values['exclude-inbound-ports']),
    excludeOutboundPorts: list(values['exclude-outbound-ports']),
    excludeInboundCidrs: list(values['exclude-inbound-cidrs']),
    excludeOutboundCidrs: list(values['exclude-outbound-cidrs']),
    excludeSsh: platform === 'pod' ? values['exclude-ssh'] === true : undefined,
    ipv6: values.ipv6 === true,
  });
}

function describeConfig(config: RedirectConfig): string {
  const owners = [...config.proxyUids.map((id) => `uid ${id}`), ...config.proxyGids.map((id) => `gid ${id}`)].join(', ');
  return `outbound → ${config.outboundPort}, inbound → ${config.inboundPort}; never captured: ${owners}, ports ${config.tunnelPort} (tunnel), ${config.adminPort} (admin)${config.excludeSsh ? ', 22 (SSH)' : ''}`;
}

async function redirect(argv: readonly string[], ctx: CommandContext): Promise<number> {
  const { values, positionals } = parseFlags(SPEC, argv);
  const [action, ...extra] = positionals;
  if (action === undefined || !['install', 'uninstall', 'show'].includes(action)) {
    throw new InputError(CODE.CLI_USAGE, `${action === undefined ? 'missing action' : `unknown action "${action}"`}: use install, uninstall or show\n\n${USAGE}`);
  }
  if (extra.length > 0) throw new InputError(CODE.CLI_USAGE, `unexpected arguments: ${extra.join(' ')}`);
  const backendFlag = values.backend;
  if (backendFlag !== undefined && backendFlag !== 'nft' && backendFlag !== 'legacy') throw new InputError(CODE.CLI_USAGE, `--backend: "${backendFlag}" is not nft or legacy`);
  const installOnly = ['proxy-uid', 'proxy-gid', 'outbound-port', 'inbound-port', 'tunnel-port', 'admin-port', 'exclude-inbound-ports', 'exclude-outbound-ports', 'exclude-inbound-cidrs', 'exclude-outbound-cidrs', 'platform', 'exclude-ssh', 'ipv6', 'dry-run', 'force'] as const;
  if (action !== 'install') {
    const misplaced = installOnly.filter((name) => values[name] !== undefined);
    if (misplaced.length > 0) throw new InputError(CODE.CLI_USAGE, `${misplaced.map((n) => `--${n}`).join(', ')}: only for install (${action} acts on whatever is installed)`);
  }

  let runner: CommandRunner;
  try {
    runner = values.netns === undefined ? hostRunner() : netnsRunner(values.netns);
  } catch (err) {
    throw new InputError(CODE.CLI_USAGE, `--netns: ${(err as Error).message}`);
  }
  const installer = createRedirectInstaller({ runner, backend: backendFlag as BackendKind | undefined });

  if (action === 'show') {
    ctx.stdout.write(formatStatus(await installer.status()));
    return EXIT_OK;
  }
  if (action === 'uninstall') {
    const result = await installer.uninstall();
    ctx.stdout.write(
      result.removed.length === 0
        ? `nothing to remove: no Trellis redirect is installed on ${runner.where} (${result.backend} backend)\n`
        : `removed the Trellis redirect from ${result.removed.map((f) => `IPv${f}`).join(' and ')} on ${runner.where} (${result.backend} backend)\n`,
    );
    return EXIT_OK;
  }

  const config = configFrom(values);
  if (values['dry-run'] === true) {
    for (const family of config.ipv6 ? ([4, 6] as const) : ([4] as const)) ctx.stdout.write(renderRuleSet(buildNatRules(config, family), family));
    return EXIT_OK;
  }
  const unavailable = originalDstUnavailableReason();
  if (unavailable !== null && values.force !== true) {
    throw new TrellisError(
      CODE.REDIRECT_CAPTURE_UNAVAILABLE,
      `refusing to install the redirect: this build cannot read the original destination of redirected connections, so every captured connection would fail (${unavailable}). Fix the build, or pass --force if another build of the proxy will serve the captured ports.`,
    );
  }
  if (config.proxyUids.includes(0) || config.proxyGids.includes(0)) {
    ctx.stderr.write('warning: uid/gid 0 is excluded, so nothing running as root is captured (run the proxy under its own user)\n');
  }
  const result = await installer.install(config);
  ctx.stdout.write(`installed the Trellis redirect for ${result.families.map((f) => `IPv${f}`).join(' and ')} on ${runner.where} (${result.backend} backend): ${describeConfig(config)}\n`);
  return EXIT_OK;
}

export const redirectSubcommand: AgentSubcommand = {
  name: 'redirect',
  spec: SPEC,
  summary: 'install, remove or show the iptables rules of transparent capture',
  run: redirect,
};
