/**
 * The static YAML config of `trellis proxy run`: the proxy alone, without a control plane (tests,
 * benchmarks, anyone who wants only the data plane). See deploy/examples/proxy-*.yaml.
 *
 * Validated once at the edge with every problem reported at once (file:line:column), relative paths
 * resolved from the config file's directory, defaults applied, then frozen. Certificate files are read
 * separately (`readIdentityFiles`) and watched (`watchIdentityFiles`, static-files.ts) so certificates
 * rotate without a restart. One function per section below.
 */
import { deepFreeze } from '../common/deep-freeze.js';
import { isIP } from 'node:net';
import { dirname, isAbsolute, resolve } from 'node:path';
import type { LevelWithSilent } from 'pino';
import type { AppHttpOptions, AppPort, Endpoint, InboundMode, OutboundListener, PortProtocol, ServicePort, UpstreamService } from '../api/data-plane.js';
import { ConfigIssues } from '../common/config-issues.js';
import type { ConfigNode, ConfigObject } from '../common/config-node.js';
import { parseYamlDocuments, readConfigFile } from '../common/yaml-source.js';
import { DEFAULT_ROOT_NAMESPACE } from '../policy/types.js';
import { PROXY_LIMIT_SCHEMA, type ProxyLimits } from './core/limits.js';
import { readLimits } from '../common/limit-schema.js';
import type { LoadBalancingStrategy } from './outbound/tunnel-client/load-balancer.js';
import { isConfigurableUpgradeProtocol } from './http/upgrade-rules.js';
import { isHttpFamily, PORT_PROTOCOLS } from '../api/port-protocol.js';
import { DEFAULT_ADMIN_PORT, DEFAULT_TUNNEL_PORT } from './core/tunnel-protocol.js';

export interface StaticProxyConfig {
  readonly file: string;
  readonly service: string;
  readonly namespace: string;
  readonly trustDomain: string;
  readonly zone: string;
  /** Absolute paths. */
  readonly identity: {
    readonly certificate: string;
    readonly key: string;
    readonly trustBundle: string;
    /** Federated trust domain → the file holding its roots (PEM). */
    readonly federatedBundles?: Readonly<Record<string, string>>;
  };
  readonly tunnel: { readonly address: string; readonly port: number };
  /** null: no admin port. */
  readonly admin: { readonly address: string; readonly port: number } | null;
  readonly inbound: { readonly mode: InboundMode; readonly appPorts: readonly AppPort[] };
  /** Transparent capture listeners (`inbound.mode` decides what inbound capture does); null: explicit mode only. */
  readonly capture: {
    readonly outbound: { readonly address: string; readonly port: number };
    readonly inbound: { readonly address: string; readonly port: number };
    readonly outsideMesh: 'passthrough' | 'refuse';
  } | null;
  readonly upstreams: readonly UpstreamService[];
  readonly listeners: readonly OutboundListener[];
  /** Absolute paths of policy files or directories. */
  readonly policy: readonly string[];
  readonly rootNamespace: string;
  readonly limits: ProxyLimits;
  readonly pool: {
    readonly sessionsPerEndpoint: number;
    readonly maxSessionsPerEndpoint: number;
    readonly maxStreamsPerSession: number;
    readonly keepaliveIntervalMs: number;
    readonly loadBalancing: LoadBalancingStrategy;
  };
  readonly accessLog: boolean;
  readonly logLevel: LevelWithSilent;
}

const NAME = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
const TRUST_DOMAIN_RULE = { pattern: /^[a-z0-9._-]{1,255}$/, expected: 'a trust domain (lowercase letters, digits, ".", "-", "_")' } as const;
const NAME_RULE = { pattern: NAME, expected: 'a DNS label (lowercase letters, digits, "-", at most 63 characters)' } as const;
const PORT = { min: 1, max: 65535 } as const;
const BIND_PORT = { min: 0, max: 65535 } as const;
const PROTOCOLS: readonly PortProtocol[] = PORT_PROTOCOLS;
const LOG_LEVELS: readonly LevelWithSilent[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/** Reads and validates a config file; throws one InputError listing every problem. */
export async function loadStaticConfig(path: string): Promise<StaticProxyConfig> {
  const source = await readConfigFile(path);
  return parseStaticConfig(source.text, path);
}

export function parseStaticConfig(text: string, path: string): StaticProxyConfig {
  const issues = new ConfigIssues();
  const docs = parseYamlDocuments({ path, text }, issues);
  if (docs.length !== 1) {
    if (issues.count === 0) issues.add({ file: path, line: 0, column: 0, path: '', message: `expected exactly one YAML document, found ${docs.length}` });
    issues.throwIfAny('proxy config');
  }
  const config = validate(docs[0] as ConfigNode, resolve(dirname(path)), path);
  issues.throwIfAny('proxy config');
  return config as StaticProxyConfig;
}

/** Every section is read (so every problem is reported) before any undefined stops the result. */
function validate(root: ConfigNode, baseDir: string, file: string): StaticProxyConfig | undefined {
  const top = root.object({
    required: ['service', 'namespace', 'trustDomain', 'identity'],
    optional: ['zone', 'tunnel', 'admin', 'inbound', 'capture', 'upstreams', 'listeners', 'policy', 'rootNamespace', 'limits', 'pool', 'accessLog', 'logLevel'],
  });
  if (top === undefined) return undefined;
  const service = top.field('service')?.string(NAME_RULE);
  const namespace = top.field('namespace')?.string(NAME_RULE);
  const trustDomain = top.field('trustDomain')?.string(TRUST_DOMAIN_RULE);
  const zone = opt(top, 'zone', (n) => n.string(NAME_RULE)) ?? 'default';
  const path = pathReader(baseDir);
  const identity = identitySection(top, path, baseDir);
  const tunnel = endpointSection(top.field('tunnel'), '0.0.0.0', DEFAULT_TUNNEL_PORT);
  const admin = adminSection(top);
  const inbound = inboundSection(top);
  const capture = captureSection(top);
  const upstreams = upstreamsSection(top, namespace, zone);
  const listeners = listenersSection(top, upstreams, namespace);
  const policy = (top.field('policy')?.list() ?? []).map(path).filter((p): p is string => p !== undefined);
  const rootNamespace = opt(top, 'rootNamespace', (x) => x.string(NAME_RULE)) ?? DEFAULT_ROOT_NAMESPACE;
  const limits = readLimits(top.field('limits'), PROXY_LIMIT_SCHEMA);
  const pool = poolSection(top, limits);
  const accessLog = opt(top, 'accessLog', (x) => x.boolean()) ?? true;
  const logLevel = opt(top, 'logLevel', (x) => x.oneOf(LOG_LEVELS)) ?? 'info';

  if (service === undefined || namespace === undefined || trustDomain === undefined || identity === undefined || tunnel === undefined || admin === undefined || capture === undefined) return undefined;
  return deepFreeze({ file, service, namespace, trustDomain, zone, identity, tunnel, admin, inbound, capture, upstreams, listeners, policy, rootNamespace, limits, pool, accessLog, logLevel });
}

/** Relative paths are resolved from the config file's directory. */
function pathReader(baseDir: string): (n: ConfigNode) => string | undefined {
  return (n) => {
    const v = n.string();
    return v === undefined ? undefined : isAbsolute(v) ? v : resolve(baseDir, v);
  };
}

function identitySection(top: ConfigObject, path: (n: ConfigNode) => string | undefined, baseDir: string): StaticProxyConfig['identity'] | undefined {
  const o = top.field('identity')?.object({ required: ['certificate', 'key', 'trustBundle'], optional: ['federatedBundles'] });
  const read = (key: string): string | undefined => {
    const n = o?.field(key);
    return n === undefined ? undefined : path(n);
  };
  const certificate = read('certificate');
  const key = read('key');
  const trustBundle = read('trustBundle');
  const federated = o?.field('federatedBundles');
  const files = federated?.stringMap();
  let federatedBundles: Record<string, string> | undefined;
  if (files !== undefined && federated !== undefined) {
    federatedBundles = {};
    for (const [td, file] of Object.entries(files)) {
      if (!TRUST_DOMAIN_RULE.pattern.test(td)) federated.report(`"${td.slice(0, 80)}" is not ${TRUST_DOMAIN_RULE.expected}`);
      else Object.defineProperty(federatedBundles, td, { value: isAbsolute(file) ? file : resolve(baseDir, file), enumerable: true });
    }
  }
  if (certificate === undefined || key === undefined || trustBundle === undefined) return undefined;
  return { certificate, key, trustBundle, ...(federatedBundles === undefined ? {} : { federatedBundles }) };
}

/** undefined: invalid; null: `enabled: false`. */
function adminSection(top: ConfigObject): { address: string; port: number } | null | undefined {
  const node = top.field('admin');
  if (node === undefined) return { address: '127.0.0.1', port: DEFAULT_ADMIN_PORT };
  const o = node.object({ optional: ['address', 'port', 'enabled'] });
  return o?.field('enabled')?.boolean() === false ? null : endpointFields(o, '127.0.0.1', DEFAULT_ADMIN_PORT);
}

function inboundSection(top: ConfigObject): StaticProxyConfig['inbound'] {
  const inboundNode = top.field('inbound')?.object({ optional: ['mode', 'appPorts'] });
  const mode = (inboundNode?.field('mode')?.oneOf<InboundMode>(['strict', 'permissive']) ?? 'strict') as InboundMode;
  const appPorts: AppPort[] = [];
  for (const n of inboundNode?.field('appPorts')?.list() ?? []) {
    const o = n.object({ required: ['port'], optional: ['protocol', 'host', 'http'] });
    const port = o?.field('port')?.integer(PORT);
    const protocol = opt(o, 'protocol', (p) => p.oneOf(PROTOCOLS)) ?? 'tcp';
    const host = opt(o, 'host', (h) => h.string()) ?? '127.0.0.1';
    const httpNode = o?.field('http');
    if (httpNode !== undefined && !isHttpFamily(protocol)) httpNode.report('HTTP options need protocol: http, http2 or grpc');
    const http = httpNode === undefined ? undefined : appHttpOptionsFrom(httpNode);
    if (port === undefined) continue;
    if (appPorts.some((p) => p.port === port)) {
      n.report(`app port ${port} is listed twice`);
      continue;
    }
    appPorts.push(Object.freeze({ port, protocol, host, ...(http === undefined ? {} : { http }) }));
  }
  return { mode, appPorts };
}

/** undefined: invalid; null: no capture section (explicit mode only). */
function captureSection(top: ConfigObject): StaticProxyConfig['capture'] | undefined {
  const captureNode = top.field('capture')?.object({ optional: ['outbound', 'inbound', 'outsideMesh'] });
  if (captureNode === undefined) return top.has('capture') ? undefined : null;
  const outbound = endpointSection(captureNode.field('outbound'), '0.0.0.0', 15001);
  const inbound = endpointSection(captureNode.field('inbound'), '0.0.0.0', 15006);
  const outsideMesh = opt(captureNode, 'outsideMesh', (x) => x.oneOf<'passthrough' | 'refuse'>(['passthrough', 'refuse'])) ?? 'passthrough';
  return outbound === undefined || inbound === undefined ? undefined : { outbound, inbound, outsideMesh };
}

function upstreamsSection(top: ConfigObject, namespace: string | undefined, zone: string): UpstreamService[] {
  const upstreams: UpstreamService[] = [];
  for (const n of top.field('upstreams')?.list() ?? []) {
    const o = n.object({ required: ['name', 'ports', 'endpoints'], optional: ['namespace', 'virtualIps'] });
    if (o === undefined) continue;
    const name = o.field('name')?.string(NAME_RULE);
    const ns = opt(o, 'namespace', (x) => x.string(NAME_RULE)) ?? namespace;
    const ports = servicePorts(o);
    const endpoints = upstreamEndpoints(o, zone);
    if (name === undefined || ns === undefined) continue;
    const virtualIps = virtualIpList(o);
    if (upstreams.some((u) => u.name === name && u.namespace === ns)) n.report(`upstream ${ns}/${name} is listed twice`);
    upstreams.push(Object.freeze({ name, namespace: ns, ports: Object.freeze(ports), endpoints: Object.freeze(endpoints), ...(virtualIps.length === 0 ? {} : { virtualIps: Object.freeze(virtualIps) }) }));
  }
  return upstreams;
}

function servicePorts(o: ConfigObject): ServicePort[] {
  const ports: ServicePort[] = [];
  for (const pn of o.field('ports')?.list({ minItems: 1 }) ?? []) {
    const po = pn.object({ required: ['port'], optional: ['targetPort', 'protocol', 'name'] });
    const port = po?.field('port')?.integer(PORT);
    const targetPort = opt(po, 'targetPort', (x) => x.integer(PORT)) ?? port;
    const protocol = opt(po, 'protocol', (x) => x.oneOf(PROTOCOLS)) ?? 'tcp';
    const portName = opt(po, 'name', (x) => x.string(NAME_RULE));
    if (port === undefined || targetPort === undefined) continue;
    if (ports.some((p) => p.port === port)) pn.report(`port ${port} is listed twice`);
    ports.push(Object.freeze({ port, targetPort, protocol, ...(portName === undefined ? {} : { name: portName }) }));
  }
  return ports;
}

function upstreamEndpoints(o: ConfigObject, zone: string): Endpoint[] {
  const endpoints: Endpoint[] = [];
  for (const en of o.field('endpoints')?.list() ?? []) {
    const eo = en.object({ required: ['address'], optional: ['tunnelPort', 'zone', 'healthy', 'ingressPort', 'trustDomain'] });
    const address = eo?.field('address')?.string();
    const tunnelPort = opt(eo, 'tunnelPort', (x) => x.integer(PORT)) ?? DEFAULT_TUNNEL_PORT;
    const epZone = opt(eo, 'zone', (x) => x.string(NAME_RULE)) ?? zone;
    const healthy = opt(eo, 'healthy', (x) => x.boolean()) ?? true;
    // Another zone's endpoint: `address:ingressPort` is its zone's ingress, dialled with nested TLS.
    const ingressPort = opt(eo, 'ingressPort', (x) => x.integer(PORT));
    const trustDomain = opt(eo, 'trustDomain', (x) => x.string(TRUST_DOMAIN_RULE));
    if (address === undefined) continue;
    endpoints.push(
      Object.freeze({
        address,
        tunnelPort,
        zone: epZone,
        healthy,
        ...(ingressPort === undefined ? {} : { ingress: Object.freeze({ address, port: ingressPort }) }),
        ...(trustDomain === undefined ? {} : { trustDomain }),
      }),
    );
  }
  return endpoints;
}

function virtualIpList(o: ConfigObject): string[] {
  const virtualIps: string[] = [];
  for (const vn of o.field('virtualIps')?.list() ?? []) {
    const vip = vn.string({ expected: 'an IP address (a virtual IP naming this service, for transparent capture)' });
    if (vip !== undefined && isIP(vip) === 0) vn.report(`expected an IP address, got ${JSON.stringify(vip)}`);
    else if (vip !== undefined) virtualIps.push(vip);
  }
  return virtualIps;
}

function listenersSection(top: ConfigObject, upstreams: readonly UpstreamService[], namespace: string | undefined): OutboundListener[] {
  const listeners: OutboundListener[] = [];
  for (const n of top.field('listeners')?.list() ?? []) {
    const o = n.object({ required: ['localPort', 'service', 'port'], optional: ['bindAddress', 'namespace'] });
    const bindAddress = opt(o, 'bindAddress', (x) => x.string()) ?? '127.0.0.1';
    const localPort = o?.field('localPort')?.integer(BIND_PORT);
    const svc = o?.field('service')?.string(NAME_RULE);
    const ns = opt(o, 'namespace', (x) => x.string(NAME_RULE)) ?? namespace;
    const port = o?.field('port')?.integer(PORT);
    if (localPort === undefined || svc === undefined || ns === undefined || port === undefined) continue;
    const upstream = upstreams.find((u) => u.name === svc && u.namespace === ns);
    if (upstream === undefined) n.report(`no upstream ${ns}/${svc} is configured for this listener`);
    else if (!upstream.ports.some((p) => p.port === port)) n.report(`upstream ${ns}/${svc} has no port ${port} (it has ${upstream.ports.map((p) => p.port).join(', ')})`);
    if (localPort !== 0 && listeners.some((l) => l.bindAddress === bindAddress && l.localPort === localPort)) n.report(`${bindAddress}:${localPort} is used by two listeners`);
    listeners.push(Object.freeze({ bindAddress, localPort, service: svc, namespace: ns, port }));
  }
  return listeners;
}

function poolSection(top: ConfigObject, limits: ProxyLimits): StaticProxyConfig['pool'] {
  const poolNode = top.field('pool')?.object({ optional: ['sessionsPerEndpoint', 'maxSessionsPerEndpoint', 'maxStreamsPerSession', 'keepaliveInterval', 'loadBalancing'] });
  return {
    sessionsPerEndpoint: opt(poolNode, 'sessionsPerEndpoint', (x) => x.integer({ min: 1, max: 64 })) ?? 2,
    maxSessionsPerEndpoint: opt(poolNode, 'maxSessionsPerEndpoint', (x) => x.integer({ min: 1, max: 256 })) ?? 16,
    maxStreamsPerSession: opt(poolNode, 'maxStreamsPerSession', (x) => x.integer({ min: 1, max: 10_000 })) ?? limits.maxStreamsPerSession,
    keepaliveIntervalMs: opt(poolNode, 'keepaliveInterval', (x) => x.duration()) ?? 30_000,
    loadBalancing: opt(poolNode, 'loadBalancing', (x) => x.oneOf<LoadBalancingStrategy>(['least-outstanding', 'round-robin'])) ?? 'least-outstanding',
  };
}

/** An app port's `http:` options, validated and frozen (defaults stay implicit: see AppHttpOptions). */
function appHttpOptionsFrom(node: ConfigNode): AppHttpOptions | undefined {
  const o = node.object({ optional: ['upgradeProtocols', 'escapedSlashes', 'pathParameters'] });
  if (o === undefined) return undefined;
  let upgradeProtocols: string[] | undefined;
  const list = o.field('upgradeProtocols')?.list();
  if (list !== undefined) {
    upgradeProtocols = [];
    for (const item of list) {
      const name = item.string({ expected: 'a lower-case protocol token (h2c is never carried)' });
      if (name === undefined) continue;
      if (!isConfigurableUpgradeProtocol(name)) item.report(`expected a lower-case protocol token other than h2c, got ${JSON.stringify(name)}`);
      else upgradeProtocols.push(name);
    }
  }
  const escapedSlashes = opt(o, 'escapedSlashes', (x) => x.oneOf<'reject' | 'keep'>(['reject', 'keep']));
  const pathParameters = opt(o, 'pathParameters', (x) => x.oneOf<'reject' | 'keep'>(['reject', 'keep']));
  return Object.freeze({
    ...(upgradeProtocols === undefined ? {} : { upgradeProtocols: Object.freeze(upgradeProtocols) }),
    ...(escapedSlashes === undefined ? {} : { escapedSlashes }),
    ...(pathParameters === undefined ? {} : { pathParameters }),
  });
}

function opt<T>(o: ConfigObject | undefined, key: string, read: (n: ConfigNode) => T | undefined): T | undefined {
  const n = o?.field(key);
  return n === undefined ? undefined : read(n);
}

function endpointSection(node: ConfigNode | undefined, address: string, port: number): { address: string; port: number } | undefined {
  if (node === undefined) return { address, port };
  return endpointFields(node.object({ optional: ['address', 'port'] }), address, port);
}

function endpointFields(o: ConfigObject | undefined, address: string, port: number): { address: string; port: number } | undefined {
  if (o === undefined) return undefined;
  const a = opt(o, 'address', (x) => x.string()) ?? address;
  const p = o.has('port') ? o.field('port')?.integer(BIND_PORT) : port;
  return p === undefined ? undefined : { address: a, port: p };
}
