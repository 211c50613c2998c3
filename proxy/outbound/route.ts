/**
 * Resolving where an app connection goes, the same way however it was captured: an explicit listener
 * names (service, namespace, service port); transparent capture will map an original destination address
 * to the same triple. The route adds what config says about that service port: the workload port it lands
 * on and its protocol. The endpoint picked may serve that service port on an app port of its own
 * (`Endpoint.targetPorts`: instances of one service listening on different ports), so the port a stream
 * names is `routeTargetPort(route, endpoint)`, worked out after the pick, never `route.targetPort` alone.
 */
import { endpointTargetPort, type Endpoint, type PortProtocol, type UpstreamService } from '../../api/data-plane.js';
import { serviceKey } from '../core/destination.js';

export interface OutboundRoute {
  readonly service: string;
  readonly namespace: string;
  /** The service port the app asked for. */
  readonly servicePort: number;
  /** The service port's `targetPort`: where endpoints without target ports of their own listen. */
  readonly targetPort: number;
  readonly protocol: PortProtocol;
}

/** Upstream services by `<service>.<namespace>`, frozen per config version. */
export type UpstreamIndex = ReadonlyMap<string, UpstreamService>;

export function indexUpstreams(upstreams: readonly UpstreamService[]): UpstreamIndex {
  const map = new Map<string, UpstreamService>();
  for (const u of upstreams) map.set(serviceKey(u.name, u.namespace), u);
  return map;
}

export function resolveRoute(index: UpstreamIndex, service: string, namespace: string, servicePort: number): OutboundRoute | undefined {
  const upstream = index.get(serviceKey(service, namespace));
  const port = upstream?.ports.find((p) => p.port === servicePort);
  if (port === undefined) return undefined;
  return Object.freeze({ service, namespace, servicePort, targetPort: port.targetPort, protocol: port.protocol });
}

/** The app port the picked endpoint serves the route on: what the CONNECT authority and SNI name. */
export function routeTargetPort(route: OutboundRoute, endpoint: Endpoint): number {
  // The balancer picks only endpoints that serve the service port; the fallback is for a config without targetPorts.
  return endpointTargetPort(endpoint, route.servicePort, route.targetPort) ?? route.targetPort;
}
