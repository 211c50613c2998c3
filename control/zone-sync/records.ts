/**
 * The records zone sync carries, their keys and their validators. Services, never pods: an exported
 * service is one record however many endpoints serve it, so the cost is exported services × zones.
 *
 *   service   <zone>/<namespace>/<name>    ExportedService
 *   ingress   <zone>/<name>                ZoneIngress (the zone's ingress addresses)
 *   trust     <zone>/<trust-domain>        ZoneTrust (the roots the zone's workloads chain to)
 *   policy    <namespace>/<name>           a mesh-wide TrafficPermission (validated again by the zone)
 *
 * A record that fails its validator is refused with its kind and key named; the delta carrying it is
 * refused whole.
 */
import { parseSpiffeId } from '../../ca/spiffe-id.js';
import { isTrellisError } from '../../common/errors.js';
import { malformed, ownerOf, ZONE_NAME, type SyncKind } from './protocol.js';
import { PORT_PROTOCOLS, type PortProtocol } from '../../api/port-protocol.js';
import { SUBZONE_LABEL, type Endpoint } from '../../api/data-plane.js';

export interface ExportedPort {
  readonly port: number;
  readonly protocol: PortProtocol;
  readonly name?: string;
  /**
   * The app port its endpoints listen on: what a caller in another zone names in its CONNECT and SNI through
   * the zone ingress (as a caller in the zone names it on the tunnel). Absent from an older zone: the port.
   */
  readonly targetPort?: number;
}

export interface LocalityCount {
  /** `zone/subzone` for endpoints with a subzone (`trellis.dev/subzone`), the zone alone for the others. */
  readonly locality: string;
  readonly healthy: number;
  readonly total: number;
}

export interface ExportedService {
  readonly zone: string;
  readonly namespace: string;
  readonly name: string;
  readonly ports: readonly ExportedPort[];
  /** The SPIFFE IDs that serve the service: what a caller's sidecar expects at the other end. */
  readonly identities: readonly string[];
  readonly localities: readonly LocalityCount[];
}

export interface ZoneIngress {
  readonly zone: string;
  /** `host:port`, as other zones' sidecars dial them. */
  readonly addresses: readonly string[];
}

export interface ZoneTrust {
  readonly zone: string;
  readonly trustDomain: string;
  /** PEM roots. */
  readonly rootsPem: string;
}

export const RECORD_LIMITS = Object.freeze({ ports: 64, identities: 64, localities: 64, addresses: 16, rootsPemBytes: 64 * 1024 });

/**
 * Healthy and total endpoints per locality of one zone's service, in locality order. Subzones past the
 * record's limit are counted with the zone's own locality, so the totals always add up.
 */
export function localityCounts(zone: string, endpoints: readonly Endpoint[]): LocalityCount[] {
  const counts = new Map<string, { healthy: number; total: number }>();
  for (const e of endpoints) {
    const subzone = e.labels?.[SUBZONE_LABEL];
    let locality = subzone === undefined ? zone : `${zone}/${subzone}`;
    if (!counts.has(locality) && counts.size >= RECORD_LIMITS.localities - 1) locality = zone;
    const c = counts.get(locality) ?? { healthy: 0, total: 0 };
    counts.set(locality, { healthy: c.healthy + (e.healthy ? 1 : 0), total: c.total + 1 });
  }
  if (counts.size === 0) counts.set(zone, { healthy: 0, total: 0 });
  return [...counts.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([locality, c]) => ({ locality, ...c }));
}

const LABEL = /^[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?$/;
const HOST_PORT = /^(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]{1,253}):(\d{1,5})$/;
const LOCALITY = /^[A-Za-z0-9._/-]{0,255}$/;

export function serviceKey(zone: string, namespace: string, name: string): string {
  return `${zone}/${namespace}/${name}`;
}

function count(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

function fail(kind: SyncKind, key: string, problem: string): never {
  throw malformed(`${kind} ${key}: ${problem}`, { kind, key });
}

function list(kind: SyncKind, key: string, value: unknown, field: string, max: number): unknown[] {
  if (!Array.isArray(value) || value.length > max) fail(kind, key, `${field} must be a list of at most ${max}`);
  return value as unknown[];
}

function onlyFields(kind: SyncKind, key: string, value: Record<string, unknown>, allowed: readonly string[]): void {
  for (const f of Object.keys(value)) if (!allowed.includes(f)) fail(kind, key, `unknown field "${f}"`);
}

function validateService(key: string, v: Record<string, unknown>): ExportedService {
  onlyFields('service', key, v, ['zone', 'namespace', 'name', 'ports', 'identities', 'localities']);
  const { zone, namespace, name } = v;
  if (typeof zone !== 'string' || typeof namespace !== 'string' || typeof name !== 'string' || !LABEL.test(namespace) || !LABEL.test(name)) fail('service', key, 'zone, namespace and name must be DNS labels');
  if (key !== serviceKey(zone, namespace, name)) fail('service', key, `the key must be ${serviceKey(zone, namespace, name)}`);
  const ports = list('service', key, v.ports, 'ports', RECORD_LIMITS.ports).map((p) => {
    const port = p as Record<string, unknown>;
    if (typeof p !== 'object' || p === null || !count(port.port) || port.port < 1 || port.port > 65535 || !PORT_PROTOCOLS.includes(port.protocol as PortProtocol)) fail('service', key, `a port must be {port 1-65535, protocol ${PORT_PROTOCOLS.join('|')}}`);
    if (port.name !== undefined && (typeof port.name !== 'string' || !LABEL.test(port.name))) fail('service', key, 'a port name must be a DNS label');
    if (port.targetPort !== undefined && (!count(port.targetPort) || port.targetPort < 1 || port.targetPort > 65535)) fail('service', key, 'a targetPort must be 1-65535');
    return Object.freeze({ port: port.port, protocol: port.protocol, ...(port.name === undefined ? {} : { name: port.name }), ...(port.targetPort === undefined ? {} : { targetPort: port.targetPort }) }) as ExportedPort;
  });
  const identities = list('service', key, v.identities, 'identities', RECORD_LIMITS.identities).map((id) => {
    try {
      return parseSpiffeId(String(id)).toString();
    } catch (err) {
      return fail('service', key, isTrellisError(err) ? err.message : 'an identity is not a SPIFFE ID');
    }
  });
  const localities = list('service', key, v.localities, 'localities', RECORD_LIMITS.localities).map((l) => {
    const loc = l as Record<string, unknown>;
    if (typeof l !== 'object' || l === null || typeof loc.locality !== 'string' || !LOCALITY.test(loc.locality) || !count(loc.healthy) || !count(loc.total) || loc.healthy > loc.total) {
      fail('service', key, 'a locality must be {locality, healthy ≤ total}');
    }
    return Object.freeze({ locality: loc.locality, healthy: loc.healthy, total: loc.total }) as LocalityCount;
  });
  return Object.freeze({ zone, namespace, name, ports: Object.freeze(ports), identities: Object.freeze(identities), localities: Object.freeze(localities) });
}

function validateIngress(key: string, v: Record<string, unknown>): ZoneIngress {
  onlyFields('ingress', key, v, ['zone', 'addresses']);
  if (typeof v.zone !== 'string' || !key.startsWith(`${v.zone}/`)) fail('ingress', key, 'zone must be the key\'s first segment');
  const addresses = list('ingress', key, v.addresses, 'addresses', RECORD_LIMITS.addresses).map((a) => {
    const m = typeof a === 'string' ? HOST_PORT.exec(a) : null;
    if (m === null || Number(m[1]) < 1 || Number(m[1]) > 65535) fail('ingress', key, `address ${String(a).slice(0, 80)} is not HOST:PORT`);
    return a as string;
  });
  return Object.freeze({ zone: v.zone, addresses: Object.freeze(addresses) });
}

function validateTrust(key: string, v: Record<string, unknown>): ZoneTrust {
  onlyFields('trust', key, v, ['zone', 'trustDomain', 'rootsPem']);
  if (typeof v.zone !== 'string' || typeof v.trustDomain !== 'string' || key !== `${v.zone}/${v.trustDomain}`) fail('trust', key, 'the key must be <zone>/<trustDomain>');
  if (typeof v.rootsPem !== 'string' || v.rootsPem.length > RECORD_LIMITS.rootsPemBytes || !v.rootsPem.includes('-----BEGIN CERTIFICATE-----')) fail('trust', key, 'rootsPem must hold PEM certificates');
  return Object.freeze({ zone: v.zone, trustDomain: v.trustDomain, rootsPem: v.rootsPem });
}

function validatePolicy(key: string, v: Record<string, unknown>): Record<string, unknown> {
  const meta = v.metadata as Record<string, unknown> | undefined;
  if (typeof meta !== 'object' || meta === null || `${String(meta.namespace)}/${String(meta.name)}` !== key) fail('policy', key, 'metadata must name the key\'s namespace/name');
  // The zone validates the policy itself with the policy library before it uses it.
  return v;
}

/** Validates one record of `kind` at `key`; for up kinds the key's first segment must be its zone. */
export function validateRecord(kind: SyncKind, key: string, record: unknown): unknown {
  if (typeof record !== 'object' || record === null || Array.isArray(record)) fail(kind, key, 'the record must be an object');
  const v = record as Record<string, unknown>;
  if (kind !== 'policy' && (!ZONE_NAME.test(ownerOf(key)) || v.zone !== ownerOf(key))) fail(kind, key, 'the record\'s zone must be the key\'s first segment');
  switch (kind) {
    case 'service':
      return validateService(key, v);
    case 'ingress':
      return validateIngress(key, v);
    case 'trust':
      return validateTrust(key, v);
    case 'policy':
      return validatePolicy(key, v);
  }
}
