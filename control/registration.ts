/**
 * Validation of what an agent sends: its registration (on the watch) and its health reports. Every
 * problem is listed in one 400 reply; the service and namespace are never taken from the body (they are
 * the caller's certificate's), only the facts a workload alone knows (address, ports, upstreams, health).
 * An upstream is a service by name, every service of a namespace (`service: "*"`), or every service of
 * the mesh (both `"*"`); `namespace: "*"` with a named service means nothing and is refused.
 */
import { LABEL_KEY, LABEL_VALUE } from '../policy/traffic/spec-readers.js';
import { isIP } from 'node:net';
import { ANY_UPSTREAM, type HealthReport, type Registration } from '../api/control-protocol.js';
import { DNS_LABEL } from '../policy/selectors.js';
import { isPortProtocol } from '../api/port-protocol.js';
import { CONTROL_LIMITS } from './limits.js';
import { HttpError } from './http-io.js';
import { CODE } from '../common/error-codes.js';

export const REGISTRATION_LIMITS = Object.freeze({ ports: CONTROL_LIMITS.registrationPorts, upstreams: CONTROL_LIMITS.registrationUpstreams, detail: CONTROL_LIMITS.registrationDetailBytes });
const INSTANCE_ID = /^[A-Za-z0-9_-]{1,128}$/;
const HOST_NAME = /^(?=.{1,253}$)[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?)*$/;

function isPort(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 1 && value <= 65535;
}

function object(value: unknown): Record<string, unknown> | undefined {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
}

export function validateRegistration(value: unknown): Registration {
  const problems: string[] = [];
  const body = object(object(value)?.registration);
  if (body === undefined) throw new HttpError(CODE.CONTROL_BAD_REGISTRATION, 'expected {"registration": {...}}');
  const { instanceId, zone, address, tunnelPort, ports, healthy, upstreams, agentVersion } = body;
  const labels = validLabels(body.labels, problems);
  const exported = body.export;
  if (typeof instanceId !== 'string' || !INSTANCE_ID.test(instanceId)) problems.push('instanceId: 1-128 characters of A-Z, a-z, 0-9, "_", "-"');
  if (zone !== undefined && (typeof zone !== 'string' || !DNS_LABEL.test(zone))) problems.push('zone: a DNS label');
  if (typeof address !== 'string' || (isIP(address) === 0 && !HOST_NAME.test(address))) problems.push('address: an IP address or a host name');
  if (!isPort(tunnelPort)) problems.push('tunnelPort: 1-65535');
  if (typeof healthy !== 'boolean') problems.push('healthy: true or false');
  if (exported !== undefined && typeof exported !== 'boolean') problems.push('export: true, false or absent');
  if (typeof agentVersion !== 'string' || agentVersion.length > 64) problems.push('agentVersion: a string of at most 64 characters');
  const portList: Registration['ports'][number][] = [];
  if (!Array.isArray(ports) || ports.length > REGISTRATION_LIMITS.ports) {
    problems.push(`ports: a list of at most ${REGISTRATION_LIMITS.ports}`);
  } else {
    const seen = new Set<number>();
    ports.forEach((p: unknown, i) => {
      const port = object(p);
      if (port === undefined || !isPort(port.port) || !isPortProtocol(port.protocol) || (port.name !== undefined && (typeof port.name !== 'string' || !DNS_LABEL.test(port.name)))) {
        problems.push(`ports[${i}]: {port: 1-65535, protocol: "tcp" | "http" | "http2" | "grpc", name?: DNS label}`);
      } else if (seen.has(port.port)) {
        problems.push(`ports[${i}]: port ${port.port} listed twice`);
      } else {
        seen.add(port.port);
        portList.push(Object.freeze({ port: port.port, protocol: port.protocol, ...(port.name === undefined ? {} : { name: port.name as string }) }));
      }
    });
  }
  const upstreamList: Registration['upstreams'][number][] = [];
  if (!Array.isArray(upstreams) || upstreams.length > REGISTRATION_LIMITS.upstreams) {
    problems.push(`upstreams: a list of at most ${REGISTRATION_LIMITS.upstreams}`);
  } else {
    upstreams.forEach((u: unknown, i) => {
      const ref = object(u);
      const service = ref?.service;
      const namespace = ref?.namespace;
      if (typeof service !== 'string' || (service !== ANY_UPSTREAM && !DNS_LABEL.test(service)) || typeof namespace !== 'string' || (namespace !== ANY_UPSTREAM && !DNS_LABEL.test(namespace))) {
        problems.push(`upstreams[${i}]: {service: DNS label or "*", namespace: DNS label or "*"}`);
      } else if (namespace === ANY_UPSTREAM && service !== ANY_UPSTREAM) {
        problems.push(`upstreams[${i}]: namespace "*" needs service "*" (every service of the mesh); a service is named in one namespace`);
      } else {
        upstreamList.push(Object.freeze({ service, namespace }));
      }
    });
  }
  if (problems.length > 0) throw new HttpError(CODE.CONTROL_BAD_REGISTRATION, `invalid registration: ${problems.join('; ')}`);
  return Object.freeze({
    instanceId: instanceId as string,
    ...(zone === undefined ? {} : { zone: zone as string }),
    address: address as string,
    tunnelPort: tunnelPort as number,
    ports: Object.freeze(portList),
    healthy: healthy as boolean,
    upstreams: Object.freeze(upstreamList),
    agentVersion: agentVersion as string,
    ...(labels === undefined ? {} : { labels }),
    ...(exported === undefined ? {} : { export: exported as boolean }),
  });
}


/** Kubernetes-style labels, at most 16; undefined when absent (or bad: then a problem is recorded). */
function validLabels(value: unknown, problems: string[]): Readonly<Record<string, string>> | undefined {
  if (value === undefined) return undefined;
  const map = object(value);
  const entries = map === undefined ? [] : Object.entries(map);
  if (map === undefined || entries.length > 16 || entries.some(([k, v]) => !LABEL_KEY.test(k) || typeof v !== 'string' || !LABEL_VALUE.test(v))) {
    problems.push('labels: at most 16 Kubernetes labels (key: value)');
    return undefined;
  }
  const out: Record<string, string> = {};
  for (const [k, v] of entries) Object.defineProperty(out, k, { value: v, enumerable: true });
  return Object.freeze(out);
}

export function validateHealthReport(value: unknown): HealthReport {
  const body = object(value);
  if (body === undefined || typeof body.healthy !== 'boolean') throw new HttpError(CODE.CONTROL_BAD_HEALTH, 'expected {"healthy": true|false, "detail"?: string}');
  const detail = typeof body.detail === 'string' ? body.detail.slice(0, REGISTRATION_LIMITS.detail) : undefined;
  return Object.freeze({ healthy: body.healthy, ...(detail === undefined ? {} : { detail }) });
}
