/**
 * The ZoneFailover resources of a config, compiled once per change: which order and threshold a caller in
 * one zone uses for one destination.
 *
 * - Specificity: the rule naming the service (`destination: orders` in its namespace) beats the
 *   namespace's `*` rule, which beats the mesh-wide one (`*` in the root namespace, as Istio reads its
 *   root namespace). At one destination, a rule whose `from` names the caller's zone beats one without
 *   `from`; two that would tie are refused by the validator (failover-validator.ts), so there is no
 *   "first in file order wins" here.
 * - The caller's own zone comes first unless the order names it: `[east, west, "*"]` read by a caller in
 *   north is `[north, east, west, "*"]`; read by a caller in west it stays as written (west second), which
 *   is how an operator sends a zone's callers elsewhere on purpose (with `from` to say which callers).
 * - `"*"` is every zone not named before it. An order without `"*"` still falls back to any zone when
 *   none it names has a healthy endpoint (locality.ts): failover never turns into refusal.
 */
import { thresholdShare } from './failover-validator.js';
import type { ZoneFailover } from './types.js';

/** One caller's failover for one destination: what the balancer's locality step reads per pick. */
export interface FailoverChoice {
  /** Zone names and `"*"`, the caller's zone included (see above). */
  readonly order: readonly string[];
  /** Share 0-1 of a zone's usual endpoint count under which it spills to the next. */
  readonly threshold: number;
  /** `namespace/name` of the ZoneFailover it came from. */
  readonly source: string;
}

/** `order` with the caller's zone first unless it names that zone itself. */
export function effectiveOrder(zone: string, order: readonly string[]): readonly string[] {
  return Object.freeze(order.includes(zone) ? [...order] : [zone, ...order]);
}

export class FailoverRules {
  /** By `namespace/destination`: the rules of that destination. */
  private readonly byTarget = new Map<string, ZoneFailover[]>();

  constructor(
    resources: readonly ZoneFailover[],
    private readonly rootNamespace: string,
  ) {
    for (const r of resources) {
      const key = `${r.metadata.namespace}/${r.spec.destination}`;
      const list = this.byTarget.get(key);
      if (list === undefined) this.byTarget.set(key, [r]);
      else list.push(r);
    }
  }

  /** How many ZoneFailover resources are in force. */
  get size(): number {
    let n = 0;
    for (const list of this.byTarget.values()) n += list.length;
    return n;
  }

  /** The choice for callers in `callerZone` of `namespace/service`; undefined when no rule covers it. */
  resolve(callerZone: string, namespace: string, service: string): FailoverChoice | undefined {
    const rule = this.pick(`${namespace}/${service}`, callerZone) ?? this.pick(`${namespace}/*`, callerZone) ?? this.pick(`${this.rootNamespace}/*`, callerZone);
    if (rule === undefined) return undefined;
    return Object.freeze({ order: effectiveOrder(callerZone, rule.spec.order), threshold: thresholdShare(rule.spec.threshold), source: `${rule.metadata.namespace}/${rule.metadata.name}` });
  }

  private pick(target: string, callerZone: string): ZoneFailover | undefined {
    const rules = this.byTarget.get(target);
    if (rules === undefined) return undefined;
    return rules.find((r) => r.spec.from?.includes(callerZone) === true) ?? rules.find((r) => r.spec.from === undefined);
  }
}
