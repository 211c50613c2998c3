/**
 * Locality-aware choice between zones, and between subzones inside the caller's zone, on by default and
 * needing no outlier detection: a caller prefers endpoints of its own zone (and of its own subzone
 * there) and fails over, zone by zone in an order, when the healthy ones of a zone fall under a
 * threshold of its usual count.
 *
 * - Order and threshold per destination: the ZoneFailover rule in force for the caller's zone
 *   (distributed config, policy/traffic/failover-rules.ts) wins; else the sidecar's local default
 *   (`perService['ns/name']`, else `order`, from `SidecarPoolOptions.failover`); else `[own zone, "*"]`.
 *   Either way the caller's own zone comes first unless the order names it (`effectiveOrder`); `"*"` is
 *   every zone not named before it (Kuma's `failover`, Istio's `failoverPriority`, as a list).
 * - Threshold (default 0.5, Kuma's `failoverThreshold`): a zone with at least `threshold × total` healthy
 *   endpoints takes all the traffic. Under it, traffic spills *gradually*: the zone keeps the share
 *   `healthy / (threshold × total)` and the rest goes to the next zone that has healthy endpoints (a
 *   weighted spill, not a cliff). With none healthy it is skipped. With no later zone healthy, a degraded
 *   zone keeps everything.
 * - Subzone (`trellis.dev/subzone` on endpoints, `subzone` of the caller): when the caller's own zone is
 *   chosen, the same rule runs once more inside it, between the caller's subzone and the rest of the zone.
 *   Other zones' subzones mean nothing to this caller (their ingress balances there).
 * - "Healthy" is what the balancer already judges (control plane health plus local ejection), so a remote
 *   zone whose ingress refuses or cannot be reached drops out within one failed dial, and a zone that goes
 *   offline (its lease) leaves the config: either way traffic moves to the next zone, and requests already
 *   sent are not retried by this choice.
 *
 * `narrow` runs per pick: no allocation, a few passes over the candidates. The rule per destination is
 * resolved once per config change (the balancer keeps it with the service).
 */
import { SUBZONE_LABEL } from '../../../api/data-plane.js';
import { effectiveOrder, type FailoverChoice, type FailoverRules } from '../../../policy/traffic/index.js';
import type { BalancedEndpoint } from './load-balancer.js';

export interface LocalityOptions {
  /** The caller's own zone. */
  readonly zone: string;
  /** The caller's subzone inside its zone; absent: no preference inside the zone. */
  readonly subzone?: string;
  /** Local default, mesh-wide failover order of zone names and `"*"`; default `[zone, "*"]`. */
  readonly order?: readonly string[];
  /** Local default per `namespace/service`, an order that replaces the mesh-wide one. */
  readonly perService?: Readonly<Record<string, readonly string[]>>;
  /** Share of a zone's usual endpoint count under which it spills to the next (0-1, default 0.5). */
  readonly threshold?: number;
}

export const DEFAULT_FAILOVER_THRESHOLD = 0.5;

/** Whether an endpoint of `zone` belongs to tier `tier` of `order`. */
function inTier(zone: string, order: readonly string[], tier: number): boolean {
  const name = order[tier] as string;
  if (name !== '*') return zone === name;
  for (let i = 0; i < tier; i++) if (order[i] === zone) return false;
  return true;
}

function subzoneOf(e: BalancedEndpoint): string | undefined {
  return e.endpoint.labels?.[SUBZONE_LABEL];
}

export class Locality {
  private readonly threshold: number;
  private zone: string;
  private localDefault!: FailoverChoice;
  private localPerService!: ReadonlyMap<string, FailoverChoice>;
  private distributed: FailoverRules | undefined;

  constructor(private readonly options: LocalityOptions) {
    this.threshold = Math.min(1, Math.max(0, options.threshold ?? DEFAULT_FAILOVER_THRESHOLD));
    this.zone = options.zone;
    this.buildLocal();
  }

  /** The local default's choices, for the zone in force. */
  private buildLocal(): void {
    const local = (order: readonly string[], source: string): FailoverChoice => Object.freeze({ order: effectiveOrder(this.zone, order), threshold: this.threshold, source });
    this.localDefault = local(this.options.order ?? ['*'], this.options.order === undefined ? 'default' : 'local');
    this.localPerService = new Map(Object.entries(this.options.perService ?? {}).map(([key, order]) => [key, local(order, 'local')]));
  }

  /**
   * The distributed ZoneFailover rules in force (undefined or empty: the local default alone), and the
   * caller's zone as the config says it (an agent learns it from its first snapshot, after the sidecar exists).
   */
  setRules(rules: FailoverRules | undefined, zone: string = this.zone): void {
    this.distributed = rules;
    if (zone !== this.zone) {
      this.zone = zone;
      this.buildLocal();
    }
  }

  /** Whether the sidecar was given a local failover default that distributed rules may override. */
  get hasLocalDefault(): boolean {
    return this.options.order !== undefined || this.options.perService !== undefined || this.options.threshold !== undefined;
  }

  /** The order and threshold for a destination: distributed rule, else local per service, else local default. */
  choiceFor(namespace: string, service: string): FailoverChoice {
    return this.distributed?.resolve(this.zone, namespace, service) ?? this.localPerService.get(`${namespace}/${service}`) ?? this.localDefault;
  }

  /**
   * Keeps in `candidates` (healthy, eligible) only the endpoints of the zone (and subzone) to use for this
   * pick, in place. `all` are the service's endpoints eligible but for health (the usual count); `random` in [0, 1).
   */
  narrow(candidates: BalancedEndpoint[], all: readonly BalancedEndpoint[], eligible: (e: BalancedEndpoint) => boolean, choice: FailoverChoice, random: () => number): void {
    const order = choice.order;
    let chosen = -1;
    let degraded = -1;
    let keep = 1;
    for (let tier = 0; tier < order.length && chosen < 0; tier++) {
      let healthy = 0;
      for (const e of candidates) if (inTier(e.endpoint.zone, order, tier)) healthy += 1;
      if (healthy === 0) continue;
      if (degraded >= 0) {
        // The next zone with healthy endpoints takes what the degraded one does not keep.
        chosen = random() < keep ? degraded : tier;
        break;
      }
      let total = 0;
      for (const e of all) if (eligible(e) && inTier(e.endpoint.zone, order, tier)) total += 1;
      const enough = choice.threshold * total;
      if (healthy >= enough) chosen = tier;
      else {
        degraded = tier;
        keep = healthy / enough;
      }
    }
    if (chosen < 0) chosen = degraded;
    if (chosen < 0) return; // no zone in the order has a healthy endpoint: leave the choice as it was
    let kept = 0;
    for (const e of candidates) if (inTier(e.endpoint.zone, order, chosen)) candidates[kept++] = e;
    candidates.length = kept;
    if (this.options.subzone !== undefined && order[chosen] === this.zone) this.narrowSubzone(candidates, all, eligible, choice.threshold, random);
  }

  /** Inside the caller's zone (`candidates` hold only it): its subzone first, spilling to the rest by the same rule. */
  private narrowSubzone(candidates: BalancedEndpoint[], all: readonly BalancedEndpoint[], eligible: (e: BalancedEndpoint) => boolean, threshold: number, random: () => number): void {
    const own = this.options.subzone;
    let healthy = 0;
    for (const e of candidates) if (subzoneOf(e) === own) healthy += 1;
    // None of the subzone healthy: the rest of the zone already is all there is; all of it: nothing to narrow.
    if (healthy === 0 || healthy === candidates.length) return;
    let total = 0;
    for (const e of all) if (eligible(e) && e.endpoint.zone === this.zone && subzoneOf(e) === own) total += 1;
    const enough = threshold * total;
    const inSubzone = healthy >= enough || random() < healthy / enough;
    let kept = 0;
    for (const e of candidates) if ((subzoneOf(e) === own) === inSubzone) candidates[kept++] = e;
    candidates.length = kept;
  }
}
