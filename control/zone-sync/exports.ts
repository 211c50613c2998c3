/**
 * Which services a zone exports, and the record it sends for each. Export is explicit: the mesh-wide
 * default the global's operator chose (`--export-default all|none`, sent in the welcome) applies unless
 * the zone's own rules say otherwise (`--export NS/NAME|NS/*`, `--no-export NS/NAME|NS/*`): the most
 * specific rule wins (a service's own over its namespace's), and `--no-export` over `--export` at equal
 * specificity.
 *
 * The record is built from the registry: the service's ports, the SPIFFE ID that serves it, and healthy
 * and total endpoint counts per locality. The registry knows no region or subzone yet, so each zone is
 * one locality (its name) until registrations carry locality labels.
 */
import { workloadId } from '../../ca/spiffe-id.js';
import { InputError } from '../../common/errors.js';
import { CODE } from '../../common/error-codes.js';
import type { ServiceRegistry } from '../registry.js';
import type { ExportDefault } from './protocol.js';
import { serviceKey, type ExportedService } from './records.js';

export interface ExportRules {
  readonly exported: readonly string[];
  readonly hidden: readonly string[];
}

const RULE = /^[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?\/(?:\*|[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?)$/;

export function parseExportRule(text: string, flag: string): string {
  if (!RULE.test(text)) throw new InputError(CODE.CLI_USAGE, `${flag}: "${text}" is not NAMESPACE/SERVICE or NAMESPACE/*`);
  return text;
}

/** Whether (namespace, service) is exported under `rules` and the mesh-wide `fallback`. */
export function isExported(rules: ExportRules, fallback: ExportDefault, namespace: string, service: string): boolean {
  const own = `${namespace}/${service}`;
  if (rules.hidden.includes(own)) return false;
  if (rules.exported.includes(own)) return true;
  const all = `${namespace}/*`;
  if (rules.hidden.includes(all)) return false;
  if (rules.exported.includes(all)) return true;
  return fallback === 'all';
}

/** The record of one exported service, or undefined when the service has no instance (left the mesh). */
export function exportedService(registry: ServiceRegistry, trustDomain: string, zone: string, namespace: string, name: string): ExportedService | undefined {
  if (!registry.hasMeshService(namespace, name)) return undefined;
  const upstream = registry.upstream(namespace, name);
  const healthy = upstream.endpoints.filter((e) => e.healthy).length;
  return {
    zone,
    namespace,
    name,
    ports: upstream.ports.map((p) => ({ port: p.port, protocol: p.protocol, ...(p.name === undefined ? {} : { name: p.name }) })),
    identities: [workloadId(trustDomain, namespace, name).toString()],
    localities: [{ locality: zone, healthy, total: upstream.endpoints.length }],
  };
}

export function exportKey(zone: string, namespace: string, name: string): string {
  return serviceKey(zone, namespace, name);
}
