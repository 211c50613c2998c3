/**
 * Reads the gateway's YAML config: every problem of the file reported at once as file:line:column
 * (`TRELLIS_CONFIG_INVALID`), relative paths resolved from the file's directory, defaults applied, then
 * deeply frozen. A file with any problem is refused whole: at start the gateway does not start, on a
 * reload the config in force stays (gateway.ts). Routes and edge security are read in config-routes.ts.
 */
import { deepFreeze } from '../common/deep-freeze.js';
import { dirname, isAbsolute, resolve } from 'node:path';
import { ConfigIssues } from '../common/config-issues.js';
import type { ConfigNode, ConfigObject } from '../common/config-node.js';
import { configNodeFromValue, parseYamlDocuments, readConfigFile } from '../common/yaml-source.js';
import { DEFAULT_ROOT_NAMESPACE } from '../policy/types.js';
import { GATEWAY_DEFAULTS, type CertificateSpec, type GatewayConfig, type GatewayLimits, type ListenerSpec, type MeshSpec, type TlsVersion } from './config-types.js';
import { readJwtProviders, readRoutes, type PathReader } from './config-routes.js';
import { HOST_PATTERN } from './host-match.js';

export const NAME_RULE = { pattern: /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/, expected: 'a DNS label (lowercase letters, digits, "-", at most 63 characters)' } as const;
const BIND_PORT = { min: 0, max: 65535 } as const;
const MAX_LISTENERS = 32;
const MAX_CERTIFICATES = 256;

export async function loadGatewayConfig(path: string): Promise<GatewayConfig> {
  const source = await readConfigFile(path);
  return parseGatewayConfig(source.text, path);
}

export function parseGatewayConfig(text: string, path: string): GatewayConfig {
  const issues = new ConfigIssues();
  const docs = parseYamlDocuments({ path, text }, issues);
  if (docs.length !== 1 && issues.count === 0) issues.add({ file: path, line: 0, column: 0, path: '', message: `expected exactly one YAML document, found ${docs.length}` });
  issues.throwIfAny('gateway config');
  const config = validate(docs[0] as ConfigNode, resolve(dirname(path)), path);
  issues.throwIfAny('gateway config');
  return config as GatewayConfig;
}

/**
 * A config given as a plain value (the Gateway API translation, gateway-api.ts), validated by the same
 * readers; problems name `source` and the field's path. Relative paths resolve from `baseDir`.
 * `emptyRoutes`: an empty route list is valid (a Gateway no route is attached to yet serves 404s).
 */
export function validateGatewayValue(value: unknown, source: string, baseDir: string, options: { readonly emptyRoutes?: boolean } = {}): GatewayConfig {
  const issues = new ConfigIssues();
  const config = validate(configNodeFromValue(value, source, '', issues), baseDir, source, options.emptyRoutes === true);
  issues.throwIfAny('gateway config');
  return config as GatewayConfig;
}

function validate(root: ConfigNode, baseDir: string, file: string, emptyRoutes = false): GatewayConfig | undefined {
  const top = root.object({ required: ['mesh', 'listeners', 'routes'], optional: ['name', 'namespace', 'admin', 'jwtProviders', 'trustedHops', 'limits', 'accessLog'] });
  if (top === undefined) return undefined;
  const path: PathReader = (n) => {
    const v = n.string();
    return v === undefined ? undefined : isAbsolute(v) ? v : resolve(baseDir, v);
  };
  const name = top.field('name')?.string(NAME_RULE) ?? (top.has('name') ? undefined : GATEWAY_DEFAULTS.name);
  const namespace = top.field('namespace')?.string(NAME_RULE) ?? (top.has('namespace') ? undefined : GATEWAY_DEFAULTS.namespace);
  const meshNode = top.field('mesh');
  const mesh = meshNode === undefined ? undefined : readMesh(meshNode, path);
  const admin = readAdmin(top.field('admin'));
  const listenersNode = top.field('listeners');
  const listeners = listenersNode === undefined ? [] : readListeners(listenersNode, path);
  const jwtProviders = readJwtProviders(top.field('jwtProviders'), path);
  const routesNode = top.field('routes');
  // Providers are named as written, even one with other problems, so a route naming it gets no second error.
  const providerNames = (top.field('jwtProviders')?.list() ?? []).map((n) => n.peekString('name')).filter((n): n is string => n !== undefined);
  const routes = routesNode === undefined ? [] : readRoutes(routesNode, { listeners: listeners.map((l) => l.name), providers: providerNames, emptyRoutes });
  const trustedHops = top.field('trustedHops')?.integer({ min: 0, max: 16 }) ?? 0;
  const limits = readLimits(top.field('limits'));
  const accessLog = top.field('accessLog')?.boolean() ?? true;
  if (name === undefined || namespace === undefined || mesh === undefined || admin === undefined || limits === undefined) return undefined;
  return deepFreeze({ file, name, namespace, mesh, admin, listeners, routes, jwtProviders, trustedHops, limits, accessLog });
}

function readMesh(node: ConfigNode, path: PathReader): MeshSpec | undefined {
  const o = node.object({ required: ['control'], optional: ['caFile', 'tokenFile', 'dataDir', 'zone', 'trustDomain', 'rootNamespace', 'tunnel'] });
  if (o === undefined) return undefined;
  const controlNode = o.field('control') as ConfigNode;
  const controlText = controlNode.string();
  let control: URL | undefined;
  if (controlText !== undefined) {
    try {
      control = new URL(controlText);
      if (control.protocol !== 'https:') control = controlNode.report('expected an https:// URL of the control plane API');
    } catch {
      controlNode.report(`expected a URL such as https://10.0.0.5:15012, got ${JSON.stringify(controlText)}`);
    }
  }
  const optPath = (key: string): string | undefined => {
    const n = o.field(key);
    return n === undefined ? undefined : path(n);
  };
  const zone = o.field('zone')?.string(NAME_RULE);
  const trustDomain = o.field('trustDomain')?.string({ pattern: /^[a-z0-9._-]{1,255}$/, expected: 'a trust domain (lowercase letters, digits, ".", "-", "_")' });
  const rootNamespace = o.field('rootNamespace')?.string(NAME_RULE) ?? DEFAULT_ROOT_NAMESPACE;
  // Nothing dials the gateway over the mesh (it serves no app port); its tunnel listener stays on loopback.
  const tunnel = hostPort(o.field('tunnel'), '127.0.0.1', 0);
  if (control === undefined || tunnel === undefined) return undefined;
  return { control, caFile: optPath('caFile'), tokenFile: optPath('tokenFile'), dataDir: optPath('dataDir'), zone, trustDomain, rootNamespace, tunnel };
}

function readAdmin(node: ConfigNode | undefined): GatewayConfig['admin'] | undefined {
  if (node === undefined) return { host: '127.0.0.1', port: 15000 };
  const o = node.object({ optional: ['address', 'port', 'enabled'] });
  if (o?.field('enabled')?.boolean() === false) return null;
  return hostPort(node, '127.0.0.1', 15000);
}

function hostPort(node: ConfigNode | undefined, host: string, port: number): { host: string; port: number } | undefined {
  if (node === undefined) return { host, port };
  const o = node.object({ optional: ['address', 'port', 'enabled'] });
  if (o === undefined) return undefined;
  const h = o.field('address')?.string() ?? host;
  const p = o.has('port') ? o.field('port')?.integer(BIND_PORT) : port;
  return p === undefined ? undefined : { host: h, port: p };
}

function readListeners(node: ConfigNode, path: PathReader): ListenerSpec[] {
  const out: ListenerSpec[] = [];
  for (const item of node.list({ minItems: 1, maxItems: MAX_LISTENERS }) ?? []) {
    const o = item.object({ required: ['name', 'port', 'protocol'], optional: ['address', 'tls'] });
    if (o === undefined) continue;
    const name = o.field('name')?.string(NAME_RULE);
    const port = o.field('port')?.integer(BIND_PORT);
    const protocol = o.field('protocol')?.oneOf(['http', 'https'] as const);
    const address = o.field('address')?.string() ?? '0.0.0.0';
    const tlsNode = o.field('tls');
    if (protocol === 'https' && tlsNode === undefined) item.report('an https listener needs a "tls" section with its certificates');
    if (protocol === 'http' && tlsNode !== undefined) tlsNode.report('"tls" is for https listeners only');
    const tls = tlsNode === undefined || protocol !== 'https' ? undefined : readTls(tlsNode, path);
    if (name === undefined || port === undefined || protocol === undefined || (protocol === 'https' && tls === undefined)) continue;
    if (out.some((l) => l.name === name)) item.report(`listener name "${name}" is used twice`);
    else if (port !== 0 && out.some((l) => l.port === port && l.address === address)) item.report(`${address}:${port} is used by two listeners`);
    else out.push({ name, address, port, protocol, ...(tls === undefined ? {} : { tls }) });
  }
  return out;
}

function readTls(node: ConfigNode, path: PathReader): ListenerSpec['tls'] | undefined {
  const o = node.object({ required: ['certificates'], optional: ['minVersion', 'clientCertificate'] });
  if (o === undefined) return undefined;
  const certificates: CertificateSpec[] = [];
  let ok = true;
  for (const item of o.field('certificates')?.list({ minItems: 1, maxItems: MAX_CERTIFICATES }) ?? []) {
    const c = item.object({ required: ['certificate', 'key'], optional: ['hosts'] });
    const hosts: string[] = [];
    for (const h of c?.field('hosts')?.list({ minItems: 1, maxItems: 64 }) ?? []) {
      const host = h.string({ pattern: HOST_PATTERN, expected: 'a lower-case host name, or *.suffix' });
      if (host !== undefined) hosts.push(host);
    }
    const certificate = c?.field('certificate') === undefined ? undefined : path(c.field('certificate') as ConfigNode);
    const key = c?.field('key') === undefined ? undefined : path(c.field('key') as ConfigNode);
    if (certificate === undefined || key === undefined) ok = false;
    else certificates.push({ hosts, certificate, key });
  }
  const minVersion = (o.field('minVersion')?.oneOf<TlsVersion>(['TLSv1.2', 'TLSv1.3']) ?? 'TLSv1.2') as TlsVersion;
  const cc = o.field('clientCertificate')?.object({ required: ['caFile'], optional: ['required'] });
  const caFile = cc?.field('caFile') === undefined ? undefined : path(cc.field('caFile') as ConfigNode);
  const required = cc?.field('required')?.boolean() ?? true;
  if (!ok || certificates.length === 0 || (o.has('clientCertificate') && caFile === undefined)) return undefined;
  return { certificates, minVersion, ...(caFile === undefined ? {} : { clientCertificate: { caFile, required } }) };
}

function readLimits(node: ConfigNode | undefined): GatewayLimits | undefined {
  const d = GATEWAY_DEFAULTS.limits;
  if (node === undefined) return d;
  const o: ConfigObject | undefined = node.object({ optional: Object.keys(LIMIT_FIELDS) });
  if (o === undefined) return undefined;
  const out: Record<string, number> = { ...d };
  let ok = true;
  for (const [field, [key, kind, min, max]] of Object.entries(LIMIT_FIELDS)) {
    const n = o.field(field);
    if (n === undefined) continue;
    const v = kind === 'ms' ? n.duration() : n.integer({ min, max });
    if (v !== undefined && kind === 'ms' && (v < min || v > max)) {
      n.report(`expected a duration from ${min} ms to ${max} ms`);
      ok = false;
    } else if (v === undefined) ok = false;
    else out[key] = v;
  }
  return ok ? (out as unknown as GatewayLimits) : undefined;
}

/** YAML field → [GatewayLimits key, unit, min, max]. */
const LIMIT_FIELDS: Readonly<Record<string, readonly [keyof GatewayLimits, 'n' | 'ms', number, number]>> = Object.freeze({
  maxHeaderBytes: ['maxHeaderBytes', 'n', 1024, 1024 * 1024],
  maxBodyBytes: ['maxBodyBytes', 'n', 0, 1024 * 1024 * 1024],
  headersTimeout: ['headersTimeoutMs', 'ms', 1_000, 300_000],
  requestTimeout: ['requestTimeoutMs', 'ms', 1_000, 3_600_000],
  keepAliveTimeout: ['keepAliveTimeoutMs', 'ms', 1_000, 3_600_000],
  maxConnections: ['maxConnections', 'n', 1, 1_000_000],
  maxConcurrentStreams: ['maxConcurrentStreams', 'n', 1, 1_000],
});
