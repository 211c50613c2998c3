/**
 * The traffic resources of a config, compiled once per change and then asked per request: which route
 * rule matches (and so which weighted backends, header edits and mirror), and which retry, timeout,
 * outlier-detection and circuit-breaker settings apply to a destination.
 *
 * Resolution per destination service: the resource of that kind naming the service in its namespace,
 * else the one naming `*` in that namespace, else the day-one default. This is the small API every
 * outbound path calls (the HTTP/1.1 lanes today; the HTTP/2 and gRPC path can call the same `route` and
 * `settings` with its own `TrafficRequest`).
 *
 * ZoneFailover resources are resolved apart (`failover`, failover-rules.ts): they have three levels
 * (service, namespace, mesh-wide), depend on the caller's zone, and refuse ties instead of letting the
 * first win.
 */
import { DEFAULT_ROOT_NAMESPACE } from '../types.js';
import { FailoverRules } from './failover-rules.js';
import { compileMatch, DEFAULT_RULE, type CompiledRule, type TrafficRequest } from './route-match.js';
import {
  DEFAULT_BREAKER,
  DEFAULT_OUTLIER,
  DEFAULT_RETRY,
  DEFAULT_TIMEOUTS,
  type BreakerSpec,
  type OutlierSpec,
  type RetrySpec,
  type TimeoutSpec,
  type TrafficResource,
  type TrafficRoute,
  type ZoneFailover,
} from './types.js';

export interface CompileOptions {
  /** Where a `destination: "*"` ZoneFailover is mesh-wide (default trellis-system). */
  readonly rootNamespace?: string;
}

/** Which settings apply to one destination, with the resource each came from (`default` when none). */
export interface DestinationSettings {
  readonly retry: RetrySpec;
  readonly timeouts: TimeoutSpec;
  readonly outlier: OutlierSpec;
  readonly breaker: BreakerSpec;
  readonly sources: { readonly route: string; readonly retry: string; readonly timeouts: string; readonly outlier: string; readonly breaker: string };
}

type Kind = TrafficResource['kind'];

export class CompiledTraffic {
  private readonly byKind = new Map<Kind, Map<string, TrafficResource>>();
  private readonly routes = new Map<string, readonly CompiledRule[]>();
  private readonly settingsCache = new Map<string, DestinationSettings>();
  /** The zone order per caller zone and destination (failover-rules.ts). */
  readonly failover: FailoverRules;

  constructor(
    readonly resources: readonly TrafficResource[],
    options: CompileOptions = {},
  ) {
    this.failover = new FailoverRules(resources.filter((r): r is ZoneFailover => r.kind === 'ZoneFailover'), options.rootNamespace ?? DEFAULT_ROOT_NAMESPACE);
    for (const r of resources) {
      if (r.kind === 'ZoneFailover') continue;
      let map = this.byKind.get(r.kind);
      if (map === undefined) this.byKind.set(r.kind, (map = new Map()));
      const key = `${r.metadata.namespace}/${r.spec.destination}`;
      // Validation refuses duplicate names, not two resources for one destination: the first (file order) wins, as `explain` shows.
      if (!map.has(key)) map.set(key, r);
    }
    for (const [key, r] of this.byKind.get('TrafficRoute') ?? []) {
      const route = r as TrafficRoute;
      this.routes.set(key, Object.freeze(route.spec.rules.map((rule, i) => Object.freeze({ label: `${route.metadata.name}/${rule.name ?? String(i)}`, rule, matches: compileMatch(rule.match) }))));
    }
  }

  /** The first rule of the destination's route that matches `req`, or the default rule (all endpoints). */
  route(namespace: string, service: string, req: TrafficRequest): CompiledRule {
    const rules = this.routes.get(`${namespace}/${service}`) ?? this.routes.get(`${namespace}/*`);
    if (rules === undefined) return DEFAULT_RULE;
    let params: URLSearchParams | undefined;
    const query = (): URLSearchParams => (params ??= new URLSearchParams(req.query));
    for (const rule of rules) if (rule.matches(req, query)) return rule;
    return DEFAULT_RULE;
  }

  /** Whether any route names this destination (TCP uses the first rule's weights when one does). */
  hasRoute(namespace: string, service: string): boolean {
    return this.routes.has(`${namespace}/${service}`) || this.routes.has(`${namespace}/*`);
  }

  settings(namespace: string, service: string): DestinationSettings {
    const key = `${namespace}/${service}`;
    const cached = this.settingsCache.get(key);
    if (cached !== undefined) return cached;
    const find = (kind: Kind): TrafficResource | undefined => this.byKind.get(kind)?.get(key) ?? this.byKind.get(kind)?.get(`${namespace}/*`);
    const name = (r: TrafficResource | undefined): string => (r === undefined ? 'default' : `${r.metadata.namespace}/${r.metadata.name}`);
    const route = find('TrafficRoute');
    const retry = find('RetryPolicy');
    const timeouts = find('TimeoutPolicy');
    const outlier = find('OutlierDetection');
    const breaker = find('CircuitBreaker');
    const settings: DestinationSettings = Object.freeze({
      retry: retry?.kind === 'RetryPolicy' ? retry.spec : DEFAULT_RETRY,
      timeouts: timeouts?.kind === 'TimeoutPolicy' ? timeouts.spec : DEFAULT_TIMEOUTS,
      outlier: outlier?.kind === 'OutlierDetection' ? outlier.spec : DEFAULT_OUTLIER,
      breaker: breaker?.kind === 'CircuitBreaker' ? breaker.spec : DEFAULT_BREAKER,
      sources: Object.freeze({ route: name(route), retry: name(retry), timeouts: name(timeouts), outlier: name(outlier), breaker: name(breaker) }),
    });
    // Bounded by the services a config names (one entry per destination asked about).
    if (this.settingsCache.size < 65_536) this.settingsCache.set(key, settings);
    return settings;
  }
}

export function compileTraffic(resources: readonly TrafficResource[], options: CompileOptions = {}): CompiledTraffic {
  return new CompiledTraffic(resources, options);
}

/** No resources: every destination gets the day-one defaults and all its endpoints. */
export const DEFAULT_TRAFFIC = compileTraffic([]);
