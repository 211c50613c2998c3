/**
 * `trellis explain --admin URL [--from-zone ZONE]`: which zone would serve the call. Reads what the zone
 * control plane at URL holds (its admin port: `/status` for its zone, `/registry` for its own endpoints,
 * `/global/catalogue` for the other zones' exported services) and orders the zones with the pure rule of
 * control/zone-sync/serving-zones.ts, following the ZoneFailover rule of the --policy files for the
 * caller's zone (the balancer's own rule and defaults when none applies).
 */
import type { FailoverChoice } from '../policy/traffic/index.js';
import { defaultFailover, servingZones, type ServingPlan, type ZoneEndpoints } from '../control/zone-sync/serving-zones.js';
import { getJson } from './zone.js';

interface RegistryEntry {
  readonly service?: unknown;
  readonly namespace?: unknown;
  readonly zone?: unknown;
  readonly healthy?: unknown;
}

interface CatalogueService {
  readonly localities?: readonly { readonly healthy?: unknown; readonly total?: unknown }[];
}

export interface ZoneAnswer extends ServingPlan {
  /** The zone of the control plane read, and the caller's (it, unless --from-zone said otherwise). */
  readonly catalogueZone: string;
  readonly fromZone: string;
}

const count = (v: unknown): number => (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? v : 0);

/** Each zone's endpoints of `destination`, as the control plane at `admin` knows them; `failover`: the rule for a caller's zone, if any. */
export async function explainZones(admin: string, destination: { namespace: string; service: string }, fromZone: string | undefined, failover: (zone: string) => FailoverChoice | undefined): Promise<ZoneAnswer> {
  const status = (await getJson(admin, '/status')).body as { zone?: unknown };
  const catalogueZone = typeof status.zone === 'string' ? status.zone : 'default';
  const registry = (await getJson(admin, '/registry')).body as { endpoints?: readonly RegistryEntry[] };
  const zones: ZoneEndpoints[] = [];
  for (const e of registry.endpoints ?? []) {
    if (e.namespace !== destination.namespace || e.service !== destination.service) continue;
    zones.push({ zone: typeof e.zone === 'string' ? e.zone : catalogueZone, healthy: e.healthy === true ? 1 : 0, total: 1 });
  }
  // A zone without --global has no catalogue (404): only its own endpoints count.
  const remote = await getJson(admin, '/global/catalogue');
  const services = remote.status === 200 ? ((remote.body as { service?: readonly [string, CatalogueService][] }).service ?? []) : [];
  for (const [key, record] of services) {
    const [zone, namespace, name] = key.split('/');
    if (zone === undefined || namespace !== destination.namespace || name !== destination.service) continue;
    for (const l of record.localities ?? []) zones.push({ zone, healthy: count(l.healthy), total: count(l.total) });
  }
  const caller = fromZone ?? catalogueZone;
  return { ...servingZones(caller, zones, failover(caller) ?? defaultFailover(caller)), catalogueZone, fromZone: caller };
}

export function renderZones(answer: ZoneAnswer): string {
  const lines = [
    '',
    `served by: ${answer.servedBy === null ? 'no zone (no healthy endpoint anywhere)' : `zone ${answer.servedBy}`} (a caller in zone ${answer.fromZone}; catalogue of zone ${answer.catalogueZone})`,
    ...(answer.spill === undefined ? [] : [`  it keeps ${(answer.spill.keeps * 100).toFixed(0)}% of calls; the rest spill to zone ${answer.spill.to}`]),
    `  failover order [${answer.failover.order.join(', ')}], threshold ${answer.failover.threshold * 100}% (from ${answer.failover.source === 'default' ? 'the default: no ZoneFailover applies' : `ZoneFailover ${answer.failover.source}`})`,
  ];
  for (const [i, z] of answer.order.entries()) lines.push(`  ${i + 1}. ${z.zone}: ${z.why}`);
  return `${lines.join('\n')}\n`;
}
