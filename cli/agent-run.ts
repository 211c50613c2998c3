/**
 * `trellis agent run`: the agent beside one workload (a VM service or a pod), with its proxy in the same
 * process. Runs until SIGTERM or SIGINT, then deregisters, drains within the grace period and exits.
 */
import { accessSync, constants as fsConstants } from 'node:fs';
import { resolve } from 'node:path';
import { EXIT_OK, type CommandContext } from './command.js';
import type { AgentSubcommand } from './agent.js';
import { parseListen, parseLogLevel, untilSignal } from './control.js';
import { InputError } from '../common/errors.js';
import { createLogger } from '../common/log.js';
import { parseTrustDomain } from '../ca/spiffe-id.js';
import { DNS_LABEL } from '../policy/selectors.js';
import { DEFAULT_ROOT_NAMESPACE } from '../policy/types.js';
import { ANY_UPSTREAM } from '../api/control-protocol.js';
import { isSubzone, SUBZONE_LABEL } from '../api/data-plane.js';
import { AGENT_DEFAULTS, type AgentConfig, type UpstreamSpec } from '../agent/config.js';
import { appPortsFromFlags, type PortFlag } from '../agent/app-port-list.js';
import { loadAppProbesFile, type AppProbeTable } from '../agent/app-probes.js';
import { isIP } from 'node:net';
import { startAgent } from '../agent/agent.js';
import { attemptInto, limitFlag } from './flag-problems.js';
import { AGENT_LIMIT_SCHEMA, AGENT_LIMITS } from '../agent/limits.js';
import { formatLimit } from '../common/limit-schema.js';
import { RedirectCheck } from '../agent/redirect-check.js';
import { REQUIRED, formatHelp, parseFlags, type CommandSpec } from './flag-spec.js';
import { CODE } from '../common/error-codes.js';
import { LABEL_KEY, LABEL_VALUE } from '../policy/traffic/spec-readers.js';

const SPEC = {
  usage: 'trellis agent run --control URL --ca-file F --token-file F --service S [--app-port P [--protocol X]]... [options]',
  about: `Runs the agent beside a workload: gets and rotates its certificate, registers it, watches its config,
and runs the sidecar proxy in this process.`,
  flags: {
    control: { type: 'string', value: 'URL', help: 'the control plane API, e.g. https://10.0.0.5:15012', whenAbsent: REQUIRED },
    'token-file': {
      type: 'string',
      value: 'FILE',
      help: 'join token, or a Kubernetes projected service-account token (audience\ntrellis); re-read at every bootstrap; renewal uses the certificate',
      whenAbsent: 'required unless --data-dir holds a saved certificate',
    },
    'ca-file': {
      type: 'string',
      value: 'FILE',
      help: "trust bundle for the first contact (<control data-dir>/trust-bundle.pem);\nthe control plane's certificate must chain to it",
      whenAbsent: 'required unless --data-dir holds a saved certificate',
    },
    service: { type: 'string', value: 'NAME', help: "this workload's service (must match the join token)", whenAbsent: REQUIRED },
    namespace: { type: 'string', value: 'NAME', help: 'its namespace', whenAbsent: AGENT_DEFAULTS.namespace },
    'app-port': { type: 'string', multiple: true, value: 'PORT', help: 'a port the app listens on; repeat for several, or leave out for an\napp that serves nothing (a Job, a client)', whenAbsent: 'none' },
    protocol: { type: 'string', multiple: true, value: 'tcp|http|http2|grpc', help: 'how the --app-port just before it is carried', whenAbsent: 'tcp' },
    'app-host': { type: 'string', value: 'HOST', help: 'where the app listens', whenAbsent: '127.0.0.1' },
    upstream: {
      type: 'string',
      multiple: true,
      value: 'SPEC',
      help: `a service this workload calls, as a local port; repeatable:
NAME=LOCALPORT, NS/NAME=LOCALPORT, NAME:PORT=LOCALPORT, NAME=HOST:LOCALPORT;
with --capture also NAME or NS/NAME alone: reached at its own addresses,
and '*' (every service of the mesh) or 'NS/*' (every service of NS)`,
      whenAbsent: "none; '*' with --capture transparent",
    },
    'data-dir': { type: 'string', value: 'DIR', help: 'keep the certificate (key mode 0600) and the last config here, so a restart\nserves while the control plane is down', whenAbsent: 'nothing is written' },
    zone: { type: 'string', value: 'NAME', help: "must match the control plane's zone", whenAbsent: "the control plane's" },
    label: { type: 'string', multiple: true, value: 'KEY=VALUE', help: 'a workload label TrafficRoute backends select (e.g. version=v2); repeatable', whenAbsent: 'none' },
    subzone: { type: 'string', value: 'NAME', help: 'this workload\'s subzone inside its zone (a rack, a cloud availability zone):\ncallers of the same subzone prefer it; sent as label trellis.dev/subzone', whenAbsent: 'the trellis.dev/subzone --label, else none' },
    'trust-domain': { type: 'string', value: 'NAME', help: 'trust domain to ask for', whenAbsent: 'the one in the join token, else the --ca-file roots' },
    'root-namespace': { type: 'string', value: 'NS', help: "the mesh's root namespace (as the control plane's --root-namespace)", whenAbsent: DEFAULT_ROOT_NAMESPACE },
    address: { type: 'string', value: 'ADDR', help: 'address other sidecars reach this one on', whenAbsent: 'the address used to reach the control plane' },
    tunnel: { type: 'string', value: 'HOST:PORT', help: 'mTLS tunnel listener', whenAbsent: `${AGENT_DEFAULTS.tunnel.host}:${AGENT_DEFAULTS.tunnel.port}` },
    admin: { type: 'string', value: 'HOST:PORT|off', help: 'admin: /healthz /ready /metrics /config /certs', whenAbsent: `${AGENT_DEFAULTS.admin.host}:${AGENT_DEFAULTS.admin.port}` },
    status: { type: 'string', value: 'HOST:PORT|off', help: 'plaintext port for the kubelet: /healthz /ready /app-health/...,\nand POST /quitquitquit from loopback (drain, exit 0)', whenAbsent: 'off' },
    'app-probes': { type: 'string', value: 'FILE', help: "the app's original probes (JSON from the injector), run on request at\n/app-health/<container>/<livez|readyz|startupz> on --status", whenAbsent: 'none' },
    'health-check': { type: 'string', value: 'KIND', help: 'tcp, or http:/PATH, of the first app port', whenAbsent: 'tcp' },
    'health-interval': { type: 'string', value: 'DURATION', help: 'between checks of the app', whenAbsent: formatLimit(AGENT_LIMITS.healthIntervalMs, 'ms') },
    'drain-grace': { type: 'string', value: 'DURATION', help: 'on SIGTERM, how long open connections may finish', whenAbsent: formatLimit(AGENT_LIMITS.drainGraceMs, 'ms') },
    'summary-interval': { type: 'string', value: 'DURATION', help: 'between golden-metrics summaries (requests, failures, latency,\ndenials) sent to the control plane for its UI', whenAbsent: formatLimit(AGENT_LIMITS.summaryIntervalMs, 'ms') },
    'require-redirect': { type: 'boolean', help: "with --capture transparent: not ready until a connection to --address is seen\nredirected (CNI capture: the node's plugin installs the rules, not this pod)", whenAbsent: 'off' },
    capture: { type: 'string', value: 'MODE', help: 'transparent: serve the outbound and inbound capture ports that\n`trellis agent redirect install` sends the workload\'s TCP to; or none', whenAbsent: 'none' },
    'outbound-port': { type: 'string', value: 'PORT', help: 'with --capture transparent: the outbound capture port', whenAbsent: '15001' },
    'inbound-port': { type: 'string', value: 'PORT', help: 'with --capture transparent: the inbound capture port', whenAbsent: '15006' },
    'inbound-mode': { type: 'string', value: 'MODE', help: 'with --capture: strict refuses plaintext from outside the mesh, permissive\nhands it to the app (for migration); counted either way', whenAbsent: 'strict' },
    'outside-mesh': { type: 'string', value: 'POLICY', help: 'with --capture: passthrough or refuse destinations outside the mesh', whenAbsent: 'passthrough' },
    'proxy-uid': { type: 'string', value: 'UID', help: 'run as this user: started as root, the agent becomes UID before anything\nelse; install the redirect with the same --proxy-uid so this user\'s own\nconnections are never captured', whenAbsent: 'the user that started it' },
    'proxy-gid': { type: 'string', value: 'GID', help: 'with --proxy-uid: the group to become', whenAbsent: 'the --proxy-uid number' },
    export: { type: 'boolean', help: 'export this service to the other zones (the zone control plane\'s --export/--no-export\nstill decide first)', whenAbsent: "the mesh-wide default (the global's --export-default)" },
    'no-export': { type: 'boolean', help: 'keep this service in its zone; when instances disagree, --no-export wins', whenAbsent: "the mesh-wide default (the global's --export-default)" },
    'no-access-log': { type: 'boolean', help: 'no access log line per request or stream', whenAbsent: 'off: one line each' },
    'log-level': { type: 'string', value: 'LEVEL', help: 'trace|debug|info|warn|error|silent', whenAbsent: 'info' },
  },
} as const satisfies CommandSpec;

const USAGE = formatHelp(SPEC);

/** A file flag that must name a readable file: checked at start, so a typo fails at once (exit 2). */
export function readableFile(path: string | undefined, flag: string, problems: string[]): void {
  if (path === undefined) return;
  try {
    accessSync(path, fsConstants.R_OK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    problems.push(`${flag}: ${path} ${code === 'ENOENT' ? 'does not exist' : `cannot be read (${code ?? (err as Error).message})`}`);
  }
}

/** `*` or `NS/*`: a subscription, not a listener; only capture can reach what it brings. */
function parseUpstreamWildcard(text: string, capture: boolean): UpstreamSpec | undefined {
  const match = /^(?:([a-z0-9-]+)\/)?\*$/.exec(text);
  if (match === null) return undefined;
  if (!capture) throw new InputError(CODE.CLI_BAD_UPSTREAM, `--upstream "${text}": a wildcard needs --capture transparent (explicit mode binds one local port per named upstream)`);
  const namespace = match[1];
  if (namespace !== undefined && !DNS_LABEL.test(namespace)) throw new InputError(CODE.CLI_BAD_UPSTREAM, `--upstream "${text}": names are DNS labels`);
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
    throw new InputError(CODE.CLI_BAD_UPSTREAM, `--upstream "${text}": expected NAME=LOCALPORT (or NS/NAME:PORT=HOST:LOCALPORT; NAME alone with --capture)`);
  }
  const [, namespace, service, port, host, local] = match;
  const localPort = local === undefined ? undefined : Number(local);
  const servicePort = port === undefined ? undefined : Number(port);
  if ((localPort !== undefined && (localPort < 1 || localPort > 65535)) || (servicePort !== undefined && (servicePort < 1 || servicePort > 65535))) {
    throw new InputError(CODE.CLI_BAD_UPSTREAM, `--upstream "${text}": ports are 1-65535`);
  }
  if (!DNS_LABEL.test(service as string) || (namespace !== undefined && !DNS_LABEL.test(namespace))) {
    throw new InputError(CODE.CLI_BAD_UPSTREAM, `--upstream "${text}": names are DNS labels`);
  }
  return Object.freeze({ service: service as string, namespace: namespace ?? defaultNamespace, port: servicePort, bindAddress: (host ?? '127.0.0.1').replace(/^\[|\]$/g, ''), localPort });
}

/** The user the agent becomes (`--proxy-uid`), so the redirect's exemption by uid/gid covers the proxy's own connections. */
export interface ProxyUser {
  readonly uid: number;
  readonly gid: number;
}

export function parseControlUrl(text: string | undefined, problems: string[]): URL {
  if (text === undefined) {
    problems.push('--control is required');
    return new URL('https://127.0.0.1:15012');
  }
  try {
    const url = new URL(text);
    if (url.protocol !== 'https:') problems.push('--control must be an https:// URL');
    return url;
  } catch {
    problems.push(`--control: "${text}" is not a URL`);
    return new URL('https://127.0.0.1:15012');
  }
}

type CaptureFlags = Partial<Record<'inbound-mode' | 'outside-mesh' | 'outbound-port' | 'inbound-port', string>>;

/** `--capture transparent`'s options; they are refused without it. */
function captureOptions(values: CaptureFlags, capture: boolean, problems: string[]): AgentConfig['capture'] {
  const inboundMode = values['inbound-mode'] ?? 'strict';
  if (inboundMode !== 'strict' && inboundMode !== 'permissive') problems.push('--inbound-mode is strict or permissive');
  const outsideMesh = values['outside-mesh'] ?? 'passthrough';
  if (outsideMesh !== 'passthrough' && outsideMesh !== 'refuse') problems.push('--outside-mesh is passthrough or refuse');
  if (!capture && (values['inbound-mode'] !== undefined || values['outside-mesh'] !== undefined)) problems.push('--inbound-mode and --outside-mesh decide what transparent capture does: they need --capture transparent');
  const capturePort = (name: string, text: string | undefined, fallback: number): number => {
    if (text === undefined) return fallback;
    if (!capture) problems.push(`${name} needs --capture transparent`);
    const n = Number(text);
    if (!/^\d{1,5}$/.test(text) || n < 1 || n > 65535) problems.push(`${name}: "${text}" is not a port`);
    return n;
  };
  const outboundPort = capturePort('--outbound-port', values['outbound-port'], 15001);
  const inboundPort = capturePort('--inbound-port', values['inbound-port'], 15006);
  if (!capture) return undefined;
  return Object.freeze({ inboundMode: inboundMode as 'strict' | 'permissive', outsideMesh: outsideMesh as 'passthrough' | 'refuse', outbound: { port: outboundPort }, inbound: { port: inboundPort } });
}

function proxyUserFrom(uidText: string | undefined, gidText: string | undefined, problems: string[]): ProxyUser | undefined {
  const id = (name: string, text: string | undefined): number | undefined => {
    if (text === undefined) return undefined;
    const n = Number(text);
    if (!/^\d{1,10}$/.test(text) || n > 4_294_967_294) problems.push(`${name}: "${text}" is not a numeric id`);
    return n;
  };
  const proxyUid = id('--proxy-uid', uidText);
  const proxyGid = id('--proxy-gid', gidText);
  if (proxyGid !== undefined && proxyUid === undefined) problems.push('--proxy-gid needs --proxy-uid');
  return proxyUid === undefined ? undefined : Object.freeze({ uid: proxyUid, gid: proxyGid ?? proxyUid });
}

export function parseAgentArgs(argv: readonly string[]): { config: AgentConfig; level: ReturnType<typeof parseLogLevel>; proxyUser: ProxyUser | undefined; redirectCheckAddress: string | undefined } {
  const { values, positionals, tokens } = parseFlags(SPEC, argv);
  if (positionals.length > 0) throw new InputError(CODE.CLI_USAGE, `unexpected argument "${positionals[0]}"\n\n${USAGE}`);
  const problems: string[] = [];
  const attempt = attemptInto(problems);
  const controlUrl = parseControlUrl(values.control, problems);
  if (values.service === undefined || !DNS_LABEL.test(values.service)) problems.push('--service is required and must be a DNS label');
  const namespace = values.namespace ?? AGENT_DEFAULTS.namespace;
  if (!DNS_LABEL.test(namespace)) problems.push('--namespace must be a DNS label');
  const appHost = values['app-host'] ?? '127.0.0.1';
  const portFlags = tokens.flatMap((t): PortFlag[] => (t.kind === 'option' && (t.name === 'app-port' || t.name === 'protocol') && t.value !== undefined ? [{ name: t.name, value: t.value }] : []));
  const appPorts = appPortsFromFlags(portFlags, appHost, problems);
  const firstPort = appPorts[0];
  if (values['token-file'] === undefined && values['data-dir'] === undefined) problems.push('--token-file is required (or a --data-dir holding a saved certificate)');
  // Without --ca-file the first contact fails before anything is sent (TRELLIS_AGENT_NO_TRUST names the
  // flag): a --data-dir may hold a saved certificate and its bundle. --token-file is read only to
  // bootstrap (a saved certificate needs none), so a missing one fails there, at once.
  readableFile(values['ca-file'], '--ca-file', problems);
  if (values.zone !== undefined && !DNS_LABEL.test(values.zone)) problems.push('--zone must be a DNS label');
  if (values.export === true && values['no-export'] === true) problems.push('--export and --no-export exclude each other');
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
  const captureConfig = captureOptions(values, capture, problems);
  const proxyUser = proxyUserFrom(values['proxy-uid'], values['proxy-gid'], problems);
  const config: AgentConfig = Object.freeze({
    controlUrl,
    caFile: values['ca-file'] === undefined ? undefined : resolve(values['ca-file']),
    tokenFile: values['token-file'] === undefined ? undefined : resolve(values['token-file']),
    service: values.service ?? '',
    namespace,
    zone: values.zone,
    labels: withSubzone(Object.fromEntries((values.label ?? []).map((l) => attempt(() => parseLabelFlag(l), ['', ''])).filter(([k]) => k !== '')), values.subzone, problems),
    export: values['no-export'] === true ? false : values.export === true ? true : undefined,
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
      intervalMs: limitFlag(values['health-interval'], AGENT_LIMIT_SCHEMA.healthIntervalMs, '--health-interval', attempt),
      timeoutMs: AGENT_DEFAULTS.healthTimeoutMs,
      unhealthyAfter: 2,
    }),
    status,
    appProbes,
    drainGraceMs: limitFlag(values['drain-grace'], AGENT_LIMIT_SCHEMA.drainGraceMs, '--drain-grace', attempt),
    summaryIntervalMs: limitFlag(values['summary-interval'], AGENT_LIMIT_SCHEMA.summaryIntervalMs, '--summary-interval', attempt),
    accessLog: values['no-access-log'] !== true,
    ...(captureConfig === undefined ? {} : { capture: captureConfig }),
  });
  const level = attempt(() => parseLogLevel(values['log-level']), 'info' as const);
  const redirectCheckAddress = values['require-redirect'] === true ? values.address : undefined;
  if (values['require-redirect'] === true && !capture) problems.push('--require-redirect goes with --capture transparent');
  if (values['require-redirect'] === true && (values.address === undefined || isIP(values.address) === 0)) problems.push("--require-redirect needs --address: the pod's own IP, which the check dials");
  if (problems.length > 0) throw new InputError(CODE.CLI_USAGE, `${problems.join('\n')}\n\n${USAGE}`);
  return { config, level, proxyUser, redirectCheckAddress };
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
    throw new InputError(CODE.AGENT_PROXY_USER, `--proxy-uid ${user.uid}: this process runs as uid ${String(uid)}; start it as root (it then becomes ${user.uid}:${user.gid}) or as that user and group`);
  }
  // Groups first: once the uid is dropped they can no longer be changed. Root's supplementary groups go.
  process.setgroups?.([user.gid]);
  process.setgid?.(user.gid);
  process.setuid?.(user.uid);
}

export const runSubcommand: AgentSubcommand = {
  name: 'run',
  spec: SPEC,
  summary: 'run the agent and its sidecar proxy beside a workload',
  async run(argv: readonly string[], ctx: CommandContext): Promise<number> {
    const { config, level, proxyUser, redirectCheckAddress } = parseAgentArgs(argv);
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
    const redirectCheck = redirectCheckAddress === undefined ? undefined : new RedirectCheck({ address: redirectCheckAddress });
    redirectCheck?.start();
    let agent;
    try {
      agent = await startAgent(config, log, { signal: abort.signal, onQuitRequested: () => quitRequested(), ...(redirectCheck === undefined ? {} : { readinessGates: [() => redirectCheck.reason()] }) });
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
    redirectCheck?.stop();
    await agent.stop();
    log.flush();
    return EXIT_OK;
  },
};

/** `--subzone NAME` as the endpoint label callers read (api/data-plane.ts SUBZONE_LABEL); it must agree with a `--label` of it. */
function withSubzone(labels: Record<string, string>, subzone: string | undefined, problems: string[]): Readonly<Record<string, string>> {
  if (subzone !== undefined) {
    if (!isSubzone(subzone)) problems.push(`--subzone ${JSON.stringify(subzone)}: expected a Kubernetes label value (letters, digits, "-", "_", ".", at most 63)`);
    else if (labels[SUBZONE_LABEL] !== undefined && labels[SUBZONE_LABEL] !== subzone) problems.push(`--subzone ${subzone} and --label ${SUBZONE_LABEL}=${labels[SUBZONE_LABEL]} disagree`);
    else Object.defineProperty(labels, SUBZONE_LABEL, { value: subzone, enumerable: true });
  }
  return Object.freeze(labels);
}

/** `--label KEY=VALUE`: a Kubernetes-style label (the control plane checks the form again). */
function parseLabelFlag(text: string): [string, string] {
  const eq = text.indexOf('=');
  const key = eq < 0 ? '' : text.slice(0, eq);
  const value = eq < 0 ? '' : text.slice(eq + 1);
  if (!LABEL_KEY.test(key) || !LABEL_VALUE.test(value)) {
    throw new InputError(CODE.CLI_BAD_LABEL, `--label ${JSON.stringify(text)}: expected KEY=VALUE with a Kubernetes label key and value`);
  }
  return [key, value];
}
