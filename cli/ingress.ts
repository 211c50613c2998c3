/**
 * `trellis ingress run`: a zone ingress (agent/ingress-run.ts; design in docs/architecture.md "Zone
 * ingress"). Runs until SIGTERM or SIGINT, then deregisters, sends GOAWAY, drains and exits.
 */
import { InputError } from '../common/errors.js';
import { CODE } from '../common/error-codes.js';
import { createLogger } from '../common/log.js';
import { parseDuration } from '../common/duration.js';
import { parseSpiffeId, parseTrustDomain } from '../ca/spiffe-id.js';
import { DEFAULT_ROOT_NAMESPACE } from '../policy/types.js';
import { DNS_LABEL } from '../policy/selectors.js';
import { startIngress, type IngressConfig } from '../agent/ingress-run.js';
import { EXIT_OK, EXIT_USAGE, type Command, type CommandContext } from './command.js';
import { parseControlUrl, readableFile } from './agent-run.js';
import { parseListen, parseLogLevel, untilSignal } from './control.js';
import { formatHelp, parseFlags, REQUIRED, type CommandSpec } from './flag-spec.js';

export const DEFAULT_INGRESS_PORT = 15443;

const SPEC = {
  usage: 'trellis ingress run --control URL --ca-file F --token-file F --public-address HOST:PORT [options]',
  about: `Runs a zone ingress: the way into this zone for other zones' sidecars. It joins the zone control plane
as <root-namespace>/trellis-ingress (make its token with \`trellis token create --ingress\`: no other token
carries that identity), registers --public-address (the zone publishes it to the other zones through the
global control plane), and forwards each authenticated caller's CONNECT stream to a healthy endpoint of the
named service in this zone, if the zone exports that service. Callers keep end-to-end TLS with the
destination inside the stream.`,
  flags: {
    control: { type: 'string', value: 'URL', help: 'the zone control plane API, e.g. https://10.0.0.5:15012', whenAbsent: REQUIRED },
    'token-file': { type: 'string', value: 'FILE', help: 'join token made by `trellis token create --ingress`, or a\nprojected service-account token', whenAbsent: 'required unless --data-dir holds a saved certificate' },
    'ca-file': { type: 'string', value: 'FILE', help: "trust bundle for the first contact (<control data-dir>/trust-bundle.pem)", whenAbsent: 'required unless --data-dir holds a saved certificate' },
    listen: { type: 'string', value: 'HOST:PORT', help: 'the ingress port', whenAbsent: `0.0.0.0:${DEFAULT_INGRESS_PORT}` },
    'public-address': { type: 'string', value: 'HOST:PORT', help: "where other zones' sidecars reach this ingress (port 0: the bound one)", whenAbsent: REQUIRED },
    'admit-zone': { type: 'string', multiple: true, value: 'ZONE', help: 'admit callers of this zone only; repeatable', whenAbsent: 'every zone' },
    'refuse-identity': { type: 'string', multiple: true, value: 'SPIFFE-ID', help: 'refuse this caller outright; repeatable', whenAbsent: 'none' },
    admin: { type: 'string', value: 'HOST:PORT|off', help: 'admin: /healthz /ready /metrics /config', whenAbsent: '127.0.0.1:15000' },
    'data-dir': { type: 'string', value: 'DIR', help: 'keep the certificate and instance id here across restarts', whenAbsent: 'nothing is written' },
    'trust-domain': { type: 'string', value: 'NAME', help: 'trust domain to ask for', whenAbsent: 'the one in the join token, else the --ca-file roots' },
    'root-namespace': { type: 'string', value: 'NS', help: "the mesh's root namespace", whenAbsent: DEFAULT_ROOT_NAMESPACE },
    grace: { type: 'string', value: 'DURATION', help: 'on SIGTERM, how long open streams may finish', whenAbsent: '10s' },
    'log-level': { type: 'string', value: 'LEVEL', help: 'trace|debug|info|warn|error|silent', whenAbsent: 'info' },
  },
  footer: 'When serving, one JSON line with the bound ports is printed on stdout; logs go to stderr.',
} as const satisfies CommandSpec;

const USAGE = `Usage: trellis ingress run [options]\n\n${formatHelp(SPEC)}`;

export function parseIngressArgs(argv: readonly string[]): { config: IngressConfig; graceMs: number; level: ReturnType<typeof parseLogLevel> } {
  const { values, positionals } = parseFlags(SPEC, argv);
  if (positionals.length > 0) throw new InputError(CODE.CLI_USAGE, `unexpected argument "${positionals[0]}"\n\n${USAGE}`);
  const problems: string[] = [];
  const attempt = <T>(fn: () => T, fallback: T): T => {
    try {
      return fn();
    } catch (err) {
      problems.push((err as Error).message);
      return fallback;
    }
  };
  const controlUrl = parseControlUrl(values.control, problems);
  if (values['token-file'] === undefined && values['data-dir'] === undefined) problems.push('--token-file is required (or a --data-dir holding a saved certificate)');
  readableFile(values['ca-file'], '--ca-file', problems);
  const listen = attempt(() => parseListen(values.listen ?? `0.0.0.0:${DEFAULT_INGRESS_PORT}`, '--listen'), { host: '0.0.0.0', port: DEFAULT_INGRESS_PORT });
  if (values['public-address'] === undefined) problems.push('--public-address is required: other zones dial it');
  const publicAddress = attempt(() => parseListen(values['public-address'] ?? '127.0.0.1:0', '--public-address'), { host: '127.0.0.1', port: 0 });
  if (publicAddress.host === '0.0.0.0' || publicAddress.host === '::') problems.push('--public-address must be an address other zones can dial, not a wildcard');
  const admitZones = values['admit-zone'] ?? [];
  for (const z of admitZones) if (!DNS_LABEL.test(z)) problems.push(`--admit-zone: "${z}" is not a zone name`);
  const refuseIdentities = (values['refuse-identity'] ?? []).map((id) => attempt(() => parseSpiffeId(id).toString(), id));
  const rootNamespace = values['root-namespace'] ?? DEFAULT_ROOT_NAMESPACE;
  if (!DNS_LABEL.test(rootNamespace)) problems.push('--root-namespace must be a DNS label');
  const trustDomain = values['trust-domain'] === undefined ? undefined : attempt(() => parseTrustDomain(values['trust-domain'] as string), undefined);
  const admin = values.admin === 'off' ? null : attempt(() => parseListen(values.admin ?? '127.0.0.1:15000', '--admin'), null);
  const graceMs = attempt(() => parseDuration(values.grace ?? '10s', '--grace'), 10_000);
  const level = attempt(() => parseLogLevel(values['log-level']), 'info');
  if (problems.length > 0) throw new InputError(CODE.CLI_USAGE, `${problems.join('\n')}\n\n${USAGE}`);
  const config: IngressConfig = Object.freeze({
    controlUrl,
    caFile: values['ca-file'],
    tokenFile: values['token-file'],
    trustDomain,
    rootNamespace,
    listen,
    publicAddress,
    rules: Object.freeze({ admitZones: admitZones.length === 0 ? '*' : Object.freeze([...admitZones]), refuseIdentities: Object.freeze(refuseIdentities) }),
    admin,
    dataDir: values['data-dir'],
  });
  return { config, graceMs, level };
}

async function run(argv: readonly string[], ctx: CommandContext): Promise<number> {
  const { config, graceMs, level } = parseIngressArgs(argv);
  const log = createLogger({ name: 'trellis-ingress', level });
  const signal = untilSignal();
  const abort = new AbortController();
  void signal.then(() => abort.abort());
  let ingress;
  try {
    ingress = await startIngress(config, log, abort.signal);
  } catch (err) {
    if (abort.signal.aborted) return EXIT_OK;
    throw err;
  }
  const addresses = ingress.addresses();
  ctx.stdout.write(`${JSON.stringify({ event: 'ready', ingress: addresses.ingress?.port ?? null, admin: addresses.admin?.port ?? null })}\n`);
  const received = await signal;
  log.info({ signal: received, graceMs }, 'stopping: deregistering and draining');
  await ingress.stop(graceMs);
  log.flush();
  return EXIT_OK;
}

export const ingressCommand: Command = {
  name: 'ingress',
  usage: USAGE,
  forms: { run: SPEC },
  async run(argv: readonly string[], ctx: CommandContext): Promise<number> {
    const [sub, ...rest] = argv;
    if (sub === 'run') return run(rest, ctx);
    if (sub === undefined || sub === '--help' || sub === '-h' || sub === 'help') {
      ctx.stdout.write(USAGE);
      return sub === undefined ? EXIT_USAGE : EXIT_OK;
    }
    throw new InputError(CODE.CLI_USAGE, `unknown ingress subcommand "${sub}"\n\n${USAGE}`);
  },
};
