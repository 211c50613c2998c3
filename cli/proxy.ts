/**
 * `trellis proxy run --config FILE`: the sidecar proxy alone, from a static YAML config (no control plane).
 * For tests, benchmarks, and anyone who wants only the data plane. The agent runs the same sidecar code
 * with config from the control plane.
 *
 * Certificates rotate without a restart (the files are watched); SIGHUP re-reads the policy files;
 * SIGTERM/SIGINT stop gracefully (stop accepting, let open connections finish, then close).
 */
import { collectDefaultMetrics } from 'prom-client';
import { InputError, describeError } from '../common/errors.js';
import { parseDuration } from '../common/duration.js';
import { createLogger, type Logger } from '../common/log.js';
import type { WorkloadIdentity } from '../api/data-plane.js';
import { compilePolicy } from '../policy/compiled-policy.js';
import { createSidecar, type Sidecar, type SidecarConfig } from '../proxy/sidecar.js';
import { loadStaticConfig, type StaticProxyConfig } from '../proxy/static-config.js';
import { loadPolicyFiles, readIdentityFiles, watchIdentityFiles } from '../proxy/static-files.js';
import { EXIT_FAILURE, EXIT_OK, type Command, type CommandContext } from './command.js';
import { REQUIRED, formatHelp, parseFlags, type CommandSpec } from './flag-spec.js';
import { CODE } from '../common/error-codes.js';

const SPEC = {
  usage: 'trellis proxy run --config FILE [--grace DURATION]',
  about: `Runs a sidecar proxy from a static YAML config: an mTLS tunnel port for inbound mesh traffic, local
listeners for outbound traffic to upstream services, an admin port (/healthz /ready /metrics /config
/certs). Examples: deploy/examples/proxy-server.yaml and proxy-client.yaml (deploy/examples/README.md
makes their certificates).`,
  flags: {
    config: { type: 'string', value: 'FILE', help: 'the proxy config', whenAbsent: REQUIRED },
    grace: { type: 'string', value: 'DURATION', help: 'how long open connections may finish on SIGTERM/SIGINT', whenAbsent: '5s' },
  },
  footer: `When started, one JSON line with the bound addresses is printed on stdout; logs go to stderr.
Certificate files are watched and reloaded on change; SIGHUP re-reads the policy files.`,
} as const satisfies CommandSpec;

const USAGE = formatHelp(SPEC);

async function policyFor(config: StaticProxyConfig): Promise<SidecarConfig['policy']> {
  const policies = await loadPolicyFiles(config.policy);
  return compilePolicy(policies, { trustDomain: config.trustDomain, rootNamespace: config.rootNamespace });
}

function sidecarConfig(config: StaticProxyConfig, policy: SidecarConfig['policy'], version: string): SidecarConfig {
  return { version, upstreams: config.upstreams, listeners: config.listeners, policy, appPorts: config.inbound.appPorts };
}

async function run(argv: readonly string[], ctx: CommandContext): Promise<number> {
  const { values, positionals } = parseFlags(SPEC, argv);
  if (positionals.length > 0) throw new InputError(CODE.CLI_USAGE, `unexpected argument "${positionals[0]}"\n\n${USAGE}`);
  if (values.config === undefined) throw new InputError(CODE.CLI_USAGE, `--config is required\n\n${USAGE}`);
  const graceMs = values.grace === undefined ? 5_000 : parseDuration(values.grace, '--grace');
  const config = await loadStaticConfig(values.config);
  const identity = await readIdentityFiles(config);
  const policy = await policyFor(config);
  const logger = createLogger({ name: 'trellis-proxy', level: config.logLevel });
  const sidecar = createStaticSidecar(config, identity, policy, logger);
  // Process metrics (RSS, heap, event-loop lag, CPU) on the same registry: this process is the sidecar.
  collectDefaultMetrics({ register: sidecar.registry });
  await sidecar.start();
  ctx.stdout.write(`${JSON.stringify(readyEvent(sidecar))}\n`);
  const unwatch = followIdentityFiles(config, sidecar, logger);
  const onHup = policyReloader(config, sidecar, logger);
  process.on('SIGHUP', onHup);
  await untilStopSignal(logger, graceMs);
  process.off('SIGHUP', onHup);
  unwatch();
  // A stop that cannot finish (a peer that never acknowledges anything) must not keep the process alive.
  const hardStop = setTimeout(() => {
    logger.error({ graceMs }, 'graceful stop did not finish; exiting');
    process.exit(EXIT_FAILURE);
  }, graceMs + 5_000);
  hardStop.unref();
  await sidecar.stop(graceMs);
  clearTimeout(hardStop);
  logger.flush();
  // Exit explicitly once everything is closed: Node 20 can spin forever in its exit-time handle cleanup
  // (node::Environment::CleanupHandles) after HTTP/2 sessions over TLS were torn down under load, seen here
  // as a stopped proxy using a full core. Pino's exit hook flushes the log first.
  process.exit(EXIT_OK);
}

function createStaticSidecar(config: StaticProxyConfig, identity: WorkloadIdentity, policy: SidecarConfig['policy'], logger: Logger): Sidecar {
  return createSidecar({
    service: config.service,
    namespace: config.namespace,
    trustDomain: config.trustDomain,
    zone: config.zone,
    identity,
    appPorts: config.inbound.appPorts,
    tunnel: config.tunnel,
    admin: config.admin,
    limits: config.limits,
    pool: config.pool,
    accessLog: config.accessLog,
    logger,
    rootNamespace: config.rootNamespace,
    config: sidecarConfig(config, policy, 'static-1'),
    ...(config.capture === null ? {} : { capture: { ...config.capture, inboundMode: config.inbound.mode } }),
  });
}

/** One JSON line on stdout when serving: scripts and tests read the bound ports from it (port 0 works). */
function readyEvent(sidecar: Sidecar): Record<string, unknown> {
  const addresses = sidecar.addresses();
  return {
    event: 'ready',
    tunnel: addresses.tunnel?.port,
    admin: addresses.admin?.port ?? null,
    listeners: addresses.listeners.map((l) => ({ service: `${l.namespace}/${l.service}`, port: l.port, localPort: l.address?.port })),
    ...(addresses.capture === undefined ? {} : { capture: { outbound: addresses.capture.outbound?.port, inbound: addresses.capture.inbound?.port } }),
  };
}

/** Rotated certificate files become the sidecar's identity; a half-rotated or invalid pair is skipped. */
function followIdentityFiles(config: StaticProxyConfig, sidecar: Sidecar, logger: Logger): () => void {
  return watchIdentityFiles(
    config,
    (next) => {
      try {
        sidecar.setIdentity(next);
      } catch (err) {
        logger.error({ err: describeError(err) }, 'new certificate files rejected; keeping the current identity');
      }
    },
    (err) => logger.warn({ err: describeError(err) }, 'certificate files changed but are not a usable identity yet; keeping the current one'),
  );
}

/** SIGHUP: the policy files are read again; a failure keeps the policy in force. */
function policyReloader(config: StaticProxyConfig, sidecar: Sidecar, logger: Logger): () => void {
  let reloads = 1;
  return () => {
    policyFor(config).then(
      async (next) => {
        reloads += 1;
        await sidecar.applyConfig(sidecarConfig(config, next, `static-${reloads}`));
        logger.info({ policies: config.policy }, 'policy reloaded');
      },
      (err: unknown) => logger.error({ err: describeError(err) }, 'policy reload failed; the previous policy stays in force'),
    );
  };
}

function untilStopSignal(logger: Logger, graceMs: number): Promise<void> {
  return new Promise<void>((resolve) => {
    const onSignal = (signal: NodeJS.Signals): void => {
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
      logger.info({ signal, graceMs }, 'stopping');
      resolve();
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
}

export const proxyCommand: Command = {
  name: 'proxy',
  usage: USAGE,
  forms: { '': SPEC, run: SPEC },
  async run(argv: readonly string[], ctx: CommandContext): Promise<number> {
    const [sub, ...rest] = argv;
    if (sub !== 'run') throw new InputError(CODE.CLI_USAGE, sub === undefined ? `missing subcommand\n\n${USAGE}` : `unknown subcommand "${sub}"\n\n${USAGE}`);
    return run(rest, ctx);
  },
};
