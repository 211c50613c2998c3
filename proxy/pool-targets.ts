/**
 * Which sessions the outbound session pool keeps for the config in force: `warm` opened ahead of need,
 * `onDemand` valid but opened on first use.
 *
 * Explicit listeners name their upstreams, so every endpoint of those is warmed. Transparent capture may
 * reach any port of any upstream; with a mesh-wide subscription that is every endpoint of the mesh, so
 * those are warmed only while there are few of them (CAPTURE_WARM_LIMIT), and opened on first use beyond
 * that (one handshake, then kept like any other).
 */
import { endpointTargetPort, type Endpoint, type ServicePort, type UpstreamService } from '../api/data-plane.js';
import type { UpstreamIndex } from './outbound/route.js';
import type { PoolTarget } from './outbound/tunnel-client/session-pool.js';
import type { SidecarConfig } from './sidecar-api.js';

/**
 * Destinations (endpoint × service port) a capture-mode sidecar opens sessions to ahead of need; beyond
 * this (a mesh-wide subscription in a large mesh) they open on first use. Two sessions each by default.
 */
export const CAPTURE_WARM_LIMIT = 64;

export interface PoolTargets {
  readonly warm: PoolTarget[];
  readonly onDemand: PoolTarget[];
}

/** Adds the session for the endpoint's own app port (what SNI names) once: instances may listen on different ones. */
function addTarget(list: PoolTarget[], keys: Set<string>, endpoint: Endpoint, upstream: UpstreamService, port: ServicePort): void {
  const targetPort = endpointTargetPort(endpoint, port.port, port.targetPort);
  if (targetPort === undefined) return;
  const key = targetKey({ endpoint, service: upstream.name, namespace: upstream.namespace, port: targetPort });
  if (keys.has(key)) return;
  keys.add(key);
  list.push({ endpoint, service: upstream.name, namespace: upstream.namespace, port: targetPort });
}

function targetKey(t: PoolTarget): string {
  return `${t.endpoint.address}:${t.endpoint.tunnelPort}/${t.service}.${t.namespace}:${t.port}`;
}

/** The pool's targets for `config`; `capture`: transparent capture is on, so every upstream port may be reached. */
export function poolTargets(config: SidecarConfig, upstreams: UpstreamIndex, capture: boolean): PoolTargets {
  const warm: PoolTarget[] = [];
  const seen = new Set<string>();
  let captured: PoolTarget[] = [];
  if (capture) {
    const capturedKeys = new Set<string>();
    for (const upstream of config.upstreams) {
      for (const port of upstream.ports) for (const endpoint of upstream.endpoints) addTarget(captured, capturedKeys, endpoint, upstream, port);
    }
    if (captured.length <= CAPTURE_WARM_LIMIT) {
      for (const t of captured) seen.add(targetKey(t));
      warm.push(...captured);
      captured = [];
    }
  }
  for (const l of config.listeners) {
    const upstream = upstreams.get(`${l.service}.${l.namespace}`);
    const port = upstream?.ports.find((p) => p.port === l.port);
    if (upstream === undefined || port === undefined) continue;
    for (const endpoint of upstream.endpoints) addTarget(warm, seen, endpoint, upstream, port);
  }
  return { warm, onDemand: captured };
}
