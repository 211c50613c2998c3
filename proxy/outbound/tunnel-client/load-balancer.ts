/**
 * Endpoint choice per service: power of two choices over least outstanding requests (the default), or
 * round robin. Used for every TCP connection and, by the HTTP path, for every request.
 *
 * Why P2C: it needs no global sort, reacts to a slow endpoint within a few requests, and avoids the herd
 * that "pick the global least loaded" causes when several callers see the same snapshot.
 *
 * Health has two sources: the config (`Endpoint.healthy`, from the control plane) and local observation
 * (`reportFailure`, e.g. a refused tunnel connection), which takes an endpoint out for a cool-down that
 * doubles on repeated failures. When every endpoint of a service is out, the least recently failed one is
 * still offered rather than nothing: a degraded guess beats a certain failure (and is counted by callers).
 *
 * The pick is per service port: an endpoint whose `targetPorts` does not list the port asked for (its app
 * does not listen behind it) is never a candidate, whatever its health.
 *
 * Identity across config pushes: callers hold a `BalancedEndpoint` from `begin` to `end`, often across a
 * push, so there is exactly one object per endpoint identity (service + address + tunnel port + ingress)
 * for as long as anyone may hold it. A push updates that object in place; an endpoint that leaves keeps
 * its object while requests to it are in flight, and gets the same object back if it returns meanwhile.
 * (Copying counts into fresh objects let in-flight requests decrement the old ones, so the new counts
 * never fell and P2C starved that endpoint until a restart.)
 */
import type { Endpoint } from '../../../api/data-plane.js';
import { endpointKey, serviceKey } from '../../core/destination.js';
import type { FailoverChoice, FailoverRules } from '../../../policy/traffic/index.js';
import { Locality, type LocalityOptions } from './locality.js';

export type LoadBalancingStrategy = 'least-outstanding' | 'round-robin';

export interface LoadBalancerOptions {
  readonly strategy?: LoadBalancingStrategy;
  /** First cool-down after a locally observed failure; doubled per consecutive failure. */
  readonly failureCooldownMs?: number;
  readonly maxFailureCooldownMs?: number;
  /** Prefer the caller's zone, fail over by zone (locality.ts); absent: every zone alike. */
  readonly locality?: LocalityOptions;
  /** Injected for deterministic tests. */
  readonly random?: () => number;
  readonly now?: () => number;
}

/** One endpoint as the balancer tracks it; callers hold it between `begin` and `end`. */
export interface BalancedEndpoint {
  readonly key: string;
  /** The latest config's view of it (health, zone); replaced in place by `setServices`. */
  endpoint: Endpoint;
  /** Requests or connections in flight to it from this sidecar. */
  outstanding: number;
  consecutiveFailures: number;
  /** Epoch ms until which local observation keeps it out of rotation. */
  ejectedUntil: number;
}

interface ServiceEntry {
  endpoints: BalancedEndpoint[];
  cursor: number;
  /** The zone order of this destination, resolved at its first pick after a change (locality.ts). */
  failover: FailoverChoice | undefined;
}

export class LoadBalancer {
  private readonly strategy: LoadBalancingStrategy;
  private readonly cooldownMs: number;
  private readonly maxCooldownMs: number;
  private readonly random: () => number;
  private readonly now: () => number;
  private services = new Map<string, ServiceEntry>();
  /**
   * Endpoints that left the config while requests to them were in flight, by `<service>/<endpoint key>`:
   * their `end` still lands on the object callers hold, and a re-added endpoint gets it back. Pruned on
   * each push once nothing is outstanding.
   */
  private retired = new Map<string, BalancedEndpoint>();
  private readonly scratch: BalancedEndpoint[] = [];
  private readonly locality: Locality | undefined;

  constructor(options: LoadBalancerOptions = {}) {
    this.strategy = options.strategy ?? 'least-outstanding';
    this.cooldownMs = options.failureCooldownMs ?? 1_000;
    this.maxCooldownMs = options.maxFailureCooldownMs ?? 30_000;
    this.random = options.random ?? Math.random;
    this.now = options.now ?? Date.now;
    this.locality = options.locality === undefined ? undefined : new Locality(options.locality);
  }

  /**
   * Replaces the endpoints of every service at once. An endpoint that stays (or returns while still held)
   * keeps its object, so its outstanding count and failure state carry over and in-flight requests still
   * decrement the count the balancer reads.
   */
  setServices(services: readonly { readonly name: string; readonly namespace: string; readonly endpoints: readonly Endpoint[] }[]): void {
    const next = new Map<string, ServiceEntry>();
    const known = this.retired;
    for (const [key, entry] of this.services) for (const e of entry.endpoints) known.set(`${key}/${e.key}`, e);
    const kept = new Set<BalancedEndpoint>();
    for (const service of services) {
      const key = serviceKey(service.name, service.namespace);
      const endpoints: BalancedEndpoint[] = [];
      for (const endpoint of service.endpoints) {
        const epKey = endpointKey(endpoint);
        let e = known.get(`${key}/${epKey}`);
        if (e === undefined || kept.has(e)) {
          e = { key: epKey, endpoint, outstanding: 0, consecutiveFailures: 0, ejectedUntil: 0 };
        } else {
          e.endpoint = endpoint;
        }
        kept.add(e);
        endpoints.push(e);
      }
      next.set(key, { endpoints, cursor: this.services.get(key)?.cursor ?? 0, failover: undefined });
    }
    const retired = new Map<string, BalancedEndpoint>();
    for (const [id, e] of known) if (!kept.has(e) && e.outstanding > 0) retired.set(id, e);
    this.retired = retired;
    this.services = next;
  }

  /**
   * The distributed failover rules in force (ZoneFailover) and, when the config names it, the caller's zone;
   * new picks follow them at once, picks in flight and open sessions are untouched. Returns whether the
   * rules override a local failover default of this sidecar.
   */
  setFailover(rules: FailoverRules | undefined, zone?: string): boolean {
    if (this.locality === undefined) return false;
    this.locality.setRules(rules, zone);
    for (const entry of this.services.values()) entry.failover = undefined;
    return this.locality.hasLocalDefault && rules !== undefined && rules.size > 0;
  }

  /** The zone order and threshold a pick for this destination follows now (for /config and explain). */
  failoverFor(service: string, namespace: string): FailoverChoice | undefined {
    return this.locality?.choiceFor(namespace, service);
  }

  /** Endpoints known for a service (for pre-warming sessions and for /config). */
  endpoints(service: string, namespace: string): readonly BalancedEndpoint[] {
    return this.services.get(serviceKey(service, namespace))?.endpoints ?? [];
  }

  /**
   * Chooses an endpoint, skipping unhealthy ones, those in `exclude` (endpoint keys already tried by
   * this connection) and, given `servicePort`, those that do not serve it; given `accept` (a traffic
   * route's backend subset and outlier detection, proxy/outbound/traffic/), only endpoints it accepts.
   * Undefined when the service has no endpoint left to try.
   */
  pick(service: string, namespace: string, exclude?: ReadonlySet<string>, servicePort?: number, accept?: (e: BalancedEndpoint) => boolean): BalancedEndpoint | undefined {
    const entry = this.services.get(serviceKey(service, namespace));
    if (entry === undefined || entry.endpoints.length === 0) return undefined;
    const now = this.now();
    const candidates = this.scratch;
    candidates.length = 0;
    for (const e of entry.endpoints) {
      if (exclude?.has(e.key) === true || !serves(e.endpoint, servicePort) || (accept !== undefined && !accept(e))) continue;
      if (!e.endpoint.healthy || e.ejectedUntil > now) continue;
      candidates.push(e);
    }
    if (candidates.length === 0) {
      // Degraded: every endpoint is marked out. Offer the one whose ejection ends first, still honouring exclude.
      let best: BalancedEndpoint | undefined;
      for (const e of entry.endpoints) {
        if (exclude?.has(e.key) === true || !serves(e.endpoint, servicePort) || (accept !== undefined && !accept(e))) continue;
        if (best === undefined || e.ejectedUntil < best.ejectedUntil) best = e;
      }
      return best;
    }
    if (this.locality !== undefined && candidates.length > 1) {
      const eligible = (e: BalancedEndpoint): boolean => exclude?.has(e.key) !== true && serves(e.endpoint, servicePort) && (accept === undefined || accept(e));
      entry.failover ??= this.locality.choiceFor(namespace, service);
      this.locality.narrow(candidates, entry.endpoints, eligible, entry.failover, this.random);
    }
    if (candidates.length === 1) return candidates[0];
    if (this.strategy === 'round-robin') {
      entry.cursor = (entry.cursor + 1) % candidates.length;
      return candidates[entry.cursor];
    }
    const n = candidates.length;
    const i = Math.floor(this.random() * n);
    let j = Math.floor(this.random() * (n - 1));
    if (j >= i) j += 1;
    const a = candidates[i] as BalancedEndpoint;
    const b = candidates[j] as BalancedEndpoint;
    return b.outstanding < a.outstanding ? b : a;
  }

  /** A request or connection started on this endpoint. */
  begin(endpoint: BalancedEndpoint): void {
    endpoint.outstanding += 1;
  }

  /** It ended; `ok` false when the endpoint itself failed (not when the app closed or the peer was denied). */
  end(endpoint: BalancedEndpoint, ok = true): void {
    if (endpoint.outstanding > 0) endpoint.outstanding -= 1;
    if (ok) this.reportSuccess(endpoint);
    else this.reportFailure(endpoint);
  }

  reportSuccess(endpoint: BalancedEndpoint): void {
    endpoint.consecutiveFailures = 0;
    endpoint.ejectedUntil = 0;
  }

  /** A locally observed failure (connect refused, TLS failure, 502/503 from the peer): eject for a while. */
  reportFailure(endpoint: BalancedEndpoint): void {
    endpoint.consecutiveFailures += 1;
    const cooldown = Math.min(this.maxCooldownMs, this.cooldownMs * 2 ** Math.min(16, endpoint.consecutiveFailures - 1));
    endpoint.ejectedUntil = this.now() + cooldown;
  }

  /** Marks every endpoint with this key (it may serve several services) as failed or recovered. */
  reportEndpoint(key: string, ok: boolean): void {
    for (const entry of this.services.values()) {
      for (const e of entry.endpoints) {
        if (e.key !== key) continue;
        if (ok) this.reportSuccess(e);
        else this.reportFailure(e);
      }
    }
  }
}

/** Whether an endpoint serves a service port (every port, when it has no `targetPorts` of its own). */
function serves(endpoint: Endpoint, servicePort: number | undefined): boolean {
  return servicePort === undefined || endpoint.targetPorts === undefined || endpoint.targetPorts[servicePort] !== undefined;
}
