/**
 * Traffic management on the outbound side of one sidecar: the compiled resources in force, the state
 * kept per destination (destination-state.ts), and `plan`, which every outbound request calls once.
 *
 * A config push (`setResources`, `setServices`) takes effect for the next request at once; a request in
 * flight keeps the plan it was given, so a change of weights or rules never cuts it.
 */
import type { UpstreamService } from '../../../api/data-plane.js';
import {
  DEFAULT_TRAFFIC,
  pickBackend,
  labelsMatch,
  type CompiledTraffic,
  type TrafficRequest,
} from '../../../policy/traffic/index.js';
import { endpointKey } from '../../core/destination.js';
import type { OutboundRoute } from '../route.js';
import type { BalancedEndpoint } from '../tunnel-client/load-balancer.js';
import { DestinationState } from './destination-state.js';
import { RequestPlan, destinationIdleMs } from './request-plan.js';
import type { TrafficMetrics } from './traffic-metrics.js';

/** What a TCP stream offers route matching: nothing HTTP, so only rules without HTTP conditions match it. */
const TCP_REQUEST: TrafficRequest = Object.freeze({ method: '', path: null, query: '', headerValues: () => [] });

/** Success-rate ejection runs at most this often, whatever the configured interval. */
const MIN_SWEEP_MS = 1_000;
/** Destinations with state; a sidecar calling more than this many services shares nothing beyond it. */
const MAX_DESTINATIONS = 4_096;

export interface OutboundTrafficOptions {
  readonly metrics: TrafficMetrics;
  /** `namespace/service` of this workload, for metrics. */
  readonly source: string;
  readonly now?: () => number;
  readonly random?: () => number;
}

export class OutboundTraffic {
  private compiled: CompiledTraffic = DEFAULT_TRAFFIC;
  private readonly destinations = new Map<string, DestinationState>();
  private endpoints = new Map<string, { key: string; zone: string }[]>();
  private readonly now: () => number;
  private readonly random: () => number;
  private sweeper: NodeJS.Timeout | undefined;

  constructor(private readonly options: OutboundTrafficOptions) {
    this.now = options.now ?? Date.now;
    this.random = options.random ?? Math.random;
  }

  get resources(): CompiledTraffic {
    return this.compiled;
  }

  setResources(compiled: CompiledTraffic): void {
    this.compiled = compiled;
    for (const [key, state] of this.destinations) {
      const [namespace, service] = key.split('/') as [string, string];
      state.update(compiled.settings(namespace, service), this.endpoints.get(key) ?? []);
    }
  }

  setServices(upstreams: readonly UpstreamService[]): void {
    const next = new Map<string, { key: string; zone: string }[]>();
    for (const u of upstreams) next.set(`${u.namespace}/${u.name}`, u.endpoints.map((e) => ({ key: endpointKey(e), zone: e.zone })));
    this.endpoints = next;
    for (const [key, state] of this.destinations) state.outlier.setEndpoints(next.get(key) ?? []);
  }

  /** Success-rate ejection and the decay of ejection counts, on a timer that never holds the process open. */
  startSweeps(): void {
    if (this.sweeper !== undefined) return;
    this.sweeper = setInterval(() => {
      for (const state of this.destinations.values()) state.outlier.sweep();
    }, MIN_SWEEP_MS * 10);
    this.sweeper.unref();
  }

  close(): void {
    if (this.sweeper !== undefined) clearInterval(this.sweeper);
    this.sweeper = undefined;
  }

  destination(namespace: string, service: string): DestinationState {
    const key = `${namespace}/${service}`;
    let state = this.destinations.get(key);
    if (state === undefined) {
      state = new DestinationState(key, this.compiled.settings(namespace, service), this.options.metrics, this.now);
      state.outlier.setEndpoints(this.endpoints.get(key) ?? []);
      if (this.destinations.size < MAX_DESTINATIONS) this.destinations.set(key, state);
    }
    return state;
  }

  /**
   * The decision for one request to `route`: the matching rule, a backend drawn by weight among those with
   * an endpoint that is up and serves the port (none up: drawn among all, and the pick finds nothing, which
   * the path reports as "no endpoint"), and the destination's settings and breaker slot.
   */
  plan(route: OutboundRoute, req: TrafficRequest, candidates: readonly BalancedEndpoint[], slot: 'requests' | 'connections' = 'requests'): RequestPlan {
    const rule = this.compiled.route(route.namespace, route.service, req);
    const backends = rule.rule.backends;
    let index = 0;
    if (backends.length > 1) {
      const up = (labels: Readonly<Record<string, string>>): boolean => candidates.some((e) => e.endpoint.healthy && labelsMatch(labels, e.endpoint.labels));
      const r = this.random();
      index = pickBackend(backends, r, (b) => up(b.labels)) ?? pickBackend(backends, r) ?? 0;
    }
    const dest = this.destination(route.namespace, route.service);
    const plan = new RequestPlan(rule, backends[index] ?? (backends[0] as never), dest, req.method, this.options.source, this.options.metrics, candidates, slot);
    const mirror = rule.rule.mirror;
    // Drawn per request: `percent` of the requests this rule takes are copied (mirror.ts sends them).
    if (mirror !== undefined && slot === 'requests' && plan.overflow === undefined && this.random() * 100 < mirror.percent) plan.mirrorLabels = mirror.labels;
    return plan;
  }

  /** The idle timeout of a destination's streams and upgrades: its TimeoutPolicy's `idle`, else `fallback` (the listener's). */
  idleTimeoutMs(namespace: string, service: string, fallback: number): number {
    return destinationIdleMs(this.compiled.settings(namespace, service), fallback);
  }

  /**
   * A TCP connection's plan: the first rule that asks nothing of HTTP (no match, or only conditions a
   * stream cannot meet fail) gives the weights; the connection holds a `connections` slot of the breaker.
   */
  tcpPlan(route: OutboundRoute, candidates: readonly BalancedEndpoint[]): RequestPlan {
    return this.plan(route, TCP_REQUEST, candidates, 'connections');
  }
}
