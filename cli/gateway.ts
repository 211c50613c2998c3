/**
 * `trellis gateway run --config FILE`: the mesh gateway (gateway/), north-south traffic into the mesh. It
 * joins its zone's control plane like an agent, with its own mesh identity, and serves the listeners and
 * routes of its config file; the file is polled and reloaded (a bad one is refused whole, the last good
 * one stays). SIGTERM/SIGINT drain and stop.
 */
import { parseAllDocuments, stringify } from 'yaml';
import { InputError } from '../common/errors.js';
import { readConfigFile } from '../common/yaml-source.js';
import { translateGatewayApi } from '../gateway/gateway-api.js';
import { CODE } from '../common/error-codes.js';
import { createLogger } from '../common/log.js';
import { loadGatewayConfig } from '../gateway/config-reader.js';
import { startGateway, type RunningGateway } from '../gateway/gateway.js';
import { prepareKubernetes } from './gateway-kubernetes.js';
import { EXIT_OK, EXIT_USAGE, type Command, type CommandContext } from './command.js';
import { parseLogLevel, untilSignal } from './control.js';
import { REQUIRED, formatHelp, parseFlags, type CommandSpec } from './flag-spec.js';

const SPEC = {
  usage: 'trellis gateway run --config FILE [--kubernetes --gateway NS/NAME [options]] [--log-level LEVEL]',
  about: `Runs the mesh gateway: HTTP and HTTPS listeners for clients outside the mesh, routes by host, path,
method, headers and query to mesh services, JWT, rate limits, CORS and size limits at the edge. It joins
the zone control plane with its own identity (spiffe://TD/ns/<namespace>/sa/<name>), so TrafficPermission
decides which services it may reach. Example: deploy/kubernetes/gateway/gateway.yaml.

With --kubernetes, the listeners and routes come from the Gateway API (a Gateway of a GatewayClass whose
controllerName is trellis.dev/gateway-controller, and the HTTPRoutes and GRPCRoutes attached to it), watched
and applied on change; the file gives the rest and leaves out listeners and routes. Statuses are written.`,
  flags: {
    config: { type: 'string', value: 'FILE', help: 'the gateway config (YAML); with --kubernetes, without listeners and routes', whenAbsent: REQUIRED },
    kubernetes: { type: 'boolean', help: 'listeners and routes from the Gateway API (Gateway, HTTPRoute, GRPCRoute)', whenAbsent: 'from the file' },
    gateway: { type: 'string', value: 'NS/NAME', help: 'with --kubernetes: the Gateway to serve', whenAbsent: 'required with --kubernetes' },
    kubeconfig: { type: 'string', value: 'FILE', help: 'with --kubernetes: the API through this kubeconfig instead of in-cluster', whenAbsent: 'in-cluster, else $KUBECONFIG' },
    'kube-context': { type: 'string', value: 'NAME', help: 'with --kubernetes: a context of the kubeconfig', whenAbsent: 'its current context' },
    'listen-address': { type: 'string', value: 'ADDR', help: "with --kubernetes: the address the Gateway's listeners bind", whenAbsent: '0.0.0.0' },
    'secret-dir': { type: 'string', value: 'DIR', help: "with --kubernetes: where the listeners' TLS Secrets are written (private, writable)", whenAbsent: 'a temporary directory removed at exit' },
    'log-level': { type: 'string', value: 'LEVEL', help: 'trace|debug|info|warn|error|silent', whenAbsent: 'info' },
  },
  footer: `When serving, one JSON line with the bound addresses is printed on stdout; logs go to stderr.
The config file is watched: a valid change applies to new requests, an invalid one is refused whole.
With --kubernetes the file is read once and the Gateway API objects are watched instead, with the same rule.`,
} as const satisfies CommandSpec;

const TRANSLATE = {
  usage: 'trellis gateway translate --objects FILE --gateway NS/NAME --control URL --cert-dir DIR [--token-file F] [--ca-file F]',
  about: `Translates Kubernetes Gateway API objects (Gateway, HTTPRoute, GRPCRoute; YAML documents, or the JSON
of \`kubectl get gateways,httproutes,grpcroutes -A -o json\`) into a gateway config, validated as
\`trellis gateway run\` validates its file, and prints it as YAML. What cannot be served is refused by name.`,
  flags: {
    objects: { type: 'string', value: 'FILE', help: 'the Gateway API objects', whenAbsent: REQUIRED },
    gateway: { type: 'string', value: 'NS/NAME', help: 'the Gateway to build', whenAbsent: REQUIRED },
    control: { type: 'string', value: 'URL', help: 'the zone control plane API (mesh.control)', whenAbsent: REQUIRED },
    'cert-dir': { type: 'string', value: 'DIR', help: 'where certificateRefs Secrets are mounted: DIR/<ns>/<name>/tls.{crt,key}', whenAbsent: REQUIRED },
    'token-file': { type: 'string', value: 'FILE', help: 'mesh.tokenFile', whenAbsent: 'none' },
    'ca-file': { type: 'string', value: 'FILE', help: 'mesh.caFile', whenAbsent: 'none' },
  },
} as const satisfies CommandSpec;

async function translate(argv: readonly string[], ctx: CommandContext): Promise<number> {
  const { values } = parseFlags(TRANSLATE, argv);
  for (const flag of ['objects', 'gateway', 'control', 'cert-dir'] as const) {
    if (values[flag] === undefined) throw new InputError(CODE.CLI_USAGE, `--${flag} is required\n\n${formatHelp(TRANSLATE)}`);
  }
  const [namespace, name] = (values.gateway as string).split('/');
  if (namespace === undefined || name === undefined) throw new InputError(CODE.CLI_USAGE, '--gateway: expected NS/NAME');
  const source = await readConfigFile(values.objects as string);
  const objects = parseAllDocuments(source.text).flatMap((d) => {
    const v = d.toJS() as { kind?: string; items?: unknown[] } | null;
    return v?.kind === 'List' && Array.isArray(v.items) ? v.items : v === null ? [] : [v];
  });
  const mesh = { control: values.control, ...(values['token-file'] === undefined ? {} : { tokenFile: values['token-file'] }), ...(values['ca-file'] === undefined ? {} : { caFile: values['ca-file'] }) };
  const config = translateGatewayApi(objects, { gateway: { namespace, name }, mesh, certDir: values['cert-dir'] as string }, source.path);
  const plain = JSON.parse(JSON.stringify({ ...config, file: undefined, mesh: { ...config.mesh, control: String(config.mesh.control) } }, (_k, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? undefined : v))) as Record<string, unknown>;
  ctx.stdout.write(stringify(toFileForm(plain)));
  return EXIT_OK;
}

/** The validated config back in the file's own field names (durations in ms become "Nms"). */
function toFileForm(config: Record<string, unknown>): Record<string, unknown> {
  const limits = config.limits as Record<string, number>;
  const routes = (config.routes as Record<string, unknown>[]).map((r) => {
    const { timeoutMs, ...rest } = r;
    return timeoutMs === undefined ? rest : { ...rest, timeout: `${String(timeoutMs)}ms` };
  });
  const mesh = config.mesh as Record<string, unknown>;
  return {
    name: config.name,
    namespace: config.namespace,
    mesh: { control: mesh.control, ...(mesh.tokenFile === undefined ? {} : { tokenFile: mesh.tokenFile }), ...(mesh.caFile === undefined ? {} : { caFile: mesh.caFile }) },
    listeners: config.listeners,
    routes,
    limits: { maxHeaderBytes: limits.maxHeaderBytes, maxBodyBytes: limits.maxBodyBytes },
  };
}

async function run(argv: readonly string[], ctx: CommandContext): Promise<number> {
  const { values, positionals } = parseFlags(SPEC, argv);
  if (positionals.length > 0) throw new InputError(CODE.CLI_USAGE, `unexpected argument "${positionals[0]}"\n\n${formatHelp(SPEC)}`);
  if (values.config === undefined) throw new InputError(CODE.CLI_USAGE, `--config is required\n\n${formatHelp(SPEC)}`);
  const level = parseLogLevel(values['log-level']);
  const k8sOnly = (['gateway', 'kubeconfig', 'kube-context', 'listen-address', 'secret-dir'] as const).filter((f) => values[f] !== undefined);
  if (values.kubernetes !== true && k8sOnly.length > 0) throw new InputError(CODE.CLI_USAGE, `--${k8sOnly[0] as string} needs --kubernetes`);
  const starter = values.kubernetes === true ? await prepareKubernetes({ ...values, config: values.config }, ctx) : undefined;
  const signal = untilSignal();
  const abort = new AbortController();
  void signal.then(() => abort.abort());
  if (starter !== undefined) {
    const log = createLogger({ name: 'trellis-gateway', level }).child({ gateway: values.gateway });
    const { gateway: k8s, cleanup } = starter(log, abort.signal);
    const gateway = await Promise.race([k8s.serving(), signal.then(() => undefined)]);
    if (gateway !== undefined) ready(ctx, gateway);
    const received = await signal;
    log.info({ signal: received }, 'stopping: draining the listeners and deregistering');
    await k8s.stop();
    cleanup();
    log.flush();
    return EXIT_OK;
  }
  const config = await loadGatewayConfig(values.config);
  const log = createLogger({ name: 'trellis-gateway', level }).child({ gateway: `${config.namespace}/${config.name}` });
  let gateway;
  try {
    gateway = await startGateway(config, log, { signal: abort.signal });
  } catch (err) {
    if (abort.signal.aborted) return EXIT_OK;
    throw err;
  }
  ready(ctx, gateway);
  const received = await signal;
  log.info({ signal: received }, 'stopping: draining the listeners and deregistering');
  await gateway.stop();
  log.flush();
  return EXIT_OK;
}

function ready(ctx: CommandContext, gateway: RunningGateway): void {
  const agent = gateway.agent.addresses();
  ctx.stdout.write(`${JSON.stringify({ event: 'ready', spiffeId: gateway.agent.status().spiffeId, admin: agent.agentAdmin?.port ?? null, listeners: Object.fromEntries(gateway.listeners().map((l) => [l.name, l.address.port])) })}\n`);
}

export const gatewayCommand: Command = {
  name: 'gateway',
  usage: formatHelp(SPEC),
  forms: { run: SPEC, translate: TRANSLATE },
  async run(argv: readonly string[], ctx: CommandContext): Promise<number> {
    const [sub, ...rest] = argv;
    if (sub === 'translate') return translate(rest, ctx);
    if (sub !== 'run') {
      ctx.stdout.write(formatHelp(SPEC));
      return sub === '--help' || sub === '-h' ? EXIT_OK : EXIT_USAGE;
    }
    return run(rest, ctx);
  },
};
