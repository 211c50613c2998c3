/**
 * What a zone ingress may forward to: the endpoints of its own zone, as its zone control plane lists them,
 * and nothing else. The table is replaced whole on every config push; the ingress never dials an address
 * that is not in it (a CONNECT names a service, never an address).
 *
 * A CONNECT names `<service>.<namespace>:<port>`, the port being the destination app's port, as on any
 * tunnel (the inner session's SNI and streams name the same port). An endpoint serves it when its own
 * `targetPorts` list it, or, without them, when a service port lands on it.
 *
 * Endpoints are chosen with the sidecars' balancer (least outstanding, P2C), health from the control
 * plane plus local observation: an endpoint that refuses the ingress's connection is out for a cool-down.
 */
import type { Endpoint, UpstreamService } from '../../api/data-plane.js';
import type { Destination } from '../core/destination.js';
import { LoadBalancer, type BalancedEndpoint } from '../outbound/tunnel-client/load-balancer.js';

export type RouteAnswer =
  | { readonly kind: 'unknown-service' }
  | { readonly kind: 'ok'; readonly pick: (exclude: ReadonlySet<string>) => BalancedEndpoint | undefined };

export class IngressRoutes {
  private services = new Map<string, UpstreamService>();

  constructor(readonly balancer: LoadBalancer = new LoadBalancer()) {}

  /** Replaces the table: only `zone`'s own endpoints (never another zone's, never one behind an ingress). */
  set(upstreams: readonly UpstreamService[], zone: string): void {
    const next = new Map<string, UpstreamService>();
    const local: UpstreamService[] = [];
    for (const u of upstreams) {
      const endpoints = u.endpoints.filter((e) => e.ingress === undefined && e.zone === zone);
      const service = { ...u, endpoints };
      local.push(service);
      next.set(`${u.name}.${u.namespace}`, service);
    }
    this.balancer.setServices(local);
    this.services = next;
  }

  /** Services in the table (for the admin view and tests). */
  size(): number {
    return this.services.size;
  }

  resolve(destination: Destination): RouteAnswer {
    const service = this.services.get(`${destination.service}.${destination.namespace}`);
    if (service === undefined || !service.endpoints.some((e) => servesAppPort(service, e, destination.port))) return { kind: 'unknown-service' };
    const accept = (e: BalancedEndpoint): boolean => servesAppPort(service, e.endpoint, destination.port);
    return {
      kind: 'ok',
      pick: (exclude) => {
        const e = this.balancer.pick(destination.service, destination.namespace, exclude, undefined, accept);
        // The balancer offers an endpoint marked out when all are: the ingress answers no-healthy-endpoint
        // instead, so the caller fails over to another zone rather than trying a dead one through us.
        return e === undefined || !e.endpoint.healthy || e.ejectedUntil > Date.now() ? undefined : e;
      },
    };
  }
}

/** Whether `endpoint` of `service` has its app listening on `appPort`. */
function servesAppPort(service: UpstreamService, endpoint: Endpoint, appPort: number): boolean {
  if (endpoint.targetPorts !== undefined) return Object.values(endpoint.targetPorts).includes(appPort);
  return service.ports.some((p) => p.targetPort === appPort);
}
