/**
 * `trellis gateway run --config FILE`: the mesh gateway (gateway/), north-south traffic into the mesh. It
 * joins its zone's control plane like an agent, with its own mesh identity, and serves the listeners and
 * routes of its config file; the file is polled and reloaded (a bad one is refused whole, the last good
 * one stays). SIGTERM/SIGINT drain and stop.
 */
import { InputError } from '../common/errors.js';
import { CODE } from '../common/error-codes.js';
import { createLogger } from '../common/log.js';
import { loadGatewayConfig } from '../gateway/config-reader.js';
import { startGateway } from '../gateway/gateway.js';
import { EXIT_OK, EXIT_USAGE, type Command, type CommandContext } from './command.js';
import { parseLogLevel, untilSignal } from './control.js';
import { REQUIRED, formatHelp, parseFlags, type CommandSpec } from './flag-spec.js';

const SPEC = {
  usage: 'trellis gateway run --config FILE [--log-level LEVEL]',
  about: `Runs the mesh gateway: HTTP and HTTPS listeners for clients outside the mesh, routes by host, path,
method, headers and query to mesh services, JWT, rate limits, CORS and size limits at the edge. It joins
the zone control plane with its own identity (spiffe://TD/ns/<namespace>/sa/<name>), so TrafficPermission
decides which services it may reach. Example: deploy/examples/gateway.yaml.`,
  flags: {
    config: { type: 'string', value: 'FILE', help: 'the gateway config (YAML)', whenAbsent: REQUIRED },
    'log-level': { type: 'string', value: 'LEVEL', help: 'trace|debug|info|warn|error|silent', whenAbsent: 'info' },
  },
  footer: `When serving, one JSON line with the bound addresses is printed on stdout; logs go to stderr.
The config file is watched: a valid change applies to new requests, an invalid one is refused whole.`,
} as const satisfies CommandSpec;

async function run(argv: readonly string[], ctx: CommandContext): Promise<number> {
  const { values, positionals } = parseFlags(SPEC, argv);
  if (positionals.length > 0) throw new InputError(CODE.CLI_USAGE, `unexpected argument "${positionals[0]}"\n\n${formatHelp(SPEC)}`);
  if (values.config === undefined) throw new InputError(CODE.CLI_USAGE, `--config is required\n\n${formatHelp(SPEC)}`);
  const config = await loadGatewayConfig(values.config);
  const level = parseLogLevel(values['log-level']);
  const log = createLogger({ name: 'trellis-gateway', level }).child({ gateway: `${config.namespace}/${config.name}` });
  const signal = untilSignal();
  const abort = new AbortController();
  void signal.then(() => abort.abort());
  let gateway;
  try {
    gateway = await startGateway(config, log, { signal: abort.signal });
  } catch (err) {
    if (abort.signal.aborted) return EXIT_OK;
    throw err;
  }
  const agent = gateway.agent.addresses();
  ctx.stdout.write(`${JSON.stringify({ event: 'ready', spiffeId: gateway.agent.status().spiffeId, admin: agent.agentAdmin?.port ?? null, listeners: Object.fromEntries(gateway.listeners().map((l) => [l.name, l.address.port])) })}\n`);
  const received = await signal;
  log.info({ signal: received }, 'stopping: draining the listeners and deregistering');
  await gateway.stop();
  log.flush();
  return EXIT_OK;
}

export const gatewayCommand: Command = {
  name: 'gateway',
  usage: formatHelp(SPEC),
  forms: { run: SPEC },
  async run(argv: readonly string[], ctx: CommandContext): Promise<number> {
    const [sub, ...rest] = argv;
    if (sub !== 'run') {
      ctx.stdout.write(formatHelp(SPEC));
      return sub === '--help' || sub === '-h' ? EXIT_OK : EXIT_USAGE;
    }
    return run(rest, ctx);
  },
};
