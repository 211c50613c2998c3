/**
 * `trellis agent run`: the agent beside one workload (a VM service or a pod), with its proxy in the same
 * process. Runs until SIGTERM or SIGINT, then deregisters, drains within the grace period and exits.
 */
import { resolve } from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { EXIT_OK, type CommandContext } from './command.js';
import type { AgentSubcommand } from './agent.js';
import { parseListen, parseLogLevel, untilSignal } from './control.js';
import { InputError } from '../common/errors.js';
import { parseDuration } from '../common/duration.js';
import { createLogger } from '../common/log.js';
import { parseTrustDomain } from '../ca/spiffe-id.js';
import { DNS_LABEL } from '../policy/selectors.js';
import { DEFAULT_ROOT_NAMESPACE } from '../policy/types.js';
import { ANY_UPSTREAM } from '../api/control-protocol.js';
import { AGENT_DEFAULTS, type AgentConfig, type UpstreamSpec } from '../agent/config.js';
import { appPortsFromFlags, type PortFlag } from '../agent/app-port-list.js';
import { loadAppProbesFile, type AppProbeTable } from '../agent/app-probes.js';
import { startAgent } from '../agent/agent.js';
import { attemptInto } from './flag-problems.js';

const USAGE = `Usage: trellis agent run --control URL --token-file F --service S [--app-port P [--protocol X]]... [options]

Runs the agent beside a workload: gets and rotates its certificate, registers it, watches its config,
and runs the sidecar proxy in this process.

Options:
  --control URL            the control plane API, e.g. https://10.0.0.5:15012           (required)
  --token-file FILE        join token, or a Kubernetes projected service-account token (audience
                           trellis); re-read at every bootstrap; renewal uses the certificate
  --ca-file FILE           trust bundle for the first contact (<control data-dir>/trust-bundle.pem)
  --service NAME           this workload's service (must match the join token)          (required)
  --namespace NAME         its namespace                                   (default default)
  --app-port PORT          a port the app listens on; repeat for several, or leave out for an
                           app that serves nothing (a Job, a client)
  --protocol http|tcp      how the --app-port just before it is carried    (default tcp)
  --app-host HOST          where the app listens                           (default 127.0.0.1)
  --upstream SPEC          a service this workload calls, as a local port; repeatable:
                           NAME=LOCALPORT, NS/NAME=LOCALPORT, NAME:PORT=LOCALPORT, NAME=HOST:LOCALPORT;
                           with --capture also NAME or NS/NAME alone: reached at its own addresses,
                           and '*' (every service of the mesh) or 'NS/*' (every service of NS);
                           with --capture transparent and no --upstream: '*'
  --data-dir DIR           keep the certificate (key mode 0600) and the last config here, so a restart
                           serves while the control plane is down; nothing is written without it
  --zone NAME              must match the control plane's zone
  --trust-domain NAME      trust domain to ask for (default: the one in the join token)
  --address ADDR           address other sidecars reach this one on (default: the address used to
                           reach the control plane)
  --tunnel HOST:PORT       mTLS tunnel listener                            (default 0.0.0.0:15008)
  --admin HOST:PORT|off    admin: /healthz /ready /metrics /config /certs  (default 127.0.0.1:15000)
  --status HOST:PORT|off   plaintext port for the kubelet: /healthz /ready /app-health/...,
                           and POST /quitquitquit from loopback (drain, exit 0)  (default off)
  --app-probes FILE        the app's original probes (JSON from the injector), run on request at
                           /app-health/<container>/<livez|readyz|startupz> on --status
  --health-check KIND      tcp, or http:/PATH, of the first app port       (default tcp)
  --health-interval DUR    between checks of the app                        (default 5s)
  --drain-grace DUR        on SIGTERM, how long open connections may finish (default 10s)
  --capture MODE           transparent: serve the outbound and inbound capture ports that
                           \`trellis agent redirect install\` sends the workload's TCP to; none (default)
  --outbound-port PORT     with --capture transparent: the outbound capture port      (default 15001)
  --inbound-port PORT      with --capture transparent: the inbound capture port       (default 15006)
  --inbound-mode MODE      with --capture: strict refuses plaintext from outside the mesh, permissive
                           hands it to the app (for migration); counted either way (default strict)
  --outside-mesh POLICY    with --capture: passthrough or refuse destinations outside the mesh
                                                                            (default passthrough)
  --proxy-uid UID          run as this user: started as root, the agent becomes UID (and --proxy-gid,
  --proxy-gid GID          default the same number) before anything else; install the redirect with
                           the same --proxy-uid so this user's own connections are never captured
  --no-access-log          no access log line per request or stream
  --log-level LEVEL        trace|debug|info|warn|error|silent               (default info)
`;

/** `*` or `NS/*`: a subscription, not a listener; only capture can reach what it brings. */
function parseUpstreamWildcard(text: string, capture: boolean): UpstreamSpec | undefined {
  const match = /^(?:([a-z0-9-]+)\/)?\*$/.exec(text);
  if (match === null) return undefined;
  if (!capture) throw new InputError('TRELLIS_CLI_BAD_UPSTREAM', `--upstream "${text}": a wildcard needs --capture transparent (explicit mode binds one local port per named upstream)`);
  const namespace = match[1];
  if (namespace !== undefined && !DNS_LABEL.test(namespace)) throw new InputError('TRELLIS_CLI_BAD_UPSTREAM', `--upstream "${text}": names are DNS labels`);
  return wildcardUpstream(namespace ?? ANY_UPSTREAM);
}

function wildcardUpstream(namespace: string): UpstreamSpec {
  return Object.freeze({ service: ANY_UPSTREAM, namespace, port: undefined, bindAddress: '127.0.0.1', localPort: undefined });
}

function parseUpstream(text: string, defaultNamespace: string, capture: boolean): UpstreamSpec {
  const wildcard = parseUpstreamWildcard(text, capture);
  if (wildcard !== undefined) return wildcard;
  const match = /^(?:([a-z0-9-]+)\/)?([a-z0-9-]+)(?::(\d{1,5}))?(?:=(?:([0-9a-zA-Z.:[\]-]+):)?(\d{1,5}))?$/.exec(text);
  if (match === null || (match[5] === undefined && !capture)) {
    throw new InputError('TRELLIS_CLI_BAD_UPSTREAM', `--upstream "${text}": expected NAME=LOCALPORT (or NS/NAME:PORT=HOST:LOCALPORT; NAME alone with --capture)`);
  }
  const [, namespace, service, port, host, local] = match;
  const localPort = local === undefined ? undefined : Number(local);
  const servicePort = port === undefined ? undefined : Number(port);
  if ((localPort !== undefined && (localPort < 1 || localPort > 65535)) || (servicePort !== undefined && (servicePort < 1 || servicePort > 65535))) {
    throw new InputError('TRELLIS_CLI_BAD_UPSTREAM', `--upstream "${text}": ports are 1-65535`);
  }
  if (!DNS_LABEL.test(service as string) || (namespace !== undefined && !DNS_LABEL.test(namespace))) {
    throw new InputError('TRELLIS_CLI_BAD_UPSTREAM', `--upstream "${text}": names are DNS labels`);
  }
  return Object.freeze({ service: service as string, namespace: namespace ?? defaultNamespace, port: servicePort, bindAddress: (host ?? '127.0.0.1').replace(/^\[|\]$/g, ''), localPort });
}

/** node:util's parseArgs, with an unknown or valueless flag reported as bad input (exit 2) and the usage. */
function parseArgsOrUsage<T extends ParseArgsConfig>(options: T): ReturnType<typeof parseArgs<T>> {
  try {
    return parseArgs(options);
  } catch (err) {
    throw new InputError('TRELLIS_CLI_USAGE', `${(err as Error).message}\n\n${USAGE}`);
  }
}

/** The user the agent becomes (`--proxy-uid`), so the redirect's exemption by uid/gid covers the proxy's own connections. */
export interface ProxyUser {
  readonly uid: number;
  readonly gid: number;
}

export function parseAgentArgs(argv: readonly string[]): { config: AgentConfig; level: ReturnType<typeof parseLogLevel>; proxyUser: ProxyUser | undefined } {
  const { values, positionals, tokens } = parseArgsOrUsage({
    args: [...argv],
    allowPositionals: false,
    tokens: true,
    options: {
      control: { type: 'string' },
      'token-file': { type: 'string' },
      'ca-file': { type: 'string' },
      service: { type: 'string' },
      namespace: { type: 'string' },
      'app-port': { type: 'string', multiple: true },
      'app-host': { type: 'string' },
      protocol: { type: 'string', multiple: true },
      status: { type: 'string' },
      'app-probes': { type: 'string' },
      upstream: { type: 'string', multiple: true },
      'data-dir': { type: 'string' },
      zone: { type: 'string' },
      'trust-domain': { type: 'string' },
      'root-namespace': { type: 'string' },
      address: { type: 'string' },
      tunnel: { type: 'string' },
      admin: { type: 'string' },
      'health-check': { type: 'string' },
      'health-interval': { type: 'string' },
      'drain-grace': { type: 'string' },
      'no-access-log': { type: 'boolean' },
      'log-level': { type: 'string' },
      capture: { type: 'string' },
      'outbound-port': { type: 'string' },
      'inbound-port': { type: 'string' },
      'inbound-mode': { type: 'string' },
      'outside-mesh': { type: 'string' },
      'proxy-uid': { type: 'string' },
      'proxy-gid': { type: 'string' },
    },
  });
  void positionals;
  const problems: string[] = [];
  const attempt = attemptInto(problems);
  let controlUrl = new URL('https://127.0.0.1:15012');
  if (values.control === undefined) problems.push('--control is required');
  else {
    try {
      controlUrl = new URL(values.control);
      if (controlUrl.protocol !== 'https:') problems.push('--control must be an https:// URL');
    } catch {
      problems.push(`--control: "${values.control}" is not a URL`);
    }
  }
  if (values.service === undefined || !DNS_LABEL.test(values.service)) problems.push('--service is required and must be a DNS label');
  const namespace = values.namespace ?? AGENT_DEFAULTS.namespace;
  if (!DNS_LABEL.test(namespace)) problems.push('--namespace must be a DNS label');
  const appHost = values['app-host'] ?? '127.0.0.1';
  const portFlags = tokens.flatMap((t): PortFlag[] => (t.kind === 'option' && (t.name === 'app-port' || t.name === 'protocol') && t.value !== undefined ? [{ name: t.name, value: t.value }] : []));
  const appPorts = appPortsFromFlags(portFlags, appHost, problems);
  const firstPort = appPorts[0];
  if (values['token-file'] === undefined && values['data-dir'] === undefined) problems.push('--token-file is required (or a --data-dir holding a saved certificate)');
  if (values.zone !== undefined && !DNS_LABEL.test(values.zone)) problems.push('--zone must be a DNS label');
  const captureMode = values.capture ?? 'none';
  if (captureMode !== 'transparent' && captureMode !== 'none') problems.push(`--capture: "${captureMode}" is transparent or none`);
  const capture = captureMode === 'transparent';
  const upstreams = (values.upstream ?? []).map((u) => attempt(() => parseUpstream(u, namespace, capture), undefined)).filter((u): u is UpstreamSpec => u !== undefined);
  // Under capture the app may dial any mesh service at its own address: without a list, subscribe to all.
  if (capture && values.upstream === undefined) upstreams.push(wildcardUpstream(ANY_UPSTREAM));
  const health = values['health-check'] ?? 'tcp';
  const healthMatch = /^(tcp|http)(?::(\/\S*))?$/.exec(health);
  if (healthMatch === null) problems.push('--health-check is tcp or http:/PATH');
  if (values['health-check'] !== undefined && firstPort === undefined) problems.push('--health-check needs an --app-port to check');
  const status = values.status === undefined || values.status === 'off' ? null : attempt(() => parseListen(values.status as string, '--status'), null);
  if (values['app-probes'] !== undefined && values.status === undefined) problems.push('--app-probes needs --status: the kubelet asks for the probes there');
  const appProbes: AppProbeTable = values['app-probes'] === undefined ? new Map() : attempt(() => loadAppProbesFile(resolve(values['app-probes'] as string)), new Map());
  const inboundMode = values['inbound-mode'] ?? 'strict';
  if (inboundMode !== 'strict' && inboundMode !== 'permissive') problems.push('--inbound-mode is strict or permissive');
  const outsideMesh = values['outside-mesh'] ?? 'passthrough';
  if (outsideMesh !== 'passthrough' && outsideMesh !== 'refuse') problems.push('--outside-mesh is passthrough or refuse');
  if (!capture && (values['inbound-mode'] !== undefined || values['outside-mesh'] !== undefined)) problems.push('--inbound-mode and --outside-mesh decide what transparent capture does: they need --capture transparent');
  const id = (name: string, text: string | undefined): number | undefined => {
    if (text === undefined) return undefined;
    const n = Number(text);
    if (!/^\d{1,10}$/.test(text) || n > 4_294_967_294) problems.push(`${name}: "${text}" is not a numeric id`);
    return n;
  };
  const proxyUid = id('--proxy-uid', values['proxy-uid']);
  const proxyGid = id('--proxy-gid', values['proxy-gid']);
  if (proxyGid !== undefined && proxyUid === undefined) problems.push('--proxy-gid needs --proxy-uid');
  const proxyUser = proxyUid === undefined ? undefined : Object.freeze({ uid: proxyUid, gid: proxyGid ?? proxyUid });
  const capturePort = (name: string, text: string | undefined, fallback: number): number => {
    if (text === undefined) return fallback;
    if (!capture) problems.push(`${name} needs --capture transparent`);
    const n = Number(text);
    if (!/^\d{1,5}$/.test(text) || n < 1 || n > 65535) problems.push(`${name}: "${text}" is not a port`);
    return n;
  };
  const outboundPort = capturePort('--outbound-port', values['outbound-port'], 15001);
  const inboundPort = capturePort('--inbound-port', values['inbound-port'], 15006);
  const config: AgentConfig = Object.freeze({
    controlUrl,
    caFile: values['ca-file'] === undefined ? undefined : resolve(values['ca-file']),
    tokenFile: values['token-file'] === undefined ? undefined : resolve(values['token-file']),
    service: values.service ?? '',
    namespace,
    zone: values.zone,
    trustDomain: values['trust-domain'] === undefined ? undefined : attempt(() => parseTrustDomain(values['trust-domain'] as string), undefined),
    rootNamespace: values['root-namespace'] ?? DEFAULT_ROOT_NAMESPACE,
    appPorts,
    upstreams: Object.freeze(upstreams),
    dataDir: values['data-dir'] === undefined ? undefined : resolve(values['data-dir']),
    address: values.address,
    tunnel: attempt(() => parseListen(values.tunnel ?? `${AGENT_DEFAULTS.tunnel.host}:${AGENT_DEFAULTS.tunnel.port}`, '--tunnel'), AGENT_DEFAULTS.tunnel),
    admin: values.admin === 'off' ? null : attempt(() => parseListen(values.admin ?? `${AGENT_DEFAULTS.admin.host}:${AGENT_DEFAULTS.admin.port}`, '--admin'), AGENT_DEFAULTS.admin),
    healthCheck: firstPort === undefined ? null : Object.freeze({
      kind: (healthMatch?.[1] ?? 'tcp') as 'tcp' | 'http',
      host: appHost,
      port: firstPort.port,
      path: healthMatch?.[2] ?? '/',
      intervalMs: values['health-interval'] === undefined ? AGENT_DEFAULTS.healthIntervalMs : attempt(() => parseDuration(values['health-interval'] as string, '--health-interval'), AGENT_DEFAULTS.healthIntervalMs),
      timeoutMs: AGENT_DEFAULTS.healthTimeoutMs,
      unhealthyAfter: 2,
    }),
    status,
    appProbes,
    drainGraceMs: values['drain-grace'] === undefined ? AGENT_DEFAULTS.drainGraceMs : attempt(() => parseDuration(values['drain-grace'] as string, '--drain-grace'), AGENT_DEFAULTS.drainGraceMs),
    accessLog: values['no-access-log'] !== true,
    ...(capture ? { capture: Object.freeze({ inboundMode: inboundMode as 'strict' | 'permissive', outsideMesh: outsideMesh as 'passthrough' | 'refuse', outbound: { port: outboundPort }, inbound: { port: inboundPort } }) } : {}),
  });
  const level = attempt(() => parseLogLevel(values['log-level']), 'info' as const);
  if (problems.length > 0) throw new InputError('TRELLIS_CLI_USAGE', `${problems.join('\n')}\n\n${USAGE}`);
  return { config, level, proxyUser };
}

/**
 * Becomes the proxy user before anything else happens (files read, ports bound, connections made), so every
 * connection of the proxy carries the uid and gid the redirect exempts. Started as that user already, there
 * is nothing to do; started as anyone else but root, it cannot, and the proxy's own connections would be
 * captured again: refused.
 */
export function becomeProxyUser(user: ProxyUser): void {
  const uid = process.getuid?.();
  if (uid === user.uid && process.getgid?.() === user.gid) return;
  if (uid !== 0) {
    throw new InputError('TRELLIS_AGENT_PROXY_USER', `--proxy-uid ${user.uid}: this process runs as uid ${String(uid)}; start it as root (it then becomes ${user.uid}:${user.gid}) or as that user and group`);
  }
  // Groups first: once the uid is dropped they can no longer be changed. Root's supplementary groups go.
  process.setgroups?.([user.gid]);
  process.setgid?.(user.gid);
  process.setuid?.(user.uid);
}

export const runSubcommand: AgentSubcommand = {
  name: 'run',
  summary: 'run the agent and its sidecar proxy beside a workload',
  async run(argv: readonly string[], ctx: CommandContext): Promise<number> {
    if (argv.includes('--help') || argv.includes('-h')) {
      ctx.stdout.write(USAGE);
      return EXIT_OK;
    }
    const { config, level, proxyUser } = parseAgentArgs(argv);
    if (proxyUser !== undefined) becomeProxyUser(proxyUser);
    const log = createLogger({ name: `trellis-agent`, level }).child({ workload: `${config.namespace}/${config.service}` });
    const signal = untilSignal();
    const abort = new AbortController();
    void signal.then(() => abort.abort());
    // A loopback POST /quitquitquit on the status port (a Job's app is done) stops the agent like SIGTERM.
    let quitRequested = (): void => undefined;
    const quit = new Promise<'quitquitquit'>((resolveQuit) => {
      quitRequested = () => {
        resolveQuit('quitquitquit');
        abort.abort();
      };
    });
    let agent;
    try {
      agent = await startAgent(config, log, { signal: abort.signal, onQuitRequested: () => quitRequested() });
    } catch (err) {
      // SIGTERM while still waiting for the control plane: nothing runs yet, so nothing to drain.
      if (abort.signal.aborted) return EXIT_OK;
      throw err;
    }
    const addresses = agent.addresses();
    // One JSON line on stdout when serving: scripts and tests read the bound ports from it (port 0 works).
    ctx.stdout.write(`${JSON.stringify({ event: 'ready', spiffeId: agent.status().spiffeId, tunnel: addresses.tunnel?.port ?? null, admin: addresses.agentAdmin?.port ?? null, status: addresses.status?.port ?? null })}\n`);
    const received = await Promise.race([signal, quit]);
    log.info({ signal: received, graceMs: config.drainGraceMs }, 'stopping: deregistering and draining');
    await agent.stop();
    log.flush();
    return EXIT_OK;
  },
};
