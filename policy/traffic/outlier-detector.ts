/**
 * Outlier detection for one destination service, as Envoy and Kuma do it, fed by the outcome of every
 * try and consulted by the balancer.
 *
 * - Consecutive-failure ejection: `consecutive5xx` (any 5xx or gateway failure), `consecutiveGatewayErrors`
 *   (502/503/504, resets, timeouts) and `consecutiveConnectFailures`; a success resets the counters.
 * - Success-rate ejection, at every `sweep`: among endpoints with at least `requestVolume` tries in the
 *   interval (and at least `minimumHosts` of them), those below mean − stdevFactor × stdev.
 * - Ejection time = baseEjectionTime × times ejected, capped at maxEjectionTime; the count decays by one
 *   per clean interval, so a recovered endpoint's next ejection is short again.
 * - Never more than `maxEjectedPercent` of the endpoints of one zone at once (rounded down, but one may be
 *   ejected once a zone has two or more): so the single ingress that stands for a remote zone is never
 *   ejected, and a local failure cannot eject a whole zone.
 * - `usable`: when fewer than `panicThreshold`% of the endpoints would be left, ejections are ignored and
 *   every endpoint is used (a degraded answer beats none).
 */
import type { OutlierSpec } from './types.js';

export type TryOutcome = 'success' | '5xx' | 'gateway-error' | 'connect-failure';
export type EjectionReason = 'consecutive-5xx' | 'consecutive-gateway-errors' | 'consecutive-connect-failures' | 'success-rate';

interface EndpointState {
  zone: string;
  c5xx: number;
  cGateway: number;
  cConnect: number;
  ok: number;
  total: number;
  ejections: number;
  ejectedUntil: number;
}

export class OutlierDetector {
  private readonly states = new Map<string, EndpointState>();

  constructor(
    readonly spec: OutlierSpec,
    private readonly now: () => number = Date.now,
    private readonly onEject: (key: string, reason: EjectionReason) => void = () => undefined,
  ) {}

  /** Keeps state for exactly these endpoints (a config push); an endpoint that stays keeps its counters. */
  setEndpoints(endpoints: readonly { readonly key: string; readonly zone: string }[]): void {
    const keep = new Set<string>();
    for (const e of endpoints) {
      keep.add(e.key);
      const s = this.states.get(e.key);
      if (s === undefined) this.states.set(e.key, { zone: e.zone, c5xx: 0, cGateway: 0, cConnect: 0, ok: 0, total: 0, ejections: 0, ejectedUntil: 0 });
      else s.zone = e.zone;
    }
    for (const key of this.states.keys()) if (!keep.has(key)) this.states.delete(key);
  }

  /** One try's outcome at endpoint `key`. Returns the reason when this outcome ejected it. */
  record(key: string, outcome: TryOutcome): EjectionReason | undefined {
    const s = this.states.get(key);
    if (s === undefined) return undefined;
    s.total += 1;
    if (outcome === 'success') {
      s.ok += 1;
      s.c5xx = s.cGateway = s.cConnect = 0;
      return undefined;
    }
    s.c5xx += 1;
    if (outcome === 'gateway-error' || outcome === 'connect-failure') s.cGateway += 1;
    if (outcome === 'connect-failure') s.cConnect += 1;
    const { consecutive5xx, consecutiveGatewayErrors, consecutiveConnectFailures } = this.spec;
    let reason: EjectionReason | undefined;
    if (consecutiveConnectFailures !== undefined && s.cConnect >= consecutiveConnectFailures) reason = 'consecutive-connect-failures';
    else if (consecutiveGatewayErrors !== undefined && s.cGateway >= consecutiveGatewayErrors) reason = 'consecutive-gateway-errors';
    else if (consecutive5xx !== undefined && s.c5xx >= consecutive5xx) reason = 'consecutive-5xx';
    if (reason === undefined || !this.eject(key, s)) return undefined;
    this.onEject(key, reason);
    return reason;
  }

  isEjected(key: string): boolean {
    const s = this.states.get(key);
    return s !== undefined && s.ejectedUntil > this.now();
  }

  /**
   * Whether ejections are honoured for a pick among `keys`: false (panic: use everything) when fewer than
   * panicThreshold% of them are not ejected.
   */
  honoured(keys: readonly string[]): boolean {
    if (keys.length === 0) return false;
    let live = 0;
    for (const k of keys) if (!this.isEjected(k)) live += 1;
    return (live * 100) / keys.length >= this.spec.panicThresholdPercent;
  }

  /** Once per interval: success-rate ejection, then counts restart and clean endpoints' ejection counts decay. */
  sweep(): void {
    const sr = this.spec.successRate;
    if (sr !== undefined) {
      const rated = [...this.states.entries()].filter(([key, s]) => s.total >= sr.requestVolume && !this.isEjected(key));
      if (rated.length >= sr.minimumHosts) {
        const rates = rated.map(([, s]) => s.ok / s.total);
        const mean = rates.reduce((a, b) => a + b, 0) / rates.length;
        const stdev = Math.sqrt(rates.reduce((a, r) => a + (r - mean) ** 2, 0) / rates.length);
        const floor = mean - sr.stdevFactor * stdev;
        rated.forEach(([key, s], i) => {
          if ((rates[i] as number) < floor && this.eject(key, s)) this.onEject(key, 'success-rate');
        });
      }
    }
    const now = this.now();
    for (const s of this.states.values()) {
      if (s.ejectedUntil <= now && s.ejections > 0 && s.total === s.ok) s.ejections -= 1;
      s.ok = s.total = 0;
    }
  }

  private eject(key: string, s: EndpointState): boolean {
    const now = this.now();
    if (s.ejectedUntil > now) return false;
    let inZone = 0;
    let ejected = 0;
    for (const [k, o] of this.states) {
      if (o.zone !== s.zone) continue;
      inZone += 1;
      if (k !== key && o.ejectedUntil > now) ejected += 1;
    }
    if (inZone < 2 || ejected + 1 > Math.floor((inZone * this.spec.maxEjectedPercent) / 100)) return false;
    s.ejections += 1;
    s.ejectedUntil = now + Math.min(this.spec.maxEjectionTimeMs, this.spec.baseEjectionTimeMs * s.ejections);
    s.c5xx = s.cGateway = s.cConnect = 0;
    return true;
  }
}
