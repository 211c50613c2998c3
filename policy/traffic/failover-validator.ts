/**
 * The spec of `ZoneFailover`, and the check across resources that two rules never claim the same callers
 * of the same destination (which one would win is not something an operator should have to guess: such a
 * set is refused whole, naming both).
 *
 *   spec:
 *     destination: orders        # a service of this namespace, or "*" (in the root namespace: mesh-wide)
 *     order: [east, west, "*"]   # zone names and "*" (any zone not named), each at most once
 *     threshold: "50%"           # optional, default 50%
 *     from: [east]               # optional: the rule is for callers in these zones only
 */
import type { ConfigNode, ConfigObject } from '../../common/config-node.js';
import { DNS_LABEL } from '../selectors.js';
import { DEFAULT_FAILOVER_THRESHOLD, TRAFFIC_LIMITS, type FailoverSpec, type TrafficResource } from './types.js';

export const FAILOVER_FIELDS = ['order', 'threshold', 'from'];
const ZONE_HINT = 'a zone name (a DNS label)';
const PERCENT = /^(?:100(?:\.0{1,3})?|[0-9]{1,2}(?:\.[0-9]{1,3})?)%$/;

/** `"N%"` (0-100, as validated) as a share 0-1. */
export function thresholdShare(threshold: string): number {
  return Number(threshold.slice(0, -1)) / 100;
}

/** Zone names (and `"*"` when `wildcard`), each once; undefined after reporting a problem. */
function readZones(node: ConfigNode | undefined, wildcard: boolean): string[] | undefined {
  const items = node?.list({ minItems: 1, maxItems: TRAFFIC_LIMITS.zones });
  if (items === undefined) return undefined;
  const zones: string[] = [];
  let ok = true;
  for (const item of items) {
    const zone = item.string({ maxLength: 63 });
    let problem: string | undefined;
    if (zone === undefined) ok = false;
    else if (zone === '*' && !wildcard) problem = '"*" is not a zone here: leave "from" out for callers in every zone';
    else if (zone !== '*' && !DNS_LABEL.test(zone)) problem = `expected ${ZONE_HINT}${wildcard ? ' or "*"' : ''}, got ${JSON.stringify(zone)}`;
    else if (zones.includes(zone)) problem = `${JSON.stringify(zone)} is listed twice`;
    else zones.push(zone);
    if (problem !== undefined) {
      item.report(problem);
      ok = false;
    }
  }
  return ok ? zones : undefined;
}

export function validateFailover(spec: ConfigObject): FailoverSpec | undefined {
  const order = readZones(spec.field('order'), true);
  const from = spec.has('from') ? readZones(spec.field('from'), false) : undefined;
  let threshold: string | undefined = DEFAULT_FAILOVER_THRESHOLD;
  const node = spec.field('threshold');
  if (node !== undefined) {
    const text = node.string({ expected: 'a percentage such as "50%"' });
    threshold = text === undefined ? undefined : PERCENT.test(text) ? text : node.report(`expected a percentage from "0%" to "100%", got ${JSON.stringify(text)}`);
  }
  if (order === undefined || threshold === undefined || (spec.has('from') && from === undefined)) return undefined;
  return Object.freeze({ order: Object.freeze(order), threshold, ...(from === undefined ? {} : { from: Object.freeze(from) }) });
}

/** Where a validated resource was read (its name), for naming both sides of a conflict. */
export interface Located {
  readonly resource: TrafficResource | undefined;
  readonly at: ConfigNode | undefined;
}

/**
 * Two ZoneFailover rules of one namespace and destination conflict when both leave `from` out, or their
 * `from` lists share a zone: for those callers neither is more specific. Reported at the later one.
 */
export function reportFailoverConflicts(found: readonly Located[]): void {
  const seen: { readonly target: string; readonly from: readonly string[] | undefined; readonly name: string; readonly at: ConfigNode }[] = [];
  for (const { resource, at } of found) {
    if (resource?.kind !== 'ZoneFailover' || at === undefined) continue;
    const target = `${resource.metadata.namespace}/${resource.spec.destination}`;
    const from = resource.spec.from;
    const name = `${resource.metadata.namespace}/${resource.metadata.name}`;
    for (const other of seen) {
      if (other.target !== target) continue;
      const shared = from === undefined || other.from === undefined ? (from === other.from ? 'every zone' : undefined) : from.find((z) => other.from?.includes(z));
      if (shared === undefined) continue;
      // Objects (a snapshot, custom resources) have no source position: their names say which they are.
      const where = other.at.line > 0 ? ` (${other.at.file}:${other.at.line}:${other.at.column})` : '';
      at.report(`ZoneFailover ${name} conflicts with ZoneFailover ${other.name}${where}: both set the failover of "${resource.spec.destination}" in ${resource.metadata.namespace} for callers in ${shared === 'every zone' ? 'every zone' : `zone ${shared}`}; give them different "from" zones or merge them`);
      break;
    }
    seen.push({ target, from, name, at });
  }
}
