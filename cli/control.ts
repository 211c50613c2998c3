/**
 * `trellis control run`: a zone control plane with the embedded file store. Runs until SIGTERM or
 * SIGINT, then closes its listeners and watch streams (agents keep serving and reconnect by themselves).
 */
import { parseArgs } from 'node:util';
import { resolve } from 'node:path';
import type { LevelWithSilent } from 'pino';
import { EXIT_OK, EXIT_USAGE, type Command, type CommandContext } from './command.js';
import { InputError } from '../common/errors.js';
import { parseDuration } from '../common/duration.js';
import { createLogger } from '../common/log.js';
import { parseTrustDomain } from '../ca/spiffe-id.js';
import { DNS_LABEL } from '../policy/selectors.js';
import { CONTROL_DEFAULTS, type ControlPlaneConfig, type ListenAddress } from '../control/config.js';
import { startControlPlane } from '../control/control-plane.js';

const USAGE = `Usage: trellis control run --data-dir DIR [options]

Runs a zone control plane: mesh CA and zone intermediate, join tokens, certificate issuance and
renewal, the service registry, policy distribution to agents.

Options:
  --data-dir DIR          state (CA keys, tokens, registrations); created on first start   (required)
  --ca-dir DIR            the operator's CA (ca.crt, ca.key, bundle.pem, as \`trellis ca init\` writes)
                          instead of a root made in the data dir
  --policy DIR            TrafficPermission YAML files, watched; nothing is allowed without one
  --trust-domain NAME     SPIFFE trust domain                         (default ${CONTROL_DEFAULTS.trustDomain})
  --zone NAME             this control plane's zone                   (default ${CONTROL_DEFAULTS.zone})
  --root-namespace NS     namespace of mesh-wide policies             (default ${CONTROL_DEFAULTS.rootNamespace})
  --listen HOST:PORT      HTTPS API for agents                        (default ${CONTROL_DEFAULTS.listen.host}:${CONTROL_DEFAULTS.listen.port})
  --admin HOST:PORT       admin: /healthz /ready /metrics /registry /policy (default ${CONTROL_DEFAULTS.admin.host}:${CONTROL_DEFAULTS.admin.port})
  --workload-ttl DURATION lifetime of workload certificates           (default 24h)
  --disconnect-grace DUR  endpoint stays healthy this long after its agent disconnects (default 3s)
  --startup-grace DUR     restored endpoints keep their state this long after a restart (default 30s)
  --ping-interval DUR     watch keepalive interval                    (default 10s)
  --log-level LEVEL       trace|debug|info|warn|error|silent          (default info)
`;

export function parseListen(text: string, what: string): ListenAddress {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(text);
  const port = Number(match?.[3]);
  if (match === null || !Number.isInteger(port) || port > 65535) throw new InputError('TRELLIS_CLI_BAD_ADDRESS', `${what}: "${text}" is not HOST:PORT (port 0-65535)`);
  return Object.freeze({ host: (match[1] ?? match[2]) as string, port });
}

export function parseLogLevel(text: string | undefined): LevelWithSilent {
  const level = text ?? 'info';
  if (!['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'].includes(level)) throw new InputError('TRELLIS_CLI_BAD_LOG_LEVEL', `--log-level: "${level}" is not a level`);
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

function parseConfig(argv: readonly string[]): { config: ControlPlaneConfig; level: LevelWithSilent } {
  const { values, positionals } = parseArgs({
    args: [...argv],
    allowPositionals: true,
    options: {
      'data-dir': { type: 'string' },
      'ca-dir': { type: 'string' },
      policy: { type: 'string' },
      'trust-domain': { type: 'string' },
      zone: { type: 'string' },
      'root-namespace': { type: 'string' },
      listen: { type: 'string' },
      admin: { type: 'string' },
      'workload-ttl': { type: 'string' },
      'disconnect-grace': { type: 'string' },
      'startup-grace': { type: 'string' },
      'ping-interval': { type: 'string' },
      'log-level': { type: 'string' },
    },
  });
  if (positionals.length !== 1 || positionals[0] !== 'run') throw new InputError('TRELLIS_CLI_USAGE', `expected "trellis control run"\n\n${USAGE}`);
  const problems: string[] = [];
  const attempt = <T>(fn: () => T, fallback: T): T => {
    try {
      return fn();
    } catch (err) {
      problems.push((err as Error).message);
      return fallback;
    }
  };
  if (values['data-dir'] === undefined) problems.push('--data-dir is required');
  const zone = values.zone ?? CONTROL_DEFAULTS.zone;
  if (!DNS_LABEL.test(zone)) problems.push(`--zone: "${zone}" must be a DNS label`);
  const rootNamespace = values['root-namespace'] ?? CONTROL_DEFAULTS.rootNamespace;
  if (!DNS_LABEL.test(rootNamespace)) problems.push(`--root-namespace: "${rootNamespace}" must be a DNS label`);
  const config: ControlPlaneConfig = Object.freeze({
    dataDir: resolve(values['data-dir'] ?? '.'),
    caDir: values['ca-dir'] === undefined ? undefined : resolve(values['ca-dir']),
    policyDir: values.policy === undefined ? undefined : resolve(values.policy),
    trustDomain: attempt(() => parseTrustDomain(values['trust-domain'] ?? CONTROL_DEFAULTS.trustDomain), ''),
    zone,
    rootNamespace,
    listen: attempt(() => parseListen(values.listen ?? `${CONTROL_DEFAULTS.listen.host}:${CONTROL_DEFAULTS.listen.port}`, '--listen'), CONTROL_DEFAULTS.listen),
    admin: attempt(() => parseListen(values.admin ?? `${CONTROL_DEFAULTS.admin.host}:${CONTROL_DEFAULTS.admin.port}`, '--admin'), CONTROL_DEFAULTS.admin),
    workloadTtlMs: values['workload-ttl'] === undefined ? CONTROL_DEFAULTS.workloadTtlMs : attempt(() => parseDuration(values['workload-ttl'] as string, '--workload-ttl'), 0),
    disconnectGraceMs: values['disconnect-grace'] === undefined ? CONTROL_DEFAULTS.disconnectGraceMs : attempt(() => parseDuration(values['disconnect-grace'] as string, '--disconnect-grace'), 0),
    startupGraceMs: values['startup-grace'] === undefined ? CONTROL_DEFAULTS.startupGraceMs : attempt(() => parseDuration(values['startup-grace'] as string, '--startup-grace'), 0),
    expireAfterMs: CONTROL_DEFAULTS.expireAfterMs,
    pingIntervalMs: values['ping-interval'] === undefined ? CONTROL_DEFAULTS.pingIntervalMs : attempt(() => parseDuration(values['ping-interval'] as string, '--ping-interval'), 0),
    maxConnections: CONTROL_DEFAULTS.maxConnections,
    maxWatchBufferBytes: CONTROL_DEFAULTS.maxWatchBufferBytes,
  });
  const level = attempt(() => parseLogLevel(values['log-level']), 'info' as LevelWithSilent);
  if (problems.length > 0) throw new InputError('TRELLIS_CLI_USAGE', problems.join('\n'));
  return { config, level };
}

export const controlCommand: Command = {
  name: 'control',
  usage: USAGE,
  async run(argv: readonly string[], ctx: CommandContext): Promise<number> {
    if (argv.length === 0) {
      ctx.stderr.write(USAGE);
      return EXIT_USAGE;
    }
    const { config, level } = parseConfig(argv);
    const log = createLogger({ name: 'trellis-control', level });
    const signal = untilSignal();
    const running = await startControlPlane(config, log);
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
