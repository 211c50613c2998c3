/**
 * `trellis control run`: a zone control plane with the embedded file store, in universal mode (agents
 * register, policy from a directory) or Kubernetes mode (TokenReview, EndpointSlices, TrafficPermission
 * resources). Runs until SIGTERM or SIGINT, then closes its listeners and watch streams (agents keep
 * serving and reconnect by themselves).
 *
 * The environment is read here and only here: in Kubernetes mode KUBERNETES_SERVICE_HOST/PORT (set in
 * every pod) select the in-cluster API, and $KUBECONFIG names a kubeconfig as kubectl's does.
 */
import { statSync } from 'node:fs';
import { resolve } from 'node:path';
import type { LevelWithSilent } from 'pino';
import { EXIT_OK, EXIT_USAGE, type Command, type CommandContext } from './command.js';
import { InputError } from '../common/errors.js';
import { CONTROL_LIMIT_SCHEMA, CONTROL_LIMITS } from '../control/limits.js';
import { formatLimit } from '../common/limit-schema.js';
import { createLogger } from '../common/log.js';
import { parseTrustDomain } from '../ca/spiffe-id.js';
import { DNS_LABEL } from '../policy/selectors.js';
import { CONTROL_DEFAULTS, configConflicts, type ControlPlaneConfig, type ControlPlaneMode, type ListenAddress } from '../control/config.js';
import { startControlPlane } from '../control/control-plane.js';
import type { KubeApiAccess } from '../control/kubernetes/kube-config.js';
import { attemptInto, limitFlag } from './flag-problems.js';
import { REQUIRED, formatHelp, parseFlags, type CommandSpec } from './flag-spec.js';
import { CODE } from '../common/error-codes.js';
import { MULTIZONE_FLAGS, parseGlobalConfig, parseZoneGlobal, runGlobal, withZoneCa } from './control-global.js';
import type { GlobalControlConfig } from '../control/global/global-config.js';

const SPEC = {
  usage: 'trellis control run --data-dir DIR [--mode universal|kubernetes] [options]',
  about: `Runs a zone control plane: mesh CA and zone intermediate, join tokens, certificate issuance and
renewal, the service registry, policy distribution to agents. Every flag is checked (and --policy and
--ca-dir must exist) before anything is written.

Modes:
  universal   agents register their endpoints (restored from the data dir after a restart); VMs join
              with join tokens; policy from --policy DIR                               (the default)
  kubernetes  agents authenticate with their pod's projected service-account token (TokenReview,
              audience "trellis"; join tokens still work for VMs); endpoints come from Services,
              EndpointSlices and Pods, agents' registrations add none; policy from TrafficPermission
              resources (an invalid set at start-up stops the start). The API is reached in-cluster
              (the pod's service account), else with --kubeconfig FILE or $KUBECONFIG.
  global      the global control plane of a multi-zone mesh: zones dial in (--global URL --zone
              NAME on theirs), sync their exported services up and get the other zones' and the
              mesh-wide policies (--policy DIR) down. Listens on 15020 (admin 15021) by default.`,
  flags: {
    mode: { type: 'string', value: 'MODE', help: 'universal | kubernetes | global', whenAbsent: CONTROL_DEFAULTS.mode },
    kubeconfig: { type: 'string', value: 'FILE', help: 'kubernetes mode: the API through this kubeconfig instead of in-cluster', whenAbsent: 'in-cluster, else $KUBECONFIG' },
    'kube-context': { type: 'string', value: 'NAME', help: 'kubernetes mode: a context of the kubeconfig', whenAbsent: 'its current context' },
    'data-dir': { type: 'string', value: 'DIR', help: 'state (CA keys, tokens, registrations); created on first start', whenAbsent: REQUIRED },
    'ca-dir': {
      type: 'string',
      value: 'DIR',
      help: `the operator's CA (ca.crt, ca.key, bundle.pem, as \`trellis ca init\` writes)
instead of a root made in the data dir; ca.key may be 0400/0600, or 0440/0640
when owned by root or this user and its group is one this process is in;
bundle.pem is watched: a valid change (root rotation) is pushed to agents,
an invalid one logged, counted and ignored`,
      whenAbsent: 'a root CA made in the data dir',
    },
    policy: { type: 'string', value: 'DIR', help: 'universal mode: TrafficPermission YAML files, watched; nothing is allowed\nwithout one', whenAbsent: 'no policy: everything denied' },
    'trust-domain': { type: 'string', value: 'NAME', help: 'SPIFFE trust domain', whenAbsent: CONTROL_DEFAULTS.trustDomain },
    zone: { type: 'string', value: 'NAME', help: "this control plane's zone", whenAbsent: CONTROL_DEFAULTS.zone },
    'root-namespace': { type: 'string', value: 'NS', help: 'namespace of mesh-wide policies', whenAbsent: CONTROL_DEFAULTS.rootNamespace },
    listen: { type: 'string', value: 'HOST:PORT', help: 'HTTPS API for agents', whenAbsent: `${CONTROL_DEFAULTS.listen.host}:${CONTROL_DEFAULTS.listen.port}` },
    admin: { type: 'string', value: 'HOST:PORT', help: 'admin: /healthz /ready /metrics /registry /policy', whenAbsent: `${CONTROL_DEFAULTS.admin.host}:${CONTROL_DEFAULTS.admin.port}` },
    'workload-ttl': { type: 'string', value: 'DURATION', help: 'lifetime of workload certificates', whenAbsent: formatLimit(CONTROL_LIMITS.workloadTtlMs, 'ms') },
    'disconnect-grace': { type: 'string', value: 'DURATION', help: 'endpoint stays healthy this long after its agent disconnects', whenAbsent: formatLimit(CONTROL_LIMITS.disconnectGraceMs, 'ms') },
    'startup-grace': { type: 'string', value: 'DURATION', help: 'restored endpoints keep their state this long after a restart', whenAbsent: formatLimit(CONTROL_LIMITS.startupGraceMs, 'ms') },
    'instance-lease': { type: 'string', value: 'DURATION', help: 'an instance whose agent stays disconnected this long is removed', whenAbsent: formatLimit(CONTROL_LIMITS.instanceLeaseMs, 'ms') },
    'ping-interval': { type: 'string', value: 'DURATION', help: 'watch keepalive interval', whenAbsent: formatLimit(CONTROL_LIMITS.pingIntervalMs, 'ms') },
    'log-level': { type: 'string', value: 'LEVEL', help: 'trace|debug|info|warn|error|silent', whenAbsent: 'info' },
    ...MULTIZONE_FLAGS,
  },
} as const satisfies CommandSpec;

const USAGE = formatHelp(SPEC);

/** A directory flag that must name an existing directory; checked before anything is written. */
function existingDirectory(path: string | undefined, flag: string, problems: string[]): void {
  if (path === undefined) return;
  try {
    if (!statSync(path).isDirectory()) problems.push(`${flag}: ${path} is not a directory`);
  } catch (err) {
    problems.push(`${flag}: ${path} ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'does not exist' : `cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`}`);
  }
}

export function parseListen(text: string, what: string): ListenAddress {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(text);
  const port = Number(match?.[3]);
  if (match === null || !Number.isInteger(port) || port > 65535) throw new InputError(CODE.CLI_BAD_ADDRESS, `${what}: "${text}" is not HOST:PORT (port 0-65535)`);
  return Object.freeze({ host: (match[1] ?? match[2]) as string, port });
}

export function parseLogLevel(text: string | undefined): LevelWithSilent {
  const level = text ?? 'info';
  if (!['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'].includes(level)) throw new InputError(CODE.CLI_BAD_LOG_LEVEL, `--log-level: "${level}" is not a level`);
  return level as LevelWithSilent;
}

/** Resolves on the first SIGTERM or SIGINT. */
export function untilSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolveSignal) => {
    const on = (signal: NodeJS.Signals): void => {
      process.off('SIGTERM', on);
      process.off('SIGINT', on);
      resolveSignal(signal);
    };
    process.on('SIGTERM', on);
    process.on('SIGINT', on);
  });
}

/** How `--mode kubernetes` reaches the API: --kubeconfig, else in-cluster (a pod's environment), else $KUBECONFIG. */
export function kubeApiAccess(values: { mode: ControlPlaneMode; kubeconfig?: string | undefined; 'kube-context'?: string | undefined }, env: CommandContext['env'], problems: string[]): KubeApiAccess | undefined {
  if (values.mode !== 'kubernetes') {
    if (values.kubeconfig !== undefined || values['kube-context'] !== undefined) problems.push('--kubeconfig and --kube-context need --mode kubernetes');
    return undefined;
  }
  const context = values['kube-context'] === undefined ? {} : { context: values['kube-context'] };
  if (values.kubeconfig !== undefined) return { kind: 'kubeconfig', path: resolve(values.kubeconfig), ...context };
  const host = env.KUBERNETES_SERVICE_HOST ?? '';
  const port = env.KUBERNETES_SERVICE_PORT ?? '';
  if (host !== '' && port !== '' && values['kube-context'] === undefined) return { kind: 'in-cluster', host, port };
  const fromEnv = env.KUBECONFIG ?? '';
  if (fromEnv.includes(':')) {
    problems.push(`--mode kubernetes: $KUBECONFIG lists several files ("${fromEnv}"); pass the one to use with --kubeconfig FILE`);
    return undefined;
  }
  if (fromEnv !== '') return { kind: 'kubeconfig', path: resolve(fromEnv), origin: '$KUBECONFIG', ...context };
  // configConflicts says what is missing.
  return undefined;
}

function parseMode(text: string | undefined, problems: string[]): ControlPlaneMode {
  const mode = text ?? CONTROL_DEFAULTS.mode;
  if (mode === 'universal' || mode === 'kubernetes') return mode;
  problems.push(`--mode: "${mode}" is not universal, kubernetes or global`);
  return CONTROL_DEFAULTS.mode;
}

function parseConfig(argv: readonly string[], env: CommandContext['env']): { config: ControlPlaneConfig | GlobalControlConfig; global: boolean; level: LevelWithSilent } {
  const { values, positionals } = parseFlags(SPEC, argv);
  if (positionals.length !== 1 || positionals[0] !== 'run') throw new InputError(CODE.CLI_USAGE, `expected "trellis control run"\n\n${USAGE}`);
  const problems: string[] = [];
  const attempt = attemptInto(problems);
  if (values['data-dir'] === undefined) problems.push('--data-dir is required');
  existingDirectory(values.policy, '--policy', problems);
  existingDirectory(values['ca-dir'], '--ca-dir', problems);
  if (values.mode === 'global') {
    const config = parseGlobalConfig(values, parseListen, problems);
    const level = attempt(() => parseLogLevel(values['log-level']), 'info' as LevelWithSilent);
    if (problems.length > 0) throw new InputError(CODE.CLI_USAGE, problems.join('\n'));
    return { config, global: true, level };
  }
  const global = parseZoneGlobal(values, problems);
  if (global !== undefined && values.zone === undefined) problems.push('--global needs --zone NAME: the zone this control plane is');
  const zone = values.zone ?? CONTROL_DEFAULTS.zone;
  if (!DNS_LABEL.test(zone)) problems.push(`--zone: "${zone}" must be a DNS label`);
  const rootNamespace = values['root-namespace'] ?? CONTROL_DEFAULTS.rootNamespace;
  if (!DNS_LABEL.test(rootNamespace)) problems.push(`--root-namespace: "${rootNamespace}" must be a DNS label`);
  const mode = parseMode(values.mode, problems);
  const kubernetes = kubeApiAccess({ mode, kubeconfig: values.kubeconfig, 'kube-context': values['kube-context'] }, env, problems);
  const config: ControlPlaneConfig = Object.freeze({
    mode,
    ...(kubernetes === undefined ? {} : { kubernetes: Object.freeze(kubernetes) }),
    dataDir: resolve(values['data-dir'] ?? '.'),
    caDir: values['ca-dir'] === undefined ? undefined : resolve(values['ca-dir']),
    policyDir: values.policy === undefined ? undefined : resolve(values.policy),
    trustDomain: attempt(() => parseTrustDomain(values['trust-domain'] ?? CONTROL_DEFAULTS.trustDomain), ''),
    zone,
    rootNamespace,
    listen: attempt(() => parseListen(values.listen ?? `${CONTROL_DEFAULTS.listen.host}:${CONTROL_DEFAULTS.listen.port}`, '--listen'), CONTROL_DEFAULTS.listen),
    admin: attempt(() => parseListen(values.admin ?? `${CONTROL_DEFAULTS.admin.host}:${CONTROL_DEFAULTS.admin.port}`, '--admin'), CONTROL_DEFAULTS.admin),
    workloadTtlMs: limitFlag(values['workload-ttl'], CONTROL_LIMIT_SCHEMA.workloadTtlMs, '--workload-ttl', attempt),
    disconnectGraceMs: limitFlag(values['disconnect-grace'], CONTROL_LIMIT_SCHEMA.disconnectGraceMs, '--disconnect-grace', attempt),
    startupGraceMs: limitFlag(values['startup-grace'], CONTROL_LIMIT_SCHEMA.startupGraceMs, '--startup-grace', attempt),
    instanceLeaseMs: limitFlag(values['instance-lease'], CONTROL_LIMIT_SCHEMA.instanceLeaseMs, '--instance-lease', attempt),
    instanceLimits: CONTROL_DEFAULTS.instanceLimits,
    pingIntervalMs: limitFlag(values['ping-interval'], CONTROL_LIMIT_SCHEMA.pingIntervalMs, '--ping-interval', attempt),
    maxConnections: CONTROL_DEFAULTS.maxConnections,
    maxWatchBufferBytes: CONTROL_DEFAULTS.maxWatchBufferBytes,
    ...(global === undefined ? {} : { global }),
  });
  const level = attempt(() => parseLogLevel(values['log-level']), 'info' as LevelWithSilent);
  problems.push(...configConflicts(config));
  if (problems.length > 0) throw new InputError(CODE.CLI_USAGE, problems.join('\n'));
  return { config, global: false, level };
}

export const controlCommand: Command = {
  name: 'control',
  usage: USAGE,
  forms: { '': SPEC, run: SPEC },
  async run(argv: readonly string[], ctx: CommandContext): Promise<number> {
    if (argv.length === 0) {
      ctx.stderr.write(USAGE);
      return EXIT_USAGE;
    }
    const { config, global, level } = parseConfig(argv, ctx.env);
    const log = createLogger({ name: global ? 'trellis-global' : 'trellis-control', level });
    // Listening for signals only once started: a failed start must not leave handlers behind, and a
    // signal during start-up may end the process the default way (nothing is serving yet).
    const running = global ? await runGlobal(config as GlobalControlConfig, log) : await startControlPlane(await withZoneCa(config as ControlPlaneConfig), log);
    const signal = untilSignal();
    // One JSON line on stdout when serving: scripts and tests read the bound ports from it (port 0 works).
    const host = (a: { address: string }): string => (a.address.includes(':') ? `[${a.address}]` : a.address);
    ctx.stdout.write(`${JSON.stringify({ event: 'ready', api: `https://${host(running.apiAddress)}:${running.apiAddress.port}`, admin: `http://${host(running.adminAddress)}:${running.adminAddress.port}`, dataDir: config.dataDir })}\n`);
    const received = await signal;
    log.info({ signal: received }, 'stopping');
    await running.close();
    log.flush();
    return EXIT_OK;
  },
};
